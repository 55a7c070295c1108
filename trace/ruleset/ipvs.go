package ruleset

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
)

// Formats of the sources kube-proxy's IPVS mode adds to the iptables dumps.
const (
	// FormatIPVS is the IPVS table: /proc/net/ip_vs, ipvsadm -Ln or -Sn.
	FormatIPVS = "ipvs"
	// FormatIPSet is ipset save or ipset list output.
	FormatIPSet = "ipset"
)

// detectIPVSOrIPSet tells an IPVS table or an ipset dump by its first
// lines. ipvsadm -Sn's "-A -t …" and ipset save's "create NAME TYPE" begin
// like an iptables dump's rule and an nft script's command: they are told
// by what follows (a service option; a TYPE of METHOD:DIMENSIONS).
func detectIPVSOrIPSet(head []byte) string {
	first := firstLine(head)
	if f, ok := ipvs.Detect(head); ok {
		if f != ipvs.FormatSave || isIPVSSaveLine(first) {
			return FormatIPVS
		}
	}
	if f, ok := ipset.Detect(head); ok {
		if f == ipset.FormatList {
			return FormatIPSet
		}
		fields := strings.Fields(first)
		if len(fields) >= 3 && (fields[0] == "create" && strings.Contains(fields[2], ":") || fields[0] == "add") {
			if fields[0] == "add" && (fields[1] == "table" || fields[1] == "chain" || fields[1] == "rule" || fields[1] == "element" || fields[1] == "set" || fields[1] == "map") {
				return ""
			}
			return FormatIPSet
		}
	}
	return ""
}

func firstLine(head []byte) string {
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		if l := strings.TrimSpace(string(line)); l != "" {
			return l
		}
	}
	return ""
}

