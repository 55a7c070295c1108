package routes

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// /proc/net/route flags (RTF_*).
const (
	rtfUp      = 0x0001
	rtfGateway = 0x0002
	rtfReject  = 0x0200
)

// /proc/net/ipv6_route flags.
const (
	rtf6Reject = 0x00000200
	rtf6Local  = 0x80000000
	rtf6Cache  = 0x01000000
)

// ParseProcRoute reads /proc/net/route: the main IPv4 table (broadcast and
// multicast routes left out by the kernel), addresses as the kernel's
// native-endian hex. The byte order is taken from the masks: a netmask is
// contiguous ones in network order, so a little-endian node's /24 prints
// 00FFFFFF. Routes without a device ("*") are blackhole, unreachable or
// prohibit; RTF_REJECT marks the latter two, fib_trie tells them apart
// (see Parse).
func ParseProcRoute(data []byte) ([]Route, []string, error) {
	w := &warnings{section: "/proc/net/route"}
	type raw struct {
		no                         int
		dev                        string
		dst, gw, mask, flags, metr uint64
		mtu                        uint64
	}
	var rows []raw
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "Iface" {
			return nil
		}
		if len(f) < 8 {
			w.add("line %d: %d fields, want 11", no, len(f))
			return nil
		}
		if len(rows) >= maxItems {
			return fmt.Errorf("/proc/net/route: more than %d routes: %w", maxItems, ErrTooLarge)
		}
		r := raw{no: no, dev: f[0]}
		var err error
		for _, x := range []struct {
			s   string
			p   *uint64
			hex bool
		}{{f[1], &r.dst, true}, {f[2], &r.gw, true}, {f[3], &r.flags, true}, {f[6], &r.metr, false}, {f[7], &r.mask, true}} {
			base := 10
			if x.hex {
				base = 16
			}
			if *x.p, err = strconv.ParseUint(x.s, base, 32); err != nil {
				w.add("line %d: bad number %s", no, quote(x.s))
				return nil
			}
		}
		if len(f) > 8 {
			r.mtu, _ = strconv.ParseUint(f[8], 10, 32)
		}
		if r.dev != "*" && !validIfName(r.dev) {
			w.add("line %d: bad device name %s", no, quote(r.dev))
			return nil
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		return nil, w.done(), err
	}
	little, big := true, true
	for _, r := range rows {
		little = little && contiguous(swap32(uint32(r.mask)))
		big = big && contiguous(uint32(r.mask))
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if !little && big {
		order = binary.BigEndian
	}
	addr := func(v uint64) netip.Addr {
		var b [4]byte
		order.PutUint32(b[:], uint32(v))
		return netip.AddrFrom4(b)
	}
	var out []Route
	for _, r := range rows {
		mask := addr(r.mask).As4()
		ones := bits.OnesCount32(binary.BigEndian.Uint32(mask[:]))
		if !contiguous(binary.BigEndian.Uint32(mask[:])) {
			w.add("line %d: netmask %s is not contiguous", r.no, addr(r.mask))
			continue
		}
		rt := Route{
			Table: TableMain, Type: Unicast, Dst: netip.PrefixFrom(addr(r.dst), ones).Masked(),
			Metric: uint32(r.metr), Source: FromProc, Protocol: "", Dev: r.dev,
		}
		if r.flags&rtfGateway != 0 {
			rt.Via = addr(r.gw)
		}
		if r.dev == "*" {
			rt.Dev = ""
			rt.Type = Blackhole
			if r.flags&rtfReject != 0 {
				rt.Type = Unreachable
			}
		}
		if r.mtu != 0 {
			rt.Extra = append(rt.Extra, "mtu", strconv.FormatUint(r.mtu, 10))
		}
		out = append(out, rt)
	}
	return out, w.done(), nil
}

func swap32(v uint32) uint32 { return bits.ReverseBytes32(v) }

// contiguous reports whether v (in network order) is a netmask.
func contiguous(v uint32) bool { return bits.OnesCount32(v) == bits.LeadingZeros32(^v) }

// ParseProcIPv6Route reads /proc/net/ipv6_route: every IPv6 table merged,
// without table ids. Local routes (RTF_LOCAL) are put in the local table,
// every other one in main; a reject route's type (blackhole, unreachable,
// prohibit) is not shown and is read as unreachable. The kernel's null
// entries (::/0 reject, metric 0xffffffff, lo) and cached clones are left
// out.
func ParseProcIPv6Route(data []byte) ([]Route, []string, error) {
	w := &warnings{section: "/proc/net/ipv6_route"}
	var out []Route
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		if len(f) != 10 {
			w.add("line %d: %d fields, want 10", no, len(f))
			return nil
		}
		if len(out) >= maxItems {
			return fmt.Errorf("/proc/net/ipv6_route: more than %d routes: %w", maxItems, ErrTooLarge)
		}
		dst, err1 := hex6(f[0], f[1])
		src, err2 := hex6(f[2], f[3])
		gw, err3 := hex6(f[4], "80")
		metric, err4 := strconv.ParseUint(f[5], 16, 32)
		flags, err5 := strconv.ParseUint(f[8], 16, 32)
		for _, err := range []error{err1, err2, err3, err4, err5} {
			if err != nil {
				w.add("line %d: %v", no, err)
				return nil
			}
		}
		dev := f[9]
		if !validIfName(dev) {
			w.add("line %d: bad device name %s", no, quote(dev))
			return nil
		}
		if flags&rtf6Cache != 0 {
			return nil
		}
		if flags&rtf6Reject != 0 && dst.Bits() == 0 && metric == 0xffffffff && dev == "lo" {
			return nil
		}
		r := Route{Table: TableMain, Type: Unicast, Dst: dst, Dev: dev, Metric: uint32(metric), Source: FromProc}
		if src.Bits() > 0 {
			r.From = src
		}
		if !gw.Addr().IsUnspecified() {
			r.Via = gw.Addr()
		}
		switch {
		case flags&rtf6Local != 0:
			r.Type, r.Table = Local, TableLocal
		case flags&rtf6Reject != 0:
			r.Type, r.Dev = Unreachable, ""
		case dst.Addr().IsMulticast():
			r.Type, r.Table = Multicast, TableLocal
		}
		out = append(out, r)
		return nil
	})
	return out, w.done(), err
}

