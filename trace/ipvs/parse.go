package ipvs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// Limits bound what an input can make the parser allocate.
type Limits struct {
	MaxServices  int
	MaxReals     int // over all services
	MaxLineBytes int
}

// DefaultLimits fit the largest clusters (a virtual server per Service
// address and port, node ports once per node address) with room to spare.
var DefaultLimits = Limits{MaxServices: 500_000, MaxReals: 2_000_000, MaxLineBytes: 4096}

// Parse reads /proc/net/ip_vs, ipvsadm -Ln or ipvsadm -Sn output with
// DefaultLimits, telling them apart by content. Empty input is a table
// without services.
func Parse(r io.Reader) (*Table, error) { return ParseWithLimits(r, DefaultLimits) }

// ParseWithLimits is Parse with explicit bounds.
func ParseWithLimits(r io.Reader, lim Limits) (*Table, error) {
	p := &parser{lim: lim, t: &Table{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(4096, lim.MaxLineBytes)), lim.MaxLineBytes)
	for sc.Scan() {
		p.line++
		if err := p.feed(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ParseError{Line: p.line + 1, Msg: fmt.Sprintf("line longer than %d bytes", lim.MaxLineBytes), err: ErrTooLarge}
		}
		return nil, fmt.Errorf("read IPVS table: %w", err)
	}
	p.t.index = p.keys
	if p.t.Format == FormatProc {
		// /proc/net/ip_vs does not say a firewall-mark service's family:
		// its real servers do.
		for _, v := range p.t.Services {
			if v.FWMark != 0 && len(v.Reals) > 0 {
				v.IPv6 = v.Reals[0].Addr.Is6()
			}
		}
	}
	return p.t, nil
}

// Detect tells which form a prefix of the input is in; ok is false when it
// is none of them.
func Detect(prefix []byte) (f Format, ok bool) {
	lines := bytes.SplitN(prefix, []byte("\n"), 8)
	for i, l := range lines {
		s := string(bytes.TrimRight(l, "\r"))
		switch {
		case strings.TrimSpace(s) == "":
			continue
		case strings.HasPrefix(s, "-A ") || strings.HasPrefix(s, "-a "):
			return FormatSave, true
		case strings.HasPrefix(s, "IP Virtual Server version "), strings.HasPrefix(s, "Prot LocalAddress:Port"):
			for _, l2 := range lines[i+1:] {
				if f := titleFormat(string(bytes.TrimRight(l2, "\r"))); f != "" {
					return f, true
				}
			}
			return "", false
		}
		return "", false
	}
	return "", false
}

// titleFormat tells the forms apart by their column titles: the kernel
// separates them with single spaces, ipvsadm pads the address column.
func titleFormat(line string) Format {
	if !strings.HasPrefix(line, "  -> RemoteAddress:Port") {
		return ""
	}
	if strings.HasPrefix(line, "  -> RemoteAddress:Port Forward ") {
		return FormatProc
	}
	return FormatList
}

type parser struct {
	lim   Limits
	t     *Table
	line  int
	reals int
	cur   *VirtualServer
	// state of the header: how many title lines were seen
	titles int
	keys   map[Key]*VirtualServer
}

func (p *parser) errf(format string, args ...any) error {
	e := &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, ErrNotNumeric) {
			e.err = err
		}
	}
	return e
}

func (p *parser) feed(line string) error {
	line = strings.TrimRight(line, "\r")
	if p.t.Format == "" {
		switch {
		case strings.TrimSpace(line) == "":
			return nil
		case strings.HasPrefix(line, "IP Virtual Server version "):
			return p.header(line)
		case strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-a "):
			p.t.Format = FormatSave
			return p.saveLine(line)
		case p.titles > 0 || p.t.Version != "" || strings.HasPrefix(line, "Prot LocalAddress:Port"):
			// (a table quoted without its version line still has its titles)
			return p.title(line)
		}
		return p.errf("not /proc/net/ip_vs, ipvsadm -Ln or ipvsadm -Sn output: starts with %s", short(line))
	}
	switch p.t.Format {
	case FormatSave:
		return p.saveLine(line)
	case FormatProc, FormatList:
		return p.listLine(line)
	}
	return nil
}

