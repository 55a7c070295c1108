package trace

import (
	"net/netip"

	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// PathSchemaVersion names the JSON form of Path; bump it on any change that
// breaks readers.
const PathSchemaVersion = "trace-svc.path/v1"

// Path is the answer to "a request hits this Service — where does it go?":
// per node, for each way in (entry), what the node's rules do and which pods
// the request can reach. It is the one contract between trace (which builds
// it), render (which draws it) and the JSON/YAML output.
type Path struct {
	SchemaVersion string        `json:"schemaVersion"`
	Service       ServiceInfo   `json:"service"`
	Nodes         []NodePaths   `json:"nodes"`
	Findings      []Finding     `json:"findings"`
	Endpoints     []APIEndpoint `json:"endpoints"` // what the API says, per Service port
	// NodeZones maps node names to their topology.kubernetes.io/zone.
	NodeZones map[string]string `json:"nodeZones,omitempty"`
}

// ServiceInfo is what the path depends on in the Service object.
type ServiceInfo struct {
	Namespace                string        `json:"namespace"`
	Name                     string        `json:"name"`
	Type                     string        `json:"type"` // ClusterIP, NodePort, LoadBalancer, ExternalName
	Headless                 bool          `json:"headless,omitempty"`
	ClusterIPs               []netip.Addr  `json:"clusterIPs,omitempty"`
	ExternalIPs              []netip.Addr  `json:"externalIPs,omitempty"`
	LoadBalancerIngress      []LBIngress   `json:"loadBalancerIngress,omitempty"`
	LoadBalancerSourceRanges []string      `json:"loadBalancerSourceRanges,omitempty"`
	ExternalTrafficPolicy    string        `json:"externalTrafficPolicy,omitempty"`
	InternalTrafficPolicy    string        `json:"internalTrafficPolicy,omitempty"`
	SessionAffinity          string        `json:"sessionAffinity,omitempty"`
	HealthCheckNodePort      int32         `json:"healthCheckNodePort,omitempty"`
	Ports                    []ServicePort `json:"ports"`
}

// LBIngress is one status.loadBalancer.ingress entry.
type LBIngress struct {
	IP       netip.Addr `json:"ip,omitzero"`
	Hostname string     `json:"hostname,omitempty"`
	// IPMode is "VIP" (the node sees the LB IP as destination) or "Proxy"
	// (the LB connects to the node; kube-proxy does not capture the IP).
	IPMode string `json:"ipMode,omitempty"`
}

// ServicePort is one port of the Service.
type ServicePort struct {
	Name       string `json:"name,omitempty"`
	Protocol   string `json:"protocol"` // tcp, udp, sctp
	Port       uint16 `json:"port"`
	NodePort   uint16 `json:"nodePort,omitempty"`
	TargetPort string `json:"targetPort,omitempty"`
}

// APIEndpoint is one endpoint of one Service port as the EndpointSlices list it.
type APIEndpoint struct {
	Port        string     `json:"servicePort"` // the Service port's name ("" for an unnamed single port)
	IP          netip.Addr `json:"ip"`
	TargetPort  uint16     `json:"port"`
	Protocol    string     `json:"protocol"`
	Pod         *PodRef    `json:"pod,omitempty"`
	Node        string     `json:"node,omitempty"`
	Zone        string     `json:"zone,omitempty"`
	Ready       bool       `json:"ready"`
	Serving     bool       `json:"serving"`
	Terminating bool       `json:"terminating"`
	// ForZones and ForNodes are the EndpointSlice's topology hints
	// (trafficDistribution PreferSameZone / PreferSameNode).
	ForZones []string `json:"forZones,omitempty"`
	ForNodes []string `json:"forNodes,omitempty"`
}

// PodRef names the pod behind an endpoint.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
}

