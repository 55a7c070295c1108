package tracer

import (
	"slices"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// The reason a packet no kube-proxy rule touched is left alone, for one
// entry and for all the entries of a node.
const (
	noRuleMatched    = "no kube-proxy rule on this node matched the packet: kube-proxy may not run here, may run in another mode, or may be replaced (e.g. by an eBPF dataplane)"
	noRuleMatchedAny = "no kube-proxy rule on this node matched any entry's packet: kube-proxy may not run here, may run in another mode, or may be replaced (e.g. by an eBPF dataplane)"
)

// sayOnce makes the Path say each thing once. The engines note their
// assumptions per simulation (the unknown incoming interface, a match they
// cannot evaluate), so the same note comes with every entry of a node, and
// of every node; a node without kube-proxy's rules gives every entry the
// same reason. Entries keep what only they say:
//
//   - a note that every traced node carries (on any of its paths), said
//     more than once, becomes one Convention finding;
//   - a note on two or more paths of a node becomes one of the node's
//     Notes;
//   - a reason (Why) shared by every path of a node, all of them left
//     alone by kube-proxy's rules (NONE), becomes the node's Why.
//
// It returns the findings to add.
func sayOnce(p *trace.Path) []trace.Finding {
	var out []trace.Finding
	var traced []*trace.NodePaths
	for i := range p.Nodes {
		if len(p.Nodes[i].Paths) > 0 {
			traced = append(traced, &p.Nodes[i])
		}
	}
	// Notes every traced node carries.
	if len(traced) > 1 {
		var order []string
		nodes := map[string]int{}
		for _, n := range traced {
			for _, note := range pathNotes(n) {
				if nodes[note] == 0 {
					order = append(order, note)
				}
				nodes[note]++
			}
		}
		var common []string
		for _, note := range order {
			if nodes[note] == len(traced) {
				common = append(common, note)
			}
		}
		slices.Sort(common)
		for _, note := range common {
			out = append(out, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeConvention, Message: "on every node above: " + note})
		}
		for _, n := range traced {
			dropNotes(n, common)
		}
	}
	for _, n := range traced {
		count := map[string]int{}
		for _, note := range pathNotes(n) {
			for _, ep := range n.Paths {
				if slices.Contains(ep.Notes, note) {
					count[note]++
				}
			}
		}
		var shared []string
		for _, note := range pathNotes(n) {
			if count[note] > 1 {
				shared = append(shared, note)
			}
		}
		n.Notes = append(n.Notes, shared...)
		dropNotes(n, shared)
		hoistWhy(n)
	}
	return out
}

// pathNotes lists the notes of n's paths, each once, in the order they
// first come.
func pathNotes(n *trace.NodePaths) []string {
	var out []string
	for _, ep := range n.Paths {
		for _, note := range ep.Notes {
			if !slices.Contains(out, note) {
				out = append(out, note)
			}
		}
	}
	return out
}

// dropNotes removes notes from every path of n.
func dropNotes(n *trace.NodePaths, notes []string) {
	if len(notes) == 0 {
		return
	}
	for i := range n.Paths {
		ep := &n.Paths[i]
		ep.Notes = slices.DeleteFunc(ep.Notes, func(s string) bool { return slices.Contains(notes, s) })
		if len(ep.Notes) == 0 {
			ep.Notes = nil
		}
	}
}

// hoistWhy gives n the reason all its paths share when kube-proxy's rules
// left every one of them alone.
func hoistWhy(n *trace.NodePaths) {
	if len(n.Paths) < 2 {
		return
	}
	why := n.Paths[0].Why
	for _, ep := range n.Paths {
		if ep.Verdict != trace.VerdictNone || ep.Why == "" || ep.Why != why {
			return
		}
	}
	if why == noRuleMatched {
		why = noRuleMatchedAny
	}
	n.Why = why
	for i := range n.Paths {
		n.Paths[i].Why = ""
	}
}
