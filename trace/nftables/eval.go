package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// Options are the facts about the node and the client that a ruleset alone
// does not carry.
type Options struct {
	// LocalAddrs are the node's own addresses (what "fib daddr type local"
	// matches). 127.0.0.0/8 and ::1 are always local.
	LocalAddrs []netip.Addr
	// AffinityEndpoint, when valid, says the client already has a
	// session-affinity entry for this endpoint. Otherwise the affinity sets'
	// elements in the dump decide (a live node's sets hold real clients).
	AffinityEndpoint netip.AddrPort
	// MaxBranches bounds the random-choice branches followed (default 1,000,000).
	MaxBranches int
	// AllTables evaluates every table of the packet's family, not only
	// kube-proxy's.
	AllTables bool
}

// ErrLoop is wrapped when the rules jump in a circle or nest too deeply.
var ErrLoop = errors.New("rules loop or nest too deeply")

const maxJumpDepth = 64

// Simulate walks the first packet of a new connection through the ruleset's
// base chains in hook and priority order: prerouting, then input (when the
// destination is local after DNAT) or forward, then postrouting; a packet
// whose source is a node address starts at output instead. numgen choices
// split the walk into branches whose probabilities are multiplied out.
func Simulate(rs *Ruleset, pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	if err := pkt.Validate(); err != nil {
		return nil, err
	}
	family := "ip"
	if pkt.Destination.Unmap().Is6() {
		family = "ip6"
	}
	w := &walker{opts: opts, local: map[netip.Addr]bool{}}
	if w.opts.MaxBranches <= 0 {
		w.opts.MaxBranches = 1_000_000
	}
	sim := &trace.Simulation{Packet: pkt, LocalAddresses: []netip.Addr{}}
	for _, a := range opts.LocalAddrs {
		a = a.Unmap()
		if !w.local[a] {
			w.local[a] = true
			sim.LocalAddresses = append(sim.LocalAddresses, a)
		}
	}
	var skipped []string
	for _, t := range rs.Tables {
		if t.Family != family && t.Family != "inet" {
			continue
		}
		if t.Name == KubeProxyTable || opts.AllTables {
			w.tables = append(w.tables, t)
		} else {
			skipped = append(skipped, t.Family+" "+t.Name)
		}
	}
	if len(w.tables) == 0 {
		return nil, fmt.Errorf("the ruleset has no %s %s table: kube-proxy's nftables rules for %s packets are not in this dump", family, KubeProxyTable, map[string]string{"ip": "IPv4", "ip6": "IPv6"}[family])
	}
	if len(skipped) > 0 {
		w.note("tables %s were read but not evaluated: only kube-proxy's tables are simulated", strings.Join(skipped, ", "))
	}
	start := &state{Branch: trace.Branch{Prob: 1}, src: pkt.Source.Unmap(), dst: pkt.Destination.Unmap(), dport: pkt.DestinationPort, proto: pkt.Protocol, in: pkt.InInterface}
	local := w.isLocal(start.src)
	sim.Origin = "forwarded"
	if local {
		sim.Origin = "local"
	} else if pkt.InInterface == "" {
		w.unknownIface = true
	}
	hookNames := map[trace.Hook]string{trace.HookPrerouting: "prerouting", trace.HookInput: "input", trace.HookForward: "forward", trace.HookOutput: "output", trace.HookPostrouting: "postrouting"}
	final, err := trace.WalkHooks(local, start, func(s *state) netip.Addr { return s.dst }, w.isLocal,
		func(h trace.Hook, states []*state) ([]*state, error) { return w.hook(hookNames[h], states) })
	if err != nil {
		return nil, err
	}
	final = append(final, w.done...)
	for _, s := range final {
		sim.Outcomes = append(sim.Outcomes, s.Outcome())
	}
	sim.Affinity = w.affinity
	sim.Notes = w.notes
	sim.Summarize()
	return sim, nil
}

type walker struct {
	opts         Options
	local        map[netip.Addr]bool
	tables       []*Table
	done         []*state // branches a rule dropped or rejected
	branches     int
	notes        []string
	affinity     []trace.AffinityRule
	unknownIface bool
}

