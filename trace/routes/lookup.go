package routes

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Query is one packet to route: its destination and what policy rules can
// select on.
type Query struct {
	Dst netip.Addr
	// Src is the packet's source; invalid when the node picks it (a
	// packet the node sends itself).
	Src netip.Addr
	// IIF is the interface the packet came in on; "" for a packet the
	// node sends itself (the kernel then matches "iif lo").
	IIF string
	// Mark is the packet's fwmark (kube-proxy's masquerade mark is 0x4000).
	Mark uint32
	TOS  uint8
}

// Verdict is what the node does with the packet.
type Verdict string

// Verdicts.
const (
	// VerdictForward: the packet leaves through Dev (to Via, or on-link).
	VerdictForward Verdict = "forward"
	// VerdictLocal: the packet is for the node itself.
	VerdictLocal       Verdict = "local"
	VerdictBroadcast   Verdict = "broadcast"
	VerdictMulticast   Verdict = "multicast"
	VerdictBlackhole   Verdict = "blackhole"
	VerdictUnreachable Verdict = "unreachable"
	VerdictProhibit    Verdict = "prohibit"
	// VerdictNoRoute: no table had a route for the destination.
	VerdictNoRoute Verdict = "no-route"
	// VerdictMartian: a packet coming in with an impossible source or
	// destination (a loopback address, the node's own address as source).
	VerdictMartian Verdict = "martian"
)

// Dropped reports whether the node discards the packet.
func (v Verdict) Dropped() bool {
	switch v {
	case VerdictBlackhole, VerdictUnreachable, VerdictProhibit, VerdictNoRoute, VerdictMartian:
		return true
	}
	return false
}

// Result is the route a lookup found.
type Result struct {
	Query   Query   `json:"query"`
	Verdict Verdict `json:"verdict"`
	// Route is the matched route; nil when a rule decided (blackhole,
	// unreachable, prohibit) or nothing matched.
	Route *Route `json:"route,omitempty"`
	// Rule is the policy rule whose table held the route or whose action
	// decided; nil when the node's rules are unknown.
	Rule  *Rule      `json:"rule,omitempty"`
	Table string     `json:"table,omitempty"`
	Dev   string     `json:"dev,omitempty"`
	Via   netip.Addr `json:"via,omitzero"`
	// Nexthops are every path of a multipath route (the kernel hashes the
	// flow onto one); Dev and Via are the first.
	Nexthops []Nexthop `json:"nexthops,omitempty"`
	// Kind is the kind of Dev (KindUnknown when the node did not show it).
	Kind Kind `json:"kind,omitempty"`
	// GatewayIsLocal: the route's gateway is one of the node's own
	// addresses, so the kernel sends on-link and something else (Cilium's
	// eBPF) decides where the packet goes.
	GatewayIsLocal bool `json:"gatewayIsLocal,omitempty"`
	// Errno is the error the kernel gives this lookup (as `ip route get`
	// prints it), empty when it routes the packet.
	Errno string `json:"errno,omitempty"`
	// Notes say what was assumed.
	Notes []string `json:"notes,omitempty"`
}

// Kernel errors of a failed lookup, as ip prints them.
const (
	errNetUnreach  = "Network is unreachable" // ENETUNREACH
	errHostUnreach = "No route to host"       // EHOSTUNREACH
	errInval       = "Invalid argument"       // EINVAL
	errAccess      = "Permission denied"      // EACCES
)

// defaultRules are the kernel's rules when ip rule is unknown: local,
// main, default (IPv6 has no default-table rule, but an empty table
// changes nothing).
func defaultRules() []Rule {
	return []Rule{
		{Priority: 0, Action: ActionLookup, Table: TableLocal, SuppressPrefixLen: -1},
		{Priority: 32766, Action: ActionLookup, Table: TableMain, SuppressPrefixLen: -1},
		{Priority: 32767, Action: ActionLookup, Table: TableDefault, SuppressPrefixLen: -1},
	}
}

