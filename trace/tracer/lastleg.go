package tracer

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// masqueradeMark is the firewall mark kube-proxy sets on a packet it will
// masquerade (--iptables-masquerade-bit 14, the default), in nat
// PREROUTING or OUTPUT: before the routing decision, so policy rules that
// select on marks see it.
const masqueradeMark = 0x4000

// nodeIndex tells which node an address belongs to, from what the API says
// of every node: its addresses, its pod CIDRs, and the tunnel or router
// addresses network plugins annotate it with. It never uses where the API
// says a pod runs: the route must say that on its own, or a route to the
// wrong node could not be seen.
type nodeIndex struct {
	addrs map[netip.Addr]string
	cidrs []nodeCIDR
}

type nodeCIDR struct {
	prefix netip.Prefix
	node   string
}

// tunnelAnnotations are node annotations network plugins keep a node's
// tunnel or router address (or pod CIDR) in, where it is not a node
// address and may lie outside Spec.PodCIDRs (Calico's IPAM blocks).
var tunnelAnnotations = []string{
	"projectcalico.org/IPv4IPIPTunnelAddr",
	"projectcalico.org/IPv4VXLANTunnelAddr",
	"projectcalico.org/IPv6VXLANTunnelAddr",
	"projectcalico.org/IPv4WireguardInterfaceAddr",
	"network.cilium.io/ipv4-cilium-host",
	"network.cilium.io/ipv6-cilium-host",
	"network.cilium.io/ipv4-pod-cidr",
	"network.cilium.io/ipv6-pod-cidr",
}

func newNodeIndex(nodes []*corev1.Node) *nodeIndex {
	x := &nodeIndex{addrs: map[netip.Addr]string{}}
	addAddr := func(s, node string) {
		if a, err := netip.ParseAddr(s); err == nil {
			if _, taken := x.addrs[a.Unmap()]; !taken {
				x.addrs[a.Unmap()] = node
			}
		}
	}
	addCIDR := func(s, node string) {
		if p, err := netip.ParsePrefix(s); err == nil {
			x.cidrs = append(x.cidrs, nodeCIDR{p.Masked(), node})
		}
	}
	for _, n := range nodes {
		if n == nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			addAddr(a.Address, n.Name)
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			addCIDR(c, n.Name)
		}
		for _, key := range tunnelAnnotations {
			v := n.Annotations[key]
			if v == "" {
				continue
			}
			if _, err := netip.ParsePrefix(v); err == nil {
				addCIDR(v, n.Name)
			} else {
				addAddr(v, n.Name)
			}
		}
	}
	// The most specific CIDR first: a node's block inside a wider range.
	slices.SortStableFunc(x.cidrs, func(a, b nodeCIDR) int { return cmp.Compare(b.prefix.Bits(), a.prefix.Bits()) })
	return x
}

// resolve names the node a is an address of, or whose pod CIDR holds it.
func (x *nodeIndex) resolve(a netip.Addr) string {
	a = a.Unmap()
	if n, ok := x.addrs[a]; ok {
		return n
	}
	for _, c := range x.cidrs {
		if c.prefix.Contains(a) {
			return c.node
		}
	}
	return ""
}

// lastLeg looks up, on one node, the route each endpoint's packet takes
// after DNAT, and the findings about those routes.
type lastLeg struct {
	node     string
	snap     *routes.Snapshot
	resolve  routes.NodeResolver
	apiNodes map[netip.Addr]string // endpoint address → the node the API puts it on

	seen     map[string]bool
	findings []trace.Finding
	// looked caches lookups: every entry of a Service asks for the
	// same endpoints, mostly with the same packet.
	looked map[routes.Query]routes.Result
}

func newLastLeg(node string, snap *routes.Snapshot, idx *nodeIndex, api []trace.APIEndpoint) *lastLeg {
	l := &lastLeg{node: node, snap: snap, resolve: idx.resolve, apiNodes: map[netip.Addr]string{}, seen: map[string]bool{}, looked: map[routes.Query]routes.Result{}}
	for _, a := range api {
		if a.Node != "" {
			l.apiNodes[a.IP] = a.Node
		}
	}
	return l
}

// annotate gives every endpoint of every path its route.
func (l *lastLeg) annotate(np *trace.NodePaths) {
	for i := range np.Paths {
		ep := &np.Paths[i]
		for j := range ep.Endpoints {
			pe := &ep.Endpoints[j]
			if !pe.IP.IsValid() {
				continue
			}
			pe.Route = l.route(ep.Entry, pe)
		}
	}
}

