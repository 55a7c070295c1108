package routes

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// routeFlags are the words ip prints for nexthop and route flags.
var routeFlags = map[string]bool{
	"onlink": true, "dead": true, "linkdown": true, "pervasive": true, "offload": true,
	"trap": true, "notify": true, "unresolved": true, "rt_offload": true, "rt_trap": true,
	"rt_offload_failed": true,
}

// routeKeys are attributes followed by one value that the model keeps in
// Extra (metrics, preference, expiry, …).
var routeKeys = map[string]bool{
	"mtu": true, "advmss": true, "rtt": true, "rttvar": true, "reordering": true, "window": true,
	"cwnd": true, "initcwnd": true, "initrwnd": true, "ssthresh": true, "realms": true,
	"rto_min": true, "hoplimit": true, "features": true, "quickack": true, "congctl": true,
	"fastopen_no_cookie": true, "expires": true, "nhid": true, "error": true, "pref": true,
	"uid": true, "mark": true, "ttl-propagate": true, "iif": true, "oif": true, "dsfield": true,
	"tos": true, "from": true,
}

// ParseIPRoute reads `ip [-4|-6] [-d] route show [table all]`: one route a
// line, multipath nexthops on the indented lines after it. family is 4, 6
// or 0 (taken from each route's destination); it decides what "default"
// means. Routes without "table" are in main, as ip prints them. A line
// that cannot be read is a warning; only a section beyond the size bounds
// is an error.
func ParseIPRoute(data []byte, family int) ([]Route, []string, error) {
	w := &warnings{section: "ip route"}
	var out []Route
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		indented := line[0] == ' ' || line[0] == '\t'
		if indented && f[0] == "nexthop" {
			if len(out) == 0 {
				w.add("line %d: a nexthop without a route", no)
				return nil
			}
			r := &out[len(out)-1]
			nh, err := parseNexthop(f[1:])
			if err != nil {
				w.add("line %d: %v", no, err)
				return nil
			}
			addNexthop(r, nh)
			return nil
		}
		if indented && f[0] == "cache" {
			return nil
		}
		if len(out) >= maxItems {
			return fmt.Errorf("ip route: more than %d routes: %w", maxItems, ErrTooLarge)
		}
		r, err := parseRouteFields(f, family)
		if err != nil {
			w.add("line %d: %v", no, err)
			return nil
		}
		out = append(out, r)
		return nil
	})
	return out, w.done(), err
}

func addNexthop(r *Route, nh Nexthop) {
	if len(r.Nexthops) >= 1024 {
		return
	}
	if len(r.Nexthops) == 0 && r.Dev == "" && !r.Via.IsValid() {
		r.Via, r.Dev, r.Onlink = nh.Via, nh.Dev, nh.Onlink
	}
	r.Nexthops = append(r.Nexthops, nh)
}

