package ruleset

import (
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

// iptablesEngine is kube-proxy's iptables mode: iptables-save and
// ip6tables-save output, one dump per family (the first of a family decides;
// a later one of the same family is kept for nothing but its warnings).
type iptablesEngine struct {
	v4, v6 *iptables.Dump
	// all are every dump given, for their names.
	all []*iptables.Dump
	// newLayout caches, per dump, whether kube-proxy ≥1.24 wrote it.
	newLayout map[*iptables.Dump]bool
	// sets are the node's ipsets, for -m set (Calico and other network
	// plugins use them too); nil when none were given.
	sets *ipset.Dump
}

func (e *iptablesEngine) add(d *iptables.Dump) {
	e.all = append(e.all, d)
	slot := &e.v4
	if d.IPv6() {
		slot = &e.v6
	}
	// Prefer the first dump that holds kube-proxy's rules, else the first.
	if *slot == nil || !hasKubeServices(*slot) && hasKubeServices(d) {
		*slot = d
	}
}

func (e *iptablesEngine) dump(v6 bool) *iptables.Dump {
	if v6 {
		return e.v6
	}
	return e.v4
}

func (e *iptablesEngine) Name() string { return "iptables" }

// Mode: kube-proxy's iptables mode always creates nat KUBE-SERVICES.
func (e *iptablesEngine) Mode() string {
	for _, d := range []*iptables.Dump{e.v4, e.v6} {
		if d != nil && hasKubeServices(d) {
			return trace.ModeIPTables
		}
	}
	return ""
}

func hasKubeServices(d *iptables.Dump) bool { return d.Chain("nat", "KUBE-SERVICES") != nil }

// holdsKubeProxy tells whether any table of the dump has a chain of
// kube-proxy's (every mode's start with KUBE-): a dump without one is
// another tool's, whose breakage must not stop the trace.
func holdsKubeProxy(d *iptables.Dump) bool {
	for _, t := range d.Tables() {
		for _, c := range t.Chains() {
			if strings.HasPrefix(c.Name, "KUBE-") {
				return true
			}
		}
	}
	return false
}

func (e *iptablesEngine) Covers(v6 bool) bool { return e.dump(v6) != nil }

func (e *iptablesEngine) KubeProxy(v6 bool) bool {
	d := e.dump(v6)
	return d != nil && hasKubeServices(d)
}

func (e *iptablesEngine) Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	v6 := pkt.Destination.Unmap().Is6()
	d := e.dump(v6)
	if d == nil {
		// The other family's dump says which tool's output is missing.
		d = e.dump(!v6)
	}
	return iptables.SimulateWith(d, pkt, iptables.Options{LocalAddrs: opts.LocalAddrs, AffinityEndpoint: opts.AffinityEndpoint}, iptables.Extensions{Sets: e.sets})
}

// Programmed looks the object's chain up by kube-proxy's hash. kube-proxy
// ≤1.23 wrote no external chain and sent every load balancer through its
// firewall chain, so only its service chain can be checked.
func (e *iptablesEngine) Programmed(kind ObjectKind, svc trace.ServiceInfo, sp trace.ServicePort, v6 bool) Check {
	d := e.dump(v6)
	if d == nil {
		return Check{}
	}
	prefix := map[ObjectKind]string{ObjectService: iptables.PrefixService, ObjectExternal: iptables.PrefixExternal, ObjectFirewall: iptables.PrefixFirewall}[kind]
	if prefix == "" || kind != ObjectService && !e.isNewLayout(d) {
		return Check{}
	}
	name := iptables.ServiceChain(prefix, iptables.ServicePortName(svc.Namespace, svc.Name, sp.Name), sp.Protocol)
	return Check{Applicable: true, Name: name, Found: d.Chain("nat", name) != nil}
}

// isNewLayout tells a dump written by kube-proxy ≥1.24 (KUBE-EXT-* chains,
// KUBE-PROXY-FIREWALL) from one by an older version; the answer may walk
// every nat chain, so it is asked once per dump.
func (e *iptablesEngine) isNewLayout(d *iptables.Dump) bool {
	if v, ok := e.newLayout[d]; ok {
		return v
	}
	v := d.Chain("filter", "KUBE-PROXY-FIREWALL") != nil
	if nat := d.Table("nat"); !v && nat != nil {
		for _, c := range nat.Chains() {
			if strings.HasPrefix(c.Name, iptables.PrefixExternal) {
				v = true
				break
			}
		}
	}
	if e.newLayout == nil {
		e.newLayout = map[*iptables.Dump]bool{}
	}
	e.newLayout[d] = v
	return v
}