func (p *parser) header(line string) error {
	// IP Virtual Server version 1.2.1 (size=4096)
	rest := strings.TrimPrefix(line, "IP Virtual Server version ")
	ver, size, ok := strings.Cut(rest, " (size=")
	if !ok || !strings.HasSuffix(size, ")") {
		return p.errf("bad IPVS header %s", short(line))
	}
	n, err := strconv.Atoi(strings.TrimSuffix(size, ")"))
	if err != nil || n < 0 {
		return p.errf("bad IPVS header %s", short(line))
	}
	p.t.Version, p.t.ConnTabSize = ver, n
	return nil
}

func (p *parser) title(line string) error {
	switch {
	case strings.HasPrefix(line, "Prot LocalAddress:Port Scheduler Flags"):
		p.titles++
		return nil
	case strings.HasPrefix(line, "Prot LocalAddress:Port"):
		return p.errf("ipvsadm statistics (--stats, --rate, --thresholds, --persistent-conn) have no weights or forwarding methods: collect ipvsadm -Ln")
	}
	f := titleFormat(line)
	if f == "" {
		return p.errf("unexpected line in the IPVS header: %s", short(line))
	}
	if strings.Contains(line, "TunnelInfo") {
		return p.errf("ipvsadm --tun-info output is not supported: collect ipvsadm -Ln")
	}
	p.t.Format = f
	return nil
}

func (p *parser) listLine(line string) error {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	f := strings.Fields(line)
	if f[0] == "->" {
		if p.cur == nil {
			return p.errf("real server before any virtual server")
		}
		rs, err := p.parseListReal(f[1:])
		if err != nil {
			return err
		}
		return p.addReal(p.cur, rs)
	}
	v, err := p.parseListService(f)
	if err != nil {
		return err
	}
	return p.addService(v)
}

func (p *parser) addService(v *VirtualServer) error {
	if len(p.t.Services) >= p.lim.MaxServices {
		return &ParseError{Line: p.line, Msg: fmt.Sprintf("more than %d virtual servers", p.lim.MaxServices), err: ErrTooLarge}
	}
	v.Line = p.line
	if p.keys == nil {
		p.keys = map[Key]*VirtualServer{}
	}
	k := v.Key()
	if v.FWMark != 0 && v.IPv6 {
		k.Protocol = "IPv6" // FWM services of the two families are distinct
	}
	if p.keys[k] != nil {
		return p.errf("virtual server %s listed twice", v)
	}
	p.keys[k] = v
	p.t.Services = append(p.t.Services, v)
	p.cur = v
	return nil
}

func (p *parser) addReal(v *VirtualServer, rs *RealServer) error {
	if p.reals >= p.lim.MaxReals {
		return &ParseError{Line: p.line, Msg: fmt.Sprintf("more than %d real servers", p.lim.MaxReals), err: ErrTooLarge}
	}
	p.reals++
	rs.Line = p.line
	v.Reals = append(v.Reals, rs)
	return nil
}

