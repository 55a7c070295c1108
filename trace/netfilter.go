package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// One netfilter: the kernel runs every base chain registered at a hook, of
// every table and whichever tool wrote it (iptables-legacy, iptables-nft,
// native nftables), in priority order. A drop in any of them is the
// packet's fate; an accept only ends the chain that said it. This file is
// that walk, over chains that each engine exposes as HookChains.

// Flow is one branch of a walk across the node's tables: what happened to
// the packet so far (the embedded Branch) and the packet as it is now.
// Engines copy it into their own per-branch state to run a chain and copy
// the result back, so chains of different engines see the same packet.
type Flow struct {
	Branch
	Src, Dst netip.Addr
	DPort    uint16
	Proto    string
	// In is the incoming interface ("" when unknown, or sent by the node).
	In string
	// Mark is the packet mark (meta mark, -m mark).
	Mark uint32
	// IPVS is the virtual server that scheduled the connection, once IPVS
	// did (what -m ipvs compares); nil before.
	IPVS *IPVSConn
	// natDone records, per manipulation (0 destination, 1 source), that the
	// connection's NAT binding is made: later nat chains of that kind do
	// not run for it, as in the kernel's NAT core.
	natDone [2]bool
}

// IPVSConn is the IPVS virtual server a connection was scheduled by.
type IPVSConn struct {
	// Proto is "tcp", "udp" or "sctp".
	Proto string
	Addr  netip.Addr
	Port  uint16
}

// Exit is how a branch left one base chain.
type Exit int

const (
	// ExitEnd: the chain ended (or returned) without a verdict; its policy
	// applies.
	ExitEnd Exit = iota
	// ExitAccept: an accept, or a NAT statement: this chain is done and
	// the next one at the hook goes on.
	ExitAccept
	// ExitDrop: drop or reject: the packet is gone.
	ExitDrop
	// ExitResent: the chain took the packet and sent it out again from
	// the node (IPVS forwarding a scheduled connection at input): it goes
	// on through output and postrouting, not the rest of this hook.
	ExitResent
)

// ChainExit is one branch after a base chain.
type ChainExit struct {
	Flow *Flow
	Exit Exit
}

// HookChain is one base chain as the kernel registers it: at a hook, with a
// priority. Run walks one branch through it (jumps, random choices and all)
// and returns every branch that comes out, with how it left.
type HookChain struct {
	Hook     Hook
	Priority int
	// NAT marks a chain of type nat (iptables' nat table, nft type nat):
	// these run inside the kernel's NAT core, only for a connection's first
	// packet and only until one of them made a NAT binding.
	NAT bool
	// Table and Chain name the chain for people: "filter" / "FORWARD" for
	// iptables, "ip filter" / "forward" for nftables.
	Table, Chain string
	// Backend is the tool that wrote the table: iptables-legacy,
	// iptables-nft, nftables ("iptables" when a dump does not say).
	Backend string
	// PolicyDrop is true when the chain's policy drops what no rule
	// accepted.
	PolicyDrop bool
	// Foreign is true when the chain belongs to a table kube-proxy did not
	// write (its rules' RuleRefs say so one by one).
	Foreign bool
	// Optional marks a chain of a source that holds nothing of
	// kube-proxy's (another tool's dump). When it cannot be walked (a
	// broken dump: a jump to a chain it lacks), a note says so and the
	// packet is taken to pass it, instead of failing the node's trace.
	Optional bool
	Run      func(w *Walk, f *Flow) ([]ChainExit, error)
}

// Name is how notes and findings name the chain: "iptables-nft table filter
// chain FORWARD".
func (c *HookChain) Name() string {
	return fmt.Sprintf("%s table %s chain %s", c.Backend, c.Table, c.Chain)
}

// Priorities of the tables iptables registers (include/uapi/linux/
// netfilter_ipv4.h NF_IP_PRI_*; the same for IPv6), which nftables' named
// priorities (raw, mangle, dstnat, filter, security, srcnat) copy.
const (
	PriorityRaw      = -300
	PriorityMangle   = -150
	PriorityDstNAT   = -100
	PriorityFilter   = 0
	PrioritySecurity = 50
	PrioritySrcNAT   = 100
)

// natCorePriority is where the NAT core sits at each hook: every nat chain
// of the hook runs there, ordered among themselves by their own priority
// (nf_nat_ipv4_ops / nf_nat_ipv6_ops).
func natCorePriority(h Hook) int {
	if h == HookPrerouting || h == HookOutput {
		return PriorityDstNAT
	}
	return PrioritySrcNAT
}

// natManip is the NAT manipulation the hook's nat chains decide: the
// destination at prerouting and output, the source at input and
// postrouting.
func natManip(h Hook) int {
	if h == HookPrerouting || h == HookOutput {
		return 0
	}
	return 1
}

