package ruleset

import (
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
)

// nftEngine is kube-proxy's nftables mode: one nft list ruleset, whose
// tables "ip kube-proxy" and "ip6 kube-proxy" hold the rules.
type nftEngine struct {
	rs *nftables.Ruleset
	// source names the input the ruleset was read from, for warnings.
	source string
}

func (e *nftEngine) Name() string { return "nftables" }

func (e *nftEngine) Mode() string {
	if e.Covers(false) || e.Covers(true) {
		return trace.ModeNFTables
	}
	return ""
}

// kubeProxyTables are the tables of kube-proxy's that see the family.
func (e *nftEngine) kubeProxyTables(v6 bool) []*nftables.Table {
	fam := "ip"
	if v6 {
		fam = "ip6"
	}
	var out []*nftables.Table
	for _, t := range e.rs.Tables {
		if t.Name == nftables.KubeProxyTable && (t.Family == fam || t.Family == "inet") {
			out = append(out, t)
		}
	}
	return out
}

// Covers: only a kube-proxy table makes the ruleset decide a family; other
// tables alone (iptables-nft's, a host firewall) leave it to another source.
func (e *nftEngine) Covers(v6 bool) bool { return len(e.kubeProxyTables(v6)) > 0 }

// KubeProxy: only kube-proxy's tables make the ruleset cover a family.
func (e *nftEngine) KubeProxy(v6 bool) bool { return e.Covers(v6) }

func (e *nftEngine) Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	return nftables.Simulate(e.rs, pkt, nftables.Options{WalkOptions: trace.WalkOptions{LocalAddrs: opts.LocalAddrs, AffinityEndpoint: opts.AffinityEndpoint}})
}

func (e *nftEngine) Programmed(kind ObjectKind, svc trace.ServiceInfo, sp trace.ServicePort, v6 bool) Check {
	prefix := map[ObjectKind]string{ObjectService: nftables.PrefixService, ObjectExternal: nftables.PrefixExternal, ObjectFirewall: nftables.PrefixFirewall}[kind]
	tables := e.kubeProxyTables(v6)
	if prefix == "" || len(tables) == 0 {
		return Check{}
	}
	c := Check{Applicable: true, Name: prefix + nftables.ServiceChainBase(svc.Namespace, svc.Name, sp.Protocol, sp.Name)}
	for _, t := range tables {
		c.Found = c.Found || t.Chains[c.Name] != nil
	}
	return c
}

// nftKinds maps kube-proxy's fixed chain names to their part; base chains
// are hooks (or postrouting) whatever their name.
var nftKinds = map[string]trace.ChainKind{
	"services":            trace.ChainDispatch,
	"mark-for-masquerade": trace.ChainMark,
	"masquerading":        trace.ChainPostrouting,
}

// nftHashed are the per-Service and per-endpoint chain prefixes, each
// followed by an 8-character hash, a dash and the readable rest.
var nftHashed = []struct {
	prefix string
	kind   trace.ChainKind
}{
	{nftables.PrefixService, trace.ChainService},
	{nftables.PrefixLocal, trace.ChainService},
	{nftables.PrefixExternal, trace.ChainExternal},
	{nftables.PrefixFirewall, trace.ChainFirewall},
	{nftables.PrefixEndpoint, trace.ChainEndpoint},
}

func (e *nftEngine) ChainInfo(name string) (trace.ChainInfo, bool) {
	for _, h := range nftHashed {
		rest, ok := strings.CutPrefix(name, h.prefix)
		if ok && len(rest) > 9 && rest[8] == '-' && isBase32(rest[:8]) {
			return trace.ChainInfo{Kind: h.kind, Short: h.prefix + rest[:8] + "…"}, true
		}
	}
	if k, ok := nftKinds[name]; ok {
		return trace.ChainInfo{Kind: k}, true
	}
	for _, fam := range []bool{false, true} {
		for _, t := range e.kubeProxyTables(fam) {
			c := t.Chains[name]
			if c == nil {
				continue
			}
			switch {
			case c.Base && c.Hook == "postrouting":
				return trace.ChainInfo{Kind: trace.ChainPostrouting}, true
			case c.Base:
				return trace.ChainInfo{Kind: trace.ChainHook}, true
			default:
				// firewall-check, reject-chain, *-endpoints-check, …
				return trace.ChainInfo{Kind: trace.ChainFilter}, true
			}
		}
	}
	return trace.ChainInfo{}, false
}

// Names are the ruleset's tables, and the chains of every table but
// kube-proxy's (iptables-nft's tables show here with their chains).
func (e *nftEngine) Names() Names {
	var n Names
	seen := map[string]bool{}
	for _, t := range e.rs.Tables {
		n.NFTTables = append(n.NFTTables, t.Family+" "+t.Name)
		if t.Name == nftables.KubeProxyTable {
			continue
		}
		for _, c := range t.ChainOrder {
			if !seen[c] {
				seen[c] = true
				n.Chains = append(n.Chains, c)
			}
		}
	}
	return n
}

// HookChains are the base chains of every table of the family (ip or ip6,
// and inet) at the IP hooks, kube-proxy's and everyone else's.
func (e *nftEngine) HookChains(v6 bool) []trace.HookChain {
	return nftables.HookChains(e.familyTables(v6))
}

func (e *nftEngine) familyTables(v6 bool) []*nftables.Table {
	fam := "ip"
	if v6 {
		fam = "ip6"
	}
	var out []*nftables.Table
	for _, t := range e.rs.Tables {
		if t.Family == fam || t.Family == "inet" {
			out = append(out, t)
		}
	}
	return out
}

// iptablesNFTTables are the tables iptables-nft writes in the ip and ip6
// families: nft list ruleset shows them with the iptables rules
// translated, and an iptables-nft-save dump of the same node holds them in
// the form the iptables engine reads.
var iptablesNFTTables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// isIPTablesNFTTable tells whether a table of nft list ruleset is one of
// iptables-nft's.
func isIPTablesNFTTable(family, name string) bool {
	return (family == "ip" || family == "ip6") && iptablesNFTTables[name]
}