// parseListService reads a service line of /proc/net/ip_vs
// ("TCP  0A600001:01BB rr  persistent 10800 FFFFFFFF") or ipvsadm -Ln
// ("TCP  10.96.0.1:443 rr persistent 10800").
func (p *parser) parseListService(f []string) (*VirtualServer, error) {
	if len(f) < 3 {
		return nil, p.errf("virtual server line too short: %s", short(strings.Join(f, " ")))
	}
	v := &VirtualServer{}
	rest := f[2:]
	switch f[0] {
	case TCP, UDP, SCTP:
		v.Protocol = f[0]
		var err error
		if p.t.Format == FormatProc {
			v.Addr, v.Port, err = parseHexAddrPort(f[1])
		} else {
			v.Addr, v.Port, err = parseAddrPort(f[1])
		}
		if err != nil {
			return nil, p.errf("virtual server %s: %v", short(f[1]), err)
		}
		v.IPv6 = v.Addr.Is6()
	case "FWM":
		base := 10
		if p.t.Format == FormatProc {
			base = 16
		}
		m, err := strconv.ParseUint(f[1], base, 32)
		if err != nil || m == 0 {
			return nil, p.errf("bad firewall mark %s", short(f[1]))
		}
		v.FWMark = uint32(m)
		if p.t.Format == FormatList && rest[0] == "IPv6" {
			v.IPv6, rest = true, rest[1:]
			if len(rest) == 0 {
				return nil, p.errf("firewall-mark service without a scheduler")
			}
		}
	default:
		return nil, p.errf("unknown virtual server protocol %s", short(f[0]))
	}
	v.Scheduler, rest = rest[0], rest[1:]
	if !schedName(v.Scheduler) {
		return nil, p.errf("virtual server %s: bad scheduler name %s", v, short(v.Scheduler))
	}
	v.NetmaskBits = 32
	if v.IPv6 {
		v.NetmaskBits = 128
	}
	for i := 0; i < len(rest); i++ {
		need := func(n int) error {
			if i+n >= len(rest) {
				return p.errf("virtual server %s: %s wants a value", v, short(rest[i]))
			}
			return nil
		}
		switch rest[i] {
		case "ops":
			v.OnePacket = true
		case "persistent":
			if err := need(1); err != nil {
				return nil, err
			}
			t, err := strconv.ParseUint(rest[i+1], 10, 32)
			if err != nil {
				return nil, p.errf("virtual server %s: bad persistence timeout %s", v, short(rest[i+1]))
			}
			v.Persistent, v.Timeout = true, uint32(t)
			i++
			if p.t.Format == FormatProc {
				// the kernel always prints the netmask after the timeout
				if err := need(1); err != nil {
					return nil, err
				}
				b, err := procNetmask(rest[i+1], v.IPv6)
				if err != nil {
					return nil, p.errf("virtual server %s: %v", v, err)
				}
				v.NetmaskBits = b
				i++
			}
		case "mask":
			if err := need(1); err != nil {
				return nil, err
			}
			b, err := parseNetmask(rest[i+1], v.IPv6)
			if err != nil {
				return nil, p.errf("virtual server %s: %v", v, err)
			}
			v.NetmaskBits = b
			i++
		case "pe":
			if err := need(1); err != nil {
				return nil, err
			}
			v.PE = rest[i+1]
			i++
		default:
			p.t.Warnings = append(p.t.Warnings, fmt.Sprintf("line %d: virtual server %s: unknown flag %s ignored", p.line, v, short(rest[i])))
		}
	}
	return v, nil
}

func (p *parser) parseListReal(f []string) (*RealServer, error) {
	if len(f) < 5 {
		return nil, p.errf("real server line too short: %s", short(strings.Join(f, " ")))
	}
	rs := &RealServer{}
	var err error
	if p.t.Format == FormatProc {
		rs.Addr, rs.Port, err = parseHexAddrPort(f[0])
	} else {
		rs.Addr, rs.Port, err = parseAddrPort(f[0])
	}
	if err != nil {
		return nil, p.errf("real server %s: %v", short(f[0]), err)
	}
	switch f[1] {
	case Masq, Route, Tunnel, Local:
		rs.Forward = f[1]
	default:
		return nil, p.errf("real server %s: unknown forwarding method %s", rs, short(f[1]))
	}
	w, err1 := strconv.Atoi(f[2])
	a, err2 := strconv.ParseUint(f[3], 10, 64)
	in, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || w < 0 {
		return nil, p.errf("real server %s: bad weight or connection counts", rs)
	}
	rs.Weight, rs.ActiveConn, rs.InactConn = w, a, in
	if len(f) > 5 {
		p.t.Warnings = append(p.t.Warnings, fmt.Sprintf("line %d: real server %s: extra fields ignored", p.line, rs))
	}
	return rs, nil
}

