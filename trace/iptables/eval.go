package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Options are the node's facts and the walk's bounds; see trace.WalkOptions.
type Options = trace.WalkOptions

// ErrLoop is wrapped when the rules jump in a circle or nest too deeply.
var ErrLoop = trace.ErrLoop

// ErrBudget is wrapped when a walk looks at more rules than Options.MaxRules
// allows, or keeps more than trace.MaxTrail and trace.MaxOutcomeRules allow.
var ErrBudget = trace.ErrBudget

// Simulate walks the first packet of a new connection through the dump's
// tables in the order the kernel's netfilter hooks run them and reports what
// happens to it. A packet whose source is a node address is locally generated
// (nat/filter OUTPUT, then POSTROUTING); any other packet arrives from
// outside (PREROUTING, then INPUT when its destination is local after DNAT,
// else FORWARD and POSTROUTING). Random choices (-m statistic) split the walk
// into branches whose probabilities are multiplied out.
func Simulate(d *Dump, pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	return simulate(d, pkt, opts, Extensions{})
}

func simulate(d *Dump, pkt trace.Packet, opts Options, ext Extensions) (*trace.Simulation, error) {
	if err := pkt.Validate(); err != nil {
		return nil, err
	}
	if d.Generator != "" && d.IPv6() != pkt.Destination.Is6() {
		fam, tool := "IPv4", "iptables-save"
		if pkt.Destination.Is6() {
			fam, tool = "IPv6", "ip6tables-save"
		}
		return nil, fmt.Errorf("the packet is %s but the dump was written by %s; simulate %s packets on %s output", fam, excerpt.Clip(d.Generator), fam, tool)
	}
	walk, err := trace.StartWalk(pkt, opts)
	if err != nil {
		return nil, err
	}
	branches, err := trace.WalkNetfilter(walk, HookChainsWith(d, ext), walk.StartFlow())
	if err != nil {
		return nil, err
	}
	return walk.Finish(branches)
}

// walker is one simulation through a dump: the shared walk (options,
// addresses, notes, bounds) and the branches that ended early.
type walker struct {
	*trace.Walk
	dump *Dump
	ext  Extensions
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
	// ipvs is the IPVS connection once IPVS scheduled the packet (ext.go).
	ipvs *trace.IPVSConn
	// backend names the dump's tool on the rules it records that are not
	// kube-proxy's.
	backend string
}

// fork returns a copy of the branch that takes a share p of its
// probability; the caller keeps or adjusts the rest.
func (s *state) fork(p float64) *state {
	c := *s
	c.Prob = s.Prob * p
	return &c
}

func (s *state) record(r *Rule) trace.RuleRef {
	ref := s.ref(r)
	if r.Counted {
		ref.Counters = &trace.RuleCounters{Packets: r.Packets, Bytes: r.Bytes}
	}
	s.Record(ref)
	return ref
}

// recordNoEffect records a rule that matched and left the packet as it was.
func (s *state) recordNoEffect(r *Rule) {
	s.RecordNoEffect(s.ref(r))
}

// ref names rule r; a rule kube-proxy did not write is marked foreign.
func (s *state) ref(r *Rule) trace.RuleRef {
	ref := trace.RuleRef{Table: r.Table, Chain: r.Chain, Line: r.Line, Rule: r.Text}
	if !isKubeProxyRule(r) {
		ref.Foreign, ref.Backend = true, s.backend
	}
	return ref
}

// isKubeProxyRule tells kube-proxy's (and the kubelet's) rules: those in a
// KUBE-* chain and those in a built-in chain that jump to one. Everything
// else — Docker's, a network plugin's, a host firewall's — is foreign.
func isKubeProxyRule(r *Rule) bool {
	return strings.HasPrefix(r.Chain, "KUBE-") || strings.HasPrefix(r.Target.Name, "KUBE-")
}

// exitKind says how a branch left a hook's chain.
type exitKind int

const (
	exitEnd    exitKind = iota // fell off the end or RETURN: the next table goes on
	exitAccept                 // ACCEPT, DNAT, SNAT...: this table is done for this hook
	exitDrop                   // DROP or REJECT: the packet is gone
)

// branchOut is one branch after a hook's chain, and how it left it.
type branchOut struct {
	st   *state
	exit exitKind
}

// frame is one chain on a branch's call stack: the rule to look at next, and
// how many jumps and gotos led there.
type frame struct {
	chain *Chain
	pc    *parsedChain
	// texts is the chain's rules read so far (parsedChain.upTo).
	texts []string
	next  int
	depth int
	// jumped marks the end of the rule trail right after the jump that
	// entered this chain: if nothing is recorded before it returns, the
	// jump changed nothing.
	jumped trace.TrailMark
}

