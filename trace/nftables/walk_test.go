package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// fallThrough is a ruleset whose prerouting chain jumps to fall, a chain of
// n rules that all match and change nothing, then DNATs.
func fallThrough(n int) string {
	var b strings.Builder
	b.WriteString("table ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump fall\n\t\tmeta l4proto tcp dnat to 10.1.0.1:8080\n\t}\n\tchain fall {\n")
	for i := range n {
		fmt.Fprintf(&b, "\t\tmeta l4proto tcp comment \"r%d\"\n", i)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func parseText(t *testing.T, s string) *Ruleset {
	t.Helper()
	rs, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

var tcp80 = trace.Packet{Source: netip.MustParseAddr("10.0.0.5"), Destination: netip.MustParseAddr("172.30.0.1"), DestinationPort: 80, Protocol: "tcp"}

func TestWalkFoldsRulesWithoutEffect(t *testing.T) {
	sim, err := Simulate(parseText(t, fallThrough(20_000)), tcp80, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(chain string, line int, text string) trace.RuleRef {
		return trace.RuleRef{Table: "kube-proxy", Chain: chain, Line: line, Rule: text}
	}
	want := []trace.RuleRef{
		rule("nat-prerouting", 4, "jump fall"),
		rule("fall", 8, `meta l4proto tcp comment "r0"`),
		{Table: "kube-proxy", Chain: "fall", Line: 9, Folded: 19_998},
		rule("fall", 20_007, `meta l4proto tcp comment "r19999"`),
		rule("nat-prerouting", 5, "meta l4proto tcp dnat to 10.1.0.1:8080"),
	}
	if diff := cmp.Diff(want, sim.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if got := sim.EndpointList(); got != "10.1.0.1:8080" {
		t.Errorf("endpoints %q", got)
	}
}

func TestWalkBudget(t *testing.T) {
	_, err := Simulate(parseText(t, fallThrough(1000)), tcp80, Options{WalkOptions: trace.WalkOptions{MaxRules: 500}})
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "more than 500 rules") {
		t.Errorf("got %v, want ErrBudget naming the bound", err)
	}
	// Jumps nested to the limit and back, many times: bounded by the
	// budget, not by the stack.
	var b strings.Builder
	b.WriteString("table ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump c0\n\t}\n")
	for i := range 60 {
		fmt.Fprintf(&b, "\tchain c%d {\n", i)
		for range 10 {
			fmt.Fprintf(&b, "\t\tjump c%d\n", i+1)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("\tchain c60 {\n\t}\n}\n")
	_, err = Simulate(parseText(t, b.String()), tcp80, Options{WalkOptions: trace.WalkOptions{MaxRules: 100_000}})
	if !errors.Is(err, ErrBudget) {
		t.Errorf("10^60 walks: got %v, want ErrBudget", err)
	}
}