func (w *walker) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(w.notes, n) {
		w.notes = append(w.notes, n)
	}
}

func (w *walker) isLocal(a netip.Addr) bool { return a.IsLoopback() || w.local[a] }

// state is one branch of the walk: the packet as it is at this point,
// and (in the embedded trace.Branch) what happened to it so far.
type state struct {
	trace.Branch
	src, dst netip.Addr
	dport    uint16
	proto    string
	in       string
	mark     uint32
	dnatted  bool
}

func (s *state) fork(p float64) *state {
	c := *s
	c.Prob = s.Prob * p
	return &c
}

func (s *state) record(r *Rule) trace.RuleRef {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	s.Record(ref)
	return ref
}

// hook runs every base chain registered at hook, in priority order, over the
// branches; dropped and rejected branches go to w.done.
func (w *walker) hook(hook string, states []*state) ([]*state, error) {
	type chainRef struct {
		t *Table
		c *Chain
	}
	var chains []chainRef
	for _, t := range w.tables {
		for _, c := range t.hookChains(hook) {
			chains = append(chains, chainRef{t, c})
		}
	}
	slices.SortStableFunc(chains, func(a, b chainRef) int { return a.c.Priority - b.c.Priority })
	for _, cr := range chains {
		var next []*state
		for _, st := range states {
			outs, err := w.runChain(st, cr.t, cr.c, 0)
			if err != nil {
				return nil, err
			}
			for _, o := range outs {
				switch o.exit {
				case exitDrop:
					w.done = append(w.done, o.st)
				case exitEnd:
					if cr.c.Policy == "drop" {
						o.st.Verdict = trace.VerdictDrop
						o.st.DecidedBy = nil
						w.note("chain %s ends with policy drop", cr.c.Name)
						w.done = append(w.done, o.st)
						continue
					}
					next = append(next, o.st)
				default: // accepted by this base chain: on to the next one
					next = append(next, o.st)
				}
			}
		}
		states = next
	}
	return states, nil
}

type exitKind int

const (
	exitEnd    exitKind = iota // fell off the end of the chain (or return)
	exitAccept                 // accept / NAT: this base chain is done
	exitDrop                   // drop or reject: the packet is gone
)

type branchOut struct {
	st   *state
	exit exitKind
}

// runChain walks chain c from its first rule. Jumps recurse; a goto's chain
// replaces the current one, so its end returns to our caller.
func (w *walker) runChain(st *state, t *Table, c *Chain, depth int) ([]branchOut, error) {
	if depth > maxJumpDepth {
		return nil, fmt.Errorf("chain %s of table %s %s: %w", c.Name, t.Family, t.Name, ErrLoop)
	}
	return w.runRules(st, t, c, 0, depth)
}

func (w *walker) runRules(st *state, t *Table, c *Chain, from, depth int) ([]branchOut, error) {
	rules := c.Rules()
	for i := from; i < len(rules); i++ {
		r := rules[i]
		if r.Unknown != "" {
			w.note("rule at line %d in chain %s was not evaluated (%s); it is taken not to match", r.Line, c.Name, r.Unknown)
			continue
		}
		outs, matched, err := w.runStmts(st, t, c, r, 0, depth)
		if err != nil {
			return nil, err
		}
		if !matched {
			continue
		}
		// The rule acted: each branch either ended (verdict) or goes on
		// with the next rule.
		var res []branchOut
		for _, o := range outs {
			if o.cont {
				more, err := w.runRules(o.st, t, c, i+1, depth)
				if err != nil {
					return nil, err
				}
				res = append(res, more...)
				continue
			}
			res = append(res, branchOut{o.st, o.exit})
		}
		return res, nil
	}
	return []branchOut{{st, exitEnd}}, nil
}

// stmtOut is one branch after a rule's statements: either it continues with
// the chain's next rule (cont) or the chain walk ended with exit.
type stmtOut struct {
	st   *state
	cont bool
	exit exitKind
}