// task is a branch still to be walked, with its own call stack.
type task struct {
	st    *state
	stack []frame
}

// walkChain walks the branch st through the hook's chain c and returns how
// each resulting branch left it. The walk is a loop over an explicit stack:
// a chain of a million rules that match and fall through, or jumps nested
// to the limit, cost memory in proportion to the branches, not the rules.
// Branches are finished depth first, the share that matched a random rule
// before the rest, so they come out in the order a recursive walk gives.
func (w *walker) walkChain(st *state, c *Chain) ([]branchOut, error) {
	pc, err := c.split()
	if err != nil {
		return nil, err
	}
	texts, err := c.upTo(pc, 0)
	if err != nil {
		return nil, err
	}
	todo := []task{{st: st, stack: []frame{{chain: c, pc: pc, texts: texts}}}}
	var out []branchOut
	for len(todo) > 0 {
		t := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		e, err := w.run(&t, &todo)
		if err != nil {
			return nil, err
		}
		out = append(out, branchOut{t.st, e})
	}
	return out, nil
}

// run walks one branch until it leaves the hook's chain. A random match
// pushes the share that did not match onto todo (to go on after the rule)
// and goes on with the share that did.
func (w *walker) run(t *task, todo *[]task) (exitKind, error) {
	for {
		f := &t.stack[len(t.stack)-1]
		if f.next >= len(f.texts) {
			texts, err := f.chain.upTo(f.pc, f.next)
			if err != nil {
				return 0, err
			}
			f.texts = texts
		}
		if f.next >= len(f.texts) {
			if e, done := w.ret(t); done {
				return e, nil
			}
			continue
		}
		i := f.next
		f.next++
		if err := w.CountRule(); err != nil {
			return 0, err
		}
		c, pc := f.chain, f.pc
		// Long chains such as KUBE-SERVICES are mostly rules for other
		// destinations, and KUBE-EXTERNAL-SERVICES and KUBE-NODEPORTS (a
		// rule per node port) for other ports: skip them without
		// tokenizing. (A dump saved with counters, as the collectors take
		// it when observing, has them before each rule.) A rule another
		// walk tokenized is skipped the same way: it could not match
		// either, and looking at the cache would need the table's lock.
		if body := withoutCounters(f.texts[i]); destinationExcludes(body, t.st.dst) || portExcludes(body, t.st.dport) {
			continue
		}
		r, err := c.rule(pc, i)
		if err != nil {
			return 0, err
		}
		p := w.matchChance(t.st, r)
		if p <= 0 {
			continue
		}
		if p < 1 {
			if err := w.CountBranches(1); err != nil {
				return 0, err
			}
			taken := t.st.fork(p)
			t.st.Prob *= 1 - p
			*todo = append(*todo, task{st: t.st, stack: slices.Clone(t.stack)})
			t.st = taken
		}
		e, done, err := w.apply(t, r)
		if err != nil || done {
			return e, err
		}
		if err := t.st.CheckTrail(); err != nil {
			return 0, err
		}
	}
}

// ret returns the branch from the chain on top of its stack to the caller;
// done is true when it left the hook's chain.
func (w *walker) ret(t *task) (exitKind, bool) {
	f := t.stack[len(t.stack)-1]
	t.stack = t.stack[:len(t.stack)-1]
	if len(t.stack) == 0 {
		return exitEnd, true
	}
	t.st.JumpReturned(f.jumped)
	return 0, false
}