// parseRouteFields reads one route: [TYPE] DST [KEY VALUE | FLAG]...
func parseRouteFields(f []string, family int) (Route, error) {
	r := Route{Type: Unicast, Table: TableMain, Source: FromIP}
	i := 0
	if t, ok := routeTypes[f[0]]; ok {
		r.Type = t
		i++
	}
	if i >= len(f) {
		return r, fmt.Errorf("a route without a destination")
	}
	dst, err := parsePrefix(f[i], family)
	if err != nil {
		return r, err
	}
	r.Dst = dst
	fam := familyOf(dst.Addr())
	defaultDst := family == 0 && (f[i] == "default" || f[i] == "all" || f[i] == "any")
	i++
	for i < len(f) {
		key := f[i]
		if key == "cache" {
			break
		}
		val := ""
		if i+1 < len(f) {
			val = f[i+1]
		}
		need := func() error {
			if i+1 >= len(f) {
				return fmt.Errorf("%s without a value", quote(key))
			}
			i += 2
			return nil
		}
		switch {
		case key == "nexthop":
			// ip -o puts a multipath route's nexthops on its line.
			var group []string
			for _, t := range append(f[i+1:], "nexthop") {
				if t != "nexthop" {
					group = append(group, t)
					continue
				}
				if len(group) > 0 {
					nh, err := parseNexthop(group)
					if err != nil {
						return r, err
					}
					addNexthop(&r, nh)
				}
				group = group[:0]
			}
			i = len(f)
			continue
		case key == "via":
			if err := need(); err != nil {
				return r, err
			}
			if (val == "inet" || val == "inet6") && i < len(f) {
				// ip names the gateway's family only when it differs
				// from the route's (an IPv4 route via IPv6, RFC 5549).
				defaultDst = false
				val = f[i]
				i++
			}
			a, err := parseAddr(val)
			if err != nil {
				return r, fmt.Errorf("via: %w", err)
			}
			r.Via = a
		case key == "dev" || key == "oif":
			if err := need(); err != nil {
				return r, err
			}
			if !validIfName(val) {
				return r, fmt.Errorf("bad device name %s", quote(val))
			}
			r.Dev = val
		case key == "table":
			if err := need(); err != nil {
				return r, err
			}
			r.Table = canonicalTable(val)
		case key == "proto" || key == "protocol":
			if err := need(); err != nil {
				return r, err
			}
			r.Protocol = canonicalProto(val)
		case key == "scope":
			if err := need(); err != nil {
				return r, err
			}
			r.Scope = canonicalScope(val)
		case key == "src":
			if err := need(); err != nil {
				return r, err
			}
			a, err := parseAddr(val)
			if err != nil {
				return r, fmt.Errorf("src: %w", err)
			}
			r.PrefSrc = a
		case key == "metric" || key == "priority" || key == "preference":
			if err := need(); err != nil {
				return r, err
			}
			n, err := parseUint(val, 32)
			if err != nil {
				return r, fmt.Errorf("metric: %w", err)
			}
			r.Metric = uint32(n)
		case key == "from":
			if err := need(); err != nil {
				return r, err
			}
			p, err := parsePrefix(val, fam)
			if err != nil {
				return r, fmt.Errorf("from: %w", err)
			}
			if p.Bits() > 0 {
				r.From = p
			}
		case key == "tos" || key == "dsfield":
			if err := need(); err != nil {
				return r, err
			}
			if n, err := parseUint(val, 8); err == nil {
				r.TOS = uint8(n)
			} else {
				r.Extra = append(r.Extra, key, val)
			}
		case key == "onlink":
			r.Onlink = true
			r.Flags = append(r.Flags, key)
			i++
		case routeFlags[key]:
			r.Flags = append(r.Flags, key)
			i++
		case key == "lock":
			r.Extra = append(r.Extra, key)
			i++
		case routeKeys[key]:
			if err := need(); err != nil {
				return r, err
			}
			r.Extra = append(r.Extra, key, val)
		default:
			if len(r.Extra) < 64 {
				r.Extra = append(r.Extra, key)
			}
			i++
		}
		if len(r.Flags) > 16 {
			return r, fmt.Errorf("too many flags")
		}
	}
	if defaultDst && (r.Via.Is6() || r.PrefSrc.Is6()) {
		// "default" of a dump whose family is not known: the addresses
		// tell.
		r.Dst, fam = netip.PrefixFrom(netip.IPv6Unspecified(), 0), 6
	}
	if fam == 6 && r.Via.Is4() {
		// an IPv4 route via an IPv6 gateway (RFC 5549) is legal; the
		// reverse is not.
		return r, fmt.Errorf("an IPv6 route via IPv4 gateway %s", r.Via)
	}
	return r, nil
}

// parseNexthop reads "via [inet|inet6] GW dev DEV weight N FLAGS…".
func parseNexthop(f []string) (Nexthop, error) {
	var nh Nexthop
	for i := 0; i < len(f); i++ {
		switch key := f[i]; {
		case key == "via" && i+1 < len(f):
			i++
			if (f[i] == "inet" || f[i] == "inet6") && i+1 < len(f) {
				i++
			}
			a, err := parseAddr(f[i])
			if err != nil {
				return nh, fmt.Errorf("nexthop via: %w", err)
			}
			nh.Via = a
		case key == "dev" && i+1 < len(f):
			i++
			if !validIfName(f[i]) {
				return nh, fmt.Errorf("bad device name %s", quote(f[i]))
			}
			nh.Dev = f[i]
		case key == "weight" && i+1 < len(f):
			i++
			n, err := strconv.Atoi(f[i])
			if err != nil || n < 0 || n > 256 {
				return nh, fmt.Errorf("bad nexthop weight %s", quote(f[i]))
			}
			nh.Weight = n
		case key == "onlink":
			nh.Onlink = true
			nh.Flags = append(nh.Flags, key)
		case routeFlags[key]:
			if len(nh.Flags) < 16 {
				nh.Flags = append(nh.Flags, key)
			}
		}
	}
	if !nh.Via.IsValid() && nh.Dev == "" {
		return nh, fmt.Errorf("a nexthop without a gateway or device")
	}
	return nh, nil
}