// isIPVSSaveLine: ipvsadm -S writes "-A -t|-u|--sctp-service|-f ADDR".
func isIPVSSaveLine(l string) bool {
	for _, p := range []string{"-A -t ", "-A -u ", "-A -f ", "-A --sctp-service ", "-a -t ", "-a -u ", "-a -f ", "-a --sctp-service "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// parseIPVSOrIPSet reads an IPVS table or ipset dump whole (both are
// bounded by their parsers' limits).
func parseIPVSOrIPSet(src Source, format string) (parsedSource, error) {
	ps := parsedSource{format: format}
	switch format {
	case FormatIPVS:
		t, err := ipvs.Parse(src.Reader())
		if err != nil {
			return ps, fmt.Errorf("IPVS table: %w", err)
		}
		ps.value = t
		for _, w := range t.Warnings {
			ps.warnings = append(ps.warnings, trace.Warning{Code: trace.CodeDumpIrregular, Message: "IPVS table: " + excerpt.Clip(w)})
		}
	case FormatIPSet:
		d, err := ipset.Parse(src.Reader())
		if err != nil {
			return ps, fmt.Errorf("ipsets: %w", err)
		}
		ps.value = d
		for _, w := range d.Warnings {
			ps.warnings = append(ps.warnings, trace.Warning{Code: trace.CodeDumpIrregular, Message: "ipsets: " + excerpt.Clip(w)})
		}
	}
	return ps, nil
}

// ipvsEngine is kube-proxy's IPVS mode: the IPVS table decides where a
// packet to a Service address goes, kube-proxy's iptables rules (matching
// ipsets) accept, masquerade and filter around it. The iptables dumps are
// optional: without them only the table is consulted, and a note says so.
type ipvsEngine struct {
	ipt   *iptablesEngine
	table *ipvs.Table
	sets  *ipset.Dump
}

func (e *ipvsEngine) Name() string { return "ipvs" }

func (e *ipvsEngine) Mode() string { return trace.ModeIPVS }

func (e *ipvsEngine) hasFamily(v6 bool) bool {
	for _, v := range e.table.Services {
		if v.IPv6 == v6 {
			return true
		}
	}
	return false
}

func (e *ipvsEngine) Covers(v6 bool) bool {
	return e.hasFamily(v6) || e.ipt != nil && e.ipt.Covers(v6)
}

func (e *ipvsEngine) KubeProxy(v6 bool) bool {
	return e.hasFamily(v6) || e.ipt != nil && e.ipt.KubeProxy(v6)
}

// HookChains are kube-proxy's iptables chains of every dump of the family,
// with the node's ipsets, and IPVS registered at the input hook; nil
// without an iptables dump of the family (the engine then consults the
// IPVS table alone). Dataplane.Simulate uses walkChains, which also
// gives the addresses kube-ipvs0 holds and the scheduler's answer.
func (e *ipvsEngine) HookChains(v6 bool) []trace.HookChain {
	cs, _, _ := e.walkChains(v6, Options{})
	return cs
}

// walkChains are HookChains for one simulation: the chains, the node's
// addresses with every Service address kube-proxy bound to kube-ipvs0,
// and the scheduler, which keeps the virtual server it answered with.
func (e *ipvsEngine) walkChains(v6 bool, opts Options) ([]trace.HookChain, []netip.Addr, *ipvsScheduler) {
	if e.ipt == nil {
		return nil, nil, nil
	}
	sched := &ipvsScheduler{table: e.table, affinity: opts.AffinityEndpoint}
	cs := e.ipt.hookChainsWith(v6, iptables.Extensions{Sets: e.sets, IPVS: sched})
	if cs == nil {
		return nil, nil, nil
	}
	return cs, e.boundAddrs(opts.LocalAddrs), sched
}

// boundAddrs adds to the node's addresses every Service address kube-proxy
// binds to kube-ipvs0: they are the node's own, and IPVS sees packets to
// them at LOCAL_IN.
func (e *ipvsEngine) boundAddrs(node []netip.Addr) []netip.Addr {
	local := append([]netip.Addr(nil), node...)
	for _, v := range e.table.Services {
		if v.FWMark == 0 && v.Addr.IsValid() {
			local = append(local, v.Addr)
		}
	}
	return local
}

func (e *ipvsEngine) Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	sched := &ipvsScheduler{table: e.table, affinity: opts.AffinityEndpoint}
	local := e.boundAddrs(opts.LocalAddrs)
	wopts := iptables.Options{LocalAddrs: local, AffinityEndpoint: opts.AffinityEndpoint}
	v6 := pkt.Destination.Unmap().Is6()
	var d *iptables.Dump
	if e.ipt != nil {
		d = e.ipt.dump(v6)
	}
	var sim *trace.Simulation
	var err error
	if d != nil {
		sim, err = iptables.SimulateWith(d, pkt, wopts, iptables.Extensions{Sets: e.sets, IPVS: sched})
	} else {
		sim, err = simulateIPVSOnly(pkt, wopts, sched)
	}
	if err != nil {
		return nil, err
	}
	sim.IPVS = sched.hop
	return sim, nil
}

// simulateIPVSOnly asks the IPVS table alone, when no iptables dump of the
// family was given: what kube-proxy's helper rules would filter or
// masquerade is unknown.
func simulateIPVSOnly(pkt trace.Packet, opts iptables.Options, sched *ipvsScheduler) (*trace.Simulation, error) {
	w, err := trace.StartWalk(pkt, opts)
	if err != nil {
		return nil, err
	}
	w.Note("no iptables dump of the packet's family was given: only the IPVS table was consulted; kube-proxy's filter and masquerade rules around it are unknown")
	b := &trace.Branch{Prob: 1}
	dst := pkt.Destination.Unmap()
	if !w.IsLocal(dst) {
		return w.Finish([]*trace.Branch{b})
	}
	d, ok := sched.Schedule(iptables.IPVSPacket{Src: pkt.Source.Unmap(), Dst: dst, Port: pkt.DestinationPort, Protocol: pkt.Protocol})
	if !ok {
		return w.Finish([]*trace.Branch{b})
	}
	for _, n := range d.Notes {
		w.Note("%s", n)
	}
	if d.Affinity != nil {
		w.AddAffinity(*d.Affinity)
	}
	ref := d.Ref
	b.Record(ref)
	if len(d.Choices) == 0 {
		b.Verdict, b.DecidedBy = trace.VerdictReject, &ref
		return w.Finish([]*trace.Branch{b})
	}
	var out []*trace.Branch
	for _, c := range d.Choices {
		nb := *b
		nb.Prob = c.Probability
		nb.Endpoint = &trace.Endpoint{IP: c.Addr, Port: c.Port, Chain: ref.Chain}
		nb.DecidedBy = &ref
		out = append(out, &nb)
	}
	return w.Finish(out)
}

// ipvsScheduler is the IPVS table as one simulation meets it; it keeps the
// virtual server it answered with for the Simulation.
type ipvsScheduler struct {
	table    *ipvs.Table
	affinity netip.AddrPort
	hop      *trace.IPVSHop
}

// ipvsChainPrefix starts the name a virtual server is recorded under in a
// simulation's rules ("IPVS TCP 10.96.0.1:80"), as if it were a chain.
const ipvsChainPrefix = "IPVS "

// maxRealsInRule bounds how many real servers the recorded rule text lists.
const maxRealsInRule = 8

func (s *ipvsScheduler) Schedule(p iptables.IPVSPacket) (iptables.IPVSDecision, bool) {
	v := s.table.Lookup(p.Protocol, p.Dst, p.Port)
	if v == nil && p.Mark != 0 {
		v = s.table.LookupFWMark(p.Mark, p.Dst.Is6())
	}
	if v == nil {
		return iptables.IPVSDecision{}, false
	}
	name := ipvsName(v)
	sch := v.Schedule()
	hop := &trace.IPVSHop{VirtualServer: v.String(), Protocol: v.Protocol, Address: v.Addr, Port: v.Port, FWMark: v.FWMark,
		Scheduler: v.Scheduler, Persistent: v.Persistent}
	if v.Persistent && s.table.Format != ipvs.FormatProc {
		hop.PersistenceSeconds = v.Timeout
	}
	share := map[*ipvs.RealServer]float64{}
	for _, sh := range sch.Shares {
		share[sh.Real] = sh.Probability
	}
	var text []string
	text = append(text, "scheduler "+excerpt.Clip(v.Scheduler))
	for i, r := range v.Reals {
		hop.RealServers = append(hop.RealServers, trace.IPVSRealHop{IP: r.Addr, Port: r.Port, Forward: r.Forward, Weight: r.Weight, Probability: share[r]})
		if i < maxRealsInRule {
			text = append(text, fmt.Sprintf("-> %s %s weight %d", r, r.Forward, r.Weight))
		}
	}
	if len(v.Reals) > maxRealsInRule {
		text = append(text, fmt.Sprintf("… %d more real servers", len(v.Reals)-maxRealsInRule))
	}
	if len(v.Reals) == 0 {
		text = append(text, "no real servers")
	}
	s.hop = hop
	d := iptables.IPVSDecision{Protocol: strings.ToLower(v.Protocol), Addr: v.Addr, Port: v.Port, FWMark: v.FWMark,
		Ref: trace.RuleRef{Table: "ipvs", Chain: name, Line: v.Line, Rule: strings.Join(text, ", ")}}
	for _, n := range sch.Notes {
		if n == ipvs.PersistentNote {
			continue // said below, in the table's own units
		}
		d.Notes = append(d.Notes, fmt.Sprintf("IPVS %s: %s", v, n))
	}
	for _, sh := range sch.Shares {
		d.Choices = append(d.Choices, iptables.IPVSChoice{Addr: sh.Real.Addr, Port: sh.Real.Port, Probability: sh.Probability})
	}
	if v.Persistent {
		ar := trace.AffinityRule{Rule: d.Ref, List: "IPVS persistence " + v.String()}
		if s.table.Format == ipvs.FormatProc {
			d.Notes = append(d.Notes, fmt.Sprintf("IPVS %s is persistent (session affinity ClientIP) for %d jiffies (/proc/net/ip_vs does not say the kernel's HZ: 10800 s is 2700000 at HZ 250): a client that comes back within that time reaches the same real server", v, v.Timeout))
		} else {
			ar.Seconds = int(v.Timeout)
			d.Notes = append(d.Notes, fmt.Sprintf("IPVS %s is persistent (session affinity ClientIP) for %d s: a client that comes back within that time reaches the same real server", v, v.Timeout))
		}
		// A returning client is pinned to its real server (while it has
		// weight or not: persistence templates outlive weight 0).
		for _, r := range v.Reals {
			if s.affinity.IsValid() && netip.AddrPortFrom(r.Addr, r.Port) == s.affinity {
				ar.Hit, ar.Endpoint = true, s.affinity.String()
				d.Choices = []iptables.IPVSChoice{{Addr: r.Addr, Port: r.Port, Probability: 1}}
				break
			}
		}
		d.Affinity = &ar
	}
	return d, true
}

// ipvsInterface is the dummy interface kube-proxy's IPVS mode binds every
// Service address to.
const ipvsInterface = "kube-ipvs0"

// addressBound tells whether the Service's cluster IP of the family is on
// kube-ipvs0: only for a node in IPVS mode whose interfaces were given.
func (d *Dataplane) addressBound(svc trace.ServiceInfo, v6 bool) Check {
	if d.ProxyMode() != trace.ModeIPVS || d.routes == nil || len(d.routes.Interfaces) == 0 {
		return Check{}
	}
	addrs := serviceAddrs(svc, v6)
	if len(addrs) == 0 {
		return Check{}
	}
	ifc, _ := d.routes.Interface(ipvsInterface)
	bound := func(ip netip.Addr) bool {
		for _, p := range ifc.Addrs {
			if p.Addr() == ip {
				return true
			}
		}
		return false
	}
	return firstMissing(addrs, func(a svcAddr) (string, bool) {
		return "address " + a.ip.String() + " on " + ipvsInterface, bound(a.ip)
	})
}

// svcAddr is one address kube-proxy's IPVS mode serves a Service port on,
// and the ipset of its family it is listed in.
type svcAddr struct {
	ip          netip.Addr
	set         string
	fromOutside bool // an external or load balancer IP, not the cluster IP
}

// serviceAddrs are the Service's addresses of one family that kube-proxy's
// IPVS mode binds to kube-ipvs0, serves with a virtual server and lists in
// an ipset: the cluster IPs, the external IPs, and the load balancer IPs
// the node sees as destination (ipMode VIP; kube-proxy leaves "Proxy" ones
// to the load balancer). IPv6 sets are named KUBE-6-….
func serviceAddrs(svc trace.ServiceInfo, v6 bool) []svcAddr {
	set := func(name string) string {
		if v6 {
			return "KUBE-6-" + strings.TrimPrefix(name, "KUBE-")
		}
		return name
	}
	var out []svcAddr
	for _, ip := range svc.ClusterIPs {
		if ip.Is6() == v6 {
			out = append(out, svcAddr{ip: ip, set: set("KUBE-CLUSTER-IP")})
		}
	}
	for _, ip := range svc.ExternalIPs {
		if ip.Is6() == v6 {
			out = append(out, svcAddr{ip: ip, set: set("KUBE-EXTERNAL-IP"), fromOutside: true})
		}
	}
	for _, lb := range svc.LoadBalancerIngress {
		if lb.IP.IsValid() && lb.IPMode != "Proxy" && lb.IP.Is6() == v6 {
			out = append(out, svcAddr{ip: lb.IP, set: set("KUBE-LOAD-BALANCER"), fromOutside: true})
		}
	}
	return out
}

// firstMissing checks each address and answers with the first that fails
// the check, or, when none does, with the first address.
func firstMissing(addrs []svcAddr, check func(svcAddr) (name string, found bool)) Check {
	var first Check
	for i, a := range addrs {
		name, found := check(a)
		if !found {
			return Check{Applicable: true, Name: name}
		}
		if i == 0 {
			first = Check{Applicable: true, Name: name, Found: true}
		}
	}
	return first
}

// ipvsName is the chain-like name a virtual server is recorded under.
func ipvsName(v *ipvs.VirtualServer) string {
	if v.FWMark != 0 {
		return ipvsChainPrefix + "FWM " + strconv.FormatUint(uint64(v.FWMark), 10)
	}
	return ipvsChainPrefix + v.Protocol + " " + netip.AddrPortFrom(v.Addr, v.Port).String()
}

// Programmed: in IPVS mode a Service port is programmed when each of its
// addresses has a virtual server (ObjectService: the cluster IP;
// ObjectExternal: the external and load balancer IPs) and an entry in the
// ipset kube-proxy's rules accept and masquerade it by (ObjectIPSetEntry:
// KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP, KUBE-LOAD-BALANCER). Node ports are
// served on the node's addresses, which a Service does not name: they are
// not checked. The answer names the first address that lacks its object.
func (e *ipvsEngine) Programmed(kind ObjectKind, svc trace.ServiceInfo, sp trace.ServicePort, v6 bool) Check {
	var addrs []svcAddr
	for _, a := range serviceAddrs(svc, v6) {
		// The service object is the cluster IP's, the external one the
		// outside addresses'; every address has an ipset entry.
		if kind == ObjectIPSetEntry || (kind == ObjectExternal) == a.fromOutside {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return Check{}
	}
	switch kind {
	case ObjectService, ObjectExternal:
		return firstMissing(addrs, func(a svcAddr) (string, bool) {
			return "IPVS virtual server " + strings.ToUpper(sp.Protocol) + " " + netip.AddrPortFrom(a.ip, sp.Port).String(), e.table.Lookup(sp.Protocol, a.ip, sp.Port) != nil
		})
	case ObjectIPSetEntry:
		// Without the ipsets, or with a kube-proxy that names its sets
		// otherwise, an address cannot be told: it counts as present, and
		// when no address could be told there is nothing to say.
		told := false
		c := firstMissing(addrs, func(a svcAddr) (string, bool) {
			entry := fmt.Sprintf("%s,%s:%d", a.ip, strings.ToLower(sp.Protocol), sp.Port)
			name := "ipset " + a.set + " entry " + entry
			set := e.sets.Set(a.set)
			if set == nil {
				return name, true
			}
			found, err := set.Has(entry)
			if err != nil {
				return name, true
			}
			told = true
			return name, found
		})
		if !told {
			return Check{}
		}
		return c
	}
	return Check{}
}

func (e *ipvsEngine) ChainInfo(name string) (trace.ChainInfo, bool) {
	if strings.HasPrefix(name, ipvsChainPrefix) {
		return trace.ChainInfo{Kind: trace.ChainService}, true
	}
	if e.ipt != nil {
		return e.ipt.ChainInfo(name)
	}
	return trace.ChainInfo{}, false
}

func (e *ipvsEngine) Names() Names {
	var n Names
	if e.ipt != nil {
		n = e.ipt.Names()
	}
	n.IPSets = append(n.IPSets, setNames(e.sets)...)
	return n
}

func setNames(d *ipset.Dump) []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.Sets))
	for _, s := range d.Sets {
		out = append(out, s.Name)
	}
	return out
}