// apply carries out the target of rule r, which matched, on the branch; done
// is true when the branch left the hook's chain with e.
func (w *walker) apply(t *task, r *Rule) (e exitKind, done bool, err error) {
	st := t.st
	f := &t.stack[len(t.stack)-1]
	c := f.chain
	tg := r.Target
	if tg.Name == "" || noEffectTargets[tg.Name] {
		st.recordNoEffect(r)
		return 0, false, nil
	}
	ref := st.record(r)
	decide := func(v trace.Verdict, e exitKind) (exitKind, bool, error) {
		st.Verdict, st.DecidedBy = v, &ref
		return e, true, nil
	}
	if tg.IsChainJump() {
		sub := c.table.Chain(tg.Name)
		if sub == nil {
			return 0, false, fmt.Errorf("line %d: rule in chain %s jumps to chain %s, which table %s does not have", r.Line, excerpt.Clip(c.Name), excerpt.Clip(tg.Name), c.Table())
		}
		depth := f.depth + 1
		if err := trace.CheckDepth(depth, fmt.Sprintf("chain %s of table %s", excerpt.Clip(sub.Name), sub.Table())); err != nil {
			return 0, false, err
		}
		pc, err := sub.split()
		if err != nil {
			return 0, false, err
		}
		texts, err := sub.upTo(pc, 0)
		if err != nil {
			return 0, false, err
		}
		next := frame{chain: sub, pc: pc, texts: texts, depth: depth, jumped: st.Mark()}
		if tg.Goto {
			// A goto's RETURN goes back to this chain's caller.
			next.jumped = f.jumped
			*f = next
		} else {
			t.stack = append(t.stack, next)
		}
		return 0, false, nil
	}
	switch tg.Name {
	case "ACCEPT":
		if strings.HasPrefix(c.Name, "KUBE-") {
			// Only kube-proxy's own accepts make the verdict ACCEPT;
			// others just let the packet pass this table.
			return decide(trace.VerdictAccept, exitAccept)
		}
		return exitAccept, true, nil
	case "DROP":
		return decide(trace.VerdictDrop, exitDrop)
	case "REJECT":
		return decide(trace.VerdictReject, exitDrop)
	case "RETURN":
		e, done := w.ret(t)
		return e, done, nil
	case "MARK":
		st.mark = tg.Mark.Apply(st.mark)
		return 0, false, nil
	case "DNAT":
		port := tg.NAT.Port
		if port == 0 {
			port = st.dport
		}
		st.Endpoint = &trace.Endpoint{IP: tg.NAT.Addr, Port: port, Chain: c.Name}
		st.dst, st.dport = tg.NAT.Addr, port
		st.DecidedBy = &ref
		return exitAccept, true, nil
	case "SNAT", "MASQUERADE":
		st.Masquerade = true
		return exitAccept, true, nil
	case "REDIRECT":
		w.Note("line %d: REDIRECT sends the packet to the node itself; the simulator treats it as accepted without an endpoint", r.Line)
		return exitAccept, true, nil
	case "QUEUE", "NFQUEUE", "TPROXY":
		w.Note("line %d: %s hands the packet to user space; the simulator cannot follow it and treats it as accepted", r.Line, tg.Name)
		return exitAccept, true, nil
	}
	// CONNMARK, CT, NOTRACK and the like do not end the chain.
	return 0, false, nil
}

// noEffectTargets only log or count: the packet goes on unchanged.
var noEffectTargets = map[string]bool{"LOG": true, "NFLOG": true, "ULOG": true, "TRACE": true}

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
	if r.InInterface != nil {
		if st.in == "" && !w.FromNode() {
			// Said only when a rule asks: most paths meet no -i rule.
			w.Note("the incoming interface is unknown: rules with -i NAME are taken not to match and ! -i NAME to match (pass the interface to change this)")
		}
		if !r.InInterface.Matches(st.in) {
			return 0
		}
	}
	if r.OutInterface != nil {
		w.Note("the outgoing interface is unknown: rules with -o NAME are taken not to match and ! -o NAME to match")
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
				w.Note("line %d: the simulator does not evaluate -m %s %s; taken as not matching", r.Line, excerpt.Clip(m.Name), excerpt.Clip(strings.Join(m.Other, " ")))
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
			w.Note("line %d: the source port is unknown; source-port matches are taken not to match", r.Line)
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
			w.Note("line %d: the simulator does not evaluate -m %s %s; taken as not matching", r.Line, excerpt.Clip(m.Name), excerpt.Clip(strings.Join(m.Other, " ")))
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
		return w.setChance(st, r, m)
	case *CommentMatch, *NFAcctMatch:
		return 1
	case *UnknownMatch:
		switch m.Name {
		case "physdev":
			return w.physdevChance(r, m)
		case "rpfilter":
			return w.rpfilterChance(r, m)
		case "socket":
			return w.socketChance(r, m)
		case "ipvs":
			return w.ipvsChance(st, r, m)
		}
		w.Note("line %d: the simulator does not evaluate -m %s; taken as not matching", r.Line, excerpt.Clip(m.Name))
		return 0
	}
	return 0
}

