package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// Options are the facts about the node and the client that a dump alone does
// not carry.
type Options struct {
	// LocalAddrs are the node's own addresses (what "-m addrtype --dst-type
	// LOCAL" matches). 127.0.0.0/8 and ::1 are always local.
	LocalAddrs []netip.Addr
	// AffinityEndpoint, when valid, says the client already has a
	// session-affinity entry pointing at this endpoint; "-m recent --rcheck"
	// rules for lists that lead to it then match. The default is a new
	// client with no entry.
	AffinityEndpoint netip.AddrPort
	// MaxBranches bounds the number of random-choice branches followed
	// (default 1,000,000), so a hostile dump cannot make a walk explode.
	MaxBranches int
}

// ErrLoop is wrapped when the rules jump in a circle or nest too deeply.
var ErrLoop = errors.New("rules loop or nest too deeply")

const maxJumpDepth = 100

// Simulate walks the first packet of a new connection through the dump's
// tables in the order the kernel's netfilter hooks run them and reports what
// happens to it. A packet whose source is a node address is locally generated
// (nat/filter OUTPUT, then POSTROUTING); any other packet arrives from
// outside (PREROUTING, then INPUT when its destination is local after DNAT,
// else FORWARD and POSTROUTING). Random choices (-m statistic) split the walk
// into branches whose probabilities are multiplied out.
func Simulate(d *Dump, pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	if err := pkt.Validate(); err != nil {
		return nil, err
	}
	if d.Generator != "" && d.IPv6() != pkt.Destination.Is6() {
		fam, tool := "IPv4", "iptables-save"
		if pkt.Destination.Is6() {
			fam, tool = "IPv6", "ip6tables-save"
		}
		return nil, fmt.Errorf("the packet is %s but the dump was written by %s; simulate %s packets on %s output", fam, d.Generator, fam, tool)
	}
	w := &walker{dump: d, opts: opts, local: map[netip.Addr]bool{}}
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
	start := &state{
		Branch: trace.Branch{Prob: 1},
		src:    pkt.Source.Unmap(),
		dst:    pkt.Destination.Unmap(),
		dport:  pkt.DestinationPort,
		proto:  pkt.Protocol,
		in:     pkt.InInterface,
	}
	local := w.isLocal(start.src)
	sim.Origin = "forwarded"
	if local {
		sim.Origin = "local"
		start.local = true
	} else if pkt.InInterface == "" {
		w.note("the incoming interface is unknown: rules with -i NAME are taken not to match and ! -i NAME to match (pass the interface to change this)")
	}
	hookNames := map[trace.Hook]string{trace.HookPrerouting: "PREROUTING", trace.HookInput: "INPUT", trace.HookForward: "FORWARD", trace.HookOutput: "OUTPUT", trace.HookPostrouting: "POSTROUTING"}
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

// hookTables lists, per netfilter hook, the tables that register there in
// priority order.
var hookTables = map[string][]string{
	"PREROUTING":  {"raw", "mangle", "nat"},
	"INPUT":       {"mangle", "filter", "security", "nat"},
	"FORWARD":     {"mangle", "filter", "security"},
	"OUTPUT":      {"raw", "mangle", "nat", "filter", "security"},
	"POSTROUTING": {"mangle", "nat"},
}

type walker struct {
	dump     *Dump
	opts     Options
	local    map[netip.Addr]bool
	branches int
	done     []*state // branches that ended early (dropped, rejected)
	notes    []string
	affinity []trace.AffinityRule
}

func (w *walker) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(w.notes, n) {
		w.notes = append(w.notes, n)
	}
}

func (w *walker) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || w.local[a]
}

// state is one branch of the walk: the packet as it is at this point,
// and (in the embedded trace.Branch) what happened to it so far.
type state struct {
	trace.Branch
	src, dst netip.Addr
	dport    uint16
	proto    string
	in       string
	local    bool // generated on the node
	mark     uint32
}

func (s *state) fork(p float64) *state {
	c := *s
	c.Prob = s.Prob * p
	s.Prob *= 1 - p
	return &c
}

func (s *state) record(r *Rule) trace.RuleRef {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	if r.Counted {
		ref.Counters = &trace.RuleCounters{Packets: r.Packets, Bytes: r.Bytes}
	}
	s.Record(ref)
	return ref
}

// exit says how a chain walk ended for one branch.
type exit int

