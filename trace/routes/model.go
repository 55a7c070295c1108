// Package routes is the last leg of a trace: what a node does with a packet
// after kube-proxy's DNAT. It parses a node's routes, policy rules and
// interfaces (from ip, /proc/net and /sys/class/net as collected by the
// debug pod's route sections), looks a destination up the way the kernel's
// FIB does, says what kind of device the packet leaves through (a local
// veth, a bridge, a VXLAN/IPIP/WireGuard tunnel, the node's NIC), names the
// network plugin the node runs, and turns a route into findings.
//
// Everything here is pure: the input is text a node printed (untrusted),
// the output is data.
package routes

import (
	"net/netip"
	"strconv"
)

// Section names: the route and interface dumps a node gives, as the debug
// pod's route script prints them (collectors/debugpod.RoutesScript) and as
// saved dumps are named (NODE.NAME).
const (
	SectionProcRoute     = "proc-net-route"      // /proc/net/route
	SectionProcIPv6Route = "proc-net-ipv6_route" // /proc/net/ipv6_route
	SectionProcFibTrie   = "proc-net-fib_trie"   // /proc/net/fib_trie
	SectionProcIfInet6   = "proc-net-if_inet6"   // /proc/net/if_inet6
	SectionSysClassNet   = "sys-class-net"       // the script's /sys/class/net walk
	SectionIPRoute       = "ip-route"            // ip -4 -d route show table all
	SectionIP6Route      = "ip6-route"           // ip -6 -d route show table all
	SectionIPLink        = "ip-link"             // ip -d link show
	SectionIPAddr        = "ip-addr"             // ip -d addr show
	SectionIPRule        = "ip-rule"             // ip rule show
	SectionIP6Rule       = "ip6-rule"            // ip -6 rule show
)

// SectionNames lists every section name this package reads, in the order
// the route script prints them.
var SectionNames = []string{
	SectionProcRoute, SectionProcIPv6Route, SectionProcFibTrie, SectionProcIfInet6, SectionSysClassNet,
	SectionIPRoute, SectionIP6Route, SectionIPLink, SectionIPAddr, SectionIPRule, SectionIP6Rule,
}

// Routing tables by name, as ip prints them.
const (
	TableLocal   = "local"   // 255
	TableMain    = "main"    // 254
	TableDefault = "default" // 253
)

// TableName gives the canonical name of table id: local, main and default
// for 255, 254 and 253, the decimal id otherwise.
func TableName(id uint32) string {
	switch id {
	case 255:
		return TableLocal
	case 254:
		return TableMain
	case 253:
		return TableDefault
	}
	return strconv.FormatUint(uint64(id), 10)
}

// canonicalTable maps what ip printed ("254", "main", "2", "eni1") to the
// key tables are compared by.
func canonicalTable(s string) string {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return TableName(uint32(n))
	}
	return s
}

// RouteType is a route's type (rtm_type): what the kernel does with a
// packet the route matches.
type RouteType string

// Route types, as ip names them.
const (
	Unicast     RouteType = "unicast"
	Local       RouteType = "local"
	Broadcast   RouteType = "broadcast"
	Multicast   RouteType = "multicast"
	Anycast     RouteType = "anycast"
	Blackhole   RouteType = "blackhole"
	Unreachable RouteType = "unreachable"
	Prohibit    RouteType = "prohibit"
	Throw       RouteType = "throw"
	NAT         RouteType = "nat"
)

var routeTypes = map[string]RouteType{
	"unicast": Unicast, "local": Local, "broadcast": Broadcast, "multicast": Multicast,
	"anycast": Anycast, "blackhole": Blackhole, "unreachable": Unreachable,
	"prohibit": Prohibit, "throw": Throw, "nat": NAT,
}

// Source names where a fact came from.
type Source string

// Sources of routes and interfaces.
const (
	FromIP    Source = "ip"    // the ip command
	FromProc  Source = "proc"  // /proc/net
	FromSysfs Source = "sysfs" // /sys/class/net
)

