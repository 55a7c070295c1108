package ruleset

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/internal/kpfixture"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

// agreementCounts are one kube-proxy version's expectations: all of them,
// those checked by simulating packets, those checked on the parsed sources
// (structurally), and those skipped (reads after the test changed the
// state itself).
type agreementCounts struct {
	total, packets, structural, skipped int
	why                                 map[string]int
}

// TestIPVSAgreement is the IPVS engine's ground truth: every expectation
// kube-proxy's own IPVS proxier tests asserted (recorded per sync under
// testdata/ipvs/kube-proxy) is checked against what the simulator answers
// for that sync's files loaded through Load (/proc/net/ip_vs, ipset save,
// iptables-save) — a virtual server by a packet to it (its real servers,
// weights and shares; REJECT when none takes new connections), an ipset
// entry by a packet the entry describes (the rule naming the set matches,
// and the accept, masquerade or drop upstream's rules give). What no
// packet can show (how many virtual servers exist, a chain's exact rule
// list) is checked on the parsed sources.
func TestIPVSAgreement(t *testing.T) {
	fixtures := kpfixture.LoadIPVS(t, "../../testdata/ipvs/kube-proxy")
	per := map[string]*agreementCounts{}
	for _, fx := range fixtures {
		version := filepath.Base(filepath.Dir(fx.Dir))
		c := per[version]
		if c == nil {
			c = &agreementCounts{why: map[string]int{}}
			per[version] = c
		}
		t.Run(version+"/"+filepath.Base(fx.Dir), func(t *testing.T) {
			ag := newAgreement(t, fx)
			for _, e := range fx.Expectations {
				c.total++
				if e.StateChanged {
					c.skipped++
					continue
				}
				kind := ag.check(e)
				switch kind {
				case "packet":
					c.packets++
				default:
					c.structural++
					c.why[kind]++
				}
			}
		})
	}
	versions := make([]string, 0, len(per))
	for v := range per {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		c := per[v]
		var why []string
		for k, n := range c.why {
			why = append(why, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(why)
		t.Logf("%s: %d expectations: %d checked as packets, %d structurally (%s), %d skipped (state changed by the test after the sync)", v, c.total, c.packets, c.structural, strings.Join(why, ", "), c.skipped)
		if c.packets == 0 {
			t.Errorf("%s: no expectation was checked by a packet", v)
		}
	}
}

type agreement struct {
	t      *testing.T
	fx     kpfixture.IPVSFixture
	dp     *Dataplane
	eng    *ipvsEngine
	nodeIP netip.Addr
	local  []netip.Addr
	rules  string // every rule of the iptables dump, for "does any rule name the set"
}

func newAgreement(t *testing.T, fx kpfixture.IPVSFixture) *agreement {
	rules := filepath.Join(fx.Dir, "iptables-nft.save")
	if _, err := os.Stat(rules); err != nil {
		rules = filepath.Join(fx.Dir, "fake.rules")
	}
	dp := load(t, filepath.Join(fx.Dir, "ip_vs"), filepath.Join(fx.Dir, "ipset.save"), rules)
	if dp.ProxyMode() != trace.ModeIPVS {
		t.Fatalf("proxy mode %q, want ipvs", dp.ProxyMode())
	}
	var eng *ipvsEngine
	for _, e := range dp.Engines() {
		if ie, ok := e.(*ipvsEngine); ok {
			eng = ie
		}
	}
	if eng == nil || eng.sets == nil || eng.ipt == nil {
		t.Fatalf("no IPVS engine with ipsets and iptables rules: %#v", eng)
	}
	ag := &agreement{t: t, fx: fx, dp: dp, eng: eng}
	for _, s := range fx.State.NodeIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			ag.local = append(ag.local, a)
		}
	}
	v6 := fx.State.IPFamily == "IPv6"
	// kube-proxy's fake proxier often has no node IP; any node address
	// does for a node port (the bitmap sets hold ports only).
	if len(ag.local) == 0 {
		ag.local = []netip.Addr{netip.MustParseAddr("100.64.0.1")}
		if v6 {
			ag.local = []netip.Addr{netip.MustParseAddr("fd00:64::1")}
		}
	}
	for _, a := range ag.local {
		if a.Is6() == v6 {
			ag.nodeIP = a
			break
		}
	}
	data, _ := os.ReadFile(rules)
	ag.rules = string(data)
	return ag
}

