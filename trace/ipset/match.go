package ipset

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrUnknownSet is returned by Dump.Contains for a set the dump does not hold.
var ErrUnknownSet = errors.New("no such ipset")

// ErrUnsupported is returned when deciding membership needs a fact this
// package does not model (a MAC address or a packet mark).
var ErrUnsupported = errors.New("ipset membership needs a fact the simulator does not model")

// Dir is one direction flag of `-m set --match-set NAME FLAGS`: which of the
// packet's addresses (ports, interfaces) a dimension of the set is compared
// with.
type Dir uint8

const (
	Src Dir = iota + 1
	Dst
)

func (d Dir) String() string {
	switch d {
	case Src:
		return "src"
	case Dst:
		return "dst"
	}
	return "?"
}

// maxDims is the kernel's IPSET_DIM_MAX.
const maxDims = 6

// ParseDirs reads the FLAGS of `--match-set NAME FLAGS`, e.g. "dst,dst".
func ParseDirs(flags string) ([]Dir, error) {
	parts := strings.Split(flags, ",")
	if len(parts) > maxDims {
		return nil, fmt.Errorf("ipset flags %s: more than %d directions", short(flags), maxDims)
	}
	out := make([]Dir, 0, len(parts))
	for _, p := range parts {
		switch p {
		case "src":
			out = append(out, Src)
		case "dst":
			out = append(out, Dst)
		default:
			return nil, fmt.Errorf("ipset flags %s: want src or dst, not %s", short(flags), short(p))
		}
	}
	return out, nil
}

// Packet is what a membership test looks at: the facts of the packet at
// the rule being evaluated.
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is "tcp", "udp", "sctp", "icmp", ... or a decimal number.
	Protocol         string
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are ICMP's "port" in ipset's port dimension.
	ICMPType, ICMPCode uint8
	// InIface and OutIface are compared by hash:net,iface (src: the input
	// interface, dst: the output one). Empty when not known at the rule.
	InIface, OutIface string
}

// Result is the answer of a membership test.
type Result struct {
	Matched bool
	// Set is the set whose member decided: the tested set, or for list:set
	// the member set that matched.
	Set string
	// Member is the element that decided, nil when none did. It may be a
	// nomatch element: then Matched is false because of it.
	Member *Member
	// Why says, when no member decided, what made the test fail before
	// any element was looked at (family, fewer flags than dimensions).
	Why string
}

// Contains tests the packet against the named set as `-m set --match-set
// NAME FLAGS` does, with dirs from ParseDirs(FLAGS).
func (d *Dump) Contains(name string, p Packet, dirs []Dir) (Result, error) {
	s := d.Set(name)
	if s == nil {
		return Result{}, fmt.Errorf("ipset %s: %w", short(name), ErrUnknownSet)
	}
	if s.Type != ListSet {
		return s.Contains(p, dirs)
	}
	// list:set: the first member set that matches decides; the kernel
	// does not let a list:set hold another list:set, so this is one level.
	for i := range s.Members {
		m := &s.Members[i]
		sub := d.Set(m.Elem[0].Name)
		if sub == nil {
			return Result{}, fmt.Errorf("ipset %s: member %s: %w", short(name), short(m.Elem[0].Name), ErrUnknownSet)
		}
		if sub.Type == ListSet {
			return Result{}, fmt.Errorf("ipset %s: member %s is itself a list:set, which the kernel does not allow", short(name), short(sub.Name))
		}
		r, err := sub.Contains(p, dirs)
		if err != nil {
			return Result{}, err
		}
		if r.Matched {
			return r, nil
		}
	}
	return Result{Set: s.Name, Why: "no member set matched"}, nil
}

// Contains tests the packet against this set. A list:set needs the other
// sets: use Dump.Contains.
func (s *Set) Contains(p Packet, dirs []Dir) (Result, error) {
	res := Result{Set: s.Name}
	if s.Type == ListSet {
		return res, fmt.Errorf("ipset %s is a list:set: test it through its dump", short(s.Name))
	}
	if len(dirs) < len(s.dims) {
		// The kernel's ip_set_test refuses a match with fewer flags than
		// the set has dimensions.
		res.Why = fmt.Sprintf("%d direction flags for a %d-dimension %s set", len(dirs), len(s.dims), s.Type)
		return res, nil
	}
	if s.Family != "" {
		a := p.Dst
		if !a.IsValid() {
			a = p.Src
		}
		if a.IsValid() && familyOf(a) != s.Family {
			res.Why = fmt.Sprintf("a %s packet against a family %s set", familyOf(a), s.Family)
			return res, nil
		}
	}
	key, err := s.packetKey(p, dirs)
	if err != nil {
		return res, err
	}
	if key.noPort {
		res.Why = fmt.Sprintf("protocol %s has no port for %s", short(p.Protocol), s.Type)
		return res, nil
	}
	best := -1
	var bestRank [2]int
	for _, i := range s.candidates(key) {
		m := &s.Members[i]
		rank, ok := s.memberMatches(m, key)
		if !ok {
			continue
		}
		if best < 0 || rank[0] > bestRank[0] || (rank[0] == bestRank[0] && rank[1] > bestRank[1]) {
			best, bestRank = int(i), rank
		}
	}
	if best >= 0 {
		res.Member = &s.Members[best]
		res.Matched = !res.Member.NoMatch
	}
	return res, nil
}

// key is the packet's value for each dimension of a set.
type key struct {
	vals   []Part
	noPort bool
}

