package trace

// Severity orders findings: info < warning < error. --fail-on and every
// renderer compare severities through Rank, so the order is written once.
type Severity string

const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// Severities lists every severity from least to most severe.
var Severities = []Severity{SeverityInfo, SeverityWarning, SeverityError}

// Rank is the severity's place in Severities (0 for info); an unknown
// severity ranks below info.
func (s Severity) Rank() int {
	for i, v := range Severities {
		if v == s {
			return i
		}
	}
	return -1
}

// AtLeast tells whether s is as severe as other or more.
func (s Severity) AtLeast(other Severity) bool { return s.Rank() >= other.Rank() }

// ParseSeverity reads a severity name; ok is false for anything else.
func ParseSeverity(s string) (Severity, bool) {
	for _, v := range Severities {
		if string(v) == s {
			return v, true
		}
	}
	return "", false
}

// Code names a finding or warning for scripts: --fail-on, JSON readers,
// alerting. Codes are public and stable; a message's wording is not. Every
// code is listed in docs/path-schema.md.
type Code string

// Findings about the Service and its endpoints.
const (
	CodeNoEndpoints  Code = "NoEndpoints"
	CodeExternalName Code = "ExternalName"
	CodeHeadless     Code = "Headless"
)

// Findings about a node's dataplane against the API (drift).
const (
	CodeNodeNotCollected         Code = "NodeNotCollected"
	CodeStaleEndpointInRules     Code = "StaleEndpointInRules"
	CodeEndpointMissingFromRules Code = "EndpointMissingFromRules"
	CodeServiceChainMissing      Code = "ServiceChainMissing"
	CodeExternalChainMissing     Code = "ExternalChainMissing"
	CodeFirewallChainMissing     Code = "FirewallChainMissing"
	CodeUnevenProbabilities      Code = "UnevenProbabilities"
	CodeNodesDisagree            Code = "NodesDisagree"
	CodeProxyModesDiffer         Code = "ProxyModesDiffer"
	// IPVS mode's drift: no virtual server for a Service port with ready
	// endpoints (on its cluster IP, an external IP or a load balancer IP);
	// a real server taking new connections that no
	// EndpointSlice lists; a ready endpoint that is no real server of its
	// virtual server.
	CodeVirtualServerMissing  Code = "VirtualServerMissing"
	CodeRealServerNotEndpoint Code = "RealServerNotEndpoint"
	CodeRealServerMissing     Code = "RealServerMissing"
	// CodeIPSetEntryMissing: IPVS mode: a Service port's cluster IP is
	// not in KUBE-CLUSTER-IP (an external IP not in KUBE-EXTERNAL-IP, a
	// load balancer IP not in KUBE-LOAD-BALANCER), so kube-proxy's rules
	// neither accept nor masquerade its traffic as a Service's.
	CodeIPSetEntryMissing Code = "IPSetEntryMissing"
	// CodeServiceAddressUnbound: IPVS mode: a Service's cluster, external
	// or load balancer IP is not on kube-ipvs0, so the node does not take its packets as its own and
	// IPVS never sees them.
	CodeServiceAddressUnbound Code = "ServiceAddressUnbound"
)

// Findings about the last leg: the node's route to an endpoint after DNAT,
// and the dataplanes other than kube-proxy's on the node.
const (
	// CodeRouteMissing: the node has no route to an endpoint its rules
	// DNAT to (an error for a ready endpoint).
	CodeRouteMissing Code = "RouteMissing"
	// CodeRouteDrops: the node's route (or a policy rule) to an endpoint
	// is a blackhole, unreachable or prohibit.
	CodeRouteDrops Code = "RouteDrops"
	// CodeRouteLeavesNode: an endpoint the API puts on this node is
	// routed off it.
	CodeRouteLeavesNode Code = "RouteLeavesNode"
	// CodeRouteToWrongNode: the route leads to a different node than the
	// one the API says runs the endpoint.
	CodeRouteToWrongNode Code = "RouteToWrongNode"
	// CodeRoutesAssumed: the node gave less than ip would (no policy
	// rules); the routes say what was assumed.
	CodeRoutesAssumed Code = "RoutesAssumed"
	// CodeKubeProxyReplaced: the node has no kube-proxy rules and an eBPF
	// service dataplane (Cilium's kube-proxy replacement, Calico eBPF)
	// serves its Services; the finding says what to run instead.
	CodeKubeProxyReplaced Code = "KubeProxyReplaced"
	// CodeServiceDataplaneBeside: an eBPF service dataplane runs next to
	// kube-proxy's rules, and may take Service traffic before them.
	CodeServiceDataplaneBeside Code = "ServiceDataplaneBeside"
	// CodeForeignTableDecides: a table kube-proxy did not write (Docker's,
	// a host firewall's, a network plugin's) drops or rejects a Service's
	// traffic, or NATs it before kube-proxy's rules; the finding names the
	// table and the rule or policy.
	CodeForeignTableDecides Code = "ForeignTableDecides"
)

