package tracer

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// chainFindings checks, through node n's engine, that kube-proxy
// programmed every object a Service port with ready endpoints needs (its
// service chain, external chain, firewall chain: found by kube-proxy's name
// hashes) — without relying on rule comments or on a packet reaching it.
// np is n's part of the Path.
func chainFindings(p *trace.Path, n Node, np trace.NodePaths) []trace.Finding {
	var out []trace.Finding
	// With internalTrafficPolicy Local the cluster IP goes through
	// KUBE-SVL-* / local-* chains that may rightly be empty or absent.
	if p.Service.Headless || p.Service.Type == "ExternalName" || p.Service.InternalTrafficPolicy == "Local" {
		return nil
	}
	// (kube-proxy does not run on a node whose eBPF dataplane serves the
	// Services, which KubeProxyReplaced says.)
	if n.Err != nil || n.Dataplane == nil || np.ServiceDataplane != nil && np.ServiceDataplane.ReplacesKubeProxy {
		return nil
	}
	families := map[bool]bool{} // v6 → the Service has a cluster IP of that family
	for _, ip := range p.Service.ClusterIPs {
		families[ip.Is6()] = true
	}
	for _, sp := range p.Service.Ports {
		if !hasReady(p, sp) {
			continue
		}
		for _, v6 := range []bool{false, true} {
			if !families[v6] {
				continue
			}
			for _, want := range expectedObjects(p.Service, sp) {
				c := n.Dataplane.Programmed(want.kind, p.Service, sp, v6)
				if c.Applicable && !c.Found {
					code, why := want.code, want.why
					if n.Dataplane.ProxyMode() == trace.ModeIPVS {
						switch want.kind {
						case ruleset.ObjectService:
							code, why = trace.CodeVirtualServerMissing, "the virtual server of its cluster IP"
						case ruleset.ObjectExternal:
							code, why = trace.CodeVirtualServerMissing, "the virtual server of its external or load balancer IP"
						}
					}
					out = append(out, trace.Finding{Severity: trace.SeverityError, Code: code, Node: n.Node.Name,
						Message: fmt.Sprintf("node %s has no %s for %s/%s port %s/%s although the API lists ready endpoints (%s): its kube-proxy has not programmed the Service (is it running, and in which mode?)", n.Node.Name, c.Name, p.Service.Namespace, p.Service.Name, portLabel(sp), sp.Protocol, why)})
				}
			}
		}
	}
	return out
}

// wantObject is an object kube-proxy writes for a Service port with
// endpoints, and the finding when it is missing.
type wantObject struct {
	kind ruleset.ObjectKind
	code trace.Code
	why  string
}

// expectedObjects follows kube-proxy's proxier: the service chain always;
// the external chain when the port is reachable from outside (node port,
// external IPs, load balancer IPs); the firewall chain when load balancer
// IPs have loadBalancerSourceRanges.
func expectedObjects(svc trace.ServiceInfo, sp trace.ServicePort) []wantObject {
	out := []wantObject{{ruleset.ObjectService, trace.CodeServiceChainMissing, "its service chain"},
		// (IPVS mode only; the other engines never apply it.)
		{ruleset.ObjectIPSetEntry, trace.CodeIPSetEntryMissing, "the entry kube-proxy's rules accept and masquerade that address by"},
		{ruleset.ObjectAddressBound, trace.CodeServiceAddressUnbound, "kube-proxy binds every Service address there for IPVS to see its packets"}}
	vips := 0
	for _, lb := range svc.LoadBalancerIngress {
		if lb.IP.IsValid() && lb.IPMode != "Proxy" {
			vips++
		}
	}
	if sp.NodePort != 0 || len(svc.ExternalIPs) > 0 || vips > 0 {
		out = append(out, wantObject{ruleset.ObjectExternal, trace.CodeExternalChainMissing, "it is reachable from outside the cluster"})
	}
	if vips > 0 && len(svc.LoadBalancerSourceRanges) > 0 {
		out = append(out, wantObject{ruleset.ObjectFirewall, trace.CodeFirewallChainMissing, "loadBalancerSourceRanges fence its load balancer IPs"})
	}
	return out
}

func portLabel(sp trace.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return fmt.Sprint(sp.Port)
}

func hasReady(p *trace.Path, sp trace.ServicePort) bool {
	for _, a := range p.Endpoints {
		if a.Port == sp.Name && a.Protocol == sp.Protocol && a.Ready {
			return true
		}
	}
	return false
}

// balanceFindings: without topology or a Local policy, kube-proxy spreads
// new connections evenly; a DNAT path whose endpoints' shares differ from
// 1/n by more than rounding says the rules were written for another set.
func balanceFindings(p *trace.Path) []trace.Finding {
	var out []trace.Finding
	for _, n := range p.Nodes {
		for _, ep := range n.Paths {
			if ep.Verdict != trace.VerdictDNAT {
				continue
			}
			inRules := ep.EndpointsInRules()
			if len(inRules) < 2 {
				continue
			}
			even := 1 / float64(len(inRules))
			worst := 0.0
			for _, e := range inRules {
				worst = math.Max(worst, math.Abs(e.Probability-even))
			}
			if worst > 0.01 {
				var parts []string
				for _, e := range inRules {
					parts = append(parts, fmt.Sprintf("%s:%d %.1f%%", e.IP, e.Port, 100*e.Probability))
				}
				out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodeUnevenProbabilities, Node: n.Name,
					Message: fmt.Sprintf("node %s spreads %s %s:%d unevenly (%s), where kube-proxy writes 1/%d each", n.Name, ep.Entry.Kind, ep.Entry.Address, ep.Entry.Port, strings.Join(parts, ", "), len(inRules))})
			}
		}
	}
	return out
}

// modeFindings: nodes whose kube-proxy runs in different modes.
func modeFindings(p *trace.Path) []trace.Finding {
	byMode := map[string][]string{}
	for _, n := range p.Nodes {
		if n.Error == "" && n.ProxyMode != "" && n.ProxyMode != "unknown" {
			byMode[n.ProxyMode] = append(byMode[n.ProxyMode], n.Name)
		}
	}
	if len(byMode) < 2 {
		return nil
	}
	var parts []string
	for mode, nodes := range byMode {
		parts = append(parts, fmt.Sprintf("%s on %s", mode, strings.Join(nodes, ", ")))
	}
	sort.Strings(parts)
	return []trace.Finding{{Severity: trace.SeverityWarning, Code: trace.CodeProxyModesDiffer,
		Message: "kube-proxy runs in different modes across nodes (" + strings.Join(parts, "; ") + "): a rollout is half done, or nodes were configured apart"}}
}
