package nftables

import (
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

var hooksByName = map[string]trace.Hook{"prerouting": trace.HookPrerouting, "input": trace.HookInput, "forward": trace.HookForward, "output": trace.HookOutput, "postrouting": trace.HookPostrouting}

// HookChains are the base chains of the tables as the kernel registers
// them: at their hook with their declared priority; chains of type nat run
// in the NAT core. Chains outside kube-proxy's table are foreign. Base
// chains at other hooks (ingress, egress) are not part of the packet's
// walk through the IP stack and are left out.
func HookChains(tables []*Table) []trace.HookChain {
	var out []trace.HookChain
	for _, t := range tables {
		for _, c := range t.baseChains() {
			h, ok := hooksByName[c.Hook]
			if !ok {
				continue
			}
			t, c := t, c
			out = append(out, trace.HookChain{Hook: h, Priority: c.Priority, NAT: c.Type == "nat",
				Table: excerpt.Clip(t.Family + " " + t.Name), Chain: excerpt.Clip(c.Name), Backend: "nftables",
				PolicyDrop: c.Policy == "drop", Foreign: t.Name != KubeProxyTable,
				Run: func(walk *trace.Walk, f *trace.Flow) ([]trace.ChainExit, error) {
					return runChain(walk, t, c, f)
				}})
		}
	}
	return out
}

// runChain walks flow f through base chain c of table t.
func runChain(walk *trace.Walk, t *Table, c *Chain, f *trace.Flow) ([]trace.ChainExit, error) {
	w := &walker{Walk: walk}
	st := &state{Branch: f.Branch, src: f.Src, dst: f.Dst, dport: f.DPort, proto: f.Proto, in: f.In, mark: f.Mark, dnatted: f.Endpoint != nil}
	outs, err := w.walkChain(st, t, c)
	if err != nil {
		return nil, err
	}
	res := make([]trace.ChainExit, 0, len(outs))
	for _, o := range outs {
		g := *f
		g.Branch = o.st.Branch
		g.Src, g.Dst, g.DPort, g.Proto, g.In, g.Mark = o.st.src, o.st.dst, o.st.dport, o.st.proto, o.st.in, o.st.mark
		e := trace.ExitEnd
		switch o.exit {
		case exitAccept:
			e = trace.ExitAccept
		case exitDrop:
			e = trace.ExitDrop
		}
		res = append(res, trace.ChainExit{Flow: &g, Exit: e})
	}
	return res, nil
}
