package tracer

import (
	"container/heap"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// walkOrder lists the chains a simulation went through, each once, in the
// order a packet meets them. Each branch (outcome) is a walk of its own:
// its chains in the order it first entered them. The branches are merged
// so that every branch's order holds, and where they leave a choice, the
// chains only some branches take (KUBE-SEP-A, KUBE-SEP-B) come before the
// ones every branch goes on to (FORWARD, POSTROUTING): the list reads
// "… KUBE-SVC → KUBE-SEP-A → KUBE-SEP-B → FORWARD → POSTROUTING", never with
// an endpoint chain after POSTROUTING. Branches that disagree on an order
// (a cycle) are resolved by first appearance. A simulation without
// outcomes lists the chains of its rules, in their order.
func walkOrder(sim *trace.Simulation) []string {
	var walks [][]string
	for _, o := range sim.Outcomes {
		if w := chainsOf(o.Rules); len(w) > 0 {
			walks = append(walks, w)
		}
	}
	if len(walks) == 0 {
		return chainsOf(sim.Rules)
	}
	return mergeWalks(walks)
}

// chainsOf lists the chains of rules in the order they first appear.
func chainsOf(rules []trace.RuleRef) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, r := range rules {
		if !seen[r.Chain] {
			seen[r.Chain] = true
			out = append(out, r.Chain)
		}
	}
	return out
}

// mergeWalks merges sequences of distinct names into one list of every
// name, keeping each sequence's order where they agree (see walkOrder). It
// is a topological sort of "comes right after" over all the walks, in time
// about linear in their length (a hostile dump may make many chains).
func mergeWalks(walks [][]string) []string {
	type info struct {
		branches int // how many walks take it
		preds    int // predecessors not yet placed
		succs    []int
	}
	index := map[string]int{} // name → rank of first appearance
	var names []string
	var nodes []info
	type edge struct{ from, to int }
	edges := map[edge]bool{}
	for _, w := range walks {
		for i, c := range w {
			id, ok := index[c]
			if !ok {
				id = len(names)
				index[c] = id
				names = append(names, c)
				nodes = append(nodes, info{})
			}
			nodes[id].branches++
			if i == 0 {
				continue
			}
			e := edge{index[w[i-1]], id}
			if !edges[e] {
				edges[e] = true
				nodes[e.from].succs = append(nodes[e.from].succs, id)
				nodes[id].preds++
			}
		}
	}
	// Free chains wait in two queues by first appearance: those only some
	// branches take go first.
	var own, shared idQueue
	free := func(id int) {
		if nodes[id].branches == len(walks) {
			heap.Push(&shared, id)
		} else {
			heap.Push(&own, id)
		}
	}
	for id := range nodes {
		if nodes[id].preds == 0 {
			free(id)
		}
	}
	placed := make([]bool, len(names))
	out := make([]string, 0, len(names))
	scan := 0 // every chain before it is placed
	for len(out) < len(names) {
		id := -1
		for id < 0 && own.Len() > 0 {
			if c := heap.Pop(&own).(int); !placed[c] {
				id = c
			}
		}
		for id < 0 && shared.Len() > 0 {
			if c := heap.Pop(&shared).(int); !placed[c] {
				id = c
			}
		}
		if id < 0 {
			// The walks disagree on an order (a cycle): the first chain
			// not yet placed goes next.
			for placed[scan] {
				scan++
			}
			id = scan
		}
		placed[id] = true
		out = append(out, names[id])
		for _, s := range nodes[id].succs {
			if nodes[s].preds--; nodes[s].preds == 0 && !placed[s] {
				free(s)
			}
		}
	}
	return out
}

// idQueue is a min-heap of chain ids (ranks of first appearance).
type idQueue []int

func (q idQueue) Len() int           { return len(q) }
func (q idQueue) Less(i, j int) bool { return q[i] < q[j] }
func (q idQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *idQueue) Push(x any)        { *q = append(*q, x.(int)) }
func (q *idQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
