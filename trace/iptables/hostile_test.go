package iptables

import (
	"strings"
	"testing"
)

// maxErrorLen bounds an error message about a dump: a few names and
// excerpts, whatever the dump holds.
const maxErrorLen = 1024

// TestErrorsQuoteAShortPrefix feeds tokens of a megabyte wherever a dump can
// hold one and checks that the error names each by a short prefix and its
// size, never in full.
func TestErrorsQuoteAShortPrefix(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	table := func(rules string) string { return "*nat\n:PREROUTING ACCEPT [0:0]\n" + rules + "COMMIT\n" }
	cases := []struct{ name, dump string }{
		{"unexpected line", big + "\n"},
		{"bad table name", "*" + big + " y\nCOMMIT\n"},
		{"table twice", "*" + big + "\nCOMMIT\n*" + big + "\nCOMMIT\n"},
		{"table not committed", "*" + big + "\n"},
		{"nested table", "*nat\n*" + big + "\nCOMMIT\n"},
		{"bad chain declaration", "*nat\n:" + big + " ACCEPT [0:0] extra\nCOMMIT\n"},
		{"unknown policy", "*nat\n:" + big + " " + big + " [0:0]\nCOMMIT\n"},
		{"bad chain counters", "*nat\n:INPUT ACCEPT " + big + "\nCOMMIT\n"},
		{"chain declared twice", "*nat\n:" + big + " - [0:0]\n:" + big + " - [0:0]\nCOMMIT\n"},
		{"unsupported command", table("-" + big + " x\n")},
		{"bad rule counters", table("[" + big + "\n")},
		{"unterminated quote", table(`-A PREROUTING -m comment --comment "` + big + "\n")},
		{"bad address", table("-A PREROUTING -s " + big + " -j ACCEPT\n")},
		{"bad port", table("-A PREROUTING -p tcp -m tcp --dport " + big + " -j ACCEPT\n")},
		{"unexpected token", table("-A PREROUTING " + big + "\n")},
		{"unknown module option", table("-A PREROUTING -m statistic --" + big + " 1 -j ACCEPT\n")},
		{"bad probability", table("-A PREROUTING -m statistic --mode random --probability " + big + " -j ACCEPT\n")},
		{"bad mark", table("-A PREROUTING -m mark --mark " + big + " -j ACCEPT\n")},
		{"bad target value", table("-A PREROUTING -j DNAT --to-destination " + big + "\n")},
		{"option outside a module", table("-A PREROUTING --" + big + " 1\n")},
		{"long chain name in a rule error", "*nat\n:PREROUTING ACCEPT [0:0]\n:" + big + " - [0:0]\n-A " + big + " -s 10.0.0.300\nCOMMIT\n"},
		{"jump to a missing chain", table("-A PREROUTING -j " + big + "\n")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse(strings.NewReader(c.dump))
			if err == nil {
				err = d.Check()
			}
			if err == nil {
				_, err = Simulate(d, pkt("10.0.0.5", "172.30.0.1", 80), Options{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(err.Error()); n > maxErrorLen {
				t.Errorf("error of %d bytes (want at most %d): %.300s…", n, maxErrorLen, err)
			}
		})
	}
}

// TestWarningsAreBounded: a dump cannot grow the warnings without bound,
// nor make one longer than a line.
func TestWarningsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n")
	b.WriteString("# Warning: " + strings.Repeat("w", 1<<20) + "\n")
	for range 10_000 {
		b.WriteString("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n")
	}
	b.WriteString("COMMIT\n")
	d, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Warnings); n > maxWarnings+1 {
		t.Errorf("%d warnings kept, want at most %d and a count", n, maxWarnings+1)
	}
	if last := d.Warnings[len(d.Warnings)-1].Message; last != "9901 more warnings like these were left out" {
		t.Errorf("last warning %q", last)
	}
	for _, w := range d.Warnings {
		if len(w.Message) > 300 {
			t.Errorf("warning of %d bytes", len(w.Message))
		}
	}
	if d.Warnings[1].Message != "Warning: iptables-legacy tables present, use iptables-legacy-save to see them" {
		t.Errorf("a short warning was changed: %q", d.Warnings[1])
	}
}