// Lookup routes q the way the kernel's FIB does: the policy rules in
// priority order (the local, main and default tables when the node gave
// none, with a note), each "lookup" rule's table searched by longest
// prefix, then the lowest metric; throw routes, tables without a match and
// rules whose suppress_prefixlength discards the match fall through to the
// next rule; goto jumps to the first rule of the target priority. It does
// not model reverse-path filtering or disabled forwarding on IIF (both
// make the kernel drop what is routed here), nor the kernel's choice of a
// source address.
func (s *Snapshot) Lookup(q Query) Result {
	res := Result{Query: q}
	if !q.Dst.IsValid() {
		res.Verdict, res.Errno = VerdictNoRoute, errNetUnreach
		res.Notes = append(res.Notes, "no destination address")
		return res
	}
	q.Dst = q.Dst.Unmap()
	rules := s.Rules4
	routesFrom := s.RoutesFrom4
	if q.Dst.Is6() {
		rules, routesFrom = s.Rules6, s.RoutesFrom6
	}
	if routesFrom == "" {
		res.Notes = append(res.Notes, "the node gave no routes for this address family")
	}
	if rules == nil {
		rules = defaultRules()
		res.Notes = append(res.Notes, "policy rules unknown: the local, main and default tables were assumed")
	}
	if routesFrom == FromProc {
		res.Notes = append(res.Notes, "routes read from /proc (no ip): tables other than main have no devices or gateways")
	}
	iif := q.IIF
	if iif == "" {
		iif = "lo"
	}
	input := iif != "lo"
	// ip_route_input_slow's checks of a packet coming in, and
	// fib_validate_source's refusal of one of the node's own addresses as
	// its source (accept_local is off by default).
	localSrc := input && q.Src.IsValid() && s.IsLocal(q.Src)
	if q.Dst.Is4() && input {
		switch src := q.Src; {
		case src.IsValid() && (src.IsMulticast() || src == limitedBroadcast):
			return res.martian("a multicast or broadcast source")
		case q.Dst == limitedBroadcast && localSrc:
			return res.martian("one of the node's own addresses as the source")
		case q.Dst == limitedBroadcast:
			res.Verdict, res.Dev = VerdictBroadcast, "lo"
			return res
		case src.IsValid() && zeronet.Contains(src):
			return res.martian("a source in 0.0.0.0/8")
		case q.Dst.IsLoopback():
			return res.martian("a destination in 127.0.0.0/8")
		case src.IsValid() && src.IsLoopback():
			return res.martian("a loopback source")
		}
	}
	jumps := 0
	for i := 0; i < len(rules); i++ {
		r := &rules[i]
		if len(r.Unsupported) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("rule %d selects on %v, which the lookup does not evaluate; taken as not matching", r.Priority, r.Unsupported))
			continue
		}
		if !r.matches(q, iif) {
			continue
		}
		switch r.Action {
		case ActionGoto:
			j := slices.IndexFunc(rules, func(t Rule) bool { return t.Priority == r.Goto })
			if j < 0 || j <= i || jumps > len(rules) {
				continue
			}
			jumps++
			i = j - 1
			continue
		case ActionNop:
			continue
		case ActionBlackhole:
			return res.decided(r, VerdictBlackhole, errInval)
		case ActionUnreachable:
			return res.decided(r, VerdictUnreachable, errNetUnreach)
		case ActionProhibit:
			return res.decided(r, VerdictProhibit, errAccess)
		}
		route, ok := s.tableLookup(r.Table, q)
		if !ok || route.Type == Throw {
			continue
		}
		if r.SuppressPrefixLen >= 0 && route.Dst.Bits() <= r.SuppressPrefixLen {
			continue
		}
		res.Route = route
		res.Table = route.Table
		if q.Dst.Is4() && s.Rules4 != nil || q.Dst.Is6() && s.Rules6 != nil {
			res.Rule = r
		}
		res.fill(s, route)
		if q.Dst.Is4() && localSrc && res.Errno == "" {
			return res.martian("one of the node's own addresses as the source")
		}
		if q.Dst == limitedBroadcast && res.Errno == "" {
			res.Verdict, res.Via = VerdictBroadcast, netip.Addr{}
		}
		return res
	}
	res.Verdict, res.Errno = VerdictNoRoute, errNetUnreach
	return res
}

var (
	limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	zeronet          = netip.MustParsePrefix("0.0.0.0/8")
)

// martian is the kernel's refusal of a packet coming in with an impossible
// source or destination (EINVAL; the kernel logs it as martian).
func (res Result) martian(why string) Result {
	res.Verdict, res.Errno = VerdictMartian, errInval
	res.Notes = append(res.Notes, "the kernel drops a packet coming in with "+why)
	return res
}

func (res Result) decided(r *Rule, v Verdict, errno string) Result {
	res.Rule, res.Verdict, res.Errno = r, v, errno
	return res
}

