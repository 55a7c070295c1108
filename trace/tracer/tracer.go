// Package tracer builds the Path: from the API's view of a Service (the
// Service, its EndpointSlices, the pods and nodes behind them) and each
// node's parsed dataplane, it sends one packet per way in through every
// node's rules and joins what the rules do with what the API says. It is
// pure: collectors fetch the inputs, render draws the result.
package tracer

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// What an entry's client stands for (trace.Entry.From).
const (
	FromExternal = "external client"
	FromPod      = "pod on this node"
	FromNode     = "this node"
	FromGivenPod = "the given pod"
)

// Input is everything the Path is built from.
type Input struct {
	Service *corev1.Service
	Slices  []discoveryv1.EndpointSlice
	// Pods by "namespace/name".
	Pods  map[string]*corev1.Pod
	Nodes []Node
	// AllNodes are every node the API returned (not only those traced):
	// their addresses and pod CIDRs name the node a route leads to. The
	// traced Nodes' objects are used when it is empty.
	AllNodes []*corev1.Node
	// Client is the external client's address (DefaultClients if
	// invalid); ClientV6 the same for IPv6 entries. An IPv6 Client with no
	// ClientV6 is taken as ClientV6.
	Client, ClientV6 netip.Addr
	// Kinds, when set, keeps only these entry kinds (LoadBalancer,
	// ExternalIP, NodePort, ClusterIP): one concrete request.
	Kinds []string
	// PodSource, when valid, is the client pod's address for ClusterIP
	// entries (instead of an address from the node's pod CIDR).
	PodSource netip.Addr
	// NetworkPolicies of the Service's namespace, and whether the cluster
	// uses NetworkPolicies at all (otherwise a missing one says nothing).
	NetworkPolicies      []networkingv1.NetworkPolicy
	NetworkPoliciesInUse bool
	// Observe puts what each node's kernel observed next to the
	// prediction: its connection-tracking entries (when its dataplane has
	// a connection table) and its DNAT rules' counters (when its dump has
	// them). ShowClients lists the clients' addresses too (else only
	// counts are kept).
	Observe, ShowClients bool
}

// Node is one node and its collected dataplane.
type Node struct {
	Node *corev1.Node
	// Dataplane is everything collected from the node, parsed.
	Dataplane *ruleset.Dataplane
	// ProxyMode is what kube-proxy itself reported (its /proxyMode); when
	// empty, the mode whose rules the dataplane holds.
	ProxyMode string
	// Warnings are what the collector noticed on the node (rules in more
	// than one backend, IPVS mode, a dump cut short, ...); the dataplane's
	// own warnings are added to them.
	Warnings []trace.Warning
	// Err is set when the node's rules could not be collected.
	Err error
}

// proxyMode is the mode kube-proxy reported, else the one its rules show.
func (n Node) proxyMode() string {
	switch {
	case n.ProxyMode != "":
		return n.ProxyMode
	case n.Dataplane != nil && n.Dataplane.ProxyMode() != "":
		return n.Dataplane.ProxyMode()
	}
	return trace.ModeUnknown
}

// Build sends every entry through every node and returns the Path.
func Build(in Input) (*trace.Path, error) {
	b, err := NewBuilder(in)
	if err != nil {
		return nil, err
	}
	parts := make([]NodePart, 0, len(in.Nodes))
	for _, n := range in.Nodes {
		parts = append(parts, b.Node(n))
	}
	return b.Path(parts), nil
}

// Builder builds a Path one node at a time. A node's parsed dataplane is
// the large part of a trace (tens of megabytes on a large cluster), and a
// trace through hundreds of nodes cannot hold them all: Node reduces one
// node to its part of the Path — its paths and every finding its rules
// give — after which its dataplane can be dropped, and Path joins the parts
// into what Build returns for the same nodes.
type Builder struct {
	// in is the Input without Nodes: nothing after a node's part may
	// reach back into its dataplane.
	in   Input
	base trace.Path
	idx  *nodeIndex
	// skip: an ExternalName Service goes through no node.
	skip bool
}

// NodePart is one node's share of the Path. It holds no dataplane.
type NodePart struct {
	paths trace.NodePaths
	zone  string
	// findings are the node's own, in the order Build gives them; chain
	// are its chainFindings; localhost its localhostNodePorts finding by
	// index in the Service's ports.
	findings, chain []trace.Finding
	localhost       map[int]trace.Finding
}

