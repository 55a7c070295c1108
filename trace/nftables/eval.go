package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Options are the node's facts and the walk's bounds (trace.WalkOptions),
// and which tables to evaluate.
type Options struct {
	trace.WalkOptions
	// AllTables evaluates every table of the packet's family, not only
	// kube-proxy's.
	AllTables bool
}

// ErrLoop is wrapped when the rules jump in a circle or nest too deeply.
var ErrLoop = trace.ErrLoop

// ErrBudget is wrapped when a walk looks at more rules than Options.MaxRules
// allows, or keeps more than trace.MaxTrail and trace.MaxOutcomeRules allow.
var ErrBudget = trace.ErrBudget

// Simulate walks the first packet of a new connection through the ruleset's
// base chains in hook and priority order: prerouting, then input (when the
// destination is local after DNAT) or forward, then postrouting; a packet
// whose source is a node address starts at output instead. numgen choices
// split the walk into branches whose probabilities are multiplied out.
func Simulate(rs *Ruleset, pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	family := "ip"
	if pkt.Destination.Unmap().Is6() {
		family = "ip6"
	}
	walk, err := trace.StartWalk(pkt, opts.WalkOptions)
	if err != nil {
		return nil, err
	}
	w := &walker{Walk: walk}
	var skipped []string
	for _, t := range rs.Tables {
		if t.Family != family && t.Family != "inet" {
			continue
		}
		if t.Name == KubeProxyTable || opts.AllTables {
			w.tables = append(w.tables, t)
		} else {
			skipped = append(skipped, excerpt.Clip(t.Family+" "+t.Name))
		}
	}
	if len(w.tables) == 0 {
		return nil, fmt.Errorf("the ruleset has no %s %s table: kube-proxy's nftables rules for %s packets are not in this dump", family, KubeProxyTable, map[string]string{"ip": "IPv4", "ip6": "IPv6"}[family])
	}
	if len(skipped) > 0 {
		w.Note("tables %s were read but not evaluated: only kube-proxy's tables are simulated", joinSome(skipped, 10))
	}
	branches, err := trace.WalkNetfilter(walk, HookChains(w.tables), walk.StartFlow())
	if err != nil {
		return nil, err
	}
	return walk.Finish(branches)
}

// walker is one simulation through a ruleset: the shared walk (options,
// addresses, notes, bounds), the tables evaluated and the branches that
// ended early.
type walker struct {
	*trace.Walk
	tables []*Table
}

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

// fork returns a copy of the branch that takes a share p of its
// probability.
func (s *state) fork(p float64) *state {
	c := *s
	c.Prob = s.Prob * p
	return &c
}

// ruleRef names rule r; a rule outside kube-proxy's tables is marked
// foreign.
func ruleRef(r *Rule) trace.RuleRef {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	if r.Table != KubeProxyTable {
		ref.Foreign, ref.Backend = true, "nftables"
	}
	return ref
}

func (s *state) record(r *Rule) trace.RuleRef {
	ref := ruleRef(r)
	s.Record(ref)
	return ref
}

// recordNoEffect records a rule that matched and left the packet as it was.
func (s *state) recordNoEffect(r *Rule) {
	s.RecordNoEffect(ruleRef(r))
}

type exitKind int

const (
	exitEnd    exitKind = iota // fell off the end of the chain (or return)
	exitAccept                 // accept / NAT: this base chain is done
	exitDrop                   // drop or reject: the packet is gone
	exitGone                   // no branch left the rule (an empty dnat map)
)

type branchOut struct {
	st   *state
	exit exitKind
}

// frame is one chain on a branch's call stack: the rule to look at next, and
// how many jumps and gotos led there.
type frame struct {
	t     *Table
	chain *Chain
	next  int
	depth int
	// jumped marks the end of the rule trail right after the jump that
	// entered this chain: if nothing is recorded before it returns, the
	// jump changed nothing.
	jumped trace.TrailMark
}

// task is a branch still to be walked, with its own call stack and what the
// rule that forked it does to it next.
type task struct {
	st      *state
	stack   []frame
	pending *stmtOut
}

