// Package excerpt shortens untrusted text for error messages and warnings. A
// node's dump, a saved file or a pod's output can hold a token of megabytes;
// an error names it by a short prefix and its size, never in full.
package excerpt

import (
	"strconv"
	"unicode/utf8"
)

// Max is how many bytes of a token a message shows.
const Max = 64

// MaxLine is how many bytes of a whole line (a tool's warning) a message
// shows.
const MaxLine = 256

// Quote returns s quoted as %q would when it is at most Max bytes long, and
// otherwise its first Max bytes (cut at a character boundary) quoted,
// followed by "…" and s's full size: "\"-A KUBE-SVC-…\"… (10485760 bytes)".
func Quote[T ~string | ~[]byte](s T) string {
	if len(s) <= Max {
		return strconv.Quote(string(s))
	}
	return strconv.Quote(string(s[:cut(s, Max)])) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// Clip returns s as it is when it is at most Max bytes long, and otherwise
// its first Max bytes (cut at a character boundary) followed by "…", for
// names printed without quotes (chain names, set names). It does not escape:
// output for a terminal goes through render/termsafe.
func Clip[T ~string | ~[]byte](s T) string {
	return clip(s, Max)
}

// Line is Clip for a whole line of text, such as a warning a tool printed:
// it keeps up to MaxLine bytes.
func Line[T ~string | ~[]byte](s T) string {
	return clip(s, MaxLine)
}

func clip[T ~string | ~[]byte](s T, max int) string {
	if len(s) <= max {
		return string(s)
	}
	return string(s[:cut(s, max)]) + "…"
}

// cut is where to end a prefix of at most max bytes without splitting a
// UTF-8 sequence.
func cut[T ~string | ~[]byte](s T, max int) int {
	n := max
	for n > max-utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}
