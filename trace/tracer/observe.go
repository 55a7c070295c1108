package tracer

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// What the observed split is compared with the predicted one over: fewer
// connections than splitMinConnections say nothing (five connections to
// one of two endpoints happen one time in sixteen), and a share must be
// splitMinDeviation off and beyond splitSigmas standard deviations of the
// binomial draw the rules make.
const (
	splitMinConnections = 20
	splitMinDeviation   = 0.2
	splitSigmas         = 3.0
)

// conntrackFullRatio is the fill of the conntrack table from which it is
// reported as (nearly) full.
const conntrackFullRatio = 0.9

// closedTCP are TCP states of connections that are over: a stale entry in
// one of them hurts nobody and goes away by itself.
var closedTCP = []string{"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "FIN_WAIT"}

// ruleHits returns the DNAT rule counters of each endpoint of a
// simulation, by endpoint: the packet counter of the rule in the
// endpoint's chain that DNATed each branch — its last rule there (an
// outcome's DecidedBy is the branch's last deciding rule, which may be a
// later filter ACCEPT). Only dumps with counters have them.
func ruleHits(sim *trace.Simulation) map[netip.AddrPort]uint64 {
	var out map[netip.AddrPort]uint64
	for _, o := range sim.Outcomes {
		if o.Verdict != trace.VerdictDNAT || o.Endpoint == nil {
			continue
		}
		for i := len(o.Rules) - 1; i >= 0; i-- {
			r := o.Rules[i]
			if r.Chain != o.Endpoint.Chain {
				continue
			}
			if r.Counters != nil {
				if out == nil {
					out = map[netip.AddrPort]uint64{}
				}
				out[o.Endpoint.AddrPort()] = r.Counters.Packets
			}
			break
		}
	}
	return out
}

// observer joins one node's observations to its paths.
type observer struct {
	p    *trace.Path
	node string
	// seen keys findings said once per node (entries share addresses).
	seen     map[string]bool
	findings []trace.Finding
}

// observe counts the node's connections to every entry's address and puts
// them next to the prediction: per endpoint, per path, and the findings
// about what the kernel did that the rules do not explain.
func observe(p *trace.Path, n Node, np *trace.NodePaths, clients bool) []trace.Finding {
	o := &observer{p: p, node: np.Name, seen: map[string]bool{}}
	nobs := &trace.NodeObserved{}
	for _, ep := range np.Paths {
		for _, pe := range ep.Endpoints {
			nobs.RuleCounters = nobs.RuleCounters || pe.Observed != nil && pe.Observed.RuleHits != nil
		}
	}
	if l, ok := n.Dataplane.ConntrackLimits(); ok {
		nobs.ConntrackCount, nobs.ConntrackMax = l.Count, l.Max
		if l.Max > 0 && float64(l.Count) >= conntrackFullRatio*float64(l.Max) {
			o.add(trace.SeverityWarning, trace.CodeConntrackTableFull, fmt.Sprintf("node %s's conntrack table holds %d of at most %d connections: when it is full the kernel drops new connections (\"nf_conntrack: table full, dropping packet\"); raise net.netfilter.nf_conntrack_max (kube-proxy's --conntrack-max-per-core) or find what opens so many", o.node, l.Count, l.Max))
		}
	}
	if n.Dataplane.Observes() {
		o.connections(n.Dataplane, np, nobs, clients)
	}
	if nobs.RuleCounters || len(nobs.Tables) > 0 || nobs.ConntrackMax > 0 {
		np.Observed = nobs
	}
	return o.findings
}

func (o *observer) add(sev trace.Severity, code trace.Code, msg string) {
	o.findings = append(o.findings, trace.Finding{Severity: sev, Code: code, Node: o.node, Message: msg})
}

// once tells whether key is new for this node.
func (o *observer) once(key string) bool {
	if o.seen[key] {
		return false
	}
	o.seen[key] = true
	return true
}

// frontend is an entry's address as conntrack counts it; ok is false for
// protocols conntrack does not count by port.
func frontend(e trace.Entry) (conntrack.Frontend, bool) {
	f, err := conntrack.NewFrontend(e.Address, e.Port, e.Protocol)
	return f, err == nil
}

func (o *observer) connections(dp *ruleset.Dataplane, np *trace.NodePaths, nobs *trace.NodeObserved, clients bool) {
	var fronts []conntrack.Frontend
	for _, ep := range np.Paths {
		if f, ok := frontend(ep.Entry); ok && !slices.Contains(fronts, f) {
			fronts = append(fronts, f)
		}
	}
	obs, err := dp.Observe(fronts, conntrack.Options{Clients: clients})
	if err != nil {
		o.add(trace.SeverityWarning, trace.CodeConntrackIncomplete, fmt.Sprintf("node %s: %v; observed connections are not shown", o.node, err))
		return
	}
	nobs.Tables, nobs.Entries, nobs.IPVS = obs.Tables, obs.Entries, obs.IPVS
	for _, w := range obs.Warnings {
		o.add(trace.SeverityWarning, w.Code, "node "+o.node+": "+w.Message)
	}
	for i := range np.Paths {
		ep := &np.Paths[i]
		f, ok := frontend(ep.Entry)
		if !ok {
			continue
		}
		fc, ok := obs.Frontend(f)
		if !ok {
			continue
		}
		o.path(ep, fc)
	}
}

// path puts one frontend's counts on one path.
func (o *observer) path(ep *trace.EntryPath, fc *conntrack.FrontendCount) {
	po := &trace.PathObserved{Connections: fc.Connections}
	for _, b := range fc.Backends {
		if b.Untranslated {
			po.Untranslated += b.Connections
		}
	}
	for j := range ep.Endpoints {
		pe := &ep.Endpoints[j]
		if pe.Observed == nil {
			pe.Observed = &trace.Observed{}
		}
		b, _ := fc.Backend(netip.AddrPortFrom(pe.IP, pe.Port))
		conns := b.Connections
		pe.Observed.Connections = &conns
		if len(b.States) > 0 {
			pe.Observed.States = b.States
		}
		for _, c := range b.Clients {
			pe.Observed.Clients = append(pe.Observed.Clients, trace.ObservedClient{Addr: c.Addr, Connections: c.Connections})
		}
		pe.Observed.OtherClients = b.OtherClients
	}
	for _, b := range fc.Stale(o.endpoints(ep)) {
		po.Stale += b.Connections
		o.stale(ep.Entry, fc.Frontend, b)
	}
	ep.Observed = po
	switch {
	case ep.Verdict == trace.VerdictDrop || ep.Verdict == trace.VerdictReject:
		o.dropped(ep, po)
	case ep.Verdict == trace.VerdictDNAT:
		o.split(ep)
	}
}

// endpoints are the addresses a connection to the entry may rightly go
// to: every endpoint the API lists for the entry's Service port (on any
// node, ready or not) and every one the node's rules send to.
func (o *observer) endpoints(ep *trace.EntryPath) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range o.p.Endpoints {
		if a.Port == ep.Entry.ServicePort && a.Protocol == ep.Entry.Protocol {
			out = append(out, netip.AddrPortFrom(a.IP, a.TargetPort))
		}
	}
	for _, pe := range ep.Endpoints {
		if pe.InRules {
			out = append(out, netip.AddrPortFrom(pe.IP, pe.Port))
		}
	}
	return out
}

