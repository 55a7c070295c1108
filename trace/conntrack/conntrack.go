// Package conntrack reads what the kernel observed about a node's
// connections — its connection-tracking table (/proc/net/nf_conntrack, or
// `conntrack -L` with or without `-o extended`) and the IPVS connection
// table (/proc/net/ip_vs_conn) — and counts, for a set of Service addresses,
// where each connection was actually sent.
//
// A node can track a million connections, so nothing here holds the table:
// Reader and IPVSReader hand out one entry at a time (reusing it), and
// Aggregator keeps only counts for the Service addresses it was asked
// about, grouped by the address the kernel translated each connection to
// (the reply tuple's source: after DNAT, the endpoint). Memory is bounded by
// the number of Service addresses, endpoints per address (Options.MaxBackends)
// and, only when asked, clients per endpoint (Options.MaxClients), never by
// the size of the table.
//
// Everything read is untrusted: lines are length-bounded, malformed lines
// are counted and skipped with a short clipped example (Stats), and an input
// in which nothing parses is an error.
//
// The package is pure: it reads the io.Reader it is given and nothing else.
package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by errors about input that is not a table this
// package reads.
var ErrMalformed = errors.New("malformed connection table")

// Proto is an IP protocol number, as the kernel prints it after the
// protocol's name.
type Proto uint8

// Protocols conntrack and IPVS print.
const (
	ProtoICMP    Proto = 1
	ProtoTCP     Proto = 6
	ProtoUDP     Proto = 17
	ProtoDCCP    Proto = 33
	ProtoGRE     Proto = 47
	ProtoICMPv6  Proto = 58
	ProtoSCTP    Proto = 132
	ProtoUDPLite Proto = 136
)

var protoNames = map[Proto]string{
	ProtoICMP: "icmp", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoDCCP: "dccp", ProtoGRE: "gre",
	ProtoICMPv6: "icmpv6", ProtoSCTP: "sctp", ProtoUDPLite: "udplite",
}

// String is the lower-case name conntrack uses ("tcp", "udp", ...), or
// "proto-N" for a protocol it has no name for.
func (p Proto) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return "proto-" + strconv.Itoa(int(p))
}

// ParseProto reads a protocol name in any case ("tcp", "UDP", "sctp") as
// Kubernetes, conntrack and IPVS write them.
func ParseProto(s string) (Proto, bool) {
	s = strings.ToLower(s)
	for p, n := range protoNames {
		if n == s {
			return p, true
		}
	}
	return 0, false
}

// hasPorts tells whether the protocol's tuples carry ports (sport=, dport=).
func (p Proto) hasPorts() bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP, ProtoDCCP:
		return true
	}
	return false
}

// hasState tells whether conntrack prints a state word for the protocol
// (TCP's ESTABLISHED, SCTP's COOKIE_WAIT, DCCP's OPEN).
func (p Proto) hasState() bool {
	return p == ProtoTCP || p == ProtoSCTP || p == ProtoDCCP
}

// Family is the layer-3 protocol number conntrack prints: 2 for IPv4, 10
// for IPv6.
type Family uint8

// Families.
const (
	IPv4 Family = 2
	IPv6 Family = 10
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family-" + strconv.Itoa(int(f))
}

// Tuple is one direction of a connection as conntrack prints it.
type Tuple struct {
	Src, Dst netip.Addr
	// SrcPort and DstPort are set for TCP, UDP, UDP-Lite, SCTP and DCCP.
	SrcPort, DstPort uint16
	// ICMPType, ICMPCode and ICMPID are set for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
	// Zone is this direction's zone (zone-orig=, zone-reply=) when ZoneSet;
	// a zone for both directions is Entry.Zone.
	Zone    uint16
	ZoneSet bool
	// Packets and Bytes are the accounting counters, present (Counted) only
	// when net.netfilter.nf_conntrack_acct was on when the entry was created.
	Packets, Bytes uint64
	Counted        bool
}

// SrcAddrPort is the source as one address:port.
func (t Tuple) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(t.Src, t.SrcPort) }

// DstAddrPort is the destination as one address:port.
func (t Tuple) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(t.Dst, t.DstPort) }

