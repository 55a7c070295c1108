package routes

import (
	"fmt"
	"net/netip"
	"strings"
)

// Hop is the last leg of a path as the Path's JSON carries it:
// route: {dev, via, kind, node}.
type Hop struct {
	Verdict Verdict `json:"verdict"`
	Dev     string  `json:"dev,omitempty"`
	// Via is the gateway; absent when the destination is on-link.
	Via netip.Addr `json:"via,omitzero"`
	// Kind is what Dev is: veth, bridge, vxlan, ipip, wireguard, device, …
	Kind Kind `json:"kind,omitempty"`
	// Node is the node the packet goes to: this node for a local pod, the
	// node whose address is the gateway or whose pod CIDR holds the
	// destination; empty when unknown.
	Node string `json:"node,omitempty"`
	// Leaves is whether the packet leaves this node; nil when the kernel's
	// route does not tell (Cilium's eBPF forwards what its routes send to
	// cilium_host).
	Leaves *bool `json:"leaves,omitempty"`
	// Forwarder names what forwards the packet when the kernel's route
	// only hands it over: "eBPF" for a gateway that is the node's own
	// address (Cilium's cilium_host).
	Forwarder string `json:"forwarder,omitempty"`
	// Route is the matched route ("10.244.1.0/24 via 10.244.1.0 dev
	// flannel.1 onlink", table included when not main).
	Route string `json:"route,omitempty"`
	// Errno is the error the kernel gives the lookup, as `ip route get`
	// prints it ("Network is unreachable"); empty when it routes the
	// packet.
	Errno string `json:"errno,omitempty"`
}

// NodeResolver names the node an address belongs to: its InternalIP or
// another node address, an address of its pod CIDRs, or its tunnel
// address; "" when none. The tracer builds it from the API's Nodes.
type NodeResolver func(netip.Addr) string

// Hop turns a lookup result into the path's last leg. self is the node
// the snapshot is of; resolve may be nil.
func (s *Snapshot) Hop(self string, res Result, resolve NodeResolver) Hop {
	h := Hop{Verdict: res.Verdict, Dev: res.Dev, Via: res.Via, Kind: res.Kind, Errno: res.Errno}
	if res.GatewayIsLocal {
		h.Forwarder = "eBPF"
	}
	if res.Route != nil {
		h.Route = res.Route.String()
	}
	if resolve == nil {
		resolve = func(netip.Addr) string { return "" }
	}
	leaves, known := s.Leaves(res)
	if known {
		h.Leaves = &leaves
	}
	switch {
	case res.Verdict == VerdictLocal:
		h.Node = self
	case res.Verdict != VerdictForward:
	case known && !leaves:
		h.Node = self
	case res.Via.IsValid():
		h.Node = resolve(res.Via)
		if h.Node == "" {
			if ifc, ok := s.Interface(res.Dev); ok && ifc.Tunnel != nil && ifc.Tunnel.Remote.IsValid() {
				h.Node = resolve(ifc.Tunnel.Remote)
			}
		}
		if h.Node == "" {
			h.Node = resolve(res.Query.Dst)
		}
	default:
		// on-link through a tunnel or the node's network, or eBPF's
		// cilium_host: the destination names the node.
		h.Node = resolve(res.Query.Dst)
	}
	return h
}

// Leaves reports whether the route takes the packet off the node, and
// whether that can be told: yes for a tunnel device, for a gateway that is
// not one of the node's own addresses, and for an on-link route out of the
// node's uplink (a hardware device, or one that carries a default route);
// no for local delivery and for on-link routes into veths, bridges and
// other virtual devices (pods); unknown for a gateway that is the node's
// own address (Cilium routes every pod CIDR via cilium_host's address and
// forwards in eBPF) and for devices the node did not show.
func (s *Snapshot) Leaves(res Result) (leaves, known bool) {
	switch {
	case res.Verdict == VerdictLocal:
		return false, true
	case res.Verdict != VerdictForward:
		return false, false
	case res.Kind.Tunnel():
		return true, true
	case res.GatewayIsLocal:
		return false, false
	case res.Via.IsValid():
		return true, true
	case res.Kind == KindUnknown:
		return false, false
	case s.IsUplink(res.Dev):
		return true, true
	}
	return false, true
}

