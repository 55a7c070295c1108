package termsafe

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestString(t *testing.T) {
	cases := []struct{ name, in, want, text string }{
		{"plain ASCII stays", `-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-X`, "", ""},
		{"other UTF-8 stays", "→ … · café ✓ 日本", "", ""},
		{"ESC", "a\x1b[31mred", `a\x1b[31mred`, ""},
		{"OSC title and BEL", "\x1b]0;owned\a", `\x1b]0;owned\x07`, ""},
		{"NUL and DEL", "a\x00b\x7f", `a\x00b\x7f`, ""},
		{"newline and tab", "one\ntwo\tthree\r", `one\ntwo\tthree\r`, "one\ntwo\tthree\\r"},
		{"C1 CSI as UTF-8", "a\u009b31mb", `a\u009b31mb`, ""},
		{"C1 as a raw byte is not UTF-8", "a\x9b31m", `a\x9b31m`, ""},
		{"invalid UTF-8", "\xff\xfe ok \xc3", `\xff\xfe ok \xc3`, ""},
		{"bidi override", "evil\u202egnp.exe", `evil\u202egnp.exe`, ""},
		{"isolates and marks", "\u2066a\u2069\u200f\u061c", `\u2066a\u2069\u200f\u061c`, ""},
		{"line separators", "a\u2028b\u2029", `a\u2028b\u2029`, ""},
		{"U+FFFD itself is text", "\ufffd", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == "" {
				want = c.in
			}
			if diff := cmp.Diff(want, String(c.in)); diff != "" {
				t.Errorf("String (-want +got):\n%s", diff)
			}
			text := c.text
			if text == "" {
				text = want
			}
			if diff := cmp.Diff(text, Text(c.in)); diff != "" {
				t.Errorf("Text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStringReturnsSafeTextUnchanged(t *testing.T) {
	s := "KUBE-SVC-XPGD46QRK7WJZT7O"
	if got := String(s); got != s {
		t.Fatalf("got %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = String(s) }); n != 0 {
		t.Errorf("%v allocations for safe text, want 0", n)
	}
}

type inner struct {
	Name   string
	Labels map[string]string
	hidden string
}

type model struct {
	Title    string
	Addr     netip.Addr
	Rules    []string
	Inner    *inner
	Value    inner
	Any      any
	Nil      *inner
	NilSlice []string
	Count    int
}

func TestCopy(t *testing.T) {
	in := &model{
		Title: "t\x1b]0;x\a",
		Addr:  netip.MustParseAddr("10.0.0.1"),
		Rules: []string{"ok", "bad\x1b[2J"},
		Inner: &inner{Name: "n\x07", Labels: map[string]string{"k\x1b": "v\x1b"}, hidden: "h\x1b"},
		Value: inner{Name: "v\x1b"},
		Any:   "a\x1b",
		Count: 3,
	}
	got := Copy(in)
	want := &model{
		Title: `t\x1b]0;x\x07`,
		Addr:  netip.MustParseAddr("10.0.0.1"),
		Rules: []string{"ok", `bad\x1b[2J`},
		Inner: &inner{Name: `n\x07`, Labels: map[string]string{`k\x1b`: `v\x1b`}, hidden: "h\x1b"},
		Value: inner{Name: `v\x1b`},
		Any:   `a\x1b`,
		Count: 3,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(inner{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Copy (-want +got):\n%s", diff)
	}
	if in.Title != "t\x1b]0;x\a" || in.Rules[1] != "bad\x1b[2J" || in.Inner.Name != "n\x07" {
		t.Error("Copy changed its argument")
	}
}

// FuzzString: whatever the input, the output is valid UTF-8 with nothing a
// terminal acts on, Text keeps exactly the input's newlines, and text with
// nothing to escape comes back unchanged.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "KUBE-SVC-X", "\x1b]0;x\a", "a\u009bb", "\xff\xfe", "evil\u202e", "one\ntwo\tthree", "→ …"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, lines := range []bool{false, true} {
			out := escape(s, lines)
			if !utf8.ValidString(out) {
				t.Fatalf("escape(%q, %v) = %q is not UTF-8", s, lines, out)
			}
			for _, r := range out {
				if unsafe(r, lines) {
					t.Fatalf("escape(%q, %v) = %q keeps %U", s, lines, out, r)
				}
			}
			if firstUnsafe(s, lines) < 0 && out != s {
				t.Fatalf("escape(%q, %v) changed safe text to %q", s, lines, out)
			}
		}
		if strings.Count(Text(s), "\n") != strings.Count(s, "\n") {
			t.Fatalf("Text(%q) = %q changes the lines", s, Text(s))
		}
	})
}
