package ruleset

import "github.com/trace-svc/kubectl-trace-svc/trace"

// Engine evaluates one kind of dataplane over the sources it was built from.
// Each engine lives in its own package (trace/iptables, trace/nftables, …);
// an adapter in this package makes it an Engine.
type Engine interface {
	// Name names the engine: iptables, nftables.
	Name() string
	// Mode is the kube-proxy mode whose rules the sources hold, "" when
	// they hold none of kube-proxy's.
	Mode() string
	// Covers tells whether the engine has rules for the IP family.
	Covers(v6 bool) bool
	// KubeProxy tells whether the engine holds kube-proxy's rules for the
	// IP family (a dump can cover a family with nothing of kube-proxy's:
	// iptables-nft's empty tables on a node in nftables mode).
	KubeProxy(v6 bool) bool
	// Simulate walks the first packet of a new connection through the
	// engine's rules alone (Dataplane.Simulate walks every engine's
	// HookChains together; this is for the engine that covers no family
	// of the packet to explain what is missing).
	Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error)
	// HookChains are the engine's base chains for the IP family as the
	// kernel registers them (hook, priority, nat or not), each able to
	// walk a branch through itself; Dataplane.Simulate runs those of
	// every engine in priority order. An engine with a stage that is no
	// netfilter base chain registers it the way the kernel does (IPVS:
	// a chain at the input hook, priority NF_IP_PRI_NAT_SRC-2, whose Run
	// DNATs). nil from an engine that covers the family makes that
	// engine simulate alone.
	HookChains(v6 bool) []trace.HookChain
	// Programmed tells whether kube-proxy's object of kind (a chain, a map
	// element) exists for the Service port in the family.
	Programmed(kind ObjectKind, svc trace.ServiceInfo, sp trace.ServicePort, v6 bool) Check
	// ChainInfo classifies a chain name this engine reports; ok is false
	// for names it does not know.
	ChainInfo(name string) (info trace.ChainInfo, ok bool)
	// Names lists the names the sources declare (every chain, table and
	// set, kube-proxy's or not), from which the network plugins on the
	// node are told.
	Names() Names
}

// Names are what a node's rules are called: plain names, so that telling
// network plugins apart needs none of the engines. kube-proxy's own
// per-Service and per-endpoint chains are left out (a big cluster has tens
// of thousands; they tell nothing about the plugins).
type Names struct {
	// Chains are iptables chain names, of every table and family; an
	// nftables ruleset's chains too (iptables-nft's tables show there).
	Chains []string
	// NFTTables are nftables tables as "FAMILY NAME".
	NFTTables []string
	// IPSets are ipset names.
	IPSets []string
}

// mergeNames returns the names of every list, each once, in first-seen order.
func mergeNames(lists ...Names) Names {
	var out Names
	seen := map[string]bool{}
	for _, l := range lists {
		for _, x := range []struct {
			dst *[]string
			src []string
			key string
		}{{&out.Chains, l.Chains, "c "}, {&out.NFTTables, l.NFTTables, "t "}, {&out.IPSets, l.IPSets, "s "}} {
			for _, name := range x.src {
				if !seen[x.key+name] {
					seen[x.key+name] = true
					*x.dst = append(*x.dst, name)
				}
			}
		}
	}
	return out
}

// ObjectKind is one of the objects kube-proxy writes per Service port,
// whatever its mode calls them.
type ObjectKind string

const (
	// ObjectService chooses an endpoint: KUBE-SVC-*, service-*.
	ObjectService ObjectKind = "service"
	// ObjectExternal takes traffic from outside the cluster: KUBE-EXT-*,
	// external-*.
	ObjectExternal ObjectKind = "external"
	// ObjectFirewall enforces loadBalancerSourceRanges: KUBE-FW-*,
	// firewall-*.
	ObjectFirewall ObjectKind = "firewall"
	// ObjectIPSetEntry is the Service port's cluster IP entry in the ipset
	// kube-proxy's IPVS mode accepts and masquerades by (KUBE-CLUSTER-IP,
	// KUBE-6-CLUSTER-IP for IPv6); only the IPVS engine knows it.
	ObjectIPSetEntry ObjectKind = "ipset-entry"
	// ObjectAddressBound is the cluster IP on kube-ipvs0, where kube-proxy's
	// IPVS mode binds every Service address so that the node takes its
	// packets; told from the node's interface section (ip addr), by the
	// Dataplane rather than an engine.
	ObjectAddressBound ObjectKind = "address-bound"
)

// Check is an engine's answer about one object.
type Check struct {
	// Applicable is false when the engine cannot tell: no rules of the
	// family, or a kube-proxy version that never writes such an object.
	Applicable bool
	// Name is the object looked for (a chain name, a map key).
	Name  string
	Found bool
}
