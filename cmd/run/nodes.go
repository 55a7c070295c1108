package run

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
)

// DefaultNodeCap bounds how many nodes a trace collects unless --all-nodes
// or --node says otherwise: a path through a few nodes tells the story, and
// a helper pod per node costs the cluster something.
const DefaultNodeCap = 10

// NodeChoice is what the user said about nodes.
type NodeChoice struct {
	// Named are the --node nodes; Dumped those with a saved dump. Either
	// makes the choice explicit: exactly those nodes, sorted by name.
	Named, Dumped []string
	// All lifts the cap.
	All bool
	// Cap is the most nodes traced otherwise (DefaultNodeCap when 0).
	Cap int
}

// NodePick is the nodes to trace through, and how many candidates the cap
// left out.
type NodePick struct {
	Nodes  []*corev1.Node
	Capped int
}

// PickNodes chooses the nodes to trace through: the named or dumped ones;
// else the nodes that hold an endpoint, then the others — cordoned nodes
// left out (a load balancer should not send there) and, for an
// externalTrafficPolicy Local Service, only one node without an endpoint (it
// shows the drop) — up to the cap.
func PickNodes(f *cluster.Facts, c NodeChoice) (NodePick, error) {
	byName := map[string]*corev1.Node{}
	for i := range f.Nodes {
		byName[f.Nodes[i].Name] = &f.Nodes[i]
	}
	wanted := slices.Clone(c.Named)
	for _, n := range c.Dumped {
		if !slices.Contains(wanted, n) {
			wanted = append(wanted, n)
		}
	}
	if len(wanted) > 0 {
		slices.Sort(wanted)
		wanted = slices.Compact(wanted)
		var out []*corev1.Node
		for _, name := range wanted {
			n := byName[name]
			if n == nil {
				return NodePick{}, fmt.Errorf("node %q is not in the cluster (kubectl get nodes lists them)", name)
			}
			out = append(out, n)
		}
		return NodePick{Nodes: out}, nil
	}
	withEndpoints := map[string]bool{}
	for _, s := range f.EndpointSlices {
		for _, e := range s.Endpoints {
			if e.NodeName != nil {
				withEndpoints[*e.NodeName] = true
			}
		}
	}
	var first, rest []*corev1.Node
	for i := range f.Nodes {
		n := &f.Nodes[i]
		switch {
		case withEndpoints[n.Name]:
			first = append(first, n)
		case n.Spec.Unschedulable:
			// A cordoned node still forwards node ports, but it is not
			// where a load balancer should send traffic; leave it out
			// unless asked for with --node.
		default:
			rest = append(rest, n)
		}
	}
	if f.Service.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && len(rest) > 1 {
		// With a Local policy the nodes with endpoints tell the story, and
		// one node without shows the drop.
		rest = rest[:1]
	}
	out := append(first, rest...)
	if len(out) == 0 {
		return NodePick{}, errors.New("the cluster has no nodes to trace through")
	}
	limit := c.Cap
	if limit <= 0 {
		limit = DefaultNodeCap
	}
	if !c.All && len(out) > limit {
		return NodePick{Nodes: out[:limit], Capped: len(out) - limit}, nil
	}
	return NodePick{Nodes: out}, nil
}

func mapsKeys(m map[string][]string) []string {
	return slices.Sorted(maps.Keys(m))
}