// stale reports connections the kernel keeps sending to an address that
// is no longer an endpoint, with the command that clears them.
func (o *observer) stale(e trace.Entry, f conntrack.Frontend, b conntrack.BackendCount) {
	if !o.once("stale " + f.String() + " " + b.Backend.String()) {
		return
	}
	sev := trace.SeverityWarning
	live := b.Connections
	what := "they are over and expire by themselves"
	switch f.Proto {
	case conntrack.ProtoTCP:
		for _, s := range closedTCP {
			live -= b.States[s]
		}
		if live == 0 {
			sev = trace.SeverityInfo
		} else {
			what = fmt.Sprintf("%d still open: their packets go to an address with no pod behind it", live)
		}
	default:
		// A UDP (or SCTP) flow's entry lives as long as its client keeps
		// sending: a client that keeps its socket (DNS resolvers do) is
		// black-holed until the entry is deleted.
		sev = trace.SeverityError
		what = "each packet of those flows refreshes its entry, so a client that keeps its socket (a DNS resolver) is black-holed until the entry is deleted; kube-proxy deletes such entries when an endpoint goes away, so this one was missed"
	}
	o.add(sev, trace.CodeStaleConntrackEntries, fmt.Sprintf(
		"node %s: %d conntrack %s for %s %s still send%s to %s, which is no longer an endpoint of %s/%s (%s); clear them on the node (host network, NET_ADMIN) with: %s",
		o.node, b.Connections, plural(b.Connections, "entry", "entries"), e.Kind, f, plural(b.Connections, "s", ""), b.Backend,
		o.p.Service.Namespace, o.p.Service.Name, what, strings.Join(conntrack.ClearCommand(f, b.Backend), " ")))
}