const (
	exitReturn exit = iota // fell off the end or RETURN: the caller goes on
	exitAccept             // ACCEPT, DNAT, SNAT...: this table is done for this hook
	exitStop               // DROP or REJECT: the packet is gone
)

type branch struct {
	st   *state
	exit exit
}

// hook runs every table registered at the hook over the given branches and
// returns the branches that survive it; dropped ones are kept in w.done.
func (w *walker) hook(hook string, states []*state) ([]*state, error) {
	for _, table := range hookTables[hook] {
		t := w.dump.Table(table)
		if t == nil {
			continue
		}
		c := t.Chain(hook)
		if c == nil {
			continue
		}
		if table == "nat" && (hook == "INPUT") {
			// nat INPUT only does source NAT for local delivery; kube-proxy
			// never uses it, and conntrack has already decided NAT here.
			continue
		}
		var next []*state
		for _, s := range states {
			bs, err := w.runRules(s, c, 0, 0)
			if err != nil {
				return nil, err
			}
			for _, b := range bs {
				switch b.exit {
				case exitStop:
					w.done = append(w.done, b.st)
				case exitReturn:
					if c.Policy == "DROP" {
						b.st.Verdict = trace.VerdictDrop
						b.st.DecidedBy = nil
						w.note("the policy of %s %s is DROP: packets no rule accepts there are dropped", table, hook)
						w.done = append(w.done, b.st)
						continue
					}
					next = append(next, b.st)
				default:
					next = append(next, b.st)
				}
			}
		}
		states = next
	}
	return states, nil
}

// runRules walks chain c from rule index from. Random matches fork the state:
// the share that matched follows the target, the rest goes on down the chain.
func (w *walker) runRules(st *state, c *Chain, from, depth int) ([]branch, error) {
	if depth > maxJumpDepth {
		return nil, fmt.Errorf("chain %s of table %s: jumps nest more than %d deep: %w", c.Name, c.Table(), maxJumpDepth, ErrLoop)
	}
	pc, err := c.split()
	if err != nil {
		return nil, err
	}
	var out []branch
	cur := st
	for i := from; i < len(pc.texts); i++ {
		if pc.rules[i] == nil && destinationExcludes(pc.texts[i], cur.dst) {
			// Long chains such as KUBE-SERVICES are mostly rules for other
			// destinations: skip them without tokenizing.
			continue
		}
		r, err := c.rule(pc, i)
		if err != nil {
			return nil, err
		}
		p := w.matchChance(cur, r)
		if p <= 0 {
			continue
		}
		if p < 1 {
			w.branches++
			if w.branches > w.opts.MaxBranches {
				return nil, fmt.Errorf("more than %d random branches: the dump is too large or loops", w.opts.MaxBranches)
			}
			taken := cur.fork(p)
			bs, err := w.follow(taken, c, i, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, bs...)
			continue
		}
		bs, err := w.follow(cur, c, i, depth)
		if err != nil {
			return nil, err
		}
		return append(out, bs...), nil
	}
	return append(out, branch{cur, exitReturn}), nil
}