// parseHexAddrPort reads /proc/net/ip_vs's "0A600001:01BB" (IPv4, the
// address as a big-endian number) or "[2001:0db8:...:0001]:01BB" (IPv6).
func parseHexAddrPort(s string) (netip.Addr, uint16, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.Addr{}, 0, errors.New("want ADDRESS:PORT")
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil || len(s[i+1:]) != 4 {
		return netip.Addr{}, 0, errors.New("bad hexadecimal port")
	}
	host := s[:i]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, 0, errors.New("bad IPv6 address")
		}
		return a, uint16(port), nil
	}
	if len(host) != 8 {
		return netip.Addr{}, 0, errors.New("bad hexadecimal IPv4 address")
	}
	n, err := strconv.ParseUint(host, 16, 32)
	if err != nil {
		return netip.Addr{}, 0, errors.New("bad hexadecimal IPv4 address")
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return netip.AddrFrom4(b), uint16(port), nil
}

// parseAddrPort reads ipvsadm's "10.96.0.1:443" or "[2001:db8::1]:443". A
// name where a number belongs means ipvsadm ran without -n.
func parseAddrPort(s string) (netip.Addr, uint16, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), ap.Port(), nil
	}
	host, port, _ := strings.Cut(s, ":")
	if strings.HasPrefix(s, "[") {
		if i := strings.LastIndex(s, "]:"); i >= 0 {
			host, port = s[:i+1], s[i+2:]
		}
	}
	if host != "" && !looksNumericHost(host) || port != "" && !isDigits(port) {
		// ipvsadm without -n prints names (and cuts long ones short)
		return netip.Addr{}, 0, fmt.Errorf("%w: run ipvsadm with -n", ErrNotNumeric)
	}
	return netip.Addr{}, 0, errors.New("want ADDRESS:PORT")
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func looksNumericHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		_, err := netip.ParseAddr(strings.Trim(h, "[]"))
		return err == nil
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}

// procNetmask reads the kernel's "%08X" of ntohl(netmask): the IPv4 mask
// itself, or for IPv6 the prefix length, which the kernel keeps in host
// order, so a little-endian node prints 128 as 80000000.
func procNetmask(s string, ipv6 bool) (int, error) {
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil || len(s) != 8 {
		return 0, fmt.Errorf("bad netmask %s", short(s))
	}
	if ipv6 {
		v := uint32(n)
		if v > 128 {
			v = bits.ReverseBytes32(v)
		}
		if v < 1 || v > 128 {
			return 0, fmt.Errorf("bad IPv6 prefix length %s", short(s))
		}
		return int(v), nil
	}
	return maskBits(uint32(n), s)
}

func maskBits(m uint32, text string) (int, error) {
	ones := bits.LeadingZeros32(^m)
	if ones < 32 && m<<ones != 0 {
		return 0, fmt.Errorf("netmask %s is not contiguous", short(text))
	}
	return ones, nil
}

// parseNetmask reads ipvsadm's "255.255.255.0" (IPv4) or "64" (IPv6).
func parseNetmask(s string, ipv6 bool) (int, error) {
	if ipv6 {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 128 {
			return 0, fmt.Errorf("bad IPv6 prefix length %s", short(s))
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("bad netmask %s", short(s))
	}
	b := a.As4()
	return maskBits(binary.BigEndian.Uint32(b[:]), s)
}

// schedName accepts what the kernel does: IP_VS_SCHEDNAME_MAXLEN (16)
// less the NUL, and the characters scheduler modules are named with.
func schedName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func parseBareAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, errors.New("bad address")
	}
	return a, nil
}
