package routes

import (
	"fmt"
	"strconv"
	"strings"
)

// linkKinds are the link kinds ip -d link prints as the first word of a
// details line (rtnl_link_ops kind names), mapped to the model's kinds.
var linkKinds = map[string]Kind{
	"veth": KindVeth, "bridge": KindBridge, "vxlan": KindVXLAN, "geneve": KindGeneve,
	"ipip": KindIPIP, "gre": KindGRE, "gretap": KindGRE, "erspan": KindGRE, "ip6gre": KindGRE,
	"ip6gretap": KindGRE, "sit": KindSIT, "ip6tnl": KindIP6Tnl, "vti": KindIPIP, "vti6": KindIP6Tnl,
	"wireguard": KindWireGuard, "dummy": KindDummy, "vlan": KindVLAN, "bond": KindBond,
	"team": KindBond, "macvlan": KindMacvlan, "macvtap": KindMacvlan, "ipvlan": KindIPvlan,
	"ipvtap": KindIPvlan, "tun": KindTun, "openvswitch": KindOVS, "ifb": KindIFB,
	"vrf": "vrf", "nlmon": "nlmon", "macsec": "macsec", "xfrm": "xfrm", "bareudp": "bareudp",
	"netkit": "netkit", "ipoib": "ipoib", "can": "can", "vcan": "vcan", "hsr": "hsr",
}

// ParseIPLink reads `ip [-d] link show` or `ip [-d] addr show` (which is
// the same with the addresses added). Without -d the kinds are unknown.
func ParseIPLink(data []byte) ([]Interface, []string, error) {
	w := &warnings{section: "ip link"}
	var out []Interface
	var cur *Interface
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		if line[0] != ' ' && line[0] != '\t' {
			if len(out) >= maxItems {
				return fmt.Errorf("ip link: more than %d interfaces: %w", maxItems, ErrTooLarge)
			}
			ifc, err := parseLinkHeader(f)
			if err != nil {
				w.add("line %d: %v", no, err)
				cur = nil
				return nil
			}
			out = append(out, ifc)
			cur = &out[len(out)-1]
			return nil
		}
		if cur == nil {
			return nil // the rest of an interface whose header was bad
		}
		if err := parseLinkDetail(cur, f); err != nil {
			w.add("line %d: %v", no, err)
		}
		return nil
	})
	return out, w.done(), err
}

// parseLinkHeader reads "N: NAME[@LINK]: <FLAGS> mtu M … [master X] state S …".
func parseLinkHeader(f []string) (Interface, error) {
	var ifc Interface
	idx, ok := strings.CutSuffix(f[0], ":")
	if !ok || len(f) < 2 {
		return ifc, fmt.Errorf("not an interface line")
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n <= 0 {
		return ifc, fmt.Errorf("bad interface index %s", quote(idx))
	}
	ifc.Index = n
	name, ok := strings.CutSuffix(f[1], ":")
	if !ok {
		return ifc, fmt.Errorf("bad interface name %s", quote(f[1]))
	}
	if at := strings.LastIndexByte(name, '@'); at > 0 {
		name, ifc.LinkName = name[:at], name[at+1:]
		if num, ok := strings.CutPrefix(ifc.LinkName, "if"); ok {
			if k, err := strconv.Atoi(num); err == nil && k > 0 {
				ifc.Link = k
			}
		}
		if ifc.LinkName == "NONE" {
			ifc.LinkName = ""
		}
	}
	if !validIfName(name) {
		return ifc, fmt.Errorf("bad interface name %s", quote(name))
	}
	ifc.Name = name
	for i := 2; i < len(f); i++ {
		switch key := f[i]; {
		case strings.HasPrefix(key, "<") && strings.HasSuffix(key, ">"):
			flags := strings.Split(strings.Trim(key, "<>"), ",")
			if len(flags) <= 32 {
				ifc.Flags = flags
			}
		case i+1 >= len(f):
		case key == "mtu":
			ifc.MTU, _ = strconv.Atoi(f[i+1])
			i++
		case key == "master":
			if validIfName(f[i+1]) {
				ifc.Master = f[i+1]
			}
			i++
		case key == "state":
			ifc.OperState = strings.ToLower(f[i+1])
			i++
		}
	}
	return ifc, nil
}

// parseLinkDetail reads an indented line of an interface: link/TYPE, the
// kind's details (-d), altname, inet and inet6 addresses.
func parseLinkDetail(ifc *Interface, f []string) error {
	switch word := f[0]; {
	case strings.HasPrefix(word, "link/"):
		if len(f) > 1 && strings.Count(f[1], ":") == 5 {
			ifc.MAC = f[1]
		}
		if ifc.Kind == "" && word == "link/loopback" {
			ifc.Kind, ifc.KindFrom = KindLoopback, FromIP
		}
		if ifc.Kind == "" && hasWord(f, "parentbus") {
			// a device without a kind has its -d details on this line;
			// ip -d names the bus of hardware.
			ifc.Kind, ifc.KindFrom = KindDevice, FromIP
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i] == "link-netns" || f[i] == "link-netnsid" {
				if len(f[i+1]) <= 64 {
					ifc.LinkNetns = f[i+1]
				}
			}
		}
	case word == "inet" || word == "inet6":
		if len(f) < 2 {
			return fmt.Errorf("%s without an address", word)
		}
		p, err := parseIfAddr(f[1])
		if err != nil {
			return err
		}
		if (word == "inet") != p.Addr().Is4() {
			return fmt.Errorf("%s address %s of the wrong family", word, quote(f[1]))
		}
		if len(ifc.Addrs) < 4096 {
			ifc.Addrs = append(ifc.Addrs, p)
		}
	case strings.HasSuffix(word, "_slave"):
		ifc.SlaveKind = word
	case word == "parentbus" || hasWord(f, "parentbus"):
		// ip -d prints the bus of hardware devices.
		if ifc.Kind == "" {
			ifc.Kind, ifc.KindFrom = KindDevice, FromIP
		}
	default:
		k, ok := linkKinds[word]
		if !ok || ifc.Kind == KindLoopback {
			return nil
		}
		ifc.Kind, ifc.KindFrom = k, FromIP
		if word == "tun" && hasWord(f, "tap") {
			ifc.Kind = KindTap
		}
		if k.Tunnel() {
			ifc.Tunnel = parseTunnel(f[1:])
		}
	}
	return nil
}

func hasWord(f []string, w string) bool {
	for _, x := range f {
		if x == w {
			return true
		}
	}
	return false
}

// parseTunnel reads a tunnel's details: "id N remote A local A dev D
// dstport P external".
func parseTunnel(f []string) *Tunnel {
	t := &Tunnel{}
	for i := 0; i < len(f); i++ {
		key := f[i]
		if key == "external" {
			t.External = true
			continue
		}
		if i+1 >= len(f) {
			break
		}
		val := f[i+1]
		switch key {
		case "id", "vni":
			if n, err := strconv.ParseUint(val, 10, 32); err == nil {
				t.ID = uint32(n)
			}
		case "remote", "group":
			if a, err := parseAddr(val); err == nil && !a.IsUnspecified() {
				t.Remote = a
			}
		case "local":
			if a, err := parseAddr(val); err == nil && !a.IsUnspecified() {
				t.Local = a
			}
		case "dev":
			if validIfName(val) {
				t.Dev = val
			}
		case "dstport":
			if n, err := strconv.ParseUint(val, 10, 16); err == nil {
				t.DstPort = uint16(n)
			}
		default:
			continue
		}
		i++
	}
	return t
}
