package trace

import (
	"errors"
	"fmt"
	"slices"
)

// Bounds on what one simulation keeps, so that a hostile dump cannot make
// a walk take unbounded memory. A walk through kube-proxy's rules of a big
// cluster stays far below them.
const (
	// MaxTrail bounds the entries in one branch's rule trail (rules
	// without effect are folded, so these are mostly rules that changed
	// the packet).
	MaxTrail = 100_000
	// MaxOutcomeRules bounds the rule entries of all of a simulation's
	// outcomes together.
	MaxOutcomeRules = 1_000_000
)

// ErrBudget is wrapped when a walk needs more than its bounds allow: rules
// looked at, trail entries, outcome entries.
var ErrBudget = errors.New("rule walk budget exceeded")

// CheckTrail returns an error wrapping ErrBudget when b's trail is longer
// than MaxTrail.
func (b *Branch) CheckTrail() error {
	if n := b.TrailLen(); n > MaxTrail {
		return fmt.Errorf("one branch of the walk matched more than %d rules that changed the packet: the dump is too large or built to exhaust the simulator: %w", MaxTrail, ErrBudget)
	}
	return nil
}

// CheckOutcomeRules returns an error wrapping ErrBudget when the branches'
// trails together hold more than MaxOutcomeRules entries.
func CheckOutcomeRules(trailLens func(yield func(int) bool)) error {
	total := 0
	for n := range trailLens {
		total += n
		if total > MaxOutcomeRules {
			return fmt.Errorf("the walk's branches together matched more than %d rules: the dump is too large or built to exhaust the simulator: %w", MaxOutcomeRules, ErrBudget)
		}
	}
	return nil
}

// Branch is what every engine tracks for one branch of a walk, whatever the
// dataplane: its probability, what happened to the packet, and the rules it
// matched. Engines embed it in their own per-branch state; copying that state
// forks the branch and the two share the rules matched so far.
type Branch struct {
	Prob       float64
	Masquerade bool
	// Endpoint is set once the packet was DNATed.
	Endpoint *Endpoint
	// Verdict is DROP, REJECT or ACCEPT once a rule decided, else "".
	Verdict   Verdict
	DecidedBy *RuleRef
	trail     *ruleTrail
}

// FoldAfter is the longest run of rules without effect, one after the other
// in one chain, that a rule trail lists one by one. A longer run is folded
// into its first rule, one RuleRef with Folded set, and its last rule, so a
// chain of a million rules that all match and fall through costs three
// entries. A jump into a chain where nothing with an effect happened counts
// as one rule without effect in the chain it jumped from.
const FoldAfter = 10

// ruleTrail is a persistent list of matched rules, newest first. Nodes are
// never changed once linked, because forked branches share them; where the
// trail must change, the nodes involved are copied.
type ruleTrail struct {
	ref  RuleRef
	prev *ruleTrail
	// entries, effects and rules count, up to and including this node,
	// the entries Outcome lists, the rules recorded with an effect, and the
	// dump's rules the entries stand for (a folded entry stands for many).
	entries, effects, rules int

	// A node that ends a unit without effect (a rule, or a jump with all it
	// led to) in chain runTable/runChain describes the run of such units it
	// ends: how many (run), where the first one ends, and the folded entry
	// once the run is longer than FoldAfter.
	run                int
	runTable, runChain string
	first, fold        *ruleTrail
}

// push links n on top of the trail, counting it as standing for rules.
func (b *Branch) push(n *ruleTrail, effect bool, rules int) {
	n.prev = b.trail
	n.entries, n.rules = 1, rules
	if effect {
		n.effects = 1
	}
	if p := b.trail; p != nil {
		n.entries += p.entries
		n.effects += p.effects
		n.rules += p.rules
	}
	b.trail = n
}

// Record appends a rule that acted on the packet (or may have: a jump).
func (b *Branch) Record(ref RuleRef) { b.push(&ruleTrail{ref: ref}, true, 1) }

