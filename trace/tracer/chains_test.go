package tracer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

func TestWalkOrder(t *testing.T) {
	rules := func(chains string) []trace.RuleRef {
		var out []trace.RuleRef
		for i, c := range strings.Fields(chains) {
			out = append(out, trace.RuleRef{Table: "nat", Chain: c, Line: i + 1})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		branches []string
		want     string
	}{
		{
			// A Service with two endpoints: each branch goes through its
			// own KUBE-SEP, then the same FORWARD and POSTROUTING. The
			// rule-order union put KUBE-SEP-B after KUBE-POSTROUTING.
			name: "two endpoints",
			branches: []string{
				"PREROUTING KUBE-SERVICES KUBE-SVC KUBE-SEP-A FORWARD POSTROUTING KUBE-POSTROUTING",
				"PREROUTING KUBE-SERVICES KUBE-SVC KUBE-SEP-B FORWARD POSTROUTING KUBE-POSTROUTING",
			},
			want: "PREROUTING KUBE-SERVICES KUBE-SVC KUBE-SEP-A KUBE-SEP-B FORWARD POSTROUTING KUBE-POSTROUTING",
		},
		{
			// Only one branch masquerades: its KUBE-MARK-MASQ keeps its
			// place in that branch's walk.
			name: "a chain of one branch in the middle",
			branches: []string{
				"OUTPUT KUBE-SERVICES KUBE-SVC KUBE-SEP-A KUBE-MARK-MASQ POSTROUTING KUBE-POSTROUTING",
				"OUTPUT KUBE-SERVICES KUBE-SVC KUBE-SEP-B POSTROUTING KUBE-POSTROUTING",
				"OUTPUT KUBE-SERVICES KUBE-SVC KUBE-SEP-C POSTROUTING KUBE-POSTROUTING",
			},
			want: "OUTPUT KUBE-SERVICES KUBE-SVC KUBE-SEP-A KUBE-MARK-MASQ KUBE-SEP-B KUBE-SEP-C POSTROUTING KUBE-POSTROUTING",
		},
		{
			// A chain entered twice in one branch (back in KUBE-SERVICES
			// after a jump returned) is listed where first entered.
			name:     "a chain re-entered",
			branches: []string{"PREROUTING KUBE-SERVICES KUBE-MARK-MASQ KUBE-SERVICES KUBE-SVC"},
			want:     "PREROUTING KUBE-SERVICES KUBE-MARK-MASQ KUBE-SVC",
		},
		{
			// Branches that disagree on the order: first appearance.
			name:     "a cycle",
			branches: []string{"A B C", "A C B"},
			want:     "A B C",
		},
		{name: "no branch", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := &trace.Simulation{}
			for _, b := range tc.branches {
				sim.Outcomes = append(sim.Outcomes, trace.Outcome{Rules: rules(b)})
			}
			sim.Summarize()
			if diff := cmp.Diff(strings.Fields(tc.want), walkOrder(sim)); diff != "" {
				t.Errorf("walkOrder (-want +got):\n%s", diff)
			}
		})
	}
}

// A hostile dump can make a walk through many chains: the merge stays
// about linear.
func TestWalkOrderManyChains(t *testing.T) {
	const n = 50_000
	sim := &trace.Simulation{}
	for b := 0; b < 2; b++ {
		var o trace.Outcome
		for i := 0; i < n; i++ {
			o.Rules = append(o.Rules, trace.RuleRef{Chain: fmt.Sprintf("C%d-%d", i, b*(i%2))})
		}
		sim.Outcomes = append(sim.Outcomes, o)
	}
	if got := walkOrder(sim); len(got) != n+n/2 {
		t.Errorf("%d chains, want %d", len(got), n+n/2)
	}
}
