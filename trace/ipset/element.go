package ipset

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// IP protocol numbers the port dimension names.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

var protoNames = map[string]uint8{
	"tcp": ProtoTCP, "udp": ProtoUDP, "sctp": ProtoSCTP, "udplite": ProtoUDPLite,
	"icmp": ProtoICMP, "icmpv6": ProtoICMPv6, "ipv6-icmp": ProtoICMPv6,
	"ipip": 4, "gre": 47, "esp": 50, "ah": 51,
}

// ProtoNumber maps a protocol name ("tcp", "udp", ...) or a decimal number
// to its number.
func ProtoNumber(name string) (uint8, bool) {
	if n, ok := protoNames[strings.ToLower(name)]; ok {
		return n, true
	}
	n, err := strconv.ParseUint(name, 10, 8)
	return uint8(n), err == nil
}

// icmpNames are the ICMP type names ipset prints, as type<<8 | code.
var icmpNames = map[string]uint16{
	"echo-reply": 0x0000, "destination-unreachable": 0x0300, "network-unreachable": 0x0300,
	"host-unreachable": 0x0301, "protocol-unreachable": 0x0302, "port-unreachable": 0x0303,
	"fragmentation-needed": 0x0304, "source-route-failed": 0x0305, "network-unknown": 0x0306,
	"host-unknown": 0x0307, "network-prohibited": 0x0309, "host-prohibited": 0x030a,
	"TOS-network-unreachable": 0x030b, "TOS-host-unreachable": 0x030c,
	"communication-prohibited": 0x030d, "host-precedence-violation": 0x030e,
	"precedence-cutoff": 0x030f, "source-quench": 0x0400, "network-redirect": 0x0500,
	"host-redirect": 0x0501, "TOS-network-redirect": 0x0502, "TOS-host-redirect": 0x0503,
	"echo-request": 0x0800, "router-advertisement": 0x0900, "router-solicitation": 0x0a00,
	"ttl-zero-during-transit": 0x0b00, "ttl-zero-during-reassembly": 0x0b01,
	"ip-header-bad": 0x0c00, "required-option-missing": 0x0c01, "timestamp-request": 0x0d00,
	"timestamp-reply": 0x0e00, "address-mask-request": 0x1100, "address-mask-reply": 0x1200,
}

var icmpv6Names = map[string]uint16{
	"no-route": 0x0100, "communication-prohibited": 0x0101, "address-unreachable": 0x0103,
	"port-unreachable": 0x0104, "packet-too-big": 0x0200, "ttl-zero-during-transit": 0x0300,
	"ttl-zero-during-reassembly": 0x0301, "bad-header": 0x0400, "unknown-header-type": 0x0401,
	"unknown-option": 0x0402, "echo-request": 0x8000, "echo-reply": 0x8100,
	"router-solicitation": 0x8500, "router-advertisement": 0x8600,
	"neighbour-solicitation": 0x8700, "neighbor-solicitation": 0x8700,
	"neighbour-advertisement": 0x8800, "neighbor-advertisement": 0x8800, "redirect": 0x8900,
}

// parseElem reads an element of s's type, e.g. "10.96.0.1,tcp:443".
func parseElem(s *Set, text string) ([]Part, error) {
	if text == "" {
		return nil, errors.New("empty element")
	}
	fields := strings.SplitN(text, ",", len(s.dims))
	if len(fields) != len(s.dims) {
		return nil, fmt.Errorf("want %d comma-separated parts for %s", len(s.dims), s.Type)
	}
	parts := make([]Part, len(s.dims))
	for i, k := range s.dims {
		p, err := parsePart(s, k, fields[i])
		if err != nil {
			return nil, err
		}
		parts[i] = p
	}
	return parts, nil
}

func parsePart(s *Set, k Kind, f string) (Part, error) {
	p := Part{Kind: k}
	switch k {
	case KindIP, KindNet:
		pfx, err := parseAddrOrNet(f, k == KindNet)
		if err != nil {
			return p, err
		}
		if s.Family != "" && familyOf(pfx.Addr()) != s.Family {
			return p, fmt.Errorf("%s address in a family %s set", familyOf(pfx.Addr()), s.Family)
		}
		p.Prefix = pfx
	case KindPort:
		proto, port, err := parsePort(s.Type, f)
		if err != nil {
			return p, err
		}
		p.Proto, p.Port = proto, port
	case KindIface:
		name := f
		if rest, ok := strings.CutPrefix(f, "physdev:"); ok {
			p.Physdev, name = true, rest
		}
		if name == "" || len(name) > 15 {
			return p, errors.New("bad interface name")
		}
		p.Name = name
	case KindMAC:
		hw, err := net.ParseMAC(f)
		if err != nil || len(hw) != 6 {
			return p, errors.New("bad MAC address")
		}
		copy(p.MAC[:], hw)
	case KindMark:
		v, err := strconv.ParseUint(f, 0, 32)
		if err != nil {
			return p, errors.New("bad mark")
		}
		p.Mark = uint32(v)
	case KindSet:
		if err := checkName(f); err != nil {
			return p, err
		}
		p.Name = f
	}
	return p, nil
}

// parseAddrOrNet reads "ADDR" (a host) or, for a net dimension, "ADDR/LEN".
func parseAddrOrNet(f string, isNet bool) (netip.Prefix, error) {
	if isNet && strings.Contains(f, "/") {
		pfx, err := netip.ParsePrefix(f)
		if err != nil {
			return pfx, errors.New("bad network")
		}
		if pfx.Addr().Zone() != "" || pfx.Masked() != pfx {
			return pfx, errors.New("network has host bits set")
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(f)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("bad address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return FamilyInet
	}
	return FamilyInet6
}

// parsePort reads "PROTO:PORT", "PORT" (tcp, as ipset assumes), or an ICMP
// "icmp:TYPE/CODE" / "icmp:NAME". bitmap:port stores bare ports.
func parsePort(t Type, f string) (uint8, uint16, error) {
	protoText, portText, hasProto := strings.Cut(f, ":")
	if !hasProto {
		protoText, portText = "tcp", f
	}
	proto, ok := ProtoNumber(protoText)
	if !ok {
		return 0, 0, fmt.Errorf("unknown protocol %s", short(protoText))
	}
	if t == BitmapPort {
		proto = 0 // the bitmap stores the port only
	}
	if proto == ProtoICMP || proto == ProtoICMPv6 {
		names := icmpNames
		if proto == ProtoICMPv6 {
			names = icmpv6Names
		}
		if v, ok := names[portText]; ok {
			return proto, v, nil
		}
		typ, code, ok := strings.Cut(portText, "/")
		if !ok {
			return 0, 0, fmt.Errorf("unknown ICMP type %s", short(portText))
		}
		ty, err1 := strconv.ParseUint(typ, 10, 8)
		co, err2 := strconv.ParseUint(code, 10, 8)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad ICMP type/code %s", short(portText))
		}
		return proto, uint16(ty)<<8 | uint16(co), nil
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %s", short(portText))
	}
	return proto, uint16(port), nil
}