// follow applies rule i's target to st and, where the target lets the packet
// go on in this chain, continues the walk after rule i.
func (w *walker) follow(st *state, c *Chain, i, depth int) ([]branch, error) {
	pc, err := c.split()
	if err != nil {
		return nil, err
	}
	r, err := c.rule(pc, i)
	if err != nil {
		return nil, err
	}
	ref := st.record(r)
	t := r.Target
	goOn := func(s *state) ([]branch, error) { return w.runRules(s, c, i+1, depth) }
	decide := func(v trace.Verdict, e exit) ([]branch, error) {
		st.Verdict, st.DecidedBy = v, &ref
		return []branch{{st, e}}, nil
	}
	switch {
	case t.Name == "":
		return goOn(st)
	case t.IsChainJump():
		sub := c.table.Chain(t.Name)
		if sub == nil {
			return nil, fmt.Errorf("line %d: rule in chain %s jumps to chain %s, which table %s does not have", r.Line, c.Name, t.Name, c.Table())
		}
		bs, err := w.runRules(st, sub, 0, depth+1)
		if err != nil {
			return nil, err
		}
		if t.Goto {
			// A goto's RETURN goes back to this chain's caller.
			return bs, nil
		}
		var out []branch
		for _, b := range bs {
			if b.exit != exitReturn {
				out = append(out, b)
				continue
			}
			more, err := goOn(b.st)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
		return out, nil
	}
	switch t.Name {
	case "ACCEPT":
		if strings.HasPrefix(c.Name, "KUBE-") {
			// Only kube-proxy's own accepts make the verdict ACCEPT;
			// others just let the packet pass this table.
			return decide(trace.VerdictAccept, exitAccept)
		}
		return []branch{{st, exitAccept}}, nil
	case "DROP":
		return decide(trace.VerdictDrop, exitStop)
	case "REJECT":
		return decide(trace.VerdictReject, exitStop)
	case "RETURN":
		return []branch{{st, exitReturn}}, nil
	case "MARK":
		st.mark = t.Mark.Apply(st.mark)
		return goOn(st)
	case "DNAT":
		port := t.NAT.Port
		if port == 0 {
			port = st.dport
		}
		st.Endpoint = &trace.Endpoint{IP: t.NAT.Addr, Port: port, Chain: c.Name}
		st.dst, st.dport = t.NAT.Addr, port
		st.DecidedBy = &ref
		return []branch{{st, exitAccept}}, nil
	case "SNAT", "MASQUERADE":
		st.Masquerade = true
		return []branch{{st, exitAccept}}, nil
	case "REDIRECT":
		w.note("line %d: REDIRECT sends the packet to the node itself; the simulator treats it as accepted without an endpoint", r.Line)
		return []branch{{st, exitAccept}}, nil
	case "QUEUE", "NFQUEUE", "TPROXY":
		w.note("line %d: %s hands the packet to user space; the simulator cannot follow it and treats it as accepted", r.Line, t.Name)
		return []branch{{st, exitAccept}}, nil
	}
	// LOG, CONNMARK, CT, NOTRACK and the like do not end the chain.
	return goOn(st)
}

// matchChance returns how likely rule r matches the packet in state st: 0 or
// 1 for ordinary matches, a fraction for -m statistic.
func (w *walker) matchChance(st *state, r *Rule) float64 {
	if r.Source != nil && !r.Source.Contains(st.src) {
		return 0
	}
	if r.Destination != nil && !r.Destination.Contains(st.dst) {
		return 0
	}
	if r.Protocol != "" && r.Protocol != "all" && (r.Protocol == st.proto) == r.ProtocolNegated {
		return 0
	}
	if r.Fragment != nil && *r.Fragment {
		// The first packet of a connection is never a non-first fragment.
		return 0
	}
	if r.InInterface != nil && !r.InInterface.Matches(st.in) {
		return 0
	}
	if r.OutInterface != nil {
		w.note("the outgoing interface is unknown: rules with -o NAME are taken not to match and ! -o NAME to match")
		if !r.OutInterface.Matches("") {
			return 0
		}
	}
	chance := 1.0
	for _, m := range r.Matches {
		p := w.moduleChance(st, r, m)
		if p <= 0 {
			return 0
		}
		chance *= p
	}
	return chance
}

func (w *walker) moduleChance(st *state, r *Rule, m Match) float64 {
	yes := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	switch m := m.(type) {
	case *PortMatch:
		if m.Name != "multiport" && m.Name != st.proto {
			return 0
		}
		if len(m.Other) > 0 {
			if len(m.Other) == 1 && m.Other[0] == "--syn" {
				// The first packet of a TCP connection is a SYN.
			} else {
				w.note("line %d: the simulator does not evaluate -m %s %s; taken as not matching", r.Line, m.Name, strings.Join(m.Other, " "))
				return 0
			}
		}
		if m.DPorts != nil && portsContain(m.DPorts, st.dport) == m.DNegated {
			return 0
		}
		if m.APorts != nil && portsContain(m.APorts, st.dport) == m.ANe {
			return 0
		}
		if m.SPorts != nil {
			w.note("line %d: the source port is unknown; source-port matches are taken not to match", r.Line)
			return yes(m.SNegated)
		}
		return 1
	case *AddrTypeMatch:
		if m.SrcType != nil && w.addrIsType(st.src, m.SrcType) == m.SrcNegated {
			return 0
		}
		if m.DstType != nil && w.addrIsType(st.dst, m.DstType) == m.DstNegated {
			return 0
		}
		return 1
	case *StatisticMatch:
		return m.Chance()
	case *RecentMatch:
		switch m.Op {
		case "rcheck", "update":
			hit := w.affinityHit(r, m)
			return yes(hit != m.Negated)
		default:
			// --set and --remove always match (they only update the list).
			return yes(!m.Negated)
		}
	case *MarkMatch:
		return yes((st.mark&m.Mask == m.Value) != m.Negated)
	case *ConntrackMatch:
		if len(m.Other) > 0 {
			w.note("line %d: the simulator does not evaluate -m %s %s; taken as not matching", r.Line, m.Name, strings.Join(m.Other, " "))
			return 0
		}
		if m.States == nil {
			return 1
		}
		any := false
		for _, s := range m.States {
			switch s {
			case "NEW":
				any = true
			case "DNAT":
				any = any || st.Endpoint != nil
			case "SNAT":
				any = any || st.Masquerade
			}
		}
		return yes(any != m.Negated)
	case *SetMatch:
		w.note("line %d: the contents of ipset %q are not in the dump; the packet is taken not to be in it", r.Line, m.Set)
		return yes(m.Negated)
	case *CommentMatch, *NFAcctMatch:
		return 1
	case *UnknownMatch:
		w.note("line %d: the simulator does not evaluate -m %s; taken as not matching", r.Line, m.Name)
		return 0
	}
	return 0
}

// destinationExcludes reports, from a rule's text alone, that the rule has a
// plain "-d ADDR" that cannot match dst. It only answers true when that is
// certain (the option comes before any comment or quote, is not negated and
// parses); anything else is left to the full tokenizer.
func destinationExcludes(text string, dst netip.Addr) bool {
	i := strings.Index(text, "-d ")
	if i < 0 || (i > 0 && text[i-1] != ' ') {
		return false
	}
	before := text[:i]
	if strings.HasSuffix(before, "! ") || strings.ContainsAny(before, "\"[") || strings.Contains(before, "--comment") {
		return false
	}
	v := text[i+3:]
	if end := strings.IndexByte(v, ' '); end >= 0 {
		v = v[:end]
	}
	pfx, err := parseAddrOrPrefix(v)
	if err != nil {
		return false
	}
	return !pfx.Contains(dst)
}

func portsContain(ranges []PortRange, p uint16) bool {
	for _, r := range ranges {
		if r.contains(p) {
			return true
		}
	}
	return false
}

// addrIsType answers -m addrtype for the types kube-proxy and common CNIs use.
func (w *walker) addrIsType(a netip.Addr, types []string) bool {
	for _, t := range types {
		switch t {
		case "LOCAL":
			if w.isLocal(a) {
				return true
			}
		case "UNICAST":
			if !a.IsMulticast() && !w.isLocal(a) {
				return true
			}
		case "MULTICAST":
			if a.IsMulticast() {
				return true
			}
		case "BROADCAST":
			if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return true
			}
		}
	}
	return false
}