// destinationExcludes reports, from a rule's text alone, that the rule has a
// plain "-d ADDR" that cannot match dst. It only answers true when that is
// certain: the option is among the base options iptables-save prints first
// ("! -s", "-d", "-i", "-o", "-p", each with a plain value), is not negated
// and parses; anything else is left to the full tokenizer. Looking only at
// the first few words keeps it cheap on rules without a destination (a
// KUBE-NODEPORTS rule of 140 characters has dashes enough to make a search
// of the whole text cost more than the rest of the walk).
func destinationExcludes(text string, dst netip.Addr) bool {
	rest := text
	for {
		neg := false
		if len(rest) >= 2 && rest[0] == '!' && rest[1] == ' ' {
			neg, rest = true, rest[2:]
		}
		if len(rest) < 3 || rest[0] != '-' || rest[2] != ' ' {
			return false
		}
		opt := rest[1]
		v := rest[3:]
		rest = ""
		if end := strings.IndexByte(v, ' '); end >= 0 {
			v, rest = v[:end], v[end+1:]
		}
		if v == "" {
			return false // two spaces: the tokenizer's next word is another
		}
		switch opt {
		case 'd':
			if neg {
				return false
			}
			if excluded, ok := ipv4HostExcludes(v, dst); ok {
				return excluded
			}
			pfx, err := parseAddrOrPrefix(v)
			return err == nil && !pfx.Contains(dst)
		case 's', 'i', 'o', 'p':
			// A quote or escape means the tokenizer may read the words
			// differently.
			if strings.ContainsAny(v, "\"'\\") {
				return false
			}
		default:
			return false
		}
	}
}

// ipv4HostExcludes decides "-d A.B.C.D/32" against an IPv4 dst without the
// general parser, for the one form kube-proxy's KUBE-SERVICES rules have;
// ok is false for anything else (netip.ParseAddr's rules: decimal, no
// leading zeros, each part at most 255).
func ipv4HostExcludes(v string, dst netip.Addr) (excluded, ok bool) {
	v, found := strings.CutSuffix(v, "/32")
	if !found || !dst.Is4() {
		return false, false
	}
	var a [4]byte
	part, digits, n := 0, 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && n == 0 {
				return false, false // a leading zero
			}
			n = n*10 + int(c-'0')
			digits++
			if n > 255 {
				return false, false
			}
		case c == '.' && digits > 0 && part < 3:
			a[part] = byte(n)
			part, digits, n = part+1, 0, 0
		default:
			return false, false
		}
	}
	if part != 3 || digits == 0 {
		return false, false
	}
	a[3] = byte(n)
	return a != dst.As4(), true
}

// withoutCounters drops the "[packets:bytes] " that iptables-save -c puts
// before a rule; text without such counters is returned as it is.
func withoutCounters(text string) string {
	if !strings.HasPrefix(text, "[") {
		return text
	}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		return text
	}
	for _, c := range text[1:end] {
		if (c < '0' || c > '9') && c != ':' {
			return text
		}
	}
	return strings.TrimLeft(text[end+1:], " ")
}

// portExcludes tells from a rule's text alone that its port match
// ("-m tcp --dport N", also "-m tcp -p tcp --dport N" and "-p udp --dport N")
// cannot match destination port dport, as evalMatch would decide it: a
// protocol's port match is an AND with the rest of the rule. Only the last
// "--dport" after the last quote is looked at (a quoted comment may hold
// anything), only a plain number, and not a negated one; anything else is
// left to the full parse.
func portExcludes(text string, dport uint16) bool {
	i := strings.LastIndex(text, " --dport ")
	if i < 0 || strings.LastIndexByte(text, '"') > i {
		return false
	}
	v := text[i+len(" --dport "):]
	if end := strings.IndexByte(v, ' '); end >= 0 {
		v = v[:end]
	}
	if len(v) == 0 || len(v) > 5 {
		return false
	}
	n := 0
	for j := 0; j < len(v); j++ {
		c := v[j]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return false
	}
	// The two words before: "-m tcp", "-p tcp" (and udp, sctp).
	before := text[:i]
	proto := before[strings.LastIndexByte(before, ' ')+1:]
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return false
	}
	before = strings.TrimSuffix(before, " "+proto)
	if !strings.HasSuffix(before, " -m") && !strings.HasSuffix(before, " -p") && before != "-m" && before != "-p" {
		return false
	}
	return uint16(n) != dport
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
			if w.IsLocal(a) {
				return true
			}
		case "UNICAST":
			if !a.IsMulticast() && !w.IsLocal(a) {
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
		ar.Hit = w.Options().AffinityEndpoint.IsValid() && dest == w.Options().AffinityEndpoint
	}
	w.AddAffinity(ar)
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