// NodePaths is what one node does with each entry.
type NodePaths struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
	// ProxyMode is iptables, nftables, ipvs or unknown; RulesetFormat what
	// the dump was (iptables, nft, nft-json).
	ProxyMode     string `json:"proxyMode"`
	RulesetFormat string `json:"rulesetFormat,omitempty"`
	// Error is set when the node's rules could not be collected or read;
	// Paths is then empty.
	Error string      `json:"error,omitempty"`
	Paths []EntryPath `json:"paths"`
	// Why, when set, says once for the node why none of its paths reaches
	// a pod: the reason every path shares (kube-proxy's rules leave every
	// entry alone); the paths' own Why is then empty.
	Why string `json:"why,omitempty"`
	// Notes are the assumptions two or more of the node's paths share
	// (such as the unknown incoming interface), said once for the node
	// and left out of those paths' Notes. A note every traced node shares
	// is a Convention finding instead.
	Notes []string `json:"notes,omitempty"`
	// ChainInfo says what part each chain named in Paths plays (hook,
	// service, endpoint, …) and its short name, as the node's engine
	// classifies it.
	ChainInfo map[string]ChainInfo `json:"chainInfo,omitempty"`
	// NetworkPlugins are the network plugins the node shows signs of
	// (interfaces, routes, chain and table names), with the signs.
	NetworkPlugins []routes.Plugin `json:"networkPlugins,omitempty"`
	// ServiceDataplane is an eBPF service load balancer on the node
	// (Cilium, Calico eBPF). When it replaces kube-proxy, the node's
	// Services are served by it alone and Paths is empty.
	ServiceDataplane *routes.ServiceDataplane `json:"serviceDataplane,omitempty"`
	// RoutesFrom says where the node's routes came from: "ip" (ip route,
	// ip rule, ip link), "proc" (/proc/net and /sys, without ip); empty
	// when no route sections were collected or saved, so no endpoint has
	// a route.
	RoutesFrom string `json:"routesFrom,omitempty"`
	// Observed says where the observed counts came from; nil when nothing
	// was observed on the node.
	Observed *NodeObserved `json:"observed,omitempty"`
}

// Entry is one way a request reaches the Service, as a packet.
type Entry struct {
	// Kind is LoadBalancer, ExternalIP, NodePort or ClusterIP.
	Kind     string     `json:"kind"`
	Address  netip.Addr `json:"address"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"`
	// ServicePort names the Service port the entry belongs to.
	ServicePort string `json:"servicePort,omitempty"`
	// Source is the client address simulated, and From says what it stands
	// for: "external client", "pod on this node", "this node".
	Source netip.Addr `json:"source"`
	From   string     `json:"from"`
}

// EntryPath is the engine's walk for one entry on one node.
type EntryPath struct {
	Entry      Entry   `json:"entry"`
	Verdict    Verdict `json:"verdict"`
	Masquerade bool    `json:"masquerade"`
	// Chains are the chains the packet went through, in walk order, each once.
	Chains    []string       `json:"chains"`
	Endpoints []PathEndpoint `json:"endpoints"`
	// DecidedBy is the rule that dropped or rejected the packet.
	DecidedBy *RuleRef `json:"decidedBy,omitempty"`
	// Why explains a DROP, REJECT or NONE in words (no endpoints, no local
	// endpoints, source range, ...).
	Why   string    `json:"why,omitempty"`
	Rules []RuleRef `json:"rules"`
	// Notes are the assumptions only this path of its node made; those
	// several share are the node's Notes.
	Notes []string `json:"notes,omitempty"`
	// Affinity lists the session-affinity checks on the way: a new client
	// has no entry; a returning one within the timeout is pinned to the
	// endpoint named there.
	Affinity []AffinityRule `json:"affinity,omitempty"`
	// IPVS is the IPVS virtual server that chose the endpoints
	// (kube-proxy's IPVS mode): its scheduler and real servers with their
	// weights and shares.
	IPVS *IPVSHop `json:"ipvs,omitempty"`
	// Observed sums the node's connections to the entry's address, port
	// and protocol; nil when no connection table was read.
	Observed *PathObserved `json:"observed,omitempty"`
}

// EndpointsInRules returns the endpoints the node's rules send the packet
// to, leaving out those only the API lists (drift).
func (ep EntryPath) EndpointsInRules() []PathEndpoint {
	var out []PathEndpoint
	for _, e := range ep.Endpoints {
		if e.InRules {
			out = append(out, e)
		}
	}
	return out
}

// PathEndpoint is one endpoint a path can reach, joined with the API's view.
type PathEndpoint struct {
	IP          netip.Addr `json:"ip"`
	Port        uint16     `json:"port"`
	Probability float64    `json:"probability"`
	Masquerade  bool       `json:"masquerade"`
	Pod         *PodRef    `json:"pod,omitempty"`
	// SameNode: the pod runs on the node that received the packet (no hop
	// across the pod network).
	SameNode    bool `json:"sameNode"`
	Ready       bool `json:"ready"`
	Serving     bool `json:"serving"`
	Terminating bool `json:"terminating"`
	// InRules is true for endpoints the node's rules DNAT to; InAPI for
	// endpoints the EndpointSlices list. An endpoint with only one of them
	// is drift.
	InRules bool `json:"inRules"`
	InAPI   bool `json:"inAPI"`
	// Chain is the endpoint chain (KUBE-SEP-*, endpoint-*) or service chain
	// whose DNAT chose this endpoint; empty when only the API lists it.
	Chain string `json:"chain,omitempty"`
	// Route is the last leg: what the node does with the packet after
	// DNAT. Nil when the node's routes were not collected.
	Route *EndpointRoute `json:"route,omitempty"`
	// Observed is what the node's kernel did, next to the prediction: its
	// connection-tracking entries to this endpoint through this entry, and
	// the endpoint's DNAT rule counter. Nil when nothing was observed
	// (--observe=false, or neither a connection table nor rule counters).
	Observed *Observed `json:"observed,omitempty"`
}

