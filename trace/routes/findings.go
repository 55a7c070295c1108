package routes

import (
	"fmt"
	"net/netip"
)

// Finding is something about a route worth an operator's attention; it
// has the fields of the Path's Finding (trace.Finding), which this package
// does not import so that the Path can carry a Hop.
type Finding struct {
	Severity string `json:"severity"` // info, warning, error
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// Finding codes.
const (
	// CodeNoRoute: the node has no route to a ready endpoint.
	CodeNoRoute = "RouteMissing"
	// CodeRouteDrops: the route (or a policy rule) is a blackhole,
	// unreachable or prohibit.
	CodeRouteDrops = "RouteDrops"
	// CodeRouteLeavesNode: an endpoint the API puts on this node is
	// routed off it.
	CodeRouteLeavesNode = "RouteLeavesNode"
	// CodeRouteWrongNode: the route leads to a different node than the
	// one the API says runs the pod.
	CodeRouteWrongNode = "RouteToWrongNode"
)

// Endpoint is what the API says of one endpoint.
type Endpoint struct {
	Addr  netip.Addr
	Ready bool
	// Node is the node the API says runs it; "" when unknown.
	Node string
	// Name names it in messages ("shop/web-7d9f 10.244.1.5").
	Name string
}

func (e Endpoint) label() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Addr.String()
}

// DropFinding is the finding for an endpoint the node cannot reach: no
// route (RouteMissing) or a blackhole, unreachable or prohibit route or
// rule (RouteDrops); an error for a ready endpoint, a warning otherwise.
// ok is false when the route delivers the packet.
func DropFinding(node string, ep Endpoint, res Result) (Finding, bool) {
	if !res.Verdict.Dropped() {
		return Finding{}, false
	}
	sev := "error"
	if !ep.Ready {
		sev = "warning"
	}
	if res.Verdict == VerdictNoRoute {
		return Finding{Severity: sev, Code: CodeNoRoute,
			Message: fmt.Sprintf("node %s has no route to endpoint %s: packets DNATed to it are dropped", node, ep.label())}, true
	}
	what := "a policy rule"
	if res.Route != nil {
		what = fmt.Sprintf("route %q (table %s)", res.Route.String(), res.Table)
	} else if res.Rule != nil {
		what = fmt.Sprintf("policy rule %d", res.Rule.Priority)
	}
	return Finding{Severity: sev, Code: CodeRouteDrops,
		Message: fmt.Sprintf("node %s sends endpoint %s to %s, which is %s: packets DNATed to it are dropped", node, ep.label(), what, res.Verdict)}, true
}

// LeavesNodeFinding warns when the API puts the endpoint on node but the
// route takes it off the node (a stale pod IP, or a pod CIDR routed
// elsewhere).
func LeavesNodeFinding(node string, ep Endpoint, hop Hop) (Finding, bool) {
	if ep.Node == "" || ep.Node != node || hop.Leaves == nil || !*hop.Leaves {
		return Finding{}, false
	}
	to := hop.Dev
	if hop.Node != "" {
		to += " to node " + hop.Node
	}
	return Finding{Severity: "warning", Code: CodeRouteLeavesNode,
		Message: fmt.Sprintf("endpoint %s runs on node %s by the API, but the node routes it off the node (%s)", ep.label(), node, to)}, true
}

// WrongNodeFinding warns when the route leads to a known node other than
// the one the API says runs the endpoint.
func WrongNodeFinding(node string, ep Endpoint, hop Hop) (Finding, bool) {
	if ep.Node == "" || hop.Node == "" || hop.Node == ep.Node || hop.Verdict != VerdictForward {
		return Finding{}, false
	}
	if ep.Node == node {
		return Finding{}, false // LeavesNodeFinding's case
	}
	return Finding{Severity: "warning", Code: CodeRouteWrongNode,
		Message: fmt.Sprintf("node %s routes endpoint %s to node %s, but the API says it runs on %s", node, ep.label(), hop.Node, ep.Node)}, true
}

// EndpointFindings is every route finding for one endpoint seen from node.
func EndpointFindings(node string, ep Endpoint, res Result, hop Hop) []Finding {
	var out []Finding
	if f, ok := DropFinding(node, ep, res); ok {
		out = append(out, f)
	}
	if f, ok := LeavesNodeFinding(node, ep, hop); ok {
		out = append(out, f)
	}
	if f, ok := WrongNodeFinding(node, ep, hop); ok {
		out = append(out, f)
	}
	return out
}