// iptablesKinds maps kube-proxy's fixed chain names to their part.
var iptablesKinds = map[string]trace.ChainKind{
	"PREROUTING": trace.ChainHook, "INPUT": trace.ChainHook, "FORWARD": trace.ChainHook, "OUTPUT": trace.ChainHook,
	"POSTROUTING":      trace.ChainPostrouting,
	"KUBE-POSTROUTING": trace.ChainPostrouting,
	"KUBE-SERVICES":    trace.ChainDispatch, "KUBE-NODEPORTS": trace.ChainDispatch,
	"KUBE-MARK-MASQ":         trace.ChainMark,
	"KUBE-MARK-DROP":         trace.ChainFilter,
	"KUBE-PROXY-FIREWALL":    trace.ChainFilter,
	"KUBE-FIREWALL":          trace.ChainFilter,
	"KUBE-FORWARD":           trace.ChainFilter,
	"KUBE-EXTERNAL-SERVICES": trace.ChainFilter,
	"KUBE-NODE-PORT":         trace.ChainFilter,
}

// iptablesHashed are the per-Service and per-endpoint chain prefixes, each
// followed by kube-proxy's 16-character hash.
var iptablesHashed = []struct {
	prefix string
	kind   trace.ChainKind
}{
	{iptables.PrefixService, trace.ChainService},
	{iptables.PrefixServiceLocal, trace.ChainService},
	{iptables.PrefixExternal, trace.ChainExternal},
	{iptables.PrefixExternalLocal, trace.ChainExternal},
	{iptables.PrefixFirewall, trace.ChainFirewall},
	{iptables.PrefixEndpoint, trace.ChainEndpoint},
}

func (e *iptablesEngine) ChainInfo(name string) (trace.ChainInfo, bool) {
	if k, ok := iptablesKinds[name]; ok {
		return trace.ChainInfo{Kind: k}, true
	}
	for _, h := range iptablesHashed {
		if hash, ok := strings.CutPrefix(name, h.prefix); ok && len(hash) == 16 && isBase32(hash) {
			return trace.ChainInfo{Kind: h.kind, Short: h.prefix + hash[:8] + "…"}, true
		}
	}
	if strings.HasPrefix(name, "KUBE-") {
		return trace.ChainInfo{Kind: trace.ChainOther}, true
	}
	return trace.ChainInfo{}, false
}

// isBase32 tells whether s is upper-case RFC 4648 base32 without padding,
// the alphabet of kube-proxy's chain hashes.
func isBase32(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Names are the chains of every dump (both families, every table), without
// kube-proxy's hashed per-Service and per-endpoint chains.
func (e *iptablesEngine) Names() Names {
	n := Names{IPSets: setNames(e.sets)}
	seen := map[string]bool{}
	for _, d := range e.all {
		for _, t := range d.Tables() {
			for _, c := range t.Chains() {
				if seen[c.Name] || isHashedChain(c.Name) {
					continue
				}
				name := strings.Clone(c.Name)
				seen[name] = true
				n.Chains = append(n.Chains, name)
			}
		}
	}
	return n
}

// isHashedChain tells kube-proxy's per-Service and per-endpoint chains
// (KUBE-SVC-XXXXXXXXXXXXXXXX, …) by their prefix and hash.
func isHashedChain(name string) bool {
	for _, h := range iptablesHashed {
		if hash, ok := strings.CutPrefix(name, h.prefix); ok && len(hash) == 16 && isBase32(hash) {
			return true
		}
	}
	return false
}

// HookChains are the built-in chains of every dump of the family, one dump
// per backend (iptables-legacy and iptables-nft both register theirs with
// the kernel; a second dump of the same backend is the same tables
// again: the one with kube-proxy's rules, else the first, counts).
func (e *iptablesEngine) HookChains(v6 bool) []trace.HookChain {
	return e.hookChainsWith(v6, iptables.Extensions{Sets: e.sets})
}

// hookChainsWith is HookChains with the given ipsets and IPVS table (which
// registers once, not per dump).
func (e *iptablesEngine) hookChainsWith(v6 bool, ext iptables.Extensions) []trace.HookChain {
	var picked []*iptables.Dump
	for _, d := range e.all {
		if d.IPv6() != v6 {
			continue
		}
		i := slices.IndexFunc(picked, func(p *iptables.Dump) bool { return p.BackendName() == d.BackendName() })
		switch {
		case i < 0:
			picked = append(picked, d)
		case !hasKubeServices(picked[i]) && hasKubeServices(d):
			picked[i] = d
		}
	}
	var out []trace.HookChain
	perDump := iptables.Extensions{Sets: ext.Sets}
	for _, d := range picked {
		cs := iptables.HookChainsWith(d, perDump)
		if !holdsKubeProxy(d) {
			for i := range cs {
				cs[i].Optional = true
			}
		}
		out = append(out, cs...)
	}
	if ext.IPVS != nil && len(out) > 0 {
		out = append(out, iptables.IPVSHookChain(ext.IPVS))
	}
	return out
}

// hasNFTBackend tells whether a dump of the family came from iptables-nft:
// its tables then also show in nft list ruleset, and are read from here.
func (e *iptablesEngine) hasNFTBackend(v6 bool) bool {
	for _, d := range e.all {
		if d.IPv6() == v6 && d.Backend() == "nf_tables" {
			return true
		}
	}
	return false
}
