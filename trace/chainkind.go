package trace

// ChainKind says what part a chain plays on a Service's path, whatever the
// engine that named it (KUBE-SVC-* in iptables, service-* in nftables, …).
// Engines classify their own chain names; renderers draw by kind and never
// parse names.
type ChainKind string

const (
	// ChainHook is a base chain the kernel calls at a hook (PREROUTING,
	// nat-prerouting, …).
	ChainHook ChainKind = "hook"
	// ChainDispatch sends packets to Service chains by address and port
	// (KUBE-SERVICES, KUBE-NODEPORTS, the services map).
	ChainDispatch ChainKind = "dispatch"
	// ChainFirewall enforces loadBalancerSourceRanges (KUBE-FW-*,
	// firewall-*).
	ChainFirewall ChainKind = "firewall"
	// ChainExternal handles traffic from outside the cluster (KUBE-EXT-*,
	// KUBE-XLB-*, external-*).
	ChainExternal ChainKind = "external"
	// ChainService chooses an endpoint (KUBE-SVC-*, KUBE-SVL-*, service-*).
	ChainService ChainKind = "service"
	// ChainEndpoint DNATs to one endpoint (KUBE-SEP-*, endpoint-*).
	ChainEndpoint ChainKind = "endpoint"
	// ChainMark marks a packet for masquerade (KUBE-MARK-MASQ,
	// mark-for-masquerade).
	ChainMark ChainKind = "mark"
	// ChainPostrouting finishes a packet: source NAT at the postrouting
	// hook (POSTROUTING, KUBE-POSTROUTING, masquerading).
	ChainPostrouting ChainKind = "postrouting"
	// ChainFilter accepts, drops or rejects (KUBE-PROXY-FIREWALL,
	// KUBE-FORWARD, filter-*).
	ChainFilter ChainKind = "filter"
	// ChainOther is anything else.
	ChainOther ChainKind = "other"
)

// ChainInfo is an engine's description of one chain name it reported.
type ChainInfo struct {
	Kind ChainKind `json:"kind"`
	// Short is the name for a narrow view: kube-proxy's hashes cut
	// (KUBE-SVC-XPGD46QR…, service-ULMVA6XW…); empty when the name is short
	// already.
	Short string `json:"short,omitempty"`
}

// Helper tells whether the chain marks or finishes a packet rather than
// routing it (left out of diagrams).
func (k ChainKind) Helper() bool { return k == ChainMark || k == ChainPostrouting }
