package tracer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// foreignLog gathers, per node, the rules and policies of tables kube-proxy
// did not write that decided a Service's traffic — Docker's FORWARD policy,
// a host firewall's reject, a network plugin's DNAT — with the entries
// they decided, so each becomes one finding.
type foreignLog struct {
	order []string
	items map[string]*foreignItem
}

type foreignItem struct {
	node     string
	decider  trace.RuleRef
	verdict  trace.Verdict
	entries  []string
	afterNAT []string // endpoints kube-proxy had DNATed to before the drop
}

// note records the foreign decisions of one entry's simulation.
func (l *foreignLog) note(node string, e trace.Entry, sim *trace.Simulation) {
	for _, o := range sim.Outcomes {
		d := o.DecidedBy
		if d == nil || !d.Foreign {
			continue
		}
		switch o.Verdict {
		case trace.VerdictDrop, trace.VerdictReject, trace.VerdictDNAT:
		default:
			continue
		}
		key := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d\x00%s", node, d.Backend, d.Table, d.Chain, d.Line, o.Verdict)
		if l.items == nil {
			l.items = map[string]*foreignItem{}
		}
		it := l.items[key]
		if it == nil {
			it = &foreignItem{node: node, decider: *d, verdict: o.Verdict}
			l.items[key] = it
			l.order = append(l.order, key)
		}
		entry := fmt.Sprintf("%s %s", e.Kind, netip.AddrPortFrom(e.Address, e.Port))
		if !contains(it.entries, entry) {
			it.entries = append(it.entries, entry)
		}
		if o.Verdict != trace.VerdictDNAT && o.Endpoint != nil {
			if ep := o.Endpoint.AddrPort().String(); !contains(it.afterNAT, ep) {
				it.afterNAT = append(it.afterNAT, ep)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// findings are the ForeignTableDecides findings: an error when the foreign
// table drops or rejects the traffic, a warning when it NATs it before
// kube-proxy could.
func (l *foreignLog) findings(p *trace.Path) []trace.Finding {
	var out []trace.Finding
	for _, k := range l.order {
		it := l.items[k]
		by := foreignRuleName(&it.decider)
		var msg string
		sev := trace.SeverityError
		switch it.verdict {
		case trace.VerdictDNAT:
			sev = trace.SeverityWarning
			msg = fmt.Sprintf("on node %s, %s traffic of %s/%s is DNATed by %s before kube-proxy's rules see it (%s)",
				it.node, strings.Join(it.entries, ", "), p.Service.Namespace, p.Service.Name, by, it.decider.Rule)
		default:
			word := "dropped"
			if it.verdict == trace.VerdictReject {
				word = "rejected"
			}
			after := ""
			if len(it.afterNAT) > 0 {
				after = ", which kube-proxy DNATed to " + strings.Join(it.afterNAT, ", ") + ","
			}
			msg = fmt.Sprintf("on node %s, %s traffic of %s/%s%s is %s by %s; real packets die there whatever kube-proxy does: allow the Service's traffic in that table (for Docker, a rule in DOCKER-USER) or ask its owner",
				it.node, strings.Join(it.entries, ", "), p.Service.Namespace, p.Service.Name, after, word, by)
		}
		out = append(out, trace.Finding{Severity: sev, Code: trace.CodeForeignTableDecides, Node: it.node, Message: msg})
	}
	return out
}

// foreignRuleName names a rule or policy of a table kube-proxy did not
// write: "iptables-nft table filter chain FORWARD policy drop — not
// kube-proxy's".
func foreignRuleName(r *trace.RuleRef) string {
	where := fmt.Sprintf("table %s chain %s", r.Table, r.Chain)
	if r.Backend != "" {
		where = r.Backend + " " + where
	}
	if r.Policy {
		return where + " " + r.Rule + " — not kube-proxy's"
	}
	return fmt.Sprintf("%s (line %d) — not kube-proxy's", where, r.Line)
}