func (ag *agreement) simulate(src, dst netip.Addr, port uint16, proto string) *trace.Simulation {
	ag.t.Helper()
	sim, err := ag.dp.Simulate(trace.Packet{Source: src, Destination: dst, DestinationPort: port, Protocol: proto}, Options{LocalAddrs: ag.local})
	if err != nil {
		ag.t.Fatalf("simulate %s %s -> %s:%d: %v", proto, src, dst, port, err)
	}
	return sim
}

// client is a source outside the cluster for the family.
func client(v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr("2001:db8:77::7")
	}
	return netip.MustParseAddr("192.0.2.77")
}

// check checks one expectation; it returns "packet" when a packet showed
// it, else why it was checked on the parsed sources.
func (ag *agreement) check(e kpfixture.IPVSExpectation) string {
	t := ag.t
	switch e.Kind {
	case "ipvsState", "virtualServersRead":
		if len(e.VirtualServers) != len(ag.eng.table.Services) {
			t.Errorf("%s %s: %d virtual servers, the table has %d", e.Kind, e.Source, len(e.VirtualServers), len(ag.eng.table.Services))
		}
		how := "empty IPVS table: no virtual server to send a packet to"
		for _, vs := range e.VirtualServers {
			h := ag.checkVirtualServer(e, vs, false)
			if how != "packet" {
				how = h
			}
		}
		return how
	case "checkIPVS":
		if e.Count != nil && *e.Count != len(ag.eng.table.Services) {
			t.Errorf("%s %s: %d virtual servers, the table has %d", e.Kind, e.Source, *e.Count, len(ag.eng.table.Services))
		}
		if e.VirtualServer == nil {
			return "virtual server count only"
		}
		return ag.checkVirtualServer(e, *e.VirtualServer, e.WeightsUnchecked)
	case "realServersRead":
		return ag.checkVirtualServer(e, *e.VirtualServer, false)
	case "checkIPSet", "ipsetRead":
		set := ag.eng.sets.Set(e.Set)
		if set == nil {
			t.Errorf("%s %s: no ipset %s", e.Kind, e.Source, e.Set)
			return "set missing"
		}
		want := []string{}
		if e.Entries != nil {
			want = *e.Entries
		}
		if len(set.Members) != len(want) {
			t.Errorf("%s %s: ipset %s has %d members, want %d (%v)", e.Kind, e.Source, e.Set, len(set.Members), len(want), want)
		}
		for _, entry := range want {
			if ok, err := set.Has(entry); err != nil || !ok {
				t.Errorf("%s %s: ipset %s lacks %s (%v)", e.Kind, e.Source, e.Set, entry, err)
			}
		}
		if len(want) == 0 {
			return "empty ipset: no entry to send a packet for"
		}
		if !strings.Contains(ag.rules, "--match-set "+e.Set+" ") {
			return "no rule of the dump names the set"
		}
		for _, entry := range want {
			ag.checkEntry(e, entry)
		}
		return "packet"
	case "checkIptables":
		ag.checkChain(e)
		return "chain rule list (no packet shows a rule's position)"
	}
	t.Errorf("unknown expectation kind %q", e.Kind)
	return "unknown kind"
}