// NewBuilder starts a Path for in's Service. in.AllNodes should name every
// node of the cluster (routes lead to them, and the default clients are
// chosen from them); in.Nodes, when set, stand in for it when it is empty
// and are otherwise not used: the nodes go through Node.
func NewBuilder(in Input) (*Builder, error) {
	if in.Service == nil {
		return nil, fmt.Errorf("no Service to trace")
	}
	all := in.AllNodes
	if len(all) == 0 {
		for _, n := range in.Nodes {
			all = append(all, n.Node)
		}
	}
	in.Nodes = nil
	if in.Client.Is6() && !in.ClientV6.IsValid() {
		in.Client, in.ClientV6 = netip.Addr{}, in.Client
	}
	if !in.Client.IsValid() || !in.ClientV6.IsValid() {
		v4, v6 := DefaultClients(in.Service, all)
		if !in.Client.IsValid() {
			in.Client = v4
		}
		if !in.ClientV6.IsValid() {
			in.ClientV6 = v6
		}
	}
	b := &Builder{in: in}
	p := &b.base
	*p = trace.Path{SchemaVersion: trace.PathSchemaVersion, Service: serviceInfo(in.Service), Findings: []trace.Finding{}}
	p.Endpoints = apiEndpoints(in.Slices, in.Pods)
	if in.Service.Spec.Type == corev1.ServiceTypeExternalName {
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeExternalName,
			Message: fmt.Sprintf("Service %s/%s is an ExternalName Service: DNS answers with a CNAME to %q and no node proxies it", in.Service.Namespace, in.Service.Name, in.Service.Spec.ExternalName)})
		b.skip = true
		return b, nil
	}
	if p.Service.Headless {
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeHeadless,
			Message: fmt.Sprintf("Service %s/%s is headless (clusterIP: None): clients connect to the pod IPs from DNS directly and kube-proxy writes no rules for it", in.Service.Namespace, in.Service.Name)})
	}
	if len(p.Endpoints) == 0 {
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodeNoEndpoints,
			Message: fmt.Sprintf("Service %s/%s has no endpoints: no EndpointSlice lists an address (does its selector match any ready pod?)", in.Service.Namespace, in.Service.Name)})
	}
	b.idx = newNodeIndex(all)
	return b, nil
}

// Node sends every entry through n's rules and returns n's part of the
// Path; n.Dataplane is not used afterwards. Node is safe for concurrent
// use: nodes can be reduced on every core.
func (b *Builder) Node(n Node) NodePart {
	if b.skip {
		return NodePart{}
	}
	// The node sees the shared Path read-only, with findings of its own.
	p := b.base
	p.Findings, p.Nodes, p.NodeZones = nil, nil, nil
	part := NodePart{zone: n.Node.Labels[corev1.LabelTopologyZone]}
	if part.zone != "" {
		p.NodeZones = map[string]string{n.Node.Name: part.zone}
	}
	part.paths = buildNode(&p, b.in, n, b.idx)
	part.findings = p.Findings
	part.chain = chainFindings(&p, n, part.paths)
	part.localhost = localhostNodePorts(&p, n)
	// (The engines' strings alias their parsed dumps; see detach.)
	detach(&part.paths)
	detach(&part.findings)
	detach(&part.chain)
	detach(&part.localhost)
	return part
}

// Path joins the nodes' parts, in the order the nodes are to be shown, and
// adds the findings that compare nodes. It takes the parts over (what every
// node says is moved out of their paths), so it is called once.
func (b *Builder) Path(parts []NodePart) *trace.Path {
	p := b.base
	p.Findings = slices.Clone(b.base.Findings)
	p.Nodes = []trace.NodePaths{}
	if b.skip {
		return &p
	}
	for _, part := range parts {
		if part.zone != "" {
			if p.NodeZones == nil {
				p.NodeZones = map[string]string{}
			}
			p.NodeZones[part.paths.Name] = part.zone
		}
	}
	for _, part := range parts {
		p.Nodes = append(p.Nodes, part.paths)
		p.Findings = append(p.Findings, part.findings...)
	}
	p.Findings = append(p.Findings, compareNodes(&p)...)
	for _, part := range parts {
		p.Findings = append(p.Findings, part.chain...)
	}
	p.Findings = append(p.Findings, balanceFindings(&p)...)
	p.Findings = append(p.Findings, modeFindings(&p)...)
	var localhost []trace.Finding
	for i := range p.Service.Ports {
		for _, part := range parts {
			if f, ok := part.localhost[i]; ok {
				localhost = append(localhost, f)
			}
		}
	}
	p.Findings = append(p.Findings, securityFindings(&p, b.in, localhost)...)
	p.Findings = append(p.Findings, sayOnce(&p)...)
	return &p
}