// hex6 reads 32 hex digits and a hex prefix length.
func hex6(addr, plen string) (netip.Prefix, error) {
	if len(addr) != 32 {
		return netip.Prefix{}, fmt.Errorf("bad IPv6 address %s", quote(addr))
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(addr)); err != nil {
		return netip.Prefix{}, fmt.Errorf("bad IPv6 address %s", quote(addr))
	}
	n, err := strconv.ParseUint(plen, 16, 8)
	if err != nil || n > 128 {
		return netip.Prefix{}, fmt.Errorf("bad prefix length %s", quote(plen))
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), int(n)).Masked(), nil
}

// FibEntry is one prefix of one table in /proc/net/fib_trie.
type FibEntry struct {
	Table string
	Dst   netip.Prefix
	Scope string
	Type  RouteType
	TOS   uint8
}

var fibTypes = map[string]RouteType{
	"UNICAST": Unicast, "LOCAL": Local, "BROADCAST": Broadcast, "ANYCAST": Anycast,
	"MULTICAST": Multicast, "BLACKHOLE": Blackhole, "UNREACHABLE": Unreachable,
	"PROHIBIT": Prohibit, "THROW": Throw, "NAT": NAT,
}

// ParseFibTrie reads /proc/net/fib_trie: for each IPv4 table ("Main:",
// "Local:", "Id N:"), each leaf address and the prefixes (with scope and
// type) stored there. It names every table that exists and the type of
// every route, which /proc/net/route does not; it has no devices or
// gateways. While no policy rule exists the kernel keeps local and main in
// one trie and prints its local entries under both; they are kept only
// under Local.
func ParseFibTrie(data []byte) ([]FibEntry, []string, error) {
	w := &warnings{section: "/proc/net/fib_trie"}
	var out []FibEntry
	table := ""
	var leaf netip.Addr
	seen := map[FibEntry]bool{}
	err := eachLine(data, func(no int, line string) error {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
			return nil
		case !strings.HasPrefix(line, " "):
			name, ok := strings.CutSuffix(t, ":")
			if !ok {
				w.add("line %d: not a table heading", no)
				table = ""
				return nil
			}
			switch {
			case name == "Main":
				table = TableMain
			case name == "Local":
				table = TableLocal
			case strings.HasPrefix(name, "Id "):
				id, err := strconv.ParseUint(strings.TrimPrefix(name, "Id "), 10, 32)
				if err != nil {
					w.add("line %d: bad table id %s", no, quote(name))
					table = ""
					return nil
				}
				table = TableName(uint32(id))
			default:
				w.add("line %d: unknown table %s", no, quote(name))
				table = ""
			}
			return nil
		case strings.HasPrefix(t, "+-- "):
			return nil
		case strings.HasPrefix(t, "|-- "):
			a, err := parseAddr(strings.TrimPrefix(t, "|-- "))
			if err != nil || !a.Is4() {
				w.add("line %d: bad leaf address", no)
				leaf = netip.Addr{}
				return nil
			}
			leaf = a
			return nil
		case strings.HasPrefix(t, "/"):
			if table == "" || !leaf.IsValid() {
				return nil
			}
			f := strings.Fields(t)
			if len(f) < 3 {
				w.add("line %d: want /LEN SCOPE TYPE", no)
				return nil
			}
			n, err := strconv.Atoi(f[0][1:])
			if err != nil || n < 0 || n > 32 {
				w.add("line %d: bad prefix length %s", no, quote(f[0]))
				return nil
			}
			e := FibEntry{Table: table, Dst: netip.PrefixFrom(leaf, n).Masked(), Scope: canonicalScope(f[1])}
			typ, ok := fibTypes[f[2]]
			if !ok {
				w.add("line %d: unknown route type %s", no, quote(f[2]))
				return nil
			}
			e.Type = typ
			for _, x := range f[3:] {
				if v, ok := strings.CutPrefix(x, "tos="); ok {
					if n, err := strconv.ParseUint(v, 10, 8); err == nil {
						e.TOS = uint8(n)
					}
				}
			}
			if table == TableMain && (typ == Local || typ == Broadcast) {
				// the merged trie: these live in the local table.
				e.Table = TableLocal
			}
			if seen[e] {
				return nil
			}
			if len(out) >= maxItems {
				return fmt.Errorf("/proc/net/fib_trie: more than %d entries: %w", maxItems, ErrTooLarge)
			}
			seen[e] = true
			out = append(out, e)
			return nil
		}
		w.add("line %d: unrecognised", no)
		return nil
	})
	if err != nil {
		return nil, w.done(), err
	}
	// While local and main are merged, fib_trie prints the one trie under
	// both headings: a unicast (blackhole, …) entry under Local that Main
	// has too is main's.
	inMain := map[FibEntry]bool{}
	for _, e := range out {
		if e.Table == TableMain {
			inMain[FibEntry{Dst: e.Dst, Scope: e.Scope, Type: e.Type, TOS: e.TOS}] = true
		}
	}
	kept := out[:0]
	for _, e := range out {
		if e.Table == TableLocal && e.Type != Local && e.Type != Broadcast && inMain[FibEntry{Dst: e.Dst, Scope: e.Scope, Type: e.Type, TOS: e.TOS}] {
			continue
		}
		kept = append(kept, e)
	}
	return kept, w.done(), nil
}

