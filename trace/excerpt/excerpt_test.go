package excerpt

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQuoteAndClip(t *testing.T) {
	long := strings.Repeat("a", 10<<20)
	euro := strings.Repeat("x", Max-1) + "€tail" // € straddles the cut
	cases := []struct {
		name        string
		in          string
		quote, clip string
	}{
		{"short stays whole", "KUBE-SVC-X", `"KUBE-SVC-X"`, "KUBE-SVC-X"},
		{"exactly Max", strings.Repeat("b", Max), `"` + strings.Repeat("b", Max) + `"`, strings.Repeat("b", Max)},
		{"control bytes are escaped by Quote", "a\x1b]0;x\a", `"a\x1b]0;x\a"`, "a\x1b]0;x\a"},
		{"10 MB token", long, `"` + strings.Repeat("a", Max) + `"… (10485760 bytes)`, strings.Repeat("a", Max) + "…"},
		{"cut at a character boundary", euro, `"` + strings.Repeat("x", Max-1) + `"… (` + "70" + ` bytes)`, strings.Repeat("x", Max-1) + "…"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.quote, Quote(c.in)); diff != "" {
				t.Errorf("Quote (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.quote, Quote([]byte(c.in))); diff != "" {
				t.Errorf("Quote([]byte) (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.clip, Clip(c.in)); diff != "" {
				t.Errorf("Clip (-want +got):\n%s", diff)
			}
		})
	}
}