// dropped reports connections on a path the node's rules drop or reject.
func (o *observer) dropped(ep *trace.EntryPath, po *trace.PathObserved) {
	if po.Connections == 0 {
		return
	}
	f, _ := frontend(ep.Entry)
	if !o.once("dropped " + f.String()) {
		return
	}
	o.add(trace.SeverityWarning, trace.CodeTrafficWhereRulesDrop, fmt.Sprintf(
		"node %s holds %d %s to %s %s, which its rules %s (%s): the kernel keeps a connection it let through before the rules changed, so these may predate them — or something the trace does not model lets this traffic through",
		o.node, po.Connections, plural(po.Connections, "connection", "connections"), ep.Entry.Kind, f, verdictVerb(ep.Verdict), ep.Why))
}

func verdictVerb(v trace.Verdict) string {
	if v == trace.VerdictReject {
		return "reject"
	}
	return "drop"
}

// split reports an observed split over the path's endpoints that the
// rules' probabilities do not explain.
func (o *observer) split(ep *trace.EntryPath) {
	eps := ep.EndpointsInRules()
	if len(eps) < 2 {
		return
	}
	n := 0
	for _, pe := range eps {
		if pe.Observed != nil && pe.Observed.Connections != nil {
			n += *pe.Observed.Connections
		}
	}
	if n < splitMinConnections {
		return
	}
	off := false
	var seen, predicted []string
	for _, pe := range eps {
		c := 0
		if pe.Observed != nil && pe.Observed.Connections != nil {
			c = *pe.Observed.Connections
		}
		share := float64(c) / float64(n)
		sd := math.Sqrt(float64(n) * pe.Probability * (1 - pe.Probability))
		if math.Abs(share-pe.Probability) >= splitMinDeviation && math.Abs(float64(c)-float64(n)*pe.Probability) > splitSigmas*sd {
			off = true
		}
		seen = append(seen, fmt.Sprintf("%s %.0f%%", netip.AddrPortFrom(pe.IP, pe.Port), 100*share))
		predicted = append(predicted, fmt.Sprintf("%.0f%%", 100*pe.Probability))
	}
	f, _ := frontend(ep.Entry)
	if !off || !o.once("split "+f.String()) {
		return
	}
	why := "long-lived connections stay on the endpoint they were first sent to (conntrack keeps them; ones opened before an endpoint was added never move), and few clients with keep-alive skew a split"
	if o.p.Service.SessionAffinity == "ClientIP" {
		why = "sessionAffinity ClientIP pins each client to one endpoint, so few clients make an uneven split; " + why
	}
	o.add(trace.SeverityInfo, trace.CodeObservedSplitDiffers, fmt.Sprintf(
		"node %s: the %d connections to %s %s went %s, where the rules predict %s: %s",
		o.node, n, ep.Entry.Kind, f, strings.Join(seen, ", "), strings.Join(predicted, ", "), why))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