func serviceInfo(svc *corev1.Service) trace.ServiceInfo {
	s := trace.ServiceInfo{
		Namespace:             svc.Namespace,
		Name:                  svc.Name,
		Type:                  string(svc.Spec.Type),
		ExternalTrafficPolicy: string(svc.Spec.ExternalTrafficPolicy),
		SessionAffinity:       string(svc.Spec.SessionAffinity),
		HealthCheckNodePort:   svc.Spec.HealthCheckNodePort,
		Ports:                 []trace.ServicePort{},
	}
	if s.Type == "" {
		s.Type = string(corev1.ServiceTypeClusterIP)
	}
	if svc.Spec.InternalTrafficPolicy != nil {
		s.InternalTrafficPolicy = string(*svc.Spec.InternalTrafficPolicy)
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if ip == corev1.ClusterIPNone {
			s.Headless = true
			continue
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			s.ClusterIPs = append(s.ClusterIPs, a)
		}
	}
	for _, ip := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(strings.TrimSpace(ip)); err == nil {
			s.ExternalIPs = append(s.ExternalIPs, a)
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		lb := trace.LBIngress{Hostname: ing.Hostname}
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			lb.IP = a
		}
		if ing.IPMode != nil {
			lb.IPMode = string(*ing.IPMode)
		}
		s.LoadBalancerIngress = append(s.LoadBalancerIngress, lb)
	}
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, strings.TrimSpace(r))
	}
	for _, sp := range svc.Spec.Ports {
		target := sp.TargetPort.String()
		if sp.TargetPort.IntVal == 0 && sp.TargetPort.StrVal == "" {
			target = strconv.Itoa(int(sp.Port)) // the API's default
		}
		s.Ports = append(s.Ports, trace.ServicePort{
			Name: sp.Name, Protocol: protocol(sp.Protocol), Port: uint16(sp.Port),
			NodePort: uint16(sp.NodePort), TargetPort: target,
		})
	}
	return s
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}

// apiEndpoints flattens the EndpointSlices: one entry per Service port and
// address. A nil condition means true for ready and serving (the API's
// rule for old writers), false for terminating.
func apiEndpoints(slices []discoveryv1.EndpointSlice, pods map[string]*corev1.Pod) []trace.APIEndpoint {
	out := []trace.APIEndpoint{}
	for _, sl := range slices {
		for _, port := range sl.Ports {
			name, proto := "", "tcp"
			if port.Name != nil {
				name = *port.Name
			}
			if port.Protocol != nil {
				proto = protocol(*port.Protocol)
			}
			if port.Port == nil {
				continue
			}
			for _, ep := range sl.Endpoints {
				for _, addr := range ep.Addresses {
					a, err := netip.ParseAddr(addr)
					if err != nil {
						continue
					}
					e := trace.APIEndpoint{Port: name, IP: a, TargetPort: uint16(*port.Port), Protocol: proto,
						Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
					e.Serving = ep.Conditions.Serving == nil && e.Ready || ep.Conditions.Serving != nil && *ep.Conditions.Serving
					e.Terminating = ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
					if ep.NodeName != nil {
						e.Node = *ep.NodeName
					}
					if ep.Zone != nil {
						e.Zone = *ep.Zone
					}
					if h := ep.Hints; h != nil {
						for _, z := range h.ForZones {
							e.ForZones = append(e.ForZones, z.Name)
						}
						for _, n := range h.ForNodes {
							e.ForNodes = append(e.ForNodes, n.Name)
						}
					}
					if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
						e.Pod = &trace.PodRef{Namespace: ref.Namespace, Name: ref.Name, Node: e.Node}
						if e.Pod.Namespace == "" {
							e.Pod.Namespace = sl.Namespace
						}
						if pod := pods[e.Pod.Namespace+"/"+e.Pod.Name]; pod != nil && pod.Spec.NodeName != "" {
							e.Pod.Node = pod.Spec.NodeName
							if e.Node == "" {
								e.Node = pod.Spec.NodeName
							}
						}
					}
					out = append(out, e)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].IP.Less(out[j].IP)
	})
	return out
}

// nodeAddrs are the node's own addresses (what "LOCAL" matches).
func nodeAddrs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// podSource is a pod address on node n of the given family: the node's pod
// CIDR's second host (the first is usually the bridge), or invalid.
func podSource(n *corev1.Node, v6 bool) netip.Addr {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Addr().Is6() != v6 {
			continue
		}
		return p.Masked().Addr().Next().Next()
	}
	return netip.Addr{}
}

