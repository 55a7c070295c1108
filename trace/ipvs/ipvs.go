// Package ipvs reads a node's IPVS table — the kernel's virtual servers and
// their real servers — from any of the forms a node prints it in, told apart
// by content:
//
//   - /proc/net/ip_vs (hexadecimal addresses and ports; what kube-proxy's
//     image can always print, having no ipvsadm),
//   - ipvsadm -Ln (also -L -n, --numeric),
//   - ipvsadm -Sn (also --save --numeric): the restore commands.
//
// It also counts /proc/net/ip_vs_conn entries without keeping them.
// Everything here is pure; the input is untrusted node output, bounded by
// Limits.
package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// ErrMalformed is wrapped by every error about the input's content.
var ErrMalformed = errors.New("malformed IPVS table")

// ErrTooLarge is wrapped when the input exceeds Limits.
var ErrTooLarge = errors.New("IPVS table exceeds the parser's limits")

// ErrNotNumeric is wrapped when ipvsadm printed host or service names
// (it was run without -n): they cannot be turned back into addresses.
var ErrNotNumeric = errors.New("ipvsadm output with names instead of numbers")

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

// Unwrap gives ErrMalformed, or ErrTooLarge, and the cause when there is
// one (ErrNotNumeric).
func (e *ParseError) Unwrap() []error {
	switch {
	case e.err == nil:
		return []error{ErrMalformed}
	case errors.Is(e.err, ErrTooLarge):
		return []error{e.err}
	}
	return []error{ErrMalformed, e.err}
}

// Format is the form a Table was read from.
type Format string

const (
	FormatProc Format = "proc" // /proc/net/ip_vs
	FormatList Format = "list" // ipvsadm -Ln
	FormatSave Format = "save" // ipvsadm -Sn
)

// Protocols of a virtual server (IPVS serves these three).
const (
	TCP  = "TCP"
	UDP  = "UDP"
	SCTP = "SCTP"
)

// Forwarding methods of a real server, as /proc/net/ip_vs and ipvsadm -L
// name them.
const (
	Masq   = "Masq"   // NAT (-m); kube-proxy's only method
	Route  = "Route"  // direct routing (-g)
	Tunnel = "Tunnel" // IP-in-IP and other tunnels (-i)
	Local  = "Local"  // the real server is this host
)

// Table is one node's IPVS table.
type Table struct {
	Format Format
	// Version is the IPVS version in the header ("1.2.1") and ConnTabSize
	// the connection hash table size; both empty/zero for ipvsadm -S.
	Version     string
	ConnTabSize int
	Services    []*VirtualServer
	Warnings    []string

	// index is the parser's key → service map; nil for a hand-built table.
	index map[Key]*VirtualServer
}

// VirtualServer is one IPVS service: an address, port and protocol, or a
// firewall mark, with its scheduler and real servers.
type VirtualServer struct {
	// Protocol is TCP, UDP or SCTP. /proc/net/ip_vs and ipvsadm -L do not
	// print a firewall-mark service's protocol: it is "" there.
	Protocol string
	Addr     netip.Addr
	Port     uint16
	// FWMark is non-zero for a firewall-mark service (Addr is then invalid).
	FWMark uint32
	// IPv6 is the service's family; for a firewall-mark service read from
	// /proc/net/ip_vs it comes from its real servers' addresses.
	IPv6      bool
	Scheduler string
	// Persistent services keep a client on one real server for Timeout
	// (kube-proxy: sessionAffinity ClientIP); clients are grouped by their
	// address masked to NetmaskBits. Timeout is in seconds from ipvsadm,
	// in jiffies from /proc/net/ip_vs (the kernel's HZ, which the file
	// does not give).
	Persistent  bool
	Timeout     uint32
	NetmaskBits int
	// OnePacket is one-packet scheduling ("ops").
	OnePacket bool
	// PE is the persistence engine ("sip"), SchedFlags the scheduler flags
	// ("flag-1,flag-2"), as printed.
	PE         string
	SchedFlags string
	Reals      []*RealServer
	Line       int
}

// Key identifies a virtual server in the kernel's tables.
type Key struct {
	Protocol string
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

// Key is the service's lookup key.
func (v *VirtualServer) Key() Key {
	return Key{Protocol: v.Protocol, Addr: v.Addr, Port: v.Port, FWMark: v.FWMark}
}

// String names the service as ipvsadm -Ln does: "TCP  10.96.0.1:443" or
// "FWM  5".
func (v *VirtualServer) String() string {
	if v.FWMark != 0 {
		return "FWM  " + strconv.FormatUint(uint64(v.FWMark), 10)
	}
	return fmt.Sprintf("%-4s %s", v.Protocol, netip.AddrPortFrom(v.Addr, v.Port))
}

// RealServer is one destination of a virtual server.
type RealServer struct {
	Addr    netip.Addr
	Port    uint16
	Forward string
	// Weight 0 takes no new connections (kube-proxy: a terminating
	// endpoint kept for its open connections).
	Weight     int
	ActiveConn uint64
	InactConn  uint64
	// UThreshold and LThreshold are ipvsadm -S's -x and -y (0 when unset).
	UThreshold, LThreshold uint32
	// TunType is ipvsadm -S's --tun-type ("ipip", "gue", "gre"), if any.
	TunType string
	Line    int
}

// String is "ADDR:PORT", bracketed for IPv6.
func (r *RealServer) String() string { return netip.AddrPortFrom(r.Addr, r.Port).String() }

// Lookup finds the address/port service for a protocol ("tcp" or "TCP").
func (t *Table) Lookup(protocol string, addr netip.Addr, port uint16) *VirtualServer {
	p := upper(protocol)
	if t.index != nil {
		return t.index[Key{Protocol: p, Addr: addr, Port: port}]
	}
	for _, v := range t.Services {
		if v.FWMark == 0 && v.Port == port && v.Addr == addr && v.Protocol == p {
			return v
		}
	}
	return nil
}

// LookupFWMark finds the firewall-mark service of a family.
func (t *Table) LookupFWMark(mark uint32, ipv6 bool) *VirtualServer {
	for _, v := range t.Services {
		if v.FWMark == mark && v.IPv6 == ipv6 {
			return v
		}
	}
	return nil
}

func upper(s string) string {
	switch s {
	case "tcp":
		return TCP
	case "udp":
		return UDP
	case "sctp":
		return SCTP
	}
	return s
}

// short quotes at most a short prefix of untrusted text for an error.
func short(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}
