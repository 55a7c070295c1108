package routes

import (
	"fmt"
	"strconv"
	"strings"
)

// ARPHRD_* device types that name a kind on their own.
const (
	arphrdEther    = 1
	arphrdTunnel   = 768 // ipip
	arphrdTunnel6  = 769 // ip6tnl
	arphrdSit      = 776
	arphrdIPGRE    = 778
	arphrdLoopback = 772
	arphrdIP6GRE   = 823
	arphrdNone     = 65534 // tun, wireguard
)

// SysfsLink is one interface block of the sys-class-net section.
type SysfsLink struct {
	Name      string
	Index     int
	IfLink    int
	Type      int
	OperState string
	MTU       int
	Flags     uint32
	Address   string
	DevType   string
	TunFlags  uint32
	HasTun    bool
	Has       []string // device, bridge, brport, bonding, phy80211
	Master    string
	Upper     []string
	Lower     []string
}

func (l *SysfsLink) has(what string) bool {
	for _, h := range l.Has {
		if h == what {
			return true
		}
	}
	return false
}

// ParseSysClassNet reads the route script's /sys/class/net walk: blocks of
// "KEY VALUE" lines, each starting with "link NAME" (the format is
// documented at collectors/debugpod.RoutesScript).
func ParseSysClassNet(data []byte) ([]SysfsLink, []string, error) {
	w := &warnings{section: "sys-class-net"}
	var out []SysfsLink
	var cur *SysfsLink
	err := eachLine(data, func(no int, line string) error {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		val = strings.TrimSpace(val)
		if key == "" {
			return nil
		}
		if key == "link" {
			if len(out) >= maxItems {
				return fmt.Errorf("sys-class-net: more than %d interfaces: %w", maxItems, ErrTooLarge)
			}
			if !validIfName(val) {
				w.add("line %d: bad interface name %s", no, quote(val))
				cur = nil
				return nil
			}
			out = append(out, SysfsLink{Name: val})
			cur = &out[len(out)-1]
			return nil
		}
		if cur == nil {
			w.add("line %d: %s outside an interface block", no, quote(key))
			return nil
		}
		num := func(base, bits int) (uint64, bool) {
			if val == "" {
				return 0, false // unreadable: printed empty
			}
			s := val
			if base == 16 {
				s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
			}
			n, err := strconv.ParseUint(s, base, bits)
			if err != nil {
				w.add("line %d: bad %s %s", no, key, quote(val))
				return 0, false
			}
			return n, true
		}
		switch key {
		case "ifindex":
			if n, ok := num(10, 31); ok {
				cur.Index = int(n)
			}
		case "iflink":
			if n, ok := num(10, 31); ok {
				cur.IfLink = int(n)
			}
		case "type":
			if n, ok := num(10, 16); ok {
				cur.Type = int(n)
			}
		case "mtu":
			if n, ok := num(10, 31); ok {
				cur.MTU = int(n)
			}
		case "flags":
			if n, ok := num(16, 32); ok {
				cur.Flags = uint32(n)
			}
		case "tun_flags":
			cur.HasTun = true
			if n, ok := num(16, 32); ok {
				cur.TunFlags = uint32(n)
			}
		case "operstate":
			if len(val) <= 32 {
				cur.OperState = val
			}
		case "address":
			if len(val) <= 64 {
				cur.Address = val
			}
		case "devtype":
			if len(val) <= 32 {
				cur.DevType = val
			}
		case "has":
			if len(cur.Has) < 8 && len(val) <= 32 {
				cur.Has = append(cur.Has, val)
			}
		case "master", "upper", "lower":
			if !validIfName(val) {
				w.add("line %d: bad %s name %s", no, key, quote(val))
				return nil
			}
			switch key {
			case "master":
				cur.Master = val
			case "upper":
				if len(cur.Upper) < 64 {
					cur.Upper = append(cur.Upper, val)
				}
			default:
				if len(cur.Lower) < 64 {
					cur.Lower = append(cur.Lower, val)
				}
			}
		default:
			w.add("line %d: unknown key %s", no, quote(key))
		}
		return nil
	})
	return out, w.done(), err
}

// sysfsDevTypes are the uevent DEVTYPEs drivers set (SET_NETDEV_DEVTYPE):
// bridge, vxlan, geneve, wireguard, vlan, bond, macsec, bareudp, wlan.
var sysfsDevTypes = map[string]Kind{
	"bridge": KindBridge, "vxlan": KindVXLAN, "geneve": KindGeneve, "wireguard": KindWireGuard,
	"vlan": KindVLAN, "bond": KindBond, "macsec": "macsec", "bareudp": "bareudp", "wlan": KindDevice,
}

// Classify infers a device's kind from what sysfs shows, without ip:
//   - the ARPHRD type names loopback (772), ipip (768), ip6tnl (769),
//     sit (776), gre (778) and ip6gre (823);
//   - uevent's DEVTYPE names bridge, vxlan, geneve, wireguard, vlan, bond;
//   - tun_flags marks tun (IFF_TUN 0x1) and tap (IFF_TAP 0x2) devices,
//     bonding/ a bond, bridge/ a bridge;
//   - a device link means hardware (a NIC, or virtio in a VM);
//   - an ethernet device with none of these and a lower device is a
//     macvlan or ipvlan (taken as macvlan); with iflink pointing elsewhere
//     it is a veth (iflink is the peer's index); otherwise it is virtual
//     (a dummy, an ifb, or a veth whose peer has its own index number).
func (l *SysfsLink) Classify() Kind {
	switch l.Type {
	case arphrdLoopback:
		return KindLoopback
	case arphrdTunnel:
		return KindIPIP
	case arphrdTunnel6:
		return KindIP6Tnl
	case arphrdSit:
		return KindSIT
	case arphrdIPGRE, arphrdIP6GRE:
		return KindGRE
	}
	if k, ok := sysfsDevTypes[l.DevType]; ok {
		return k
	}
	if l.HasTun {
		if l.TunFlags&0x2 != 0 {
			return KindTap
		}
		return KindTun
	}
	switch {
	case l.has("bonding"):
		return KindBond
	case l.has("bridge"):
		return KindBridge
	case l.has("device") || l.has("phy80211"):
		return KindDevice
	}
	if l.Type != arphrdEther {
		return KindUnknown
	}
	switch {
	case len(l.Lower) > 0:
		return KindMacvlan
	case l.IfLink != 0 && l.IfLink != l.Index:
		return KindVeth
	}
	return KindVirtual
}

// Interface turns the block into the model's interface.
func (l *SysfsLink) Interface() Interface {
	ifc := Interface{
		Name: l.Name, Index: l.Index, Kind: l.Classify(), KindFrom: FromSysfs, Master: l.Master,
		Type: l.Type, OperState: l.OperState, MTU: l.MTU, MAC: l.Address,
	}
	if l.IfLink != 0 && l.IfLink != l.Index {
		ifc.Link = l.IfLink
	}
	if l.has("brport") {
		ifc.SlaveKind = "bridge_slave"
	}
	for bit, name := range []string{"UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING", "NOARP", "PROMISC", "ALLMULTI", "MASTER", "SLAVE", "MULTICAST"} {
		if l.Flags&(1<<bit) != 0 {
			ifc.Flags = append(ifc.Flags, name)
		}
	}
	return ifc
}