// Route is one route of one table.
type Route struct {
	Table string       `json:"table"`
	Type  RouteType    `json:"type"`
	Dst   netip.Prefix `json:"dst"`
	// From is an IPv6 source-specific route's source prefix; invalid when
	// the route matches every source.
	From     netip.Prefix `json:"from,omitzero"`
	Via      netip.Addr   `json:"via,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	Scope    string       `json:"scope,omitempty"`
	PrefSrc  netip.Addr   `json:"prefsrc,omitzero"`
	Metric   uint32       `json:"metric,omitempty"`
	// TOS is the route's type of service selector; 0 matches any.
	TOS    uint8 `json:"tos,omitempty"`
	Onlink bool  `json:"onlink,omitempty"`
	// Flags are the nexthop flags ip printed: dead, linkdown, pervasive, …
	Flags []string `json:"flags,omitempty"`
	// Nexthops are a multipath route's paths (Via, Dev and Onlink are then
	// the first one's).
	Nexthops []Nexthop `json:"nexthops,omitempty"`
	// Extra keeps the attributes this package does not model (mtu 1450,
	// pref medium, …), in order.
	Extra  []string `json:"extra,omitempty"`
	Source Source   `json:"source"`
}

// Nexthop is one path of a multipath route.
type Nexthop struct {
	Via    netip.Addr `json:"via,omitzero"`
	Dev    string     `json:"dev,omitempty"`
	Weight int        `json:"weight,omitempty"`
	Onlink bool       `json:"onlink,omitempty"`
	Flags  []string   `json:"flags,omitempty"`
}

func (r *Route) has(flag string) bool {
	for _, f := range r.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// RuleAction is what a policy rule does when it matches.
type RuleAction string

// Rule actions.
const (
	ActionLookup      RuleAction = "lookup"
	ActionGoto        RuleAction = "goto"
	ActionNop         RuleAction = "nop"
	ActionBlackhole   RuleAction = "blackhole"
	ActionUnreachable RuleAction = "unreachable"
	ActionProhibit    RuleAction = "prohibit"
)

// Rule is one policy routing rule (ip rule).
type Rule struct {
	Priority uint32 `json:"priority"`
	// Not inverts the selectors (ip rule's "not").
	Not bool `json:"not,omitempty"`
	// From and To are the source and destination selectors; invalid means
	// "all".
	From     netip.Prefix `json:"from,omitzero"`
	To       netip.Prefix `json:"to,omitzero"`
	TOS      uint8        `json:"tos,omitempty"`
	FWMark   uint32       `json:"fwmark,omitempty"`
	FWMask   uint32       `json:"fwmask,omitempty"`
	HasMark  bool         `json:"hasMark,omitempty"`
	IIF      string       `json:"iif,omitempty"`
	OIF      string       `json:"oif,omitempty"`
	Action   RuleAction   `json:"action"`
	Table    string       `json:"table,omitempty"`
	Goto     uint32       `json:"goto,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	// SuppressPrefixLen ignores a lookup result whose prefix is this long
	// or shorter; -1 when unset.
	SuppressPrefixLen int `json:"suppressPrefixLength"`
	// Unsupported lists selectors the lookup does not evaluate (uidrange,
	// ipproto, sport, dport, l3mdev, suppress_ifgroup, …): such a rule is
	// taken as not matching, with a note.
	Unsupported []string `json:"unsupported,omitempty"`
	// Detached is an iif/oif rule whose device does not exist.
	Detached bool `json:"detached,omitempty"`
}

// Kind is what a network device is.
type Kind string

// Device kinds.
const (
	KindLoopback  Kind = "loopback"
	KindVeth      Kind = "veth"
	KindBridge    Kind = "bridge"
	KindVXLAN     Kind = "vxlan"
	KindGeneve    Kind = "geneve"
	KindIPIP      Kind = "ipip"
	KindGRE       Kind = "gre"
	KindSIT       Kind = "sit"
	KindIP6Tnl    Kind = "ip6tnl"
	KindWireGuard Kind = "wireguard"
	KindDummy     Kind = "dummy"
	KindVLAN      Kind = "vlan"
	KindBond      Kind = "bond"
	KindMacvlan   Kind = "macvlan"
	KindIPvlan    Kind = "ipvlan"
	KindTun       Kind = "tun"
	KindTap       Kind = "tap"
	KindOVS       Kind = "openvswitch"
	KindIFB       Kind = "ifb"
	// KindDevice is hardware: a NIC (sysfs has a device link).
	KindDevice Kind = "device"
	// KindVirtual is a virtual ethernet device sysfs cannot tell apart
	// (a dummy, or a veth whose peer has the same index).
	KindVirtual Kind = "virtual"
	KindUnknown Kind = ""
)

// Tunnel reports whether packets through a device of this kind are
// encapsulated to another host.
func (k Kind) Tunnel() bool {
	switch k {
	case KindVXLAN, KindGeneve, KindIPIP, KindGRE, KindSIT, KindIP6Tnl, KindWireGuard:
		return true
	}
	return false
}

// Describe is the kind for a tree line: "veth", "bridge", "VXLAN tunnel", …
func (k Kind) Describe() string {
	switch k {
	case KindVXLAN:
		return "VXLAN tunnel"
	case KindGeneve:
		return "Geneve tunnel"
	case KindIPIP:
		return "IPIP tunnel"
	case KindGRE:
		return "GRE tunnel"
	case KindSIT:
		return "SIT tunnel"
	case KindIP6Tnl:
		return "IPv6 tunnel"
	case KindWireGuard:
		return "WireGuard tunnel"
	case KindOVS:
		return "Open vSwitch port"
	case KindDevice:
		return "device"
	case KindUnknown:
		return "device of unknown kind"
	}
	return string(k)
}