// Findings from what a node's kernel observed (its connection table and
// rule counters), next to what its rules predict.
const (
	// CodeStaleConntrackEntries: conntrack entries for a Service address
	// whose reply comes from an address that is no longer an endpoint —
	// the kernel keeps sending those flows there (a UDP client that keeps
	// its socket, DNS, is black-holed until the entry is deleted).
	CodeStaleConntrackEntries Code = "StaleConntrackEntries"
	// CodeTrafficWhereRulesDrop: a node holds connections to an entry its
	// rules drop or reject (connections from before the rules changed, or
	// a prediction that misses something).
	CodeTrafficWhereRulesDrop Code = "TrafficWhereRulesDrop"
	// CodeObservedSplitDiffers: over enough connections, the endpoints'
	// observed shares are far from the predicted ones (info: long-lived
	// connections, session affinity, few clients).
	CodeObservedSplitDiffers Code = "ObservedSplitDiffers"
	// CodeConntrackTableFull: the node's conntrack table is (nearly) full;
	// the kernel drops new connections when it is.
	CodeConntrackTableFull Code = "ConntrackTableFull"
)

// Security findings.
const (
	CodeLoadBalancerOpen         Code = "LoadBalancerOpen"
	CodeSourceRangesNotEnforced  Code = "SourceRangesNotEnforced"
	CodeLocalPolicyTradeoff      Code = "LocalPolicyTradeoff"
	CodeClientIPHidden           Code = "ClientIPHidden"
	CodePodHostNetwork           Code = "PodHostNetwork"
	CodePodPrivileged            Code = "PodPrivileged"
	CodePodCapabilities          Code = "PodCapabilities"
	CodePodsWithoutNetworkPolicy Code = "PodsWithoutNetworkPolicy"
	CodeNodePortOnLocalhost      Code = "NodePortOnLocalhost"
)

// Warnings from the collectors and parsers about a node's dumps; a finding
// carries the warning's code unchanged.
const (
	// CodeRulesInSeveralBackends: kube-proxy's rules exist in more than
	// one backend (iptables-nft, iptables-legacy, nftables).
	CodeRulesInSeveralBackends Code = "RulesInSeveralBackends"
	// CodeLegacyTablesPresent: iptables-nft-save said iptables-legacy
	// tables exist too.
	CodeLegacyTablesPresent Code = "LegacyTablesPresent"
	// CodeIPVSIncomplete: kube-proxy runs in IPVS mode but the node's
	// IPVS table (or its ipsets) was not given: the endpoints IPVS chooses
	// (or what the ipset matches decide) are unknown.
	CodeIPVSIncomplete Code = "IPVSIncomplete"
	// CodeKubeProxyRulesMissing: no backend holds kube-proxy's rules.
	CodeKubeProxyRulesMissing Code = "KubeProxyRulesMissing"
	// CodeProxyModeMismatch: kube-proxy's /proxyMode disagrees with the
	// rules found.
	CodeProxyModeMismatch Code = "ProxyModeMismatch"
	// CodeDumpIncomplete: a command's output or the whole collection was
	// cut short.
	CodeDumpIncomplete Code = "DumpIncomplete"
	// CodeDumpCommandFailed: a dump command exited non-zero.
	CodeDumpCommandFailed Code = "DumpCommandFailed"
	// CodeObjectSkipped: a parser met something it does not model and
	// skipped it.
	CodeObjectSkipped Code = "ObjectSkipped"
	// CodeToolWarning: a dump tool printed a warning in its output.
	CodeToolWarning Code = "ToolWarning"
	// CodeDumpIrregular: a dump deviates from what its tool writes; it
	// was read anyway (for example rules for an undeclared chain).
	CodeDumpIrregular Code = "DumpIrregular"
	// CodeRoutesIncomplete: the node's route and interface sections are
	// missing or hold what could not be read; the last leg is then
	// unknown or may differ from the node's.
	CodeRoutesIncomplete Code = "RoutesIncomplete"
	// CodeConntrackCapped: a connection table was longer than the
	// collection cap (--conntrack-max-bytes); what was observed is of the
	// part that was read.
	CodeConntrackCapped Code = "ConntrackCapped"
	// CodeConntrackUnavailable: observing was asked for but the node's
	// connection table could not be read (or a saved one was not given).
	CodeConntrackUnavailable Code = "ConntrackUnavailable"
	// CodeConntrackIncomplete: a connection table had lines that are not
	// entries, or was cut off; the counts are of what could be read.
	CodeConntrackIncomplete Code = "ConntrackIncomplete"
	// CodeDebugPodNotDeleted: the debug pod could not be deleted.
	CodeDebugPodNotDeleted Code = "DebugPodNotDeleted"
	// CodeCollectorWarning: anything else a collector noticed.
	CodeCollectorWarning Code = "CollectorWarning"
)

// CodeConvention: an assumption every path shares, said once.
const CodeConvention Code = "Convention"

// Warning is something a parser or collector noticed about a node's dumps,
// with a stable code; the tracer turns each into a finding.
type Warning struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Source names the dump the warning is about, when there is one.
	Source string `json:"source,omitempty"`
}

func (w Warning) String() string { return w.Message }

// Entry kinds: the ways a request reaches a Service.
const (
	EntryLoadBalancer = "LoadBalancer"
	EntryExternalIP   = "ExternalIP"
	EntryNodePort     = "NodePort"
	EntryClusterIP    = "ClusterIP"
)

// EntryKinds lists the entry kinds in the order outputs show them: from
// outside the cluster inwards.
var EntryKinds = []string{EntryLoadBalancer, EntryExternalIP, EntryNodePort, EntryClusterIP}

// Proxy modes of a node (NodePaths.ProxyMode).
const (
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
	ModeIPVS     = "ipvs"
	ModeUnknown  = "unknown"
)
