package nftables

import (
	"runtime"
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

// TestPresizeIsBoundedByTheInput: braces counted to presize a table's chain
// map cannot make the parser allocate many times the input (a comment of a
// million braces, in two tables).
func TestPresizeIsBoundedByTheInput(t *testing.T) {
	braces := strings.Repeat("{", 1<<20)
	in := []byte("table ip a {\n\tcomment \"" + braces + "\"\n}\ntable ip6 b {\n\tcomment \"" + braces + "\"\n}\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rs, err := ParseTextBytes(in)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Tables) != 2 {
		t.Fatalf("%d tables, want 2", len(rs.Tables))
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > uint64(2*len(in)) {
		t.Errorf("parsing %d bytes allocated %d bytes", len(in), got)
	}
}