// FibTables lists the tables fib_trie names, in order.
func FibTables(data []byte) []string {
	var out []string
	_ = eachLine(data, func(_ int, line string) error {
		if strings.HasPrefix(line, " ") || !strings.HasSuffix(line, ":") || len(out) >= 4096 {
			return nil
		}
		name := strings.TrimSuffix(line, ":")
		switch {
		case name == "Main":
			out = append(out, TableMain)
		case name == "Local":
			out = append(out, TableLocal)
		case strings.HasPrefix(name, "Id "):
			if id, err := strconv.ParseUint(strings.TrimPrefix(name, "Id "), 10, 32); err == nil {
				out = append(out, TableName(uint32(id)))
			}
		}
		return nil
	})
	return out
}

// Inet6Addr is one line of /proc/net/if_inet6.
type Inet6Addr struct {
	Addr  netip.Prefix
	Index int
	Dev   string
}

// ParseIfInet6 reads /proc/net/if_inet6: "ADDR IFINDEX PLEN SCOPE FLAGS DEV".
func ParseIfInet6(data []byte) ([]Inet6Addr, []string, error) {
	w := &warnings{section: "/proc/net/if_inet6"}
	var out []Inet6Addr
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		if len(f) != 6 {
			w.add("line %d: %d fields, want 6", no, len(f))
			return nil
		}
		p, err := hex6(f[0], f[2])
		if err != nil {
			w.add("line %d: %v", no, err)
			return nil
		}
		// if_inet6 prints the address itself, not the masked prefix.
		var b [16]byte
		_, _ = hex.Decode(b[:], []byte(f[0]))
		p = netip.PrefixFrom(netip.AddrFrom16(b), p.Bits())
		idx, err := strconv.ParseUint(f[1], 16, 31)
		if err != nil {
			w.add("line %d: bad index %s", no, quote(f[1]))
			return nil
		}
		if !validIfName(f[5]) {
			w.add("line %d: bad device name %s", no, quote(f[5]))
			return nil
		}
		if len(out) >= maxItems {
			return fmt.Errorf("/proc/net/if_inet6: more than %d addresses: %w", maxItems, ErrTooLarge)
		}
		out = append(out, Inet6Addr{Addr: p, Index: int(idx), Dev: f[5]})
		return nil
	})
	return out, w.done(), err
}