// runStmts evaluates r's statements from k on. matched is false when a match
// statement failed before anything happened (the rule does not apply).
func (w *walker) runStmts(st *state, t *Table, c *Chain, r *Rule, k, depth int) ([]stmtOut, bool, error) {
	recorded := false
	rec := func(s *state) trace.RuleRef {
		return s.record(r)
	}
	for ; k < len(r.Stmts); k++ {
		s := r.Stmts[k]
		switch s.Kind {
		case StmtNop:
		case StmtMatch:
			ok, err := w.match(st, t, r, s)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				return []stmtOut{{st: st, cont: true}}, recorded, nil
			}
		case StmtSetMark:
			if !recorded {
				rec(st)
				recorded = true
			}
			switch s.MarkOp {
			case "|":
				st.mark |= s.MarkValue
			case "^":
				st.mark ^= s.MarkValue
			case "&":
				st.mark &= s.MarkValue
			default:
				st.mark = s.MarkValue
			}
		case StmtUpdateSet:
			// Session affinity is recorded; a new client gets an entry
			// here, which does not change this packet's path.
		case StmtMasquerade:
			if !recorded {
				rec(st)
			}
			st.Masquerade = true
			return []stmtOut{{st: st, exit: exitAccept}}, true, nil
		case StmtDNAT:
			if !recorded {
				rec(st)
			}
			if len(s.ToMap) == 0 {
				w.dnat(st, c, s.To, r)
				return []stmtOut{{st: st, exit: exitAccept}}, true, nil
			}
			var outs []stmtOut
			p := 1 / float64(len(s.ToMap))
			for idx, to := range s.ToMap {
				if !to.IsValid() {
					continue // no element for this numgen value: nothing is DNATed
				}
				b := st.fork(p)
				w.dnat(b, c, to, r)
				outs = append(outs, stmtOut{st: b, exit: exitAccept})
				_ = idx
			}
			if err := w.countBranches(len(outs)); err != nil {
				return nil, false, err
			}
			return outs, true, nil
		case StmtVerdict:
			if !recorded {
				rec(st)
			}
			outs, err := w.verdict(st, t, c, r, s.Verdict, depth)
			return outs, true, err
		case StmtVMap:
			return w.vmap(st, t, c, r, s, recorded, depth)
		}
	}
	// All statements ran without a verdict: the rule matched, go on.
	if !recorded {
		rec(st)
	}
	return []stmtOut{{st: st, cont: true}}, true, nil
}

func (w *walker) countBranches(n int) error {
	w.branches += n
	if w.branches > w.opts.MaxBranches {
		return fmt.Errorf("more than %d random branches: %w", w.opts.MaxBranches, ErrLoop)
	}
	return nil
}

func (w *walker) dnat(st *state, c *Chain, to netip.AddrPort, r *Rule) {
	port := to.Port()
	if port == 0 {
		port = st.dport
	}
	st.Endpoint = &trace.Endpoint{IP: to.Addr(), Port: port, Chain: c.Name}
	st.dst, st.dport, st.dnatted = to.Addr(), port, true
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	st.DecidedBy = &ref
}

// verdict applies a jump, goto, return or terminal verdict.
func (w *walker) verdict(st *state, t *Table, c *Chain, r *Rule, v Verdict, depth int) ([]stmtOut, error) {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	switch v.Kind {
	case "accept":
		st.Verdict, st.DecidedBy = trace.VerdictAccept, &ref
		return []stmtOut{{st: st, exit: exitAccept}}, nil
	case "drop":
		st.Verdict, st.DecidedBy = trace.VerdictDrop, &ref
		return []stmtOut{{st: st, exit: exitDrop}}, nil
	case "reject":
		st.Verdict, st.DecidedBy = trace.VerdictReject, &ref
		return []stmtOut{{st: st, exit: exitDrop}}, nil
	case "return":
		return []stmtOut{{st: st, exit: exitEnd}}, nil
	case "continue":
		return []stmtOut{{st: st, cont: true}}, nil
	case "jump", "goto":
		target := t.Chains[v.Target]
		if target == nil {
			return nil, fmt.Errorf("line %d: chain %s jumps to chain %s, which table %s %s does not have", r.Line, c.Name, v.Target, t.Family, t.Name)
		}
		outs, err := w.runChain(st, t, target, depth+1)
		if err != nil {
			return nil, err
		}
		var res []stmtOut
		for _, o := range outs {
			switch {
			case o.exit == exitEnd && v.Kind == "jump":
				res = append(res, stmtOut{st: o.st, cont: true}) // back after the jump
			case o.exit == exitEnd:
				res = append(res, stmtOut{st: o.st, exit: exitEnd}) // goto: return to our caller
			default:
				res = append(res, stmtOut{st: o.st, exit: o.exit})
			}
		}
		return res, nil
	}
	return nil, fmt.Errorf("line %d: verdict %q is not understood", r.Line, v.Kind)
}