// walkChain walks the branch st through base chain c and returns how each
// resulting branch left it. The walk is a loop over an explicit stack: a
// chain of a million rules that match and fall through, or jumps nested to
// the limit, cost memory in proportion to the branches, not the rules.
// Branches are finished depth first, in the order a rule forked them, which
// is the order a recursive walk gives.
func (w *walker) walkChain(st *state, t *Table, c *Chain) ([]branchOut, error) {
	todo := []task{{st: st, stack: []frame{{t: t, chain: c}}}}
	var out []branchOut
	for len(todo) > 0 {
		tk := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		e, err := w.run(&tk, &todo)
		if err != nil {
			return nil, err
		}
		if e != exitGone {
			out = append(out, branchOut{tk.st, e})
		}
	}
	return out, nil
}

// run walks one branch until it leaves the base chain. A rule that forks
// the branch (numgen) goes on with the first share and pushes the others
// onto todo, last first.
func (w *walker) run(tk *task, todo *[]task) (exitKind, error) {
	if tk.pending != nil {
		o := *tk.pending
		tk.pending = nil
		if e, done, err := w.apply(tk, o); err != nil || done {
			return e, err
		}
	}
	for {
		f := &tk.stack[len(tk.stack)-1]
		if f.next >= f.chain.Len() {
			if w.ret(tk) {
				return exitEnd, nil
			}
			continue
		}
		r := f.chain.Rule(f.next)
		f.next++
		if err := w.CountRule(); err != nil {
			return 0, err
		}
		if r.Unknown != "" {
			w.Note("rule at line %d in chain %s was not evaluated (%s); it is taken not to match", r.Line, excerpt.Clip(f.chain.Name), excerpt.Clip(r.Unknown))
			continue
		}
		outs, matched, err := w.runStmts(tk.st, f.t, f.chain, r, 0)
		if err != nil {
			return 0, err
		}
		if !matched {
			continue
		}
		for k := len(outs) - 1; k > 0; k-- {
			*todo = append(*todo, task{st: outs[k].st, stack: slices.Clone(tk.stack), pending: &outs[k]})
		}
		if len(outs) == 0 {
			// A dnat map with no element for any numgen value: no
			// branch goes on.
			return exitGone, nil
		}
		tk.st = outs[0].st
		if e, done, err := w.apply(tk, outs[0]); err != nil || done {
			return e, err
		}
		if err := tk.st.CheckTrail(); err != nil {
			return 0, err
		}
	}
}

// ret returns the branch from the chain on top of its stack to the caller;
// it reports true when the branch left the base chain.
func (w *walker) ret(tk *task) bool {
	f := tk.stack[len(tk.stack)-1]
	tk.stack = tk.stack[:len(tk.stack)-1]
	if len(tk.stack) == 0 {
		return true
	}
	tk.st.JumpReturned(f.jumped)
	return false
}

// apply carries out what a rule's statements left to do for one branch: go
// on with the next rule, end the chain walk, or enter another chain. done is
// true when the branch left the base chain with e.
func (w *walker) apply(tk *task, o stmtOut) (e exitKind, done bool, err error) {
	switch {
	case o.call != nil:
		f := &tk.stack[len(tk.stack)-1]
		depth := f.depth + 1
		if err := trace.CheckDepth(depth, fmt.Sprintf("chain %s of table %s %s", excerpt.Clip(o.call.Name), f.t.Family, excerpt.Clip(f.t.Name))); err != nil {
			return 0, false, err
		}
		next := frame{t: f.t, chain: o.call, depth: depth, jumped: tk.st.Mark()}
		if o.isGoto {
			// A goto's chain replaces this one: its end returns to our
			// caller.
			next.jumped = f.jumped
			*f = next
		} else {
			tk.stack = append(tk.stack, next)
		}
		return 0, false, nil
	case o.cont:
		return 0, false, nil
	case o.exit == exitEnd:
		return exitEnd, w.ret(tk), nil
	}
	return o.exit, true, nil
}

// stmtOut is one branch after a rule's statements: it continues with the
// chain's next rule (cont), enters chain call (a jump, or a goto), or the
// chain walk ended with exit.
type stmtOut struct {
	st     *state
	cont   bool
	exit   exitKind
	call   *Chain
	isGoto bool
}

// runStmts evaluates r's statements from k on. matched is false when a match
// statement failed before anything happened (the rule does not apply).
func (w *walker) runStmts(st *state, t *Table, c *Chain, r *Rule, k int) ([]stmtOut, bool, error) {
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
			if err := w.CountBranches(len(outs)); err != nil {
				return nil, false, err
			}
			return outs, true, nil
		case StmtVerdict:
			if !recorded {
				rec(st)
			}
			out, err := w.verdict(st, t, c, r, s.Verdict)
			return []stmtOut{out}, true, err
		case StmtVMap:
			return w.vmap(st, t, c, r, s, recorded)
		}
	}
	// All statements ran without a verdict: the rule matched, go on.
	if !recorded {
		st.recordNoEffect(r)
	}
	return []stmtOut{{st: st, cont: true}}, true, nil
}

