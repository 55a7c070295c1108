package trace

import "slices"

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

// ruleTrail is a persistent list of matched rules, newest first.
type ruleTrail struct {
	ref  RuleRef
	prev *ruleTrail
}

// Record appends a matched rule to the branch.
func (b *Branch) Record(ref RuleRef) { b.trail = &ruleTrail{ref: ref, prev: b.trail} }

// Outcome is the branch as reported: a drop or reject wins, then a DNAT,
// then an explicit accept, else NONE.
func (b *Branch) Outcome() Outcome {
	o := Outcome{Probability: b.Prob, Masquerade: b.Masquerade, Rules: []RuleRef{}}
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