func (s *Set) packetKey(p Packet, dirs []Dir) (key, error) {
	k := key{vals: make([]Part, len(s.dims))}
	for i, kind := range s.dims {
		src := dirs[i] == Src
		v := Part{Kind: kind}
		switch kind {
		case KindIP, KindNet:
			a := p.Dst
			if src {
				a = p.Src
			}
			if !a.IsValid() {
				return k, fmt.Errorf("ipset %s: the packet has no %s address", short(s.Name), dirs[i])
			}
			if s.Netmask > 0 && kind == KindIP {
				pfx, _ := a.Prefix(s.Netmask)
				a = pfx.Addr()
			}
			v.Prefix = netip.PrefixFrom(a, a.BitLen())
		case KindPort:
			proto, ok := ProtoNumber(p.Protocol)
			if !ok {
				return k, fmt.Errorf("ipset %s: unknown protocol %s", short(s.Name), short(p.Protocol))
			}
			v.Proto = proto
			switch proto {
			case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoUDPLite:
				v.Port = p.DstPort
				if src {
					v.Port = p.SrcPort
				}
			case ProtoICMP, ProtoICMPv6:
				v.Port = uint16(p.ICMPType)<<8 | uint16(p.ICMPCode)
			}
			if s.Type == BitmapPort {
				// bitmap:port reads ports of port-carrying protocols only.
				switch proto {
				case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoUDPLite:
				default:
					k.noPort = true
				}
				v.Proto = 0
			}
		case KindIface:
			v.Name = p.OutIface
			if src {
				v.Name = p.InIface
			}
			if v.Name == "" {
				return k, fmt.Errorf("ipset %s: the packet's %s interface is not known", short(s.Name), dirs[i])
			}
		case KindMAC, KindMark:
			return k, fmt.Errorf("ipset %s: %s dimension: %w", short(s.Name), kind, ErrUnsupported)
		}
		k.vals[i] = v
	}
	return k, nil
}

// memberMatches compares a member with the packet's key; rank orders
// matches by the specificity of the set's first and second net dimension,
// most specific first, as the kernel walks them.
func (s *Set) memberMatches(m *Member, k key) (rank [2]int, ok bool) {
	nets := 0
	for i, part := range m.Elem {
		v := k.vals[i]
		switch part.Kind {
		case KindIP:
			if part.Prefix.Addr() != v.Prefix.Addr() {
				return rank, false
			}
		case KindNet:
			if !part.Prefix.Contains(v.Prefix.Addr()) {
				return rank, false
			}
			if nets < 2 {
				rank[nets] = part.Prefix.Bits()
			}
			nets++
		case KindPort:
			if part.Proto != v.Proto || part.Port != v.Port {
				return rank, false
			}
		case KindIface:
			// physdev: elements name the bridge port, which the simulator
			// does not model separately from the interface.
			if part.Name != v.Name {
				return rank, false
			}
		default:
			return rank, false
		}
	}
	return rank, true
}

// index speeds up the first dimension when it is an address or network:
// members by their first part's prefix, and the distinct prefix lengths,
// longest first, so a lookup masks the packet's address once per length
// (as the kernel's hash:net types walk their cidr list).
type index struct {
	byPrefix map[netip.Prefix][]int32
	bits     []int
}

func (s *Set) buildIndex() {
	if len(s.dims) == 0 || (s.dims[0] != KindIP && s.dims[0] != KindNet) || len(s.Members) < 8 {
		return
	}
	ix := &index{byPrefix: make(map[netip.Prefix][]int32, len(s.Members))}
	for i := range s.Members {
		p := s.Members[i].Elem[0].Prefix
		ix.byPrefix[p] = append(ix.byPrefix[p], int32(i))
		if !slices.Contains(ix.bits, p.Bits()) {
			ix.bits = append(ix.bits, p.Bits())
		}
	}
	slices.Sort(ix.bits)
	slices.Reverse(ix.bits)
	s.index = ix
}

// candidates are the members that may match the key: those the index finds
// for its first dimension, or all of them.
func (s *Set) candidates(k key) []int32 {
	if s.index == nil {
		out := make([]int32, len(s.Members))
		for i := range out {
			out[i] = int32(i)
		}
		return out
	}
	a := k.vals[0].Prefix.Addr()
	var out []int32
	for _, b := range s.index.bits {
		if b > a.BitLen() {
			continue
		}
		pfx, _ := a.Prefix(b)
		out = append(out, s.index.byPrefix[pfx]...)
	}
	return out
}

// ParseElement reads an element in the set's own notation, as `ipset add`
// takes it and kube-proxy writes it ("10.96.0.1,tcp:443").
func (s *Set) ParseElement(text string) ([]Part, error) {
	set := s
	if s.dims == nil { // a Set built by hand, not by Parse
		set = &Set{Name: s.Name, Type: s.Type, Family: s.Family, dims: s.Type.Dims()}
	}
	if set.dims == nil {
		return nil, fmt.Errorf("ipset %s: unknown type %s", short(s.Name), short(string(s.Type)))
	}
	parts, err := parseElem(set, text)
	if err != nil {
		return nil, fmt.Errorf("ipset %s: element %s: %w", short(s.Name), short(text), err)
	}
	return parts, nil
}

// Has tells whether the set holds exactly this element (not whether a
// packet would match it): what drift checks ask of kube-proxy's sets,
// "is this Service port in KUBE-CLUSTER-IP".
func (s *Set) Has(text string) (bool, error) {
	parts, err := s.ParseElement(text)
	if err != nil {
		return false, err
	}
	for i := range s.Members {
		if slices.Equal(s.Members[i].Elem, parts) {
			return true, nil
		}
	}
	return false, nil
}