// Interface is one network device of the node.
type Interface struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Link is the ifindex of the peer (veth) or lower device (vlan,
	// macvlan, tunnels bound to a device); 0 when none.
	Link int `json:"link,omitempty"`
	// LinkName is the peer or lower device's name when ip printed it
	// (cilium_net@cilium_host), "ifN" when it lives in another namespace.
	LinkName string `json:"linkName,omitempty"`
	// LinkNetns is the peer's namespace (link-netns or link-netnsid).
	LinkNetns string `json:"linkNetns,omitempty"`
	Kind      Kind   `json:"kind"`
	// KindFrom says how Kind was learnt: ip -d link (exact) or sysfs
	// (inferred from devtype, type and links).
	KindFrom Source `json:"kindFrom,omitempty"`
	// SlaveKind is the port role ip -d link printed (bridge_slave,
	// bond_slave, openvswitch_slave).
	SlaveKind string   `json:"slaveKind,omitempty"`
	Master    string   `json:"master,omitempty"`
	Type      int      `json:"type,omitempty"` // ARPHRD_*, from sysfs
	OperState string   `json:"operState,omitempty"`
	Flags     []string `json:"flags,omitempty"`
	MTU       int      `json:"mtu,omitempty"`
	MAC       string   `json:"mac,omitempty"`
	// Addrs are the interface's addresses with their prefix length.
	Addrs  []netip.Prefix `json:"addrs,omitempty"`
	Tunnel *Tunnel        `json:"tunnel,omitempty"`
}

// Tunnel is what ip -d link says of a tunnel device.
type Tunnel struct {
	ID      uint32     `json:"id,omitempty"` // VXLAN VNI, Geneve VNI
	Remote  netip.Addr `json:"remote,omitzero"`
	Local   netip.Addr `json:"local,omitzero"`
	Dev     string     `json:"dev,omitempty"` // the underlay device
	DstPort uint16     `json:"dstPort,omitempty"`
	// External is a collect-metadata (flow-based) tunnel: eBPF or OVS
	// picks the remote per packet (Cilium's cilium_vxlan, OVN's genev_sys).
	External bool `json:"external,omitempty"`
}

// Snapshot is one node's routing state: every table, the policy rules and
// the interfaces, merged from whatever sections the node gave.
type Snapshot struct {
	Routes []Route `json:"routes"`
	// Rules4 and Rules6 are the policy rules in evaluation order; nil when
	// the node gave none (no ip): a lookup then uses local, main and
	// default and says so.
	Rules4     []Rule      `json:"rules4,omitempty"`
	Rules6     []Rule      `json:"rules6,omitempty"`
	Interfaces []Interface `json:"interfaces"`
	// Tables are the IPv4 tables that exist, as far as known (fib_trie
	// lists them even without ip).
	Tables []string `json:"tables,omitempty"`
	// Sections are the sections that were read.
	Sections []string `json:"sections"`
	// Warnings are lines or sections that could not be read, and what
	// was assumed instead.
	Warnings []string `json:"warnings,omitempty"`
	// Notes say what was assumed where the node gave less than ip would
	// (no policy rules, when no table beyond local, main and default
	// exists): worth saying once, not a problem.
	Notes []string `json:"notes,omitempty"`

	// RoutesFrom4 and RoutesFrom6 say where each family's routes came from.
	RoutesFrom4 Source `json:"routesFrom4,omitempty"`
	RoutesFrom6 Source `json:"routesFrom6,omitempty"`

	byName map[string]int
}

// Interface returns the interface called name.
func (s *Snapshot) Interface(name string) (*Interface, bool) {
	if s.byName == nil {
		s.index()
	}
	i, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return &s.Interfaces[i], true
}

func (s *Snapshot) index() {
	s.byName = make(map[string]int, len(s.Interfaces))
	for i, ifc := range s.Interfaces {
		s.byName[ifc.Name] = i
	}
}

// LocalAddrs lists the node's own addresses: the local routes of the local
// table that are single addresses, and every interface address.
func (s *Snapshot) LocalAddrs() []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, r := range s.Routes {
		if r.Type == Local && r.Table == TableLocal && r.Dst.IsSingleIP() {
			add(r.Dst.Addr())
		}
	}
	for _, ifc := range s.Interfaces {
		for _, a := range ifc.Addrs {
			add(a.Addr())
		}
	}
	return out
}

// IsLocal reports whether a is one of the node's own addresses.
func (s *Snapshot) IsLocal(a netip.Addr) bool {
	for _, l := range s.LocalAddrs() {
		if l == a {
			return true
		}
	}
	return false
}