// vmap looks the key up and applies the element's verdict; no element means
// the rule does nothing.
func (w *walker) vmap(st *state, t *Table, c *Chain, r *Rule, s Stmt, recorded bool, depth int) ([]stmtOut, bool, error) {
	if len(s.Left) == 1 && s.Left[0].Proto == "numgen" {
		mod := s.Left[0].Mod
		byValue := map[int]Verdict{}
		for _, e := range s.Values {
			n, err := strconv.Atoi(e.Key[0])
			if err != nil || n < 0 || n >= mod {
				continue
			}
			byValue[n] = parseVerdict(e.Data)
		}
		p := 1 / float64(mod)
		var res []stmtOut
		if err := w.countBranches(mod); err != nil {
			return nil, false, err
		}
		for n := 0; n < mod; n++ {
			b := st.fork(p)
			if !recorded {
				b.record(r)
			}
			v, ok := byValue[n]
			if !ok {
				res = append(res, stmtOut{st: b, cont: true})
				continue
			}
			outs, err := w.verdict(b, t, c, r, v, depth)
			if err != nil {
				return nil, false, err
			}
			res = append(res, outs...)
		}
		return res, true, nil
	}
	key, ok := w.key(st, s.Left)
	if !ok {
		return []stmtOut{{st: st, cont: true}}, recorded, nil
	}
	var e *Element
	if s.SetRef != "" {
		set := t.Sets[s.SetRef]
		if set == nil {
			return nil, false, fmt.Errorf("line %d: chain %s uses map @%s, which table %s %s does not have", r.Line, c.Name, s.SetRef, t.Family, t.Name)
		}
		var err error
		if e, err = set.lookup(key, s.Left); err != nil {
			return nil, false, err
		}
	} else {
		e = lookupIn(s.Values, key, s.Left)
	}
	if e == nil {
		return []stmtOut{{st: st, cont: true}}, recorded, nil
	}
	if !recorded {
		st.record(r)
	}
	outs, err := w.verdict(st, t, c, r, parseVerdict(e.Data), depth)
	return outs, true, err
}

// keyPart is one evaluated selector.
type keyPart struct {
	addr netip.Addr
	num  uint64
	str  string
	kind byte // 'a' address, 'n' number (port, mark), 's' word (proto, state)
}

