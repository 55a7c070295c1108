package iptables

import (
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// builtinChains are the chains each table registers with netfilter, and
// the table's priority (NF_IP_PRI_*); nat's depends on the hook.
var builtinChains = []struct {
	table    string
	priority int
	hooks    []trace.Hook
}{
	{"raw", trace.PriorityRaw, []trace.Hook{trace.HookPrerouting, trace.HookOutput}},
	{"mangle", trace.PriorityMangle, []trace.Hook{trace.HookPrerouting, trace.HookInput, trace.HookForward, trace.HookOutput, trace.HookPostrouting}},
	{"nat", 0, []trace.Hook{trace.HookPrerouting, trace.HookInput, trace.HookOutput, trace.HookPostrouting}},
	{"filter", trace.PriorityFilter, []trace.Hook{trace.HookInput, trace.HookForward, trace.HookOutput}},
	{"security", trace.PrioritySecurity, []trace.Hook{trace.HookInput, trace.HookForward, trace.HookOutput}},
}

var hookChainNames = map[trace.Hook]string{trace.HookPrerouting: "PREROUTING", trace.HookInput: "INPUT", trace.HookForward: "FORWARD", trace.HookOutput: "OUTPUT", trace.HookPostrouting: "POSTROUTING"}

// BackendName names the tool that wrote the dump the way people call it:
// iptables-nft, iptables-legacy, or iptables when the dump does not say.
func (d *Dump) BackendName() string {
	switch d.Backend() {
	case "nf_tables":
		return "iptables-nft"
	case "legacy":
		return "iptables-legacy"
	}
	return "iptables"
}

// HookChains are the dump's built-in chains as the kernel registers them:
// each table's chain at its hook, with the table's priority. Running one
// walks the branch through the chain and everything it jumps to. A chain
// policy is never kube-proxy's (it leaves them ACCEPT), so the chains are
// foreign; rules are marked one by one (isKubeProxyRule).
func HookChains(d *Dump) []trace.HookChain {
	return HookChainsWith(d, Extensions{})
}

// HookChainsWith is HookChains with the node's ipsets (for -m set) and IPVS
// table: with a table, IPVS is registered too (IPVSHookChain).
func HookChainsWith(d *Dump, ext Extensions) []trace.HookChain {
	backend := d.BackendName()
	var out []trace.HookChain
	for _, b := range builtinChains {
		t := d.Table(b.table)
		if t == nil {
			continue
		}
		for _, h := range b.hooks {
			c := t.Chain(hookChainNames[h])
			if c == nil {
				continue
			}
			hc := trace.HookChain{Hook: h, Priority: b.priority, Table: b.table, Chain: c.Name, Backend: backend,
				PolicyDrop: c.Policy == "DROP", Foreign: true}
			if b.table == "nat" {
				hc.NAT = true
				hc.Priority = trace.PriorityDstNAT
				if h == trace.HookInput || h == trace.HookPostrouting {
					hc.Priority = trace.PrioritySrcNAT
				}
			}
			hc.Run = func(walk *trace.Walk, f *trace.Flow) ([]trace.ChainExit, error) {
				return runChain(walk, d, c, backend, ext, f)
			}
			out = append(out, hc)
		}
	}
	if ext.IPVS != nil {
		out = append(out, IPVSHookChain(ext.IPVS))
	}
	return out
}

// runChain walks flow f through the hook's chain c of dump d.
func runChain(walk *trace.Walk, d *Dump, c *Chain, backend string, ext Extensions, f *trace.Flow) ([]trace.ChainExit, error) {
	w := &walker{Walk: walk, dump: d, ext: ext}
	st := &state{Branch: f.Branch, src: f.Src, dst: f.Dst, dport: f.DPort, proto: f.Proto, in: f.In, mark: f.Mark, ipvs: f.IPVS, backend: backend}
	outs, err := w.walkChain(st, c)
	if err != nil {
		return nil, err
	}
	res := make([]trace.ChainExit, 0, len(outs))
	for _, o := range outs {
		g := *f
		g.Branch = o.st.Branch
		g.Src, g.Dst, g.DPort, g.Proto, g.In, g.Mark, g.IPVS = o.st.src, o.st.dst, o.st.dport, o.st.proto, o.st.in, o.st.mark, o.st.ipvs
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
