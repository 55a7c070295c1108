package iptables

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// fallThrough is a dump whose PREROUTING jumps to FALL, a chain of n rules
// that all match and change nothing, then DNATs.
func fallThrough(n int) string {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:FALL - [0:0]\n:SEP - [0:0]\n-A PREROUTING -j FALL\n-A PREROUTING -j SEP\n")
	for i := range n {
		fmt.Fprintf(&b, "-A FALL -m comment --comment r%d\n", i)
	}
	b.WriteString("-A SEP -p tcp -j DNAT --to-destination 10.1.0.1:8080\nCOMMIT\n")
	return b.String()
}

func TestWalkFoldsRulesWithoutEffect(t *testing.T) {
	d := mustParse(t, fallThrough(20_000))
	sim, err := Simulate(d, pkt("10.0.0.5", "172.30.0.1", 80), Options{})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(chain string, line int, text string) trace.RuleRef {
		// None of these chains is kube-proxy's.
		return trace.RuleRef{Table: "nat", Chain: chain, Line: line, Rule: text, Foreign: true, Backend: "iptables"}
	}
	want := []trace.RuleRef{
		rule("PREROUTING", 5, "-j FALL"),
		rule("FALL", 7, "-m comment --comment r0"),
		{Table: "nat", Chain: "FALL", Line: 8, Folded: 19_998, Foreign: true, Backend: "iptables"},
		rule("FALL", 20_006, "-m comment --comment r19999"),
		rule("PREROUTING", 6, "-j SEP"),
		rule("SEP", 20_007, "-p tcp -j DNAT --to-destination 10.1.0.1:8080"),
	}
	if diff := cmp.Diff(want, sim.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if got := sim.EndpointList(); got != "10.1.0.1:8080" {
		t.Errorf("endpoints %q", got)
	}
}

func TestWalkBudget(t *testing.T) {
	d := mustParse(t, fallThrough(1000))
	_, err := Simulate(d, pkt("10.0.0.5", "172.30.0.1", 80), Options{MaxRules: 500})
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "more than 500 rules") {
		t.Errorf("got %v, want ErrBudget naming the bound", err)
	}
	// Jumps nested to the limit and back, many times: bounded by the
	// budget, not by the stack.
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n")
	n := trace.MaxJumpDepth // chains, nested as deep as a walk allows
	for i := range n {
		fmt.Fprintf(&b, ":C%d - [0:0]\n", i)
	}
	b.WriteString("-A PREROUTING -j C0\n")
	for i := range n - 1 {
		for range 10 {
			fmt.Fprintf(&b, "-A C%d -j C%d\n", i, i+1)
		}
	}
	b.WriteString("COMMIT\n")
	_, err = Simulate(mustParse(t, b.String()), pkt("10.0.0.5", "172.30.0.1", 80), Options{MaxRules: 100_000})
	if !errors.Is(err, ErrBudget) {
		t.Errorf("10^%d walks: got %v, want ErrBudget", n-1, err)
	}
}