// Entry is one tracked connection. The original tuple is the first
// packet as it arrived; the reply tuple is what a reply must look like, so
// after DNAT its source is the endpoint the connection was sent to, and
// after SNAT (masquerade) its destination is the node.
type Entry struct {
	Family Family
	Proto  Proto
	// Timeout is the seconds until the entry expires; -1 when not printed
	// (flow-offloaded entries).
	Timeout int64
	// State is the TCP, SCTP or DCCP state ("ESTABLISHED", "TIME_WAIT",
	// "COOKIE_WAIT", ...); empty for other protocols.
	State    string
	Original Tuple
	Reply    Tuple
	// Unreplied: no packet was seen in the reply direction ([UNREPLIED]).
	Unreplied bool
	// Assured: traffic was seen both ways long enough for the kernel to
	// keep the entry under pressure ([ASSURED]).
	Assured bool
	// Offload: the flow is offloaded to a flowtable ([OFFLOAD] or
	// [HW_OFFLOAD]); its timeout is then not printed.
	Offload bool
	Mark    uint32
	// Zone is the zone= value (the kernel prints zone=0 when zones are
	// compiled in; conntrack -L prints it only when not 0).
	Zone uint16
	// Use is the entry's reference count.
	Use uint32
	// Line is the entry's line in the input (1-based).
	Line int
}

// String formats the entry briefly, for messages and tests.
func (e *Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Family, e.Proto)
	if e.State != "" {
		b.WriteString(" " + e.State)
	}
	fmt.Fprintf(&b, " %s -> %s reply %s -> %s", addrPort(e.Original.Src, e.Original.SrcPort, e.Proto), addrPort(e.Original.Dst, e.Original.DstPort, e.Proto),
		addrPort(e.Reply.Src, e.Reply.SrcPort, e.Proto), addrPort(e.Reply.Dst, e.Reply.DstPort, e.Proto))
	if e.Unreplied {
		b.WriteString(" unreplied")
	}
	if e.Assured {
		b.WriteString(" assured")
	}
	return b.String()
}

func addrPort(a netip.Addr, p uint16, proto Proto) string {
	if !proto.hasPorts() {
		return a.String()
	}
	return netip.AddrPortFrom(a, p).String()
}

// Format is the kind of table a text is.
type Format int

// Formats Detect tells apart.
const (
	FormatUnknown Format = iota
	// FormatExtended is /proc/net/nf_conntrack and `conntrack -L -o
	// extended`: each line starts with the layer-3 name and number.
	FormatExtended
	// FormatDefault is `conntrack -L` (and the old /proc/net/ip_conntrack):
	// each line starts with the layer-4 name and number.
	FormatDefault
	// FormatIPVS is /proc/net/ip_vs_conn.
	FormatIPVS
	// FormatXML is `conntrack -L -o xml`, which this package does not read.
	FormatXML
)

func (f Format) String() string {
	switch f {
	case FormatExtended:
		return "nf_conntrack"
	case FormatDefault:
		return "conntrack -L"
	case FormatIPVS:
		return "ip_vs_conn"
	case FormatXML:
		return "conntrack XML"
	}
	return "unknown"
}

// Detect tells from the start of a text which table it is: the first line
// that is not empty decides. An empty text is FormatUnknown (an empty table
// reads fine with any reader).
func Detect(head []byte) Format {
	for len(head) > 0 {
		line := head
		if i := indexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		switch {
		case hasPrefix(line, "<?xml"), hasPrefix(line, "<conntrack"):
			return FormatXML
		case hasPrefix(line, "Pro FromIP"):
			return FormatIPVS
		}
		var toks [3][]byte
		n := 0
		for rest := line; n < 3; n++ {
			var t []byte
			t, rest = nextToken(rest)
			if t == nil {
				break
			}
			toks[n] = t
		}
		if n >= 3 && isL3Name(toks[0]) && isDigits(toks[1]) && isL4Name(toks[2]) {
			return FormatExtended
		}
		if n >= 2 && isL4Name(toks[0]) && isDigits(toks[1]) {
			return FormatDefault
		}
		if looksLikeIPVSLine(line) {
			return FormatIPVS
		}
		return FormatUnknown
	}
	return FormatUnknown
}

func isL3Name(b []byte) bool {
	s := string(b)
	return s == "ipv4" || s == "ipv6" || s == "unknown"
}

func isL4Name(b []byte) bool {
	switch string(b) {
	case "tcp", "udp", "udplite", "icmp", "icmpv6", "sctp", "dccp", "gre", "unknown":
		return true
	}
	return false
}