// IsUplink reports whether dev connects the node to its network: a
// hardware device, or a device a default route leaves through (kind
// nodes' eth0 is a veth).
func (s *Snapshot) IsUplink(dev string) bool {
	if dev == "" {
		return false
	}
	if ifc, ok := s.Interface(dev); ok && ifc.Kind == KindDevice {
		return true
	}
	for _, r := range s.Routes {
		if r.Dst.Bits() == 0 && r.Type == Unicast {
			if r.Dev == dev {
				return true
			}
			for _, nh := range r.Nexthops {
				if nh.Dev == dev {
					return true
				}
			}
		}
	}
	return false
}

// String is the route as ip prints it, short: "[TYPE ]DST [from SRC] [via
// GW] [dev DEV] [table T] [onlink]".
func (r *Route) String() string {
	var b strings.Builder
	if r.Type != Unicast {
		b.WriteString(string(r.Type) + " ")
	}
	dst := r.Dst.String()
	if r.Dst.Bits() == 0 {
		dst = "default"
	} else if r.Dst.IsSingleIP() {
		dst = r.Dst.Addr().String()
	}
	b.WriteString(dst)
	if r.From.IsValid() {
		b.WriteString(" from " + r.From.String())
	}
	if len(r.Nexthops) > 1 {
		for _, nh := range r.Nexthops {
			b.WriteString(" nexthop")
			if nh.Via.IsValid() {
				b.WriteString(" via " + nh.Via.String())
			}
			if nh.Dev != "" {
				b.WriteString(" dev " + nh.Dev)
			}
		}
	} else {
		if r.Via.IsValid() {
			b.WriteString(" via " + r.Via.String())
		}
		if r.Dev != "" && !(r.Dev == "lo" && (r.Type == Blackhole || r.Type == Unreachable || r.Type == Prohibit)) {
			// (ip prints IPv6 reject routes "dev lo")
			b.WriteString(" dev " + r.Dev)
		}
	}
	if r.Table != TableMain {
		b.WriteString(" table " + r.Table)
	}
	if r.Protocol != "" && r.Protocol != "boot" && r.Protocol != "kernel" {
		b.WriteString(" proto " + r.Protocol)
	}
	if r.Onlink {
		b.WriteString(" onlink")
	}
	return b.String()
}

// Line is the one short line under an endpoint in the tree: "local veth
// vethb2bab332", "flannel.1 VXLAN tunnel → node-b", "via eth0 → node-2
// 10.0.0.12", "blackhole route 10.65.0.0/26".
func (h Hop) Line() string {
	switch h.Verdict {
	case VerdictLocal:
		return "delivered locally (an address of this node)"
	case VerdictNoRoute:
		return "no route"
	case VerdictBlackhole, VerdictUnreachable, VerdictProhibit:
		if h.Route != "" {
			return fmt.Sprintf("%s route %s", h.Verdict, strings.TrimPrefix(h.Route, string(h.Verdict)+" "))
		}
		return fmt.Sprintf("%s by policy rule", h.Verdict)
	case VerdictForward:
	default:
		return string(h.Verdict)
	}
	to := ""
	if h.Node != "" {
		to = " → " + h.Node
	}
	switch {
	case h.Kind.Tunnel():
		return fmt.Sprintf("%s %s%s", h.Dev, h.Kind.Describe(), to)
	case h.Leaves != nil && !*h.Leaves:
		return fmt.Sprintf("local %s %s", h.Kind.Describe(), h.Dev)
	case h.Forwarder != "":
		return fmt.Sprintf("%s (forwarded by %s)%s", h.Dev, h.Forwarder, to)
	case h.Via.IsValid():
		return fmt.Sprintf("via %s%s %s", h.Dev, to, h.Via)
	}
	return fmt.Sprintf("on-link %s%s", h.Dev, to)
}
