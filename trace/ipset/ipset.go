// Package ipset reads the ipsets of a node — `ipset save` or `ipset list`
// output, told apart by content — into a typed model, and answers the question
// the kernel's `-m set --match-set NAME FLAGS` asks: is this packet in the
// set, with the set's own semantics (ports with their protocol, the most
// specific net deciding, `nomatch` entries, netmasks, list:set members).
//
// kube-proxy's IPVS mode keeps the Service addresses it accepts, masquerades
// and filters in ipsets (KUBE-CLUSTER-IP, KUBE-NODE-PORT-TCP, ...), and CNIs
// such as Calico, Weave and kube-router keep theirs there too, so the
// iptables engine needs the sets' contents to evaluate a rule exactly.
//
// Everything here is pure: the input is untrusted node output, bounded by
// Limits, and nothing is printed.
package ipset

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every error about the input's content.
var ErrMalformed = errors.New("malformed ipset output")

// ErrTooLarge is wrapped when the input exceeds Limits.
var ErrTooLarge = errors.New("ipset output exceeds the parser's limits")

// ParseError locates a problem in the input.
type ParseError struct {
	Line int
	Msg  string
	err  error
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error {
	if e.err != nil {
		return e.err
	}
	return ErrMalformed
}

// Format is the kind of output a Dump was read from.
type Format string

const (
	// FormatSave is `ipset save` (also `ipset list -o save`): create/add lines.
	FormatSave Format = "save"
	// FormatList is `ipset list`: "Name:" blocks with a Members: section.
	FormatList Format = "list"
)

// Family is a set's address family: "inet", "inet6", or "" for sets that
// have none (bitmap:port, list:set, hash:mac).
type Family string

const (
	FamilyInet  Family = "inet"
	FamilyInet6 Family = "inet6"
)

// Kind is what one dimension of a set's type holds.
type Kind uint8

const (
	KindIP    Kind = iota + 1 // an address ("ip")
	KindNet                   // an address with a prefix length ("net")
	KindPort                  // a protocol and port ("port"), or an ICMP type/code
	KindIface                 // an interface name ("iface")
	KindMAC                   // an Ethernet address ("mac")
	KindMark                  // a packet mark ("mark")
	KindSet                   // the name of another set ("set", list:set)
)

var kindNames = map[string]Kind{
	"ip": KindIP, "net": KindNet, "port": KindPort, "iface": KindIface,
	"mac": KindMAC, "mark": KindMark, "set": KindSet,
}

func (k Kind) String() string {
	for name, v := range kindNames {
		if v == k {
			return name
		}
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is a set type such as "hash:ip,port": a storage method and the
// dimensions of its elements.
type Type string

// Well-known types. kube-proxy's IPVS mode uses hash:ip, hash:ip,port,
// hash:ip,port,ip, hash:ip,port,net and bitmap:port; Calico, Weave and
// kube-router use hash:ip, hash:net, hash:net,port, hash:ip,port and list:set.
const (
	HashIP         Type = "hash:ip"
	HashIPPort     Type = "hash:ip,port"
	HashIPPortIP   Type = "hash:ip,port,ip"
	HashIPPortNet  Type = "hash:ip,port,net"
	HashIPMark     Type = "hash:ip,mark"
	HashIPMAC      Type = "hash:ip,mac"
	HashNet        Type = "hash:net"
	HashNetPort    Type = "hash:net,port"
	HashNetNet     Type = "hash:net,net"
	HashNetPortNet Type = "hash:net,port,net"
	HashNetIface   Type = "hash:net,iface"
	HashMAC        Type = "hash:mac"
	BitmapIP       Type = "bitmap:ip"
	BitmapIPMAC    Type = "bitmap:ip,mac"
	BitmapPort     Type = "bitmap:port"
	ListSet        Type = "list:set"
)

// knownTypes are the types the kernel offers (ipset 7); anything else is
// refused rather than guessed at.
var knownTypes = map[Type]bool{
	HashIP: true, HashIPPort: true, HashIPPortIP: true, HashIPPortNet: true,
	HashIPMark: true, HashIPMAC: true, HashNet: true, HashNetPort: true,
	HashNetNet: true, HashNetPortNet: true, HashNetIface: true, HashMAC: true,
	BitmapIP: true, BitmapIPMAC: true, BitmapPort: true, ListSet: true,
}

// Method is the storage method: "hash", "bitmap" or "list".
func (t Type) Method() string {
	m, _, _ := strings.Cut(string(t), ":")
	return m
}

// Dims are the kinds of the type's dimensions, in order: hash:ip,port,net is
// [KindIP KindPort KindNet]. Nil for an unknown type.
func (t Type) Dims() []Kind {
	if !knownTypes[t] {
		return nil
	}
	_, rest, _ := strings.Cut(string(t), ":")
	var out []Kind
	for _, d := range strings.Split(rest, ",") {
		out = append(out, kindNames[d])
	}
	return out
}

// Set is one ipset.
type Set struct {
	Name   string
	Type   Type
	Family Family
	Options
	// Members in the order the tool printed them (the kernel's hash order,
	// not insertion order).
	Members []Member
	// Line is where the set was declared ("create" or "Name:").
	Line int

	// From `ipset list` only (zero from `ipset save`).
	Revision   int
	References int
	// DeclaredEntries is the "Number of entries:" line; -1 when absent.
	DeclaredEntries int

	dims  []Kind
	index *index
}

// Options are a set's creation options, from a create line or a list
// Header. Unknown options are kept in Other, in order, not dropped.
type Options struct {
	HashSize, MaxElem int
	// Timeout is the default entry timeout in seconds when HasTimeout.
	Timeout    int
	HasTimeout bool
	Counters   bool
	Comment    bool
	SkbInfo    bool
	ForceAdd   bool
	// Netmask is the prefix length hash:ip and bitmap:ip store addresses
	// with (0 when the set has none).
	Netmask int
	// Range is bitmap's range as printed ("0-65535",
	// "192.168.0.0-192.168.255.255").
	Range string
	// Size is list:set's size.
	Size       int
	BucketSize int
	InitVal    string
	// MarkMask is hash:ip,mark's markmask, as printed.
	MarkMask string
	Other    []string
}

// Member is one element of a set with its per-entry options.
type Member struct {
	// Text is the element as printed, e.g. "10.96.0.1,tcp:443".
	Text string
	Elem []Part
	// NoMatch marks an exception: a packet whose most specific match is
	// this element is not in the set (hash:net types).
	NoMatch    bool
	Timeout    int
	HasTimeout bool
	Comment    string
	Packets    uint64
	Bytes      uint64
	// SkbMark, SkbPrio, SkbQueue are the skbinfo extension's values as printed.
	SkbMark, SkbPrio, SkbQueue string
	Line                       int
}

// Part is one dimension of an element.
type Part struct {
	Kind Kind
	// Prefix is the address of KindIP (full length) or the network of KindNet.
	Prefix netip.Prefix
	// Proto is the IP protocol number of KindPort (6 tcp, 17 udp, 132 sctp,
	// 1 icmp, 58 icmpv6, 136 udplite); 0 for bitmap:port, which has none.
	Proto uint8
	// Port is the port of KindPort; for ICMP it is type<<8 | code.
	Port uint16
	// Name is the interface of KindIface or the set of KindSet.
	Name string
	// Physdev is set for "physdev:IFACE" (the bridge port, not the bridge).
	Physdev bool
	MAC     [6]byte
	Mark    uint32
}

// Dump is every set of one `ipset save` / `ipset list` output.
type Dump struct {
	Format Format
	Sets   []*Set
	// Warnings are oddities the parser tolerated (for example a list whose
	// "Number of entries" disagrees with its members).
	Warnings []string

	byName map[string]*Set
}

// Set returns the named set, or nil.
func (d *Dump) Set(name string) *Set {
	if d == nil {
		return nil
	}
	return d.byName[name]
}

// Len is the number of members of all sets.
func (d *Dump) Len() int {
	n := 0
	for _, s := range d.Sets {
		n += len(s.Members)
	}
	return n
}

// short quotes at most a short prefix of untrusted text for an error.
func short(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}