// RouteGet is what the kernel answered to `ip route get`: the route it
// chose for one packet, or the error it gave.
type RouteGet struct {
	Type RouteType
	Dst  netip.Addr
	From netip.Addr
	Via  netip.Addr
	Dev  string
	// Table is the table of the chosen route ("main" when ip did not say).
	Table   string
	PrefSrc netip.Addr
	IIF     string
	// Err is the kernel's error for the lookup ("Network is unreachable",
	// "No route to host", "Invalid argument", "Permission denied"); the
	// fields above are then empty.
	Err string
}

// Verdict maps the answer to the lookup verdict it stands for: the
// kernel's errors are how blackhole (EINVAL), unreachable (EHOSTUNREACH),
// prohibit (EACCES) and no route (ENETUNREACH) show.
func (g RouteGet) Verdict() Verdict {
	switch g.Err {
	case "":
	case "Invalid argument":
		return VerdictBlackhole
	case "No route to host":
		return VerdictUnreachable
	case "Permission denied":
		return VerdictProhibit
	case "Network is unreachable":
		return VerdictNoRoute
	default:
		return Verdict("error: " + g.Err)
	}
	switch g.Type {
	case Local, Anycast:
		return VerdictLocal
	case Broadcast:
		return VerdictBroadcast
	case Multicast:
		return VerdictMulticast
	case Blackhole:
		return VerdictBlackhole
	case Unreachable:
		return VerdictUnreachable
	case Prohibit:
		return VerdictProhibit
	}
	return VerdictForward
}

// ParseRouteGet reads the output of `ip route get ADDR [from SRC iif DEV]`:
// the route line and its "cache" line, or an "RTNETLINK answers: …" error.
func ParseRouteGet(data []byte) (RouteGet, error) {
	var g RouteGet
	text := strings.TrimSpace(string(data))
	if len(text) > maxLineLen {
		return g, fmt.Errorf("ip route get: %w", ErrTooLarge)
	}
	if msg, ok := strings.CutPrefix(text, "RTNETLINK answers: "); ok {
		msg, _, _ = strings.Cut(msg, "\n")
		g.Err = strings.TrimSpace(msg)
		if len(g.Err) > 80 {
			g.Err = g.Err[:80]
		}
		return g, nil
	}
	f := strings.Fields(text)
	if len(f) == 0 {
		return g, fmt.Errorf("ip route get: empty answer")
	}
	g.Type, g.Table = Unicast, TableMain
	i := 0
	if t, ok := routeTypes[f[0]]; ok {
		g.Type = t
		i++
	}
	if i >= len(f) {
		return g, fmt.Errorf("ip route get: no destination")
	}
	a, err := parseAddr(f[i])
	if err != nil {
		return g, fmt.Errorf("ip route get: %w", err)
	}
	g.Dst = a
	for i++; i < len(f); i++ {
		key := f[i]
		if i+1 >= len(f) {
			break
		}
		val := f[i+1]
		switch key {
		case "from":
			if a, err := parseAddr(val); err == nil {
				g.From = a
			}
		case "via":
			if (val == "inet" || val == "inet6") && i+2 < len(f) {
				i++
				val = f[i+1]
			}
			a, err := parseAddr(val)
			if err != nil {
				return g, fmt.Errorf("ip route get: via: %w", err)
			}
			g.Via = a
		case "dev":
			if !validIfName(val) {
				return g, fmt.Errorf("ip route get: bad device name %s", quote(val))
			}
			g.Dev = val
		case "table":
			g.Table = canonicalTable(val)
		case "src":
			if a, err := parseAddr(val); err == nil {
				g.PrefSrc = a
			}
		case "iif":
			if validIfName(val) {
				g.IIF = val
			}
		default:
			continue
		}
		i++
	}
	return g, nil
}