// orderChains returns the chains registered at hook in the order the
// kernel runs them: by priority, nat chains at the NAT core's place; on a
// tie the chain registered later runs first (nf_hook_entries_insert puts a
// new hook before an equal one), and the chains' order in the slice is
// taken as their registration order.
func orderChains(chains []HookChain, hook Hook) []*HookChain {
	type entry struct {
		c        *HookChain
		at, sub  int
		register int
	}
	var es []entry
	for i := range chains {
		c := &chains[i]
		if c.Hook != hook {
			continue
		}
		e := entry{c: c, at: c.Priority, sub: 0, register: i}
		if c.NAT {
			e.at, e.sub = natCorePriority(hook), c.Priority
		}
		es = append(es, e)
	}
	slices.SortStableFunc(es, func(a, b entry) int {
		switch {
		case a.at != b.at:
			return a.at - b.at
		case a.c.NAT != b.c.NAT:
			// The NAT core registered before any table at its priority.
			if a.c.NAT {
				return 1
			}
			return -1
		case a.sub != b.sub:
			return a.sub - b.sub
		}
		return b.register - a.register
	})
	out := make([]*HookChain, len(es))
	for i, e := range es {
		out[i] = e.c
	}
	return out
}

// WalkNetfilter sends the packet of walk w through every chain, hook by
// hook (WalkHooks), and returns the branches it ended with: those that
// came through, then those a chain dropped or rejected. The walk's notes
// say when a chain not of kube-proxy's decided.
func WalkNetfilter(w *Walk, chains []HookChain, start Flow) ([]*Branch, error) {
	var done, resent []*Flow
	run := func(hook Hook, flows []*Flow) ([]*Flow, error) {
		ordered := orderChains(chains, hook)
		manip := natManip(hook)
		hasNAT := false
		for _, c := range ordered {
			var next []*Flow
			hasNAT = hasNAT || c.NAT
			for _, f := range flows {
				if c.NAT && f.natDone[manip] {
					next = append(next, f)
					continue
				}
				beforeNAT := f.Endpoint != nil || f.Masquerade
				outs, err := c.Run(w, f)
				if err != nil {
					if !c.Optional || errors.Is(err, ErrBudget) {
						return nil, err
					}
					w.Note("%s could not be walked (%v): the packet is taken to pass it; leave that dump out, or fix it, to be sure", c.Name(), err)
					outs = []ChainExit{{Flow: f, Exit: ExitAccept}}
				}
				for _, o := range outs {
					g := o.Flow
					if c.NAT && !beforeNAT && (g.Endpoint != nil || g.Masquerade) {
						g.natDone[manip] = true
					}
					switch o.Exit {
					case ExitResent:
						resent = append(resent, g)
					case ExitDrop:
						if d := g.DecidedBy; d != nil && d.Foreign {
							w.Note("%s by %s (line %d) — not kube-proxy's", verdictWord(g.Verdict), c.Name(), d.Line)
						}
						done = append(done, g)
					case ExitEnd:
						if c.PolicyDrop {
							g.Verdict = VerdictDrop
							g.DecidedBy = &RuleRef{Table: c.Table, Chain: c.Chain, Rule: "policy drop", Policy: true, Foreign: c.Foreign, Backend: c.Backend}
							g.Record(*g.DecidedBy)
							if c.Foreign {
								w.Note("dropped by %s policy drop — not kube-proxy's", c.Name())
							} else {
								w.Note("the policy of %s is drop: packets no rule accepts there are dropped", c.Name())
							}
							done = append(done, g)
							continue
						}
						next = append(next, g)
					default:
						next = append(next, g)
					}
				}
			}
			flows = next
		}
		if hasNAT {
			// The NAT core gives every connection that no nat chain
			// bound a null binding: later nat chains of this kind skip it.
			for _, f := range flows {
				f.natDone[manip] = true
			}
		}
		return flows, nil
	}
	local := w.FromNode()
	s := start
	final, err := WalkHooks(local, &s, func(f *Flow) netip.Addr { return f.Dst }, w.IsLocal, run)
	if err != nil {
		return nil, err
	}
	// Packets a chain sent out again leave through output and
	// postrouting; the nat chains there skip a connection whose NAT of
	// that kind was made before (natDone), as conntrack does. Bounded: a
	// chain that resends at output would otherwise loop.
	for round := 0; len(resent) > 0; round++ {
		if round == maxResends {
			return nil, fmt.Errorf("%w: packets were sent out again more than %d times", ErrLoop, maxResends)
		}
		flows := resent
		resent = nil
		out, err := run(HookOutput, flows)
		if err != nil {
			return nil, err
		}
		if out, err = run(HookPostrouting, out); err != nil {
			return nil, err
		}
		final = append(final, out...)
	}
	out := make([]*Branch, 0, len(final)+len(done))
	for _, f := range append(final, done...) {
		out = append(out, &f.Branch)
	}
	return out, nil
}

// maxResends bounds how often a packet is sent out again in one walk.
const maxResends = 4

func verdictWord(v Verdict) string {
	if v == VerdictReject {
		return "rejected"
	}
	return "dropped"
}

// StartFlow is the packet of walk w as it arrives, before any chain.
func (w *Walk) StartFlow() Flow {
	p := w.sim.Packet
	return Flow{Branch: Branch{Prob: 1}, Src: p.Source.Unmap(), Dst: p.Destination.Unmap(), DPort: p.DestinationPort, Proto: p.Protocol, In: p.InInterface}
}
