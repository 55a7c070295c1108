package nftables

import (
	"strings"
	"testing"
)

// maxErrorLen bounds an error message about a ruleset: a few names and
// excerpts, whatever the ruleset holds.
const maxErrorLen = 1024

// TestErrorsQuoteAShortPrefix feeds tokens of a megabyte wherever a ruleset
// (text or JSON) can hold one and checks that the error, or the note a
// simulation makes, names each by a short prefix and its size, never in
// full.
func TestErrorsQuoteAShortPrefix(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	chain := func(body string) string {
		return "table ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n" + body + "\n\t}\n}\n"
	}
	cases := []struct{ name, in string }{
		{"not a table line", big + " {\n}\n"},
		{"unexpected line in a table", "table ip t {\n\t" + big + "\n}\n"},
		{"table not closed", "table ip " + big + " {\n"},
		{"chain declared twice", "table ip t {\n\tchain " + big + " {\n\t}\n\tchain " + big + " {\n\t}\n}\n"},
		{"bad base chain header", "table ip t {\n\tchain c {\n\t\ttype nat hook prerouting priority " + big + "; policy accept;\n\t}\n}\n"},
		{"bad set line", "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\t" + big + "\n\t}\n}\n"},
		{"bad elements", "table ip t {\n\tmap m {\n\t\ttype ipv4_addr : verdict\n\t\telements = { " + big + " }\n\t}\n\tchain c {\n\t\tip daddr vmap @m\n\t}\n}\n"},
		{"jump to a missing chain", chain("\t\tjump " + big)},
		{"missing set", chain("\t\tip daddr @" + big + " drop")},
		{"bad dnat target", chain("\t\tdnat to " + big)},
		{"bad mark", chain("\t\tmeta mark set " + big)},
		{"unknown statement", chain("\t\t" + big)},
		{"json bad priority", `{"nftables": [{"table": {"family": "ip", "name": "t"}}, {"chain": {"family": "ip", "table": "t", "name": "c", "type": "nat", "hook": "prerouting", "prio": "` + big + `", "policy": "accept"}}]}`},
		{"json rule for an undeclared chain", `{"nftables": [{"table": {"family": "ip", "name": "t"}}, {"rule": {"family": "ip", "table": "t", "chain": "` + big + `", "expr": []}}]}`},
		{"json table declared twice", `{"nftables": [{"table": {"family": "ip", "name": "` + big + `"}}, {"table": {"family": "ip", "name": "` + big + `"}}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Parse(strings.NewReader(c.in))
			if err == nil {
				err = rs.Check()
			}
			var notes []string
			if err == nil {
				s, serr := Simulate(rs, tcp80, Options{AllTables: true})
				err = serr
				if s != nil {
					notes = s.Notes
				}
			}
			if err == nil && len(notes) == 0 {
				t.Fatal("no error and no note")
			}
			if err != nil && len(err.Error()) > maxErrorLen {
				t.Errorf("error of %d bytes (want at most %d): %.300s…", len(err.Error()), maxErrorLen, err)
			}
			for _, n := range notes {
				if len(n) > maxErrorLen {
					t.Errorf("note of %d bytes (want at most %d): %.300s…", len(n), maxErrorLen, n)
				}
			}
		})
	}
}
