package nftables

import (
	"strings"
	"testing"
)

// TestPlainWordIsOneField: plainWord accepts exactly the non-empty strings
// of bytes 0x21 to 0x7f, at every length around its eight-byte steps, and
// each of them strings.Fields keeps whole (a string it rejects goes the
// general way, through strings.Fields).
func TestPlainWordIsOneField(t *testing.T) {
	base := "service-ULMVA6XW-ns1/svc1/tcp/p80"
	var cases []string
	for n := 0; n <= 20; n++ {
		w := strings.Repeat("a", n)
		cases = append(cases, w)
		for i := 0; i < n; i++ {
			for _, c := range []string{" ", "\t", "\r", "\v", "\f", "\x00", "\x1f", "!", "~", "\x7f", "\x80", "\xc2\xa0", "é"} {
				cases = append(cases, w[:i]+c+w[i+1:])
			}
		}
	}
	cases = append(cases, base, base+" ", "\u00a0"+base, base[:9]+"\u2003"+base[9:])
	for _, s := range cases {
		want := s != ""
		for i := 0; i < len(s); i++ {
			want = want && s[i] >= 0x21 && s[i] < 0x80
		}
		if got := plainWord(s); got != want {
			t.Errorf("plainWord(%q) = %v, want %v", s, got, want)
		}
		if f := strings.Fields(s); want && (len(f) != 1 || f[0] != s) {
			t.Errorf("plainWord(%q) but strings.Fields splits it into %q", s, f)
		}
	}
}
