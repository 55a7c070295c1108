package tracer

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

const ifaceNote = "the incoming interface is unknown: rules with -i NAME are taken not to match and ! -i NAME to match (pass the interface to change this)"

// The tree says each thing once: an assumption several entries of a node
// share is the node's; one every node shares is a Convention finding; a
// reason every entry of a node shares is the node's Why.
func TestSayOnce(t *testing.T) {
	// The interface note is said when a rule with -i is evaluated: each
	// node has one first in nat PREROUTING (a bridge's, with no effect
	// on traffic from elsewhere).
	const ifaceRule = "-A PREROUTING -i docker0 -j RETURN\n"
	lb, err := os.ReadFile(iptablesLB)
	if err != nil {
		t.Fatal(err)
	}
	withIfaceRule := strings.Replace(string(lb), "-A PREROUTING ", ifaceRule+"-A PREROUTING ", 1)
	nodeA := func() Node {
		return Node{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: loadText(t, withIfaceRule)}
	}
	noRules := func(name, ip, cidr string) Node {
		return Node{Node: node(name, ip, cidr), Dataplane: loadText(t, "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"+ifaceRule+"COMMIT\n")}
	}
	type want struct {
		nodeNotes  [][]string // per node
		pathNotes  [][]int    // per node: how many paths carry the note
		whys       []string   // per node
		convention bool
	}
	for _, tc := range []struct {
		name  string
		nodes []Node
		kinds []string
		want  want
	}{
		{
			// Four of the five entries come in from outside: the note is
			// said once, for the node (it was said four times).
			name: "one node", nodes: []Node{nodeA()},
			want: want{nodeNotes: [][]string{{ifaceNote}}, pathNotes: [][]int{{0, 0, 0, 0, 0}}, whys: []string{""}},
		},
		{
			name: "every node", nodes: []Node{nodeA(), noRules("node-b", "192.168.0.3", "10.0.1.0/24")},
			want: want{nodeNotes: [][]string{nil, nil}, pathNotes: [][]int{{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}, whys: []string{"", noRuleMatchedAny}, convention: true},
		},
		{
			// The cluster IP only: on each node one entry (from a pod)
			// comes in from outside. Nothing is repeated within a node,
			// but both nodes say it.
			name: "one entry with the note on each node", nodes: []Node{nodeA(), noRules("node-b", "192.168.0.3", "10.0.1.0/24")}, kinds: []string{trace.EntryClusterIP},
			want: want{nodeNotes: [][]string{nil, nil}, pathNotes: [][]int{{0, 0}, {0, 0}}, whys: []string{"", noRuleMatchedAny}, convention: true},
		},
		{
			// One node: the one entry from a pod keeps its note.
			name: "one entry with the note", nodes: []Node{nodeA()}, kinds: []string{trace.EntryClusterIP},
			want: want{nodeNotes: [][]string{nil}, pathNotes: [][]int{{1, 0}}, whys: []string{""}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: tc.nodes, Kinds: tc.kinds})
			if err != nil {
				t.Fatal(err)
			}
			var got want
			for _, n := range p.Nodes {
				got.nodeNotes = append(got.nodeNotes, n.Notes)
				got.whys = append(got.whys, n.Why)
				var counts []int
				for _, ep := range n.Paths {
					c := 0
					if slices.Contains(ep.Notes, ifaceNote) {
						c = 1
					}
					counts = append(counts, c)
					if n.Why != "" && ep.Why != "" {
						t.Errorf("node %s says why once, but %s %s says it too: %s", n.Name, ep.Entry.Kind, ep.Entry.Address, ep.Why)
					}
				}
				got.pathNotes = append(got.pathNotes, counts)
			}
			for _, f := range p.Findings {
				if f.Code == trace.CodeConvention {
					got.convention = true
					if !strings.HasSuffix(f.Message, ifaceNote) {
						t.Errorf("convention %q", f.Message)
					}
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