// RecordNoEffect appends a rule that matched but left the packet as it was
// (no target, a log target, a counter). Long runs of them are folded.
func (b *Branch) RecordNoEffect(ref RuleRef) {
	b.push(&ruleTrail{ref: ref}, false, 1)
	b.endUnit(b.trail)
}

// TrailMark is a point in a branch's rule trail: where a jump was recorded.
type TrailMark struct{ t *ruleTrail }

// Mark returns the current end of the rule trail; engines take it right
// after recording a jump.
func (b *Branch) Mark() TrailMark { return TrailMark{b.trail} }

// JumpReturned tells the trail that the chain entered by the jump recorded
// at m returned. When nothing recorded since had an effect, the jump and
// all it led to become one unit without effect in the jumping chain.
func (b *Branch) JumpReturned(m TrailMark) {
	j, h := m.t, b.trail
	if j == nil || h == nil || h.effects != j.effects {
		return
	}
	b.endUnit(j)
}

// endUnit closes the unit without effect that starts at node start (the
// rule, or the jump) and ends at the top of the trail, adding it to the run
// of such units in start's chain, and folds the run once it is too long.
func (b *Branch) endUnit(start *ruleTrail) {
	table, chain := start.ref.Table, start.ref.Chain
	p := start.prev
	n := 1
	if p != nil && p.run > 0 && p.runTable == table && p.runChain == chain {
		n = p.run + 1
	}
	h := b.trail
	unitRules := h.rules
	if p != nil {
		unitRules -= p.rules
	}
	end := *h // the unit's last node, restamped
	end.run, end.runTable, end.runChain = n, table, chain
	end.fold = nil
	end.effects = 0
	if p != nil {
		end.effects = p.effects
	}
	if n <= FoldAfter {
		end.first = &end
		if n > 1 {
			end.first = p.first
		}
		b.trail = &end
		return
	}
	// Fold: the first unit stays, every unit after it but this one goes
	// into the folded entry, and this one is listed by its first rule.
	first := p.first
	folded := p.fold
	var fold RuleRef
	if folded == nil {
		second := p
		for second.prev != first {
			second = second.prev
		}
		fold = second.ref
		fold.Rule, fold.Folded = "", p.rules-first.rules
	} else {
		fold = folded.ref
		fold.Folded += p.rules - folded.rules
	}
	b.trail = first
	b.push(&ruleTrail{ref: fold}, false, fold.Folded)
	foldNode := b.trail
	b.push(&ruleTrail{ref: start.ref, run: n, runTable: table, runChain: chain, first: first, fold: foldNode}, false, unitRules)
}

// TrailLen is how many entries the branch's Outcome will list.
func (b *Branch) TrailLen() int {
	if b.trail == nil {
		return 0
	}
	return b.trail.entries
}

// Outcome is the branch as reported: a drop or reject wins, then a DNAT,
// then an explicit accept, else NONE.
func (b *Branch) Outcome() Outcome {
	o := Outcome{Probability: b.Prob, Masquerade: b.Masquerade, Rules: make([]RuleRef, 0, b.TrailLen())}
	for t := b.trail; t != nil; t = t.prev {
		o.Rules = append(o.Rules, t.ref)
	}
	slices.Reverse(o.Rules)
	switch {
	case b.Verdict == VerdictDrop || b.Verdict == VerdictReject:
		o.Verdict = b.Verdict
	case b.Endpoint != nil:
		o.Verdict = VerdictDNAT
	case b.Verdict == VerdictAccept:
		o.Verdict = VerdictAccept
	default:
		o.Verdict = VerdictNone
	}
	if b.Endpoint != nil {
		e := *b.Endpoint
		e.Probability, e.Masquerade = b.Prob, b.Masquerade
		o.Endpoint = &e
	}
	if o.Verdict != VerdictNone {
		o.DecidedBy = b.DecidedBy
	}
	return o
}