// entries lists the ways into the Service seen from node n.
func entries(svc trace.ServiceInfo, n *corev1.Node, client, clientV6 netip.Addr) []trace.Entry {
	var out []trace.Entry
	addrs := nodeAddrs(n)
	clientFor := func(a netip.Addr) netip.Addr {
		if a.Is6() {
			return clientV6
		}
		return client
	}
	for _, sp := range svc.Ports {
		for _, lb := range svc.LoadBalancerIngress {
			if lb.IP.IsValid() {
				out = append(out, trace.Entry{Kind: trace.EntryLoadBalancer, Address: lb.IP, Port: sp.Port, Protocol: sp.Protocol, ServicePort: sp.Name, Source: clientFor(lb.IP), From: FromExternal})
			}
		}
		for _, ip := range svc.ExternalIPs {
			out = append(out, trace.Entry{Kind: trace.EntryExternalIP, Address: ip, Port: sp.Port, Protocol: sp.Protocol, ServicePort: sp.Name, Source: clientFor(ip), From: FromExternal})
		}
		if sp.NodePort != 0 {
			for _, a := range addrs {
				out = append(out, trace.Entry{Kind: trace.EntryNodePort, Address: a, Port: sp.NodePort, Protocol: sp.Protocol, ServicePort: sp.Name, Source: clientFor(a), From: FromExternal})
			}
		}
		// The cluster IP from a pod on the node (when its pod CIDR is
		// known) and from the node itself (host-network pods, kubelet
		// probes): kube-proxy treats the two differently (masquerade).
		for _, ip := range svc.ClusterIPs {
			e := trace.Entry{Kind: trace.EntryClusterIP, Address: ip, Port: sp.Port, Protocol: sp.Protocol, ServicePort: sp.Name}
			if src := podSource(n, ip.Is6()); src.IsValid() {
				e.Source, e.From = src, FromPod
				out = append(out, e)
			}
			for _, a := range addrs {
				if a.Is6() == ip.Is6() {
					e.Source, e.From = a, FromNode
					out = append(out, e)
					break
				}
			}
		}
	}
	return out
}