// Observed is what a node's kernel recorded for one endpoint of one path.
type Observed struct {
	// Connections are the node's conntrack entries whose original
	// destination is the entry's address, port and protocol and whose
	// reply comes from this endpoint: live connections the kernel sent
	// there (and, for a while, closed ones: TIME_WAIT, UDP flows until
	// they time out). Absent when no connection table was read.
	Connections *int `json:"connections,omitempty"`
	// States counts those connections by state (TCP's ESTABLISHED,
	// TIME_WAIT, …; for UDP: UNREPLIED, REPLIED, ASSURED).
	States map[string]int `json:"states,omitempty"`
	// RuleHits is the packet counter of the endpoint's DNAT rule
	// (iptables-save -c, iptables mode only): a nat rule sees only a
	// connection's first packet, so it counts the new connections sent to
	// this endpoint since kube-proxy last rewrote the rule — through every
	// entry of the Service port, as they share the endpoint's chain.
	RuleHits *uint64 `json:"ruleHits,omitempty"`
	// Clients are the client addresses of those connections, most first
	// (--show-clients only); OtherClients counts connections of clients
	// beyond the listed ones.
	Clients      []ObservedClient `json:"clients,omitempty"`
	OtherClients int              `json:"otherClients,omitempty"`
}

// ObservedClient is one client address and its connections.
type ObservedClient struct {
	Addr        netip.Addr `json:"addr"`
	Connections int        `json:"connections"`
}

// PathObserved is what a node's connection table holds for one entry's
// address, port and protocol, over every address the kernel sent it to.
type PathObserved struct {
	// Connections is every entry to the address: to the path's endpoints,
	// to addresses that are not endpoints (Stale), and not translated.
	Connections int `json:"connections"`
	// Stale counts connections whose reply comes from an address that is
	// no longer an endpoint of the Service (finding StaleConntrackEntries).
	Stale int `json:"stale,omitempty"`
	// Untranslated counts connections the kernel did not DNAT (their
	// reply comes from the entry's address itself).
	Untranslated int `json:"untranslated,omitempty"`
}

// NodeObserved says what a node's observations were read from.
type NodeObserved struct {
	// Tables name the connection tables read; Entries is how many entries
	// they held in all (of every Service). IPVS: the counts are IPVS's
	// connection table's, the node gave no conntrack table.
	Tables  []string `json:"tables,omitempty"`
	Entries int      `json:"entries"`
	IPVS    bool     `json:"ipvs,omitempty"`
	// RuleCounters: the node's rules carried counters (iptables-save -c).
	RuleCounters bool `json:"ruleCounters,omitempty"`
	// ConntrackCount and ConntrackMax are the kernel's conntrack table
	// fill and size, when collected (new connections are dropped when
	// the table is full).
	ConntrackCount int64 `json:"conntrackCount,omitempty"`
	ConntrackMax   int64 `json:"conntrackMax,omitempty"`
}

// EndpointRoute is the node's route to an endpoint, looked up in the node's
// routing tables and policy rules the way the kernel does for the packet
// after DNAT: {verdict, dev, via, kind, node, …} (routes.Hop), and the
// packet it was looked up for.
type EndpointRoute struct {
	routes.Hop
	// Src and IIF are the packet's source and the interface it came in on,
	// as the lookup took them: the client (or pod) address and the device
	// the node routes that address through. Both are absent for a packet
	// the node sends itself, and when the incoming interface cannot be
	// told (the lookup is then that of a packet the node sends).
	Src netip.Addr `json:"src,omitzero"`
	IIF string     `json:"iif,omitempty"`
	// Mark is the packet's firewall mark at the routing decision:
	// kube-proxy's masquerade mark (0x4000) when it masquerades.
	Mark uint32 `json:"mark,omitempty"`
	// Notes say what the lookup assumed.
	Notes []string `json:"notes,omitempty"`
}

// Finding is something worth an operator's attention.
type Finding struct {
	Severity Severity `json:"severity"` // info, warning, error
	Code     Code     `json:"code"`     // stable identifier, e.g. EndpointMissingFromRules
	Message  string   `json:"message"`
	Node     string   `json:"node,omitempty"`
}