func (res *Result) fill(s *Snapshot, r *Route) {
	switch r.Type {
	case Local, Anycast:
		// (an IPv6 anycast address of the node is delivered to it)
		res.Verdict = VerdictLocal
	case Broadcast:
		res.Verdict = VerdictBroadcast
	case Multicast:
		res.Verdict = VerdictMulticast
	case Blackhole:
		res.Verdict, res.Errno = VerdictBlackhole, errInval
	case Unreachable:
		res.Verdict, res.Errno = VerdictUnreachable, errHostUnreach
	case Prohibit:
		res.Verdict, res.Errno = VerdictProhibit, errAccess
	default:
		res.Verdict = VerdictForward
	}
	if res.Errno != "" {
		return
	}
	res.Dev, res.Via = r.Dev, r.Via
	for _, nh := range r.Nexthops {
		if !slices.Contains(nh.Flags, "dead") {
			res.Nexthops = append(res.Nexthops, nh)
		}
	}
	if len(res.Nexthops) > 0 {
		res.Dev, res.Via = res.Nexthops[0].Dev, res.Nexthops[0].Via
	}
	input := res.Query.IIF != "" && res.Query.IIF != "lo"
	if res.Verdict == VerdictLocal || res.Verdict == VerdictBroadcast && input {
		// the kernel delivers to the node itself over lo.
		res.Dev, res.Via = "lo", netip.Addr{}
	}
	if res.Via.IsValid() && s.IsLocal(res.Via) && len(res.Nexthops) == 0 {
		// A gateway that is the node's own address resolves to a host
		// scope nexthop: the kernel sends on-link (Cilium routes every
		// pod CIDR "via" cilium_host's address this way).
		res.Via, res.GatewayIsLocal = netip.Addr{}, true
	}
	if ifc, ok := s.Interface(res.Dev); ok {
		res.Kind = ifc.Kind
	} else if res.Dev != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("device %s is not among the node's interfaces", quote(res.Dev)))
	}
	if r.Source == FromProc && r.Table != TableMain && res.Verdict == VerdictForward {
		res.Notes = append(res.Notes, fmt.Sprintf("table %s was read from fib_trie: its device and gateway are unknown", r.Table))
	}
}

// matches evaluates a rule's selectors (fib_rule_match): iif, oif, fwmark,
// from, to and tos; "not" inverts them.
func (r *Rule) matches(q Query, iif string) bool {
	m := func() bool {
		if r.IIF != "" && (r.Detached || r.IIF != iif) {
			return false
		}
		if r.OIF != "" {
			// no output interface is bound for a routed packet.
			return false
		}
		if r.HasMark && (q.Mark^r.FWMark)&r.FWMask != 0 {
			return false
		}
		if r.From.IsValid() && (!q.Src.IsValid() && r.From.Bits() > 0 || q.Src.IsValid() && !r.From.Contains(q.Src.Unmap())) {
			return false
		}
		if r.To.IsValid() && !r.To.Contains(q.Dst) {
			return false
		}
		if r.TOS != 0 && r.TOS != q.TOS {
			return false
		}
		return true
	}()
	return m != r.Not
}

// tableLookup finds the route for q in one table: the longest prefix
// containing the destination (and, for IPv6 source routes, the source),
// then a TOS-specific route before a TOS-0 one, then the lowest metric,
// then the order the node listed them in; routes whose only nexthops are
// dead are passed over, as the kernel backtracks to shorter prefixes.
func (s *Snapshot) tableLookup(table string, q Query) (*Route, bool) {
	var best *Route
	for i := range s.Routes {
		r := &s.Routes[i]
		if r.Table != table || r.Dst.Addr().Is4() != q.Dst.Is4() || !r.Dst.Contains(q.Dst) {
			continue
		}
		if r.TOS != 0 && r.TOS != q.TOS {
			continue
		}
		if r.From.IsValid() && (!q.Src.IsValid() || !r.From.Contains(q.Src)) {
			continue
		}
		if r.dead() {
			continue
		}
		if best == nil || better(r, best) {
			best = r
		}
	}
	return best, best != nil
}

func better(a, b *Route) bool {
	if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(a.From.Bits(), b.From.Bits()); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(a.TOS, b.TOS); c != 0 {
		return c > 0
	}
	return a.Metric < b.Metric
}

func (r *Route) dead() bool {
	if len(r.Nexthops) == 0 {
		return r.has("dead")
	}
	for _, nh := range r.Nexthops {
		if !slices.Contains(nh.Flags, "dead") {
			return false
		}
	}
	return true
}