func buildNode(p *trace.Path, in Input, n Node, idx *nodeIndex) trace.NodePaths {
	np := trace.NodePaths{Name: n.Node.Name, Addresses: nodeAddrs(n.Node), ProxyMode: n.proxyMode(), Paths: []trace.EntryPath{}}
	if np.Addresses == nil {
		np.Addresses = []netip.Addr{}
	}
	if n.Err == nil && n.Dataplane == nil {
		n.Err = fmt.Errorf("no rules were collected from node %s", np.Name)
	}
	if n.Err != nil {
		np.Error = n.Err.Error()
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityError, Code: trace.CodeNodeNotCollected, Node: np.Name,
			Message: fmt.Sprintf("the rules of node %s could not be read: %v", np.Name, n.Err)})
		return np
	}
	if f := n.Dataplane.Formats(); len(f) > 0 {
		np.RulesetFormat = f[0]
	}
	det := dataplanes(n)
	np.NetworkPlugins = det.Plugins
	np.ServiceDataplane = det.Service
	replaced := det.Service != nil && det.Service.ReplacesKubeProxy
	snap := n.Dataplane.Routes()
	if snap != nil {
		np.RoutesFrom = routesFrom(snap)
	}
	for _, w := range append(slices.Clone(n.Warnings), n.Dataplane.Warnings()...) {
		if replaced && w.Code == trace.CodeKubeProxyRulesMissing {
			continue // the KubeProxyReplaced finding says why, and what to use
		}
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityWarning, Code: w.Code, Node: np.Name, Message: "node " + np.Name + ": " + w.Message})
	}
	if snap != nil {
		for _, note := range snap.Notes {
			p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeRoutesAssumed, Node: np.Name, Message: "node " + np.Name + ": " + note})
		}
	}
	p.Findings = append(p.Findings, dataplaneFindings(np.Name, det)...)
	switch {
	case replaced:
		// kube-proxy is not the dataplane: there are no rules of its to
		// walk, and saying so once beats a NONE under every entry.
		return np
	case len(n.Dataplane.Engines()) == 0:
		np.Error = fmt.Sprintf("no kube-proxy rules were found on node %s (only its routes and interfaces were given): kube-proxy may not run there, or a replacement such as an eBPF dataplane handles Services", np.Name)
		p.Findings = append(p.Findings, trace.Finding{Severity: trace.SeverityError, Code: trace.CodeNodeNotCollected, Node: np.Name,
			Message: fmt.Sprintf("the rules of node %s could not be read: %s", np.Name, np.Error)})
		return np
	}
	if p.Service.Headless {
		return np
	}
	var drift driftLog
	var foreign foreignLog
	for _, e := range entries(p.Service, n.Node, in.Client, in.ClientV6) {
		if len(in.Kinds) > 0 && !slices.Contains(in.Kinds, e.Kind) {
			continue
		}
		if e.Kind == trace.EntryClusterIP && in.PodSource.IsValid() {
			// One request from the given pod: it replaces the pod entry.
			if e.From != FromPod || in.PodSource.Is6() != e.Address.Is6() {
				continue
			}
			e.Source, e.From = in.PodSource, FromGivenPod
		}
		if !n.Dataplane.Covers(e.Address.Is6()) {
			np.Paths = append(np.Paths, trace.EntryPath{Entry: e, Verdict: trace.VerdictNone, Chains: []string{}, Endpoints: []trace.PathEndpoint{}, Rules: []trace.RuleRef{},
				Why: fmt.Sprintf("no %s rules were collected from this node", family(e.Address))})
			continue
		}
		pkt := trace.Packet{Source: e.Source, Destination: e.Address, DestinationPort: e.Port, Protocol: e.Protocol}
		sim, err := n.Dataplane.Simulate(pkt, ruleset.Options{LocalAddrs: np.Addresses})
		if err != nil {
			np.Paths = append(np.Paths, trace.EntryPath{Entry: e, Verdict: trace.VerdictNone, Chains: []string{}, Endpoints: []trace.PathEndpoint{}, Rules: []trace.RuleRef{},
				Why: "the packet could not be simulated: " + err.Error()})
			continue
		}
		path := entryPath(p, &drift, np.Name, e, sim)
		foreign.note(np.Name, e, sim)
		if in.Observe {
			setRuleHits(&path, sim)
		}
		np.Paths = append(np.Paths, path)
	}
	p.Findings = append(p.Findings, drift.findings(p)...)
	p.Findings = append(p.Findings, foreign.findings(p)...)
	explainNodePortMisses(&np)
	np.ChainInfo = chainInfo(np.Paths, n.Dataplane)
	if snap != nil {
		ll := newLastLeg(np.Name, snap, idx, p.Endpoints)
		ll.annotate(&np)
		p.Findings = append(p.Findings, ll.findings...)
	}
	if in.Observe {
		p.Findings = append(p.Findings, observe(p, n, &np, in.ShowClients)...)
	}
	return np
}

// setRuleHits gives each endpoint the packet counter of its DNAT rule, when
// the node's dump has rule counters.
func setRuleHits(ep *trace.EntryPath, sim *trace.Simulation) {
	hits := ruleHits(sim)
	for i := range ep.Endpoints {
		pe := &ep.Endpoints[i]
		if h, ok := hits[netip.AddrPortFrom(pe.IP, pe.Port)]; ok {
			pe.Observed = &trace.Observed{RuleHits: &h}
		}
	}
}