// route looks up the packet's route after DNAT: to the endpoint, from the
// entry's client (or pod) as it came in on the device the node routes that
// address through, with kube-proxy's masquerade mark when it masquerades.
// A packet the node sends itself has no source and no incoming interface,
// as `ip route get ENDPOINT` asks.
func (l *lastLeg) route(e trace.Entry, pe *trace.PathEndpoint) *trace.EndpointRoute {
	from := l.snap.RoutesFrom4
	if pe.IP.Is6() {
		from = l.snap.RoutesFrom6
	}
	if from == "" {
		// The node gave no routes of this family (a section missing):
		// unknown, rather than "no route".
		return nil
	}
	q := routes.Query{Dst: pe.IP}
	var notes []string
	if pe.InRules && pe.Masquerade {
		q.Mark = masqueradeMark
	}
	if e.From != FromNode && e.Source.IsValid() {
		back := l.lookup(routes.Query{Dst: e.Source})
		if back.Verdict == routes.VerdictForward && back.Dev != "" {
			q.Src, q.IIF = e.Source, back.Dev
			notes = append(notes, fmt.Sprintf("taken to come in on %s, the device the node routes the source %s through", back.Dev, e.Source))
		} else {
			notes = append(notes, fmt.Sprintf("the node has no route back to the source %s, so the interface the packet comes in on cannot be told: looked up as a packet the node sends", e.Source))
		}
	}
	res := l.lookup(q)
	hop := l.snap.Hop(l.node, res, l.resolve)
	r := &trace.EndpointRoute{Hop: hop, Src: q.Src, IIF: q.IIF, Mark: q.Mark}
	r.Notes = append(notes, res.Notes...)
	if q.Mark != 0 && l.selectsOnMark(pe.IP) {
		r.Notes = append(r.Notes, fmt.Sprintf("looked up with kube-proxy's masquerade mark %#x (its default --iptables-masquerade-bit 14)", masqueradeMark))
	}
	if pe.InRules && pe.InAPI {
		l.find(pe, res, hop)
	}
	return r
}

func (l *lastLeg) lookup(q routes.Query) routes.Result {
	if res, ok := l.looked[q]; ok {
		return res
	}
	res := l.snap.Lookup(q)
	l.looked[q] = res
	return res
}

// selectsOnMark tells whether a policy rule of the address's family selects
// on a firewall mark (only then does the mark assumed matter).
func (l *lastLeg) selectsOnMark(a netip.Addr) bool {
	rules := l.snap.Rules4
	if a.Is6() {
		rules = l.snap.Rules6
	}
	return slices.ContainsFunc(rules, func(r routes.Rule) bool { return r.HasMark })
}

// routeCodes maps trace/routes' finding codes to the Path's.
var routeCodes = map[string]trace.Code{
	routes.CodeNoRoute:         trace.CodeRouteMissing,
	routes.CodeRouteDrops:      trace.CodeRouteDrops,
	routes.CodeRouteLeavesNode: trace.CodeRouteLeavesNode,
	routes.CodeRouteWrongNode:  trace.CodeRouteToWrongNode,
	"KubeProxyReplaced":        trace.CodeKubeProxyReplaced,
}

// convert makes a trace/routes finding one of the Path's, about node.
func convert(f routes.Finding, node string) trace.Finding {
	code, ok := routeCodes[f.Code]
	if !ok {
		code = trace.Code(f.Code)
	}
	sev, ok := trace.ParseSeverity(f.Severity)
	if !ok {
		sev = trace.SeverityWarning
	}
	return trace.Finding{Severity: sev, Code: code, Node: node, Message: f.Message}
}

// find records the route findings of an endpoint the node's rules send to,
// once per endpoint and code (every entry reaching it asks again).
func (l *lastLeg) find(pe *trace.PathEndpoint, res routes.Result, hop routes.Hop) {
	ep := routes.Endpoint{Addr: pe.IP, Ready: pe.Ready, Node: l.apiNodes[pe.IP], Name: pe.IP.String()}
	if pe.Pod != nil {
		ep.Name = fmt.Sprintf("%s (pod %s/%s)", pe.IP, pe.Pod.Namespace, pe.Pod.Name)
		if ep.Node == "" {
			ep.Node = pe.Pod.Node
		}
	}
	for _, f := range routes.EndpointFindings(l.node, ep, res, hop) {
		key := f.Code + " " + pe.IP.String()
		if l.seen[key] {
			continue
		}
		l.seen[key] = true
		l.findings = append(l.findings, convert(f, l.node))
	}
}

// dataplanes names the network plugins and eBPF service dataplanes the
// node shows, from its routes and interfaces and its rules' names.
func dataplanes(n Node) routes.Detection {
	names := n.Dataplane.Names()
	return routes.Detect(routes.Facts{Snapshot: n.Dataplane.Routes(), Chains: names.Chains, NFTTables: names.NFTTables, IPSets: names.IPSets})
}

// dataplaneFindings says once per node what an eBPF service dataplane
// means for the trace: that it serves the node's Services instead of
// kube-proxy (and what to use to see them), or that it runs beside
// kube-proxy's rules.
func dataplaneFindings(node string, d routes.Detection) []trace.Finding {
	var out []trace.Finding
	for _, f := range d.Findings(node) {
		out = append(out, convert(f, node))
	}
	if s := d.Service; s != nil && !s.ReplacesKubeProxy {
		out = append(out, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeServiceDataplaneBeside, Node: node,
			Message: fmt.Sprintf("node %s runs %s: %s; its Service table: %s", node, s.Name, s.Note, s.Instead)})
	}
	return out
}

// routesFrom says where the node's routes came from: ip, proc, or both.
func routesFrom(s *routes.Snapshot) string {
	a, b := string(s.RoutesFrom4), string(s.RoutesFrom6)
	switch {
	case a == "" || a == b:
		return b
	case b == "":
		return a
	}
	return a + ", " + b
}
