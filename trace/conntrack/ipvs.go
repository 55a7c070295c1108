package conntrack

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// IPVSConn is one entry of /proc/net/ip_vs_conn: a client's connection to a
// virtual service (a Service address in kube-proxy's IPVS mode) and the real
// server (endpoint) IPVS sent it to.
//
// The kernel prints (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_conn_seq_show)
//
//	Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//	TCP 0A0E6402 D4F2 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED     899
//
// with IPv4 addresses and all ports in hexadecimal and IPv6 addresses in
// full colon form; PEName and PEData (a persistence engine, "sip" and its
// Call-ID) only on entries that have them, and not at all before Linux
// 2.6.37.
type IPVSConn struct {
	// Proto is the protocol; 0 for "IP" (the templates of a firewall-mark
	// service).
	Proto Proto
	// Client is FromIP:FPrt, Virtual is ToIP:TPrt (the Service address),
	// Dest is DestIP:DPrt (the endpoint).
	Client, Virtual, Dest netip.AddrPort
	// State is the IPVS state: "ESTABLISHED", "TIME_WAIT", "UDP", ...;
	// "NONE" or "ASSURED" for a persistence template.
	State string
	// Expires is the seconds until the entry expires.
	Expires uint32
	// PEName and PEData are the persistence engine's name and data.
	PEName, PEData string
	// Line is the entry's line in the input (1-based).
	Line int
}

// Template tells whether the entry is a persistence template (session
// affinity: kube-proxy's sessionAffinity ClientIP) rather than a
// connection. IPVS creates templates with client port 0; a connection
// always has the client's real port.
func (c *IPVSConn) Template() bool { return c.Client.Port() == 0 }

// IPVSReader reads /proc/net/ip_vs_conn one entry at a time.
type IPVSReader struct {
	lines lineReader
	conn  IPVSConn
	stats Stats
}

// NewIPVSReader reads the table from r.
func NewIPVSReader(r io.Reader) *IPVSReader {
	return &IPVSReader{lines: newLineReader(r), stats: Stats{Format: FormatIPVS, Shown: -1}}
}

// Stats reports what was read so far.
func (r *IPVSReader) Stats() Stats { return r.stats }

// Next returns the next entry, or io.EOF after the last; the entry is
// overwritten by the following call. The header line and lines that are
// not entries are skipped (the latter counted in Stats).
func (r *IPVSReader) Next() (*IPVSConn, error) {
	for {
		line, err := r.lines.next(func(n int, head []byte) { r.stats.Lines++; r.stats.skip(n, head, "line too long") })
		if err != nil {
			return nil, err
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		if hasPrefix(line, "Pro FromIP") {
			continue
		}
		r.stats.Lines++
		c := &r.conn
		if why := parseIPVSLine(line, c); why != "" {
			if r.lines.partial {
				r.stats.Cut = true
				return nil, io.EOF
			}
			r.stats.skip(r.lines.lineNo, line, why)
			continue
		}
		c.Line = r.lines.lineNo
		r.stats.Entries++
		return c, nil
	}
}

// ScanIPVS reads every entry of the table in r and calls fn with each (the
// entry is reused). An input with lines but no entry is an error.
func ScanIPVS(r io.Reader, fn func(*IPVSConn) error) (Stats, error) {
	ir := NewIPVSReader(r)
	return drain(ir.Next, ir.Stats, fn, "IPVS connection entries")
}

const maxPEData = 256

func parseIPVSLine(line []byte, c *IPVSConn) string {
	*c = IPVSConn{}
	var f [9][]byte
	rest := line
	for i := range f {
		if f[i], rest = nextToken(rest); f[i] == nil {
			return "too few fields"
		}
	}
	p, ok := ipvsProto(f[0])
	if !ok {
		return "unknown protocol"
	}
	c.Proto = p
	var bad bool
	if c.Client, bad = ipvsAddrPort(f[1], f[2]); bad {
		return "bad client address"
	}
	if c.Virtual, bad = ipvsAddrPort(f[3], f[4]); bad {
		return "bad virtual address"
	}
	if c.Dest, bad = ipvsAddrPort(f[5], f[6]); bad {
		return "bad destination address"
	}
	if c.Client.Addr().Is4() != c.Virtual.Addr().Is4() {
		return "client and virtual addresses of different families"
	}
	if !isStateWord(f[7]) && string(f[7]) != "ERR!" && string(f[7]) != "?" {
		return "bad state"
	}
	c.State = internState(f[7])
	n, ok := atoi(f[8], 1<<32-1)
	if !ok {
		return "bad expiry"
	}
	c.Expires = uint32(n)
	if name, more := nextToken(rest); name != nil {
		if len(name) > 16 {
			return "bad persistence engine name"
		}
		c.PEName = string(name)
		data := trimSpace(more)
		if len(data) > maxPEData {
			data = data[:maxPEData]
		}
		c.PEData = string(data)
	}
	return ""
}

// ipvsProto reads ip_vs_proto_name's output: TCP, UDP, SCTP, ICMP, ICMPv6,
// IP, or IP_<number>.
func ipvsProto(b []byte) (Proto, bool) {
	switch string(b) {
	case "TCP":
		return ProtoTCP, true
	case "UDP":
		return ProtoUDP, true
	case "SCTP":
		return ProtoSCTP, true
	case "ICMP":
		return ProtoICMP, true
	case "ICMPv6":
		return ProtoICMPv6, true
	case "IP":
		return 0, true
	}
	if hasPrefix(b, "IP_") {
		n, ok := atoi(b[3:], 255)
		return Proto(n), ok
	}
	return 0, false
}

// ipvsAddrPort reads an address (8 hex digits, or IPv6) and a 4-hex-digit
// port.
func ipvsAddrPort(a, p []byte) (netip.AddrPort, bool) {
	var addr netip.Addr
	if len(a) == 8 {
		v, ok := hex(a)
		if !ok {
			return netip.AddrPort{}, true
		}
		addr = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	} else {
		var bad bool
		if addr, bad = parseAddr(a); bad || addr.Is4() {
			return netip.AddrPort{}, true
		}
	}
	if len(p) != 4 {
		return netip.AddrPort{}, true
	}
	port, ok := hex(p)
	if !ok {
		return netip.AddrPort{}, true
	}
	return netip.AddrPortFrom(addr, uint16(port)), false
}

func hex(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		h, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | uint32(h)
	}
	return v, true
}

// looksLikeIPVSLine recognizes an ip_vs_conn entry without its header.
func looksLikeIPVSLine(line []byte) bool {
	var c IPVSConn
	return parseIPVSLine(line, &c) == ""
}

// String formats the entry briefly.
func (c *IPVSConn) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s -> %s via %s %s", c.Proto, c.Client, c.Dest, c.Virtual, c.State)
	if c.Template() {
		b.WriteString(" template")
	}
	return b.String()
}