// checkVirtualServer sends a packet to the virtual server and compares the
// IPVS hop, endpoints and shares with what upstream asserted.
func (ag *agreement) checkVirtualServer(e kpfixture.IPVSExpectation, vs kpfixture.IPVSVirtualServer, weightsUnchecked bool) string {
	t := ag.t
	addr := netip.MustParseAddr(vs.Address)
	proto := strings.ToLower(vs.Protocol)
	where := fmt.Sprintf("%s %s: virtual server %s %s:%d", e.Kind, e.Source, vs.Protocol, vs.Address, vs.Port)
	table := ag.eng.table.Lookup(proto, addr, vs.Port)
	if table == nil {
		if e.Kind == "checkIPVS" {
			// Upstream's checkIPVS compares the real servers only of a
			// virtual server it finds; one it does not find passes.
			return "checkIPVS names a virtual server the sync did not make (upstream passes it vacuously)"
		}
		t.Errorf("%s: not in the IPVS table", where)
		return "virtual server missing"
	}
	hop := &trace.IPVSHop{Scheduler: table.Scheduler, Persistent: table.Persistent}
	for _, r := range table.Reals {
		hop.RealServers = append(hop.RealServers, trace.IPVSRealHop{IP: r.Addr, Port: r.Port, Weight: r.Weight})
	}
	how := "packet"
	var sim *trace.Simulation
	if vs.Port == 0 {
		// A port-0 service takes every port: no one packet stands for it.
		how = "port-0 virtual server: compared in the table"
	} else {
		for _, src := range ag.allowedSources(addr, vs.Port, proto) {
			sim = ag.simulate(src, addr, vs.Port, proto)
			if sim.IPVS != nil {
				break
			}
		}
		switch {
		case sim.IPVS != nil:
			hop = sim.IPVS
		case sim.Verdict == trace.VerdictReject && sim.Outcomes[0].DecidedBy != nil && sim.Outcomes[0].DecidedBy.Chain == "KUBE-IPVS-FILTER":
			// kube-proxy's own filter rejects new connections to a
			// kube-ipvs0 address on a port no cluster IP, load balancer
			// or external IP set names: a node port on an address that
			// is also a Service's never reaches its virtual server.
			how = "KUBE-IPVS-FILTER rejects the packet before IPVS: compared in the table"
			sim = nil
		default:
			t.Errorf("%s: the packet never reached IPVS: %s %v %v", where, sim.Verdict, sim.Rules, sim.Notes)
			return "failed"
		}
	}
	var got []string
	weights := map[string]int{}
	for _, r := range hop.RealServers {
		k := netip.AddrPortFrom(r.IP, r.Port).String()
		got = append(got, k)
		weights[k] = r.Weight
	}
	var want []string
	for _, r := range vs.RealServers {
		k := netip.AddrPortFrom(netip.MustParseAddr(r.Address), r.Port).String()
		want = append(want, k)
		if !weightsUnchecked && weights[k] != r.Weight {
			t.Errorf("%s: real server %s weight %d, want %d", where, k, weights[k], r.Weight)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: real servers %v, want %v", where, got, want)
		return how
	}
	if vs.Persistent() != hop.Persistent {
		t.Errorf("%s: persistent %v, want %v", where, hop.Persistent, vs.Persistent())
	}
	if sim == nil {
		return how
	}
	// The shares follow from the weights: rr spreads evenly over the real
	// servers with weight, the others by weight.
	total, n := 0, 0
	for _, r := range hop.RealServers {
		if r.Weight > 0 {
			total += r.Weight
			n++
		}
	}
	if n == 0 {
		if sim.Verdict != trace.VerdictReject {
			t.Errorf("%s: no real server with weight, verdict %s, want REJECT", where, sim.Verdict)
		}
		return how
	}
	if sim.Verdict != trace.VerdictDNAT {
		t.Errorf("%s: verdict %s, want DNAT (%v)", where, sim.Verdict, sim.Notes)
		return how
	}
	if len(sim.Endpoints) != n {
		t.Errorf("%s: %d endpoints, want the %d real servers with weight", where, len(sim.Endpoints), n)
	}
	for _, ep := range sim.Endpoints {
		w := weights[ep.AddrPort().String()]
		p := float64(w) / float64(total)
		if sim.IPVS.Scheduler == "rr" {
			p = 1 / float64(n)
		}
		if w == 0 || math.Abs(ep.Probability-p) > 1e-9 {
			t.Errorf("%s: endpoint %s probability %v weight %d, want %v", where, ep.AddrPort(), ep.Probability, w, p)
		}
	}
	if vs.Persistent() && len(sim.Affinity) == 0 {
		t.Errorf("%s: persistent, but the simulation shows no session affinity", where)
	}
	return how
}

// allowedSources are sources to try for a packet to addr:port: a client
// outside the cluster, then one from each of the load balancer source
// ranges that name the address (loadBalancerSourceRanges drop the others
// before IPVS).
func (ag *agreement) allowedSources(addr netip.Addr, port uint16, proto string) []netip.Addr {
	out := []netip.Addr{client(addr.Is6())}
	prefix := fmt.Sprintf("%s,%s:%d,", addr, proto, port)
	for _, name := range []string{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-LOAD-BALANCER-SOURCE-IP"} {
		for _, fs := range ag.fx.State.IPSets {
			if fs.Name != name {
				continue
			}
			for _, entry := range fs.Entries {
				if rest, ok := strings.CutPrefix(entry, prefix); ok {
					if a, ok := inside(rest); ok {
						out = append(out, a)
					}
				}
			}
		}
	}
	return out
}

// inside returns an address in "ADDR" or "ADDR/BITS".
func inside(s string) (netip.Addr, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		a := p.Masked().Addr()
		if p.Bits() < a.BitLen() {
			a = a.Next()
		}
		return a, true
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// entryPacket is a packet an entry of a kube-proxy set describes.
type entryPacket struct {
	src, dst netip.Addr
	port     uint16
	proto    string
}

func (ag *agreement) entryPacket(set, entry string) (entryPacket, bool) {
	v6 := ag.fx.State.IPFamily == "IPv6"
	p := entryPacket{src: client(v6), proto: "tcp"}
	parts := strings.Split(entry, ",")
	if len(parts) == 1 {
		if port, err := strconv.ParseUint(parts[0], 10, 16); err == nil {
			// bitmap:port: a node port on any node address.
			p.dst, p.port = ag.nodeIP, uint16(port)
			switch {
			case strings.Contains(set, "UDP"):
				p.proto = "udp"
			case strings.Contains(set, "SCTP"):
				p.proto = "sctp"
			}
			return p, p.dst.IsValid()
		}
		a, err := netip.ParseAddr(parts[0])
		if err != nil {
			return p, false
		}
		// hash:ip (KUBE-IPVS-IPS): a port no Service has.
		p.dst, p.port = a, 1
		return p, true
	}
	a, err := netip.ParseAddr(parts[0])
	if err != nil {
		return p, false
	}
	proto, port, ok := strings.Cut(parts[1], ":")
	pn, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil {
		return p, false
	}
	p.dst, p.port, p.proto = a, uint16(pn), proto
	if len(parts) == 3 {
		s, ok := inside(parts[2])
		if !ok {
			return p, false
		}
		p.src = s
	} else if srcs := ag.allowedSources(a, p.port, proto); len(srcs) > 1 {
		p.src = srcs[1]
	}
	return p, true
}

// checkEntry sends the packet an entry describes: the first rule that
// names the set and is met must match, and the packet must meet the fate
// kube-proxy gives members of that set.
func (ag *agreement) checkEntry(e kpfixture.IPVSExpectation, entry string) {
	t := ag.t
	p, ok := ag.entryPacket(e.Set, entry)
	if !ok {
		t.Errorf("%s %s: ipset %s entry %s: no packet for it", e.Kind, e.Source, e.Set, entry)
		return
	}
	sim := ag.simulate(p.src, p.dst, p.port, p.proto)
	where := fmt.Sprintf("%s %s: ipset %s entry %s: %s %s -> %s", e.Kind, e.Source, e.Set, entry, p.proto, p.src, netip.AddrPortFrom(p.dst, p.port))
	// The rule naming the set matched — or, for an entry that is also in
	// the set's -LOCAL twin, the twin's rule, which kube-proxy puts first
	// and which returns before the set's own is met.
	names := []string{e.Set}
	if ag.inLocalTwin(e.Set, entry) {
		names = append(names, localTwin[e.Set])
	}
	named := false
	for _, r := range sim.Rules {
		for _, n := range names {
			if r.Table != "ipvs" && strings.Contains(r.Rule, "--match-set "+n+" ") && !strings.Contains(r.Rule, "! --match-set "+n+" ") {
				named = true
			}
		}
	}
	if !named {
		t.Errorf("%s: no rule naming the set matched (verdict %s, rules %v, notes %v)", where, sim.Verdict, sim.Rules, sim.Notes)
		return
	}
	switch e.Set {
	case "KUBE-LOOP-BACK":
		// Hairpin: a pod reaching itself through a Service is masqueraded.
		if !sim.Masquerade {
			t.Errorf("%s: not masqueraded", where)
		}
	case "KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-LOAD-BALANCER-SOURCE-IP":
		if sim.Verdict == trace.VerdictDrop {
			t.Errorf("%s: dropped although the source is in the ranges", where)
		}
		if out := client(p.dst.Is6()); ag.inFW(p) && !strings.Contains(entry, ","+out.String()) {
			if v := ag.simulate(out, p.dst, p.port, p.proto).Verdict; v != trace.VerdictDrop {
				t.Errorf("%s: from %s (outside the ranges) %s, want DROP", where, out, v)
			}
		}
	case "KUBE-HEALTH-CHECK-NODE-PORT":
		if sim.Verdict == trace.VerdictDrop || sim.Verdict == trace.VerdictReject {
			t.Errorf("%s: %s, want the health check accepted", where, sim.Verdict)
		}
	case "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-LOCAL-UDP", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-EXTERNAL-IP-LOCAL":
		// (Masquerading happens in POSTROUTING: only a packet IPVS sent
		// on shows it.)
		if sim.Verdict == trace.VerdictDNAT && sim.Masquerade {
			t.Errorf("%s: masqueraded, want the client's address kept (traffic policy Local)", where)
		}
	case "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-UDP", "KUBE-LOAD-BALANCER", "KUBE-EXTERNAL-IP":
		if sim.Verdict == trace.VerdictDNAT && !sim.Masquerade && !ag.inLocalTwin(e.Set, entry) {
			t.Errorf("%s: not masqueraded", where)
		}
	}
}

// inFW tells whether the packet's load balancer address has source ranges.
func (ag *agreement) inFW(p entryPacket) bool {
	s := ag.eng.sets.Set("KUBE-LOAD-BALANCER-FW")
	if s == nil {
		return false
	}
	ok, _ := s.Has(fmt.Sprintf("%s,%s:%d", p.dst, p.proto, p.port))
	return ok
}

// inLocalTwin tells whether the entry is also in the set's -LOCAL twin
// (traffic policy Local: not masqueraded).
func (ag *agreement) inLocalTwin(set, entry string) bool {
	s := ag.eng.sets.Set(localTwin[set])
	if s == nil {
		return false
	}
	ok, _ := s.Has(entry)
	return ok
}

// localTwin names the set kube-proxy keeps, next to each, for the entries
// with traffic policy Local.
var localTwin = map[string]string{"KUBE-NODE-PORT-TCP": "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP": "KUBE-NODE-PORT-LOCAL-UDP",
	"KUBE-NODE-PORT-SCTP-HASH": "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
	"KUBE-LOAD-BALANCER":       "KUBE-LOAD-BALANCER-LOCAL", "KUBE-EXTERNAL-IP": "KUBE-EXTERNAL-IP-LOCAL"}

// checkChain compares a chain's rules with upstream's (source, set, jump),
// in order, in whichever table holds the chain.
func (ag *agreement) checkChain(e kpfixture.IPVSExpectation) {
	t := ag.t
	d := ag.eng.ipt.dump(ag.fx.State.IPFamily == "IPv6")
	// kube-proxy's fake looks a chain up by name in every table and
	// lists their rules together (KUBE-NODE-PORT is in nat and filter).
	var rules []*iptables.Rule
	for _, table := range []string{"nat", "filter"} {
		if c := d.Chain(table, e.Chain); c != nil {
			rs, err := c.Rules()
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, rs...)
		}
	}
	if p := chainDiffers(rules, e.Rules); p != "" {
		t.Errorf("checkIptables %s: chain %s: %s", e.Source, e.Chain, p)
	}
}

func chainDiffers(rules []*iptables.Rule, want []kpfixture.IPVSChainRule) string {
	if len(rules) != len(want) {
		return fmt.Sprintf("%d rules, want %d", len(rules), len(want))
	}
	for i, w := range want {
		r := rules[i]
		if r.Target.Name != w.Jump {
			return fmt.Sprintf("rule %d jumps to %s, want %s", i, r.Target.Name, w.Jump)
		}
		if w.MatchSet != "" && !strings.Contains(r.Text, "--match-set "+w.MatchSet+" ") {
			return fmt.Sprintf("rule %d %q does not match set %s", i, r.Text, w.MatchSet)
		}
		if w.SourceAddress != "" && (r.Source == nil || r.Source.Prefix.String() != w.SourceAddress && r.Source.Prefix.Addr().String() != w.SourceAddress) {
			return fmt.Sprintf("rule %d %q has not source %s", i, r.Text, w.SourceAddress)
		}
	}
	return ""
}