// affinityHit decides a "-m recent --rcheck" match and records it: a new
// client has no entry, unless Options.AffinityEndpoint names the endpoint the
// list's chain leads to.
func (w *walker) affinityHit(r *Rule, m *RecentMatch) bool {
	ar := trace.AffinityRule{
		Rule:    trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text},
		List:    m.Name,
		Seconds: m.Seconds,
	}
	if dest := w.listEndpoint(r.Table, m.Name); dest.IsValid() {
		ar.Endpoint = dest.String()
		ar.Hit = w.opts.AffinityEndpoint.IsValid() && dest == w.opts.AffinityEndpoint
	}
	for _, seen := range w.affinity {
		if seen.Rule == ar.Rule {
			return ar.Hit
		}
	}
	w.affinity = append(w.affinity, ar)
	return ar.Hit
}

// listEndpoint finds where kube-proxy's affinity list leads: the list is named
// after the endpoint chain, which DNATs to exactly one endpoint.
func (w *walker) listEndpoint(table, list string) netip.AddrPort {
	c := w.dump.Chain(table, list)
	if c == nil {
		return netip.AddrPort{}
	}
	rules, err := c.Rules()
	if err != nil {
		return netip.AddrPort{}
	}
	for _, r := range rules {
		if r.Target.Name == "DNAT" && r.Target.NAT != nil {
			return netip.AddrPortFrom(r.Target.NAT.Addr, r.Target.NAT.Port)
		}
	}
	return netip.AddrPort{}
}