// chainInfo describes every chain the node's paths name, as the node's
// engines classify them, so renderers draw by kind and never parse names.
func chainInfo(paths []trace.EntryPath, dp *ruleset.Dataplane) map[string]trace.ChainInfo {
	out := map[string]trace.ChainInfo{}
	add := func(name string) {
		if _, seen := out[name]; name != "" && !seen {
			out[name] = dp.ChainInfo(name)
		}
	}
	for _, ep := range paths {
		for _, c := range ep.Chains {
			add(c)
		}
		for _, e := range ep.Endpoints {
			add(e.Chain)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// explainNodePortMisses: when kube-proxy's rules on a node act on other
// entries but leave a node port on one of its addresses alone, kube-proxy
// simply does not listen there.
func explainNodePortMisses(np *trace.NodePaths) {
	decided := false
	for _, ep := range np.Paths {
		decided = decided || ep.Verdict != trace.VerdictNone
	}
	if !decided {
		return
	}
	for i := range np.Paths {
		ep := &np.Paths[i]
		if ep.Entry.Kind == trace.EntryNodePort && ep.Verdict == trace.VerdictNone {
			ep.Why = fmt.Sprintf("kube-proxy on this node does not accept node ports on %s (its --nodeport-addresses; nftables mode defaults to the node's primary addresses)", ep.Entry.Address)
		}
	}
}

// driftLog gathers one finding per node, endpoint and kind of drift, with
// the entries where it shows.
type driftLog struct {
	order []string
	items map[string]*driftItem
}

type driftItem struct {
	code     trace.Code
	node     string
	endpoint netip.AddrPort
	pod      *trace.PodRef
	entries  []string
}

func (d *driftLog) note(code trace.Code, node string, ep netip.AddrPort, pod *trace.PodRef, e trace.Entry) {
	if d.items == nil {
		d.items = map[string]*driftItem{}
	}
	k := string(code) + " " + node + " " + ep.String()
	it := d.items[k]
	if it == nil {
		it = &driftItem{code: code, node: node, endpoint: ep, pod: pod}
		d.items[k] = it
		d.order = append(d.order, k)
	}
	if s := fmt.Sprintf("%s %s", e.Kind, netip.AddrPortFrom(e.Address, e.Port)); !slices.Contains(it.entries, s) {
		it.entries = append(it.entries, s)
	}
}

func (d *driftLog) findings(p *trace.Path) []trace.Finding {
	var out []trace.Finding
	for _, k := range d.order {
		it := d.items[k]
		var msg string
		switch it.code {
		case trace.CodeStaleEndpointInRules:
			msg = fmt.Sprintf("node %s sends traffic to %s, which no EndpointSlice of %s/%s lists (via %s): its kube-proxy has not caught up — is it running and watching the API?",
				it.node, it.endpoint, p.Service.Namespace, p.Service.Name, strings.Join(it.entries, ", "))
		case trace.CodeRealServerNotEndpoint:
			msg = fmt.Sprintf("node %s's IPVS virtual server sends new connections to real server %s, which no EndpointSlice of %s/%s lists (via %s): its kube-proxy has not caught up — is it running and watching the API?",
				it.node, it.endpoint, p.Service.Namespace, p.Service.Name, strings.Join(it.entries, ", "))
		case trace.CodeRealServerMissing:
			msg = fmt.Sprintf("node %s's IPVS virtual server lacks real server %s%s (or has it at weight 0), which the API lists as ready (for %s): its kube-proxy is behind",
				it.node, it.endpoint, podSuffix(it.pod), strings.Join(it.entries, ", "))
		default:
			msg = fmt.Sprintf("node %s's rules lack endpoint %s%s, which the API lists as ready (for %s): its kube-proxy is behind",
				it.node, it.endpoint, podSuffix(it.pod), strings.Join(it.entries, ", "))
		}
		out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: it.code, Node: it.node, Message: msg})
	}
	return out
}

func family(a netip.Addr) string {
	if a.Is6() {
		return "IPv6"
	}
	return "IPv4"
}

// entryPath turns the engine's simulation into the Path's view, joined with
// the API's endpoints.
func entryPath(p *trace.Path, d *driftLog, node string, e trace.Entry, sim *trace.Simulation) trace.EntryPath {
	ep := trace.EntryPath{Entry: e, Verdict: sim.Verdict, Masquerade: sim.Masquerade, Chains: walkOrder(sim), Endpoints: []trace.PathEndpoint{}, Rules: sim.Rules, Notes: sim.Notes, Affinity: sim.Affinity, IPVS: sim.IPVS}
	// In IPVS mode the virtual server's real servers are what the rules
	// are elsewhere: drift is named after them.
	stale, missing := trace.CodeStaleEndpointInRules, trace.CodeEndpointMissingFromRules
	if sim.IPVS != nil {
		stale, missing = trace.CodeRealServerNotEndpoint, trace.CodeRealServerMissing
	}
	for _, o := range sim.Outcomes {
		if o.Verdict == trace.VerdictDrop || o.Verdict == trace.VerdictReject {
			ep.DecidedBy = o.DecidedBy
		}
	}
	api := map[netip.AddrPort]trace.APIEndpoint{}
	for _, a := range p.Endpoints {
		if a.Port == e.ServicePort && a.Protocol == e.Protocol {
			api[netip.AddrPortFrom(a.IP, a.TargetPort)] = a
		}
	}
	seen := map[netip.AddrPort]bool{}
	for _, se := range sim.Endpoints {
		pe := trace.PathEndpoint{IP: se.IP, Port: se.Port, Probability: se.Probability, Masquerade: se.Masquerade, InRules: true, Chain: se.Chain}
		if a, ok := api[se.AddrPort()]; ok {
			fillFromAPI(&pe, a, node)
		} else {
			d.note(stale, node, se.AddrPort(), nil, e)
		}
		seen[se.AddrPort()] = true
		ep.Endpoints = append(ep.Endpoints, pe)
	}
	// kube-proxy rejects (or, for a Local policy, drops) only when it has
	// no endpoint to offer; if the API has ready ones, the node is behind.
	// (A LoadBalancer drop is the source-range check, which is fine.)
	// A table kube-proxy did not write refuses whatever kube-proxy
	// programmed: that says nothing about kube-proxy's endpoints.
	foreignRefusal := ep.DecidedBy != nil && ep.DecidedBy.Foreign
	refusedWithEndpoints := !foreignRefusal && (ep.Verdict == trace.VerdictReject || ep.Verdict == trace.VerdictDrop && e.Kind != trace.EntryLoadBalancer)
	if ep.Verdict == trace.VerdictDNAT || refusedWithEndpoints {
		for _, a := range expectedEndpoints(p, e, node) {
			k := netip.AddrPortFrom(a.IP, a.TargetPort)
			if seen[k] {
				continue
			}
			pe := trace.PathEndpoint{IP: a.IP, Port: a.TargetPort}
			fillFromAPI(&pe, a, node)
			ep.Endpoints = append(ep.Endpoints, pe)
			d.note(missing, node, k, a.Pod, e)
		}
	}
	ep.Why = why(p, e, node, ep)
	return ep
}

func podSuffix(pod *trace.PodRef) string {
	if pod == nil {
		return ""
	}
	return fmt.Sprintf(" (pod %s/%s)", pod.Namespace, pod.Name)
}

func fillFromAPI(pe *trace.PathEndpoint, a trace.APIEndpoint, node string) {
	pe.InAPI, pe.Ready, pe.Serving, pe.Terminating = true, a.Ready, a.Serving, a.Terminating
	pe.Pod = a.Pod
	pe.SameNode = a.Node != "" && a.Node == node
}

// expectedEndpoints are the endpoints kube-proxy should have programmed for
// the entry on node, the way kube-proxy's CategorizeEndpoints picks them:
// ready ones (serving-terminating ones when none is ready), narrowed by
// topology (PreferSameNode / PreferSameZone hints, when every ready endpoint
// carries them and one is for this node or zone) or, for a Local traffic
// policy, to the node's own.
func expectedEndpoints(p *trace.Path, e trace.Entry, node string) []trace.APIEndpoint {
	local := false
	switch e.Kind {
	case trace.EntryClusterIP:
		local = p.Service.InternalTrafficPolicy == "Local"
	default:
		local = p.Service.ExternalTrafficPolicy == "Local"
	}
	var all []trace.APIEndpoint
	for _, a := range p.Endpoints {
		if a.Port == e.ServicePort && a.Protocol == e.Protocol && a.IP.Is6() == e.Address.Is6() {
			all = append(all, a)
		}
	}
	zone := p.NodeZones[node]
	mode := ""
	if !local {
		mode = topologyMode(all, node, zone)
	}
	var ready, fallback []trace.APIEndpoint
	for _, a := range all {
		if local && a.Node != node {
			continue
		}
		switch {
		case a.Ready && !a.Terminating:
			if mode == "PreferSameNode" && !slices.Contains(a.ForNodes, node) || mode == "PreferSameZone" && !slices.Contains(a.ForZones, zone) {
				continue
			}
			ready = append(ready, a)
		case a.Serving && a.Terminating:
			fallback = append(fallback, a)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return fallback
}

// topologyMode is kube-proxy's topologyModeFromHints: same-node hints win
// when every ready endpoint has one and one names this node; then zone hints.
func topologyMode(eps []trace.APIEndpoint, node, zone string) string {
	hasReady, allNode, forNode, allZone, forZone := false, true, false, true, false
	for _, a := range eps {
		if !a.Ready || a.Terminating {
			continue
		}
		hasReady = true
		if len(a.ForNodes) == 0 {
			allNode = false
		} else if slices.Contains(a.ForNodes, node) {
			forNode = true
		}
		if len(a.ForZones) == 0 {
			allZone = false
		} else if slices.Contains(a.ForZones, zone) {
			forZone = true
		}
	}
	switch {
	case !hasReady:
		return ""
	case allNode && forNode:
		return "PreferSameNode"
	case allZone && forZone:
		return "PreferSameZone"
	}
	return ""
}

// why explains a path that does not reach a pod.
func why(p *trace.Path, e trace.Entry, node string, ep trace.EntryPath) string {
	hasAny := false
	for _, a := range p.Endpoints {
		if a.Port == e.ServicePort && a.Protocol == e.Protocol {
			hasAny = true
		}
	}
	switch ep.Verdict {
	case trace.VerdictDNAT, trace.VerdictAccept:
		return ""
	case trace.VerdictReject, trace.VerdictDrop:
		if ep.DecidedBy != nil && ep.DecidedBy.Foreign {
			return map[trace.Verdict]string{trace.VerdictDrop: "dropped", trace.VerdictReject: "rejected"}[ep.Verdict] + " by " + foreignRuleName(ep.DecidedBy)
		}
	}
	switch ep.Verdict {
	case trace.VerdictReject:
		if !hasAny {
			return "the Service has no endpoints; kube-proxy rejects connections to it"
		}
		return "rejected by " + ruleName(ep.DecidedBy)
	case trace.VerdictDrop:
		if e.Kind != trace.EntryClusterIP && p.Service.ExternalTrafficPolicy == "Local" && len(expectedEndpoints(p, e, node)) == 0 && hasAny {
			return "externalTrafficPolicy is Local and no endpoint runs on this node; the load balancer's health check (healthCheckNodePort) should keep traffic away from it"
		}
		if e.Kind == trace.EntryLoadBalancer && len(p.Service.LoadBalancerSourceRanges) > 0 {
			return fmt.Sprintf("the client %s is outside loadBalancerSourceRanges %s", e.Source, strings.Join(p.Service.LoadBalancerSourceRanges, ", "))
		}
		if !hasAny {
			return "the Service has no endpoints; kube-proxy drops traffic to it"
		}
		return "dropped by " + ruleName(ep.DecidedBy)
	}
	return noRuleMatched
}

func ruleName(r *trace.RuleRef) string {
	if r == nil {
		return "a rule"
	}
	return fmt.Sprintf("%s/%s (line %d)", r.Table, r.Chain, r.Line)
}

// compareNodes reports nodes whose rules send the same entry kind to
// different endpoint sets, where the policy says they should agree
// (Cluster traffic policies).
func compareNodes(p *trace.Path) []trace.Finding {
	var out []trace.Finding
	type key struct{ kind, port string }
	sets := map[key]map[string][]string{} // entry → endpoint set → nodes
	for _, n := range p.Nodes {
		nodePortSeen := map[string]bool{}
		for _, ep := range n.Paths {
			if ep.Entry.Kind == trace.EntryNodePort {
				// Compare each node's first address only: a node may rightly
				// refuse node ports on its other addresses.
				if nodePortSeen[ep.Entry.ServicePort+ep.Entry.Protocol] {
					continue
				}
				nodePortSeen[ep.Entry.ServicePort+ep.Entry.Protocol] = true
			}
			if ep.Entry.Kind == trace.EntryNodePort && p.Service.ExternalTrafficPolicy == "Local" || ep.Entry.Kind == trace.EntryClusterIP && p.Service.InternalTrafficPolicy == "Local" {
				continue
			}
			if ep.Entry.Kind == trace.EntryLoadBalancer || ep.Entry.Kind == trace.EntryExternalIP {
				if p.Service.ExternalTrafficPolicy == "Local" {
					continue
				}
			}
			var eps []string
			for _, e := range ep.EndpointsInRules() {
				eps = append(eps, fmt.Sprintf("%s:%d", e.IP, e.Port))
			}
			sort.Strings(eps)
			k := key{ep.Entry.Kind + " " + ep.Entry.Address.String() + " from " + ep.Entry.From, ep.Entry.ServicePort}
			if ep.Entry.Kind == trace.EntryNodePort {
				k = key{trace.EntryNodePort, ep.Entry.ServicePort}
			}
			if sets[k] == nil {
				sets[k] = map[string][]string{}
			}
			s := string(ep.Verdict)
			if len(eps) > 0 {
				s += " to " + strings.Join(eps, ", ")
			}
			if !slices.Contains(sets[k][s], n.Name) {
				sets[k][s] = append(sets[k][s], n.Name)
			}
		}
	}
	keys := make([]key, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].kind+keys[i].port < keys[j].kind+keys[j].port })
	for _, k := range keys {
		if len(sets[k]) < 2 {
			continue
		}
		var parts []string
		for s, nodes := range sets[k] {
			parts = append(parts, fmt.Sprintf("%s → %s", strings.Join(nodes, ", "), s))
		}
		sort.Strings(parts)
		out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodeNodesDisagree,
			Message: fmt.Sprintf("nodes handle %s (port %q) differently: %s", k.kind, k.port, strings.Join(parts, "; "))})
	}
	return out
}