// key evaluates the selectors for st; ok is false when a selector does not
// apply to the packet (e.g. "tcp dport" on UDP).
func (w *walker) key(st *state, sels []Selector) ([]keyPart, bool) {
	out := make([]keyPart, 0, len(sels))
	for _, s := range sels {
		var k keyPart
		switch s.Proto + " " + s.Field {
		case "ip saddr", "ip6 saddr":
			k = keyPart{kind: 'a', addr: st.src}
		case "ip daddr", "ip6 daddr":
			k = keyPart{kind: 'a', addr: st.dst}
		case "meta l4proto", "ip protocol", "ip6 nexthdr":
			k = keyPart{kind: 's', str: st.proto}
		case "th dport":
			k = keyPart{kind: 'n', num: uint64(st.dport)}
		case "tcp dport", "udp dport", "sctp dport":
			if s.Proto != st.proto {
				return nil, false
			}
			k = keyPart{kind: 'n', num: uint64(st.dport)}
		case "meta mark":
			k = keyPart{kind: 'n', num: uint64(st.mark)}
		case "ct state":
			k = keyPart{kind: 's', str: "new"}
		case "ct status":
			status := ""
			if st.dnatted {
				status = "dnat"
			}
			k = keyPart{kind: 's', str: status}
		case "fib daddr type":
			k = keyPart{kind: 's', str: w.addrType(st.dst)}
		case "fib saddr type":
			k = keyPart{kind: 's', str: w.addrType(st.src)}
		case "meta iifname", "meta iif":
			if st.in == "" {
				w.note("the incoming interface is unknown: rules matching iifname are taken not to match and != iifname to match (pass the interface to change this)")
			}
			k = keyPart{kind: 's', str: st.in}
		case "meta nfproto":
			k = keyPart{kind: 's', str: map[bool]string{true: "ipv4", false: "ipv6"}[st.dst.Is4()]}
		default:
			// sport, oifname: not part of the packet model.
			w.note("%s is not known for the simulated packet; rules matching it are taken not to match", s)
			return nil, false
		}
		out = append(out, k)
	}
	return out, true
}

func (w *walker) addrType(a netip.Addr) string {
	switch {
	case w.isLocal(a):
		return "local"
	case a.IsMulticast():
		return "multicast"
	}
	return "unicast"
}

// match evaluates one match statement.
func (w *walker) match(st *state, t *Table, r *Rule, s Stmt) (bool, error) {
	key, ok := w.key(st, s.Left)
	if !ok {
		// An iifname != NAME on an unknown interface matches (the
		// convention in the notes); anything else does not.
		return s.Negate && len(s.Left) == 1 && s.Left[0].Field == "iifname", nil
	}
	if s.HasMask {
		key[0].num &= uint64(s.Mask)
	}
	var found bool
	switch {
	case s.SetRef != "":
		set := t.Sets[s.SetRef]
		if set == nil {
			return false, fmt.Errorf("line %d: chain %s uses @%s, which table %s %s does not have", r.Line, r.Chain, s.SetRef, t.Family, t.Name)
		}
		e, err := set.lookup(key, s.Left)
		if err != nil {
			return false, err
		}
		found = e != nil
		if strings.HasPrefix(s.SetRef, "affinity-") && len(s.Left) == 1 {
			found = w.affinityHit(st, t, r, set, found)
		}
	case len(s.Left) == 1 && s.Left[0].Proto == "ct" && len(s.Values) == 1:
		// "ct state established,related": any listed state.
		found = slices.Contains(s.Values[0].Key, key[0].str)
	default:
		found = lookupIn(s.Values, key, s.Left) != nil
	}
	return found != s.Negate, nil
}

// affinityHit decides an "ip saddr @affinity-..." match: with
// Options.AffinityEndpoint the client is pinned to that endpoint; otherwise
// the set's elements in the dump decide (a new client has none).
func (w *walker) affinityHit(st *state, t *Table, r *Rule, set *Set, inDump bool) bool {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	ar := trace.AffinityRule{Rule: ref, List: set.Name, Seconds: 0}
	var target string
	for _, s := range r.Stmts {
		if s.Kind == StmtVerdict && s.Verdict.Target != "" {
			target = s.Verdict.Target
		}
	}
	if c := t.Chains[target]; c != nil {
		for _, cr := range c.Rules() {
			for _, cs := range cr.Stmts {
				if cs.Kind == StmtDNAT && cs.To.IsValid() {
					ar.Endpoint = cs.To.String()
				}
			}
		}
	}
	hit := inDump
	if w.opts.AffinityEndpoint.IsValid() {
		hit = ar.Endpoint == w.opts.AffinityEndpoint.String()
	}
	ar.Hit = hit
	if !slices.ContainsFunc(w.affinity, func(a trace.AffinityRule) bool { return a.Rule == ref }) {
		w.affinity = append(w.affinity, ar)
	}
	if inDump && !w.opts.AffinityEndpoint.IsValid() {
		w.note("the dump's affinity set %s already holds the client %s: it is pinned to %s", set.Name, st.src, ar.Endpoint)
	}
	return hit
}