func (w *walker) dnat(st *state, c *Chain, to netip.AddrPort, r *Rule) {
	port := to.Port()
	if port == 0 {
		port = st.dport
	}
	st.Endpoint = &trace.Endpoint{IP: to.Addr(), Port: port, Chain: c.Name}
	st.dst, st.dport, st.dnatted = to.Addr(), port, true
	ref := ruleRef(r)
	st.DecidedBy = &ref
}

// verdict applies a terminal verdict, or says which chain a jump or goto
// enters.
func (w *walker) verdict(st *state, t *Table, c *Chain, r *Rule, v Verdict) (stmtOut, error) {
	ref := ruleRef(r)
	switch v.Kind {
	case "accept":
		st.Verdict, st.DecidedBy = trace.VerdictAccept, &ref
		return stmtOut{st: st, exit: exitAccept}, nil
	case "drop":
		st.Verdict, st.DecidedBy = trace.VerdictDrop, &ref
		return stmtOut{st: st, exit: exitDrop}, nil
	case "reject":
		st.Verdict, st.DecidedBy = trace.VerdictReject, &ref
		return stmtOut{st: st, exit: exitDrop}, nil
	case "return":
		return stmtOut{st: st, exit: exitEnd}, nil
	case "continue":
		return stmtOut{st: st, cont: true}, nil
	case "jump", "goto":
		target := t.Chains[v.Target]
		if target == nil {
			return stmtOut{}, fmt.Errorf("line %d: chain %s jumps to chain %s, which table %s %s does not have", r.Line, excerpt.Clip(c.Name), excerpt.Clip(v.Target), t.Family, excerpt.Clip(t.Name))
		}
		return stmtOut{st: st, call: target, isGoto: v.Kind == "goto"}, nil
	}
	return stmtOut{}, fmt.Errorf("line %d: verdict %s is not understood", r.Line, excerpt.Quote(v.Kind))
}

// vmap looks the key up and applies the element's verdict; no element means
// the rule does nothing.
func (w *walker) vmap(st *state, t *Table, c *Chain, r *Rule, s Stmt, recorded bool) ([]stmtOut, bool, error) {
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
		if err := w.CountBranches(mod); err != nil {
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
			out, err := w.verdict(b, t, c, r, v)
			if err != nil {
				return nil, false, err
			}
			res = append(res, out)
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
			return nil, false, fmt.Errorf("line %d: chain %s uses map @%s, which table %s %s does not have", r.Line, excerpt.Clip(c.Name), excerpt.Clip(s.SetRef), t.Family, excerpt.Clip(t.Name))
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
	out, err := w.verdict(st, t, c, r, parseVerdict(e.Data))
	return []stmtOut{out}, true, err
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
				w.Note("the incoming interface is unknown: rules matching iifname are taken not to match and != iifname to match (pass the interface to change this)")
			}
			k = keyPart{kind: 's', str: st.in}
		case "meta nfproto":
			k = keyPart{kind: 's', str: map[bool]string{true: "ipv4", false: "ipv6"}[st.dst.Is4()]}
		default:
			// sport, oifname: not part of the packet model.
			w.Note("%s is not known for the simulated packet; rules matching it are taken not to match", excerpt.Clip(s.String()))
			return nil, false
		}
		out = append(out, k)
	}
	return out, true
}

func (w *walker) addrType(a netip.Addr) string {
	switch {
	case w.IsLocal(a):
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
			return false, fmt.Errorf("line %d: chain %s uses @%s, which table %s %s does not have", r.Line, excerpt.Clip(r.Chain), excerpt.Clip(s.SetRef), t.Family, excerpt.Clip(t.Name))
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
	ref := ruleRef(r)
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
	if w.Options().AffinityEndpoint.IsValid() {
		hit = ar.Endpoint == w.Options().AffinityEndpoint.String()
	}
	ar.Hit = hit
	w.AddAffinity(ar)
	if inDump && !w.Options().AffinityEndpoint.IsValid() {
		w.Note("the dump's affinity set %s already holds the client %s: it is pinned to %s", excerpt.Clip(set.Name), st.src, ar.Endpoint)
	}
	return hit
}

// joinSome joins the first n of items with ", " and says how many more
// there are.
func joinSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
