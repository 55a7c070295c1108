package tracer

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
)

// chainFindings checks, by kube-proxy's chain-name hashes, that each node
// holds the service chain of every Service port that has ready endpoints —
// without relying on rule comments or on a packet reaching it.
func chainFindings(p *trace.Path, in Input) []trace.Finding {
	var out []trace.Finding
	// With internalTrafficPolicy Local the cluster IP goes through
	// KUBE-SVL-* / local-* chains that may rightly be empty or absent.
	if p.Service.Headless || p.Service.Type == "ExternalName" || p.Service.InternalTrafficPolicy == "Local" {
		return nil
	}
	families := map[bool]bool{} // v6 → the Service has a cluster IP of that family
	for _, ip := range p.Service.ClusterIPs {
		families[ip.Is6()] = true
	}
	// The layout test may walk every nat chain of an old dump; ask it once
	// per dump, not once per port × family × expected chain.
	newLayout := map[*iptables.Dump]bool{}
	for _, n := range in.Nodes {
		if n.Err != nil {
			continue
		}
		for _, rs := range n.Rulesets {
			if rs.IPTables != nil {
				newLayout[rs.IPTables] = newIPTablesLayout(rs.IPTables)
			}
		}
		for _, sp := range p.Service.Ports {
			if !hasReady(p, sp) {
				continue
			}
			for v6 := range families {
				// Only the dumps of the family count (an ip6tables dump
				// rightly lacks an IPv4 Service's chains); a chain must be
				// in one of them.
				for _, want := range expectedChains(p.Service, sp) {
					name, looked, found := "", false, false
					for _, rs := range n.Rulesets {
						switch {
						case rs.IPTables != nil && rs.IPTables.IPv6() == v6:
							if want.kind != "service" && !newLayout[rs.IPTables] {
								continue // ≤1.23 used KUBE-FW/KUBE-XLB for every LB
							}
							looked = true
							name = iptables.ServiceChain(want.iptablesPrefix, iptables.ServicePortName(p.Service.Namespace, p.Service.Name, sp.Name), sp.Protocol)
							found = found || rs.IPTables.Chain("nat", name) != nil
						case rs.NFT != nil:
							fam := map[bool]string{false: "ip", true: "ip6"}[v6]
							for _, t := range rs.NFT.Tables {
								if t.Name != nftables.KubeProxyTable || (t.Family != fam && t.Family != "inet") {
									continue
								}
								looked = true
								name = want.nftPrefix + nftables.ServiceChainBase(p.Service.Namespace, p.Service.Name, sp.Protocol, sp.Name)
								found = found || t.Chains[name] != nil
							}
						}
					}
					if looked && !found {
						out = append(out, trace.Finding{Severity: "error", Code: want.code, Node: n.Node.Name,
							Message: fmt.Sprintf("node %s has no %s for %s/%s port %s/%s although the API lists ready endpoints (%s): its kube-proxy has not programmed the Service (is it running, and in which mode?)", n.Node.Name, name, p.Service.Namespace, p.Service.Name, portLabel(sp), sp.Protocol, want.why)})
					}
				}
			}
		}
	}
	return out
}

// wantChain is a chain kube-proxy (≥1.24 iptables, nftables) writes for a
// Service port with endpoints.
type wantChain struct {
	kind, code, why           string
	iptablesPrefix, nftPrefix string
}

// expectedChains follows kube-proxy's proxier: the service chain always;
// the external chain when the port is reachable from outside (node port,
// external IPs, load balancer IPs); the firewall chain when load balancer
// IPs have loadBalancerSourceRanges.
func expectedChains(svc trace.ServiceInfo, sp trace.ServicePort) []wantChain {
	out := []wantChain{{"service", "ServiceChainMissing", "its service chain", iptables.PrefixService, nftables.PrefixService}}
	vips := 0
	for _, lb := range svc.LoadBalancerIngress {
		if lb.IP.IsValid() && lb.IPMode != "Proxy" {
			vips++
		}
	}
	if sp.NodePort != 0 || len(svc.ExternalIPs) > 0 || vips > 0 {
		out = append(out, wantChain{"external", "ExternalChainMissing", "it is reachable from outside the cluster", iptables.PrefixExternal, nftables.PrefixExternal})
	}
	if vips > 0 && len(svc.LoadBalancerSourceRanges) > 0 {
		out = append(out, wantChain{"firewall", "FirewallChainMissing", "loadBalancerSourceRanges fence its load balancer IPs", iptables.PrefixFirewall, nftables.PrefixFirewall})
	}
	return out
}

// newIPTablesLayout tells a dump written by kube-proxy ≥1.24 (KUBE-EXT-*
// chains, KUBE-PROXY-FIREWALL) from one by an older version.
func newIPTablesLayout(d *iptables.Dump) bool {
	if d.Chain("filter", "KUBE-PROXY-FIREWALL") != nil {
		return true
	}
	if nat := d.Table("nat"); nat != nil {
		for _, c := range nat.Chains() {
			if strings.HasPrefix(c.Name, iptables.PrefixExternal) {
				return true
			}
		}
	}
	return false
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
				out = append(out, trace.Finding{Severity: "warning", Code: "UnevenProbabilities", Node: n.Name,
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
	return []trace.Finding{{Severity: "warning", Code: "ProxyModesDiffer",
		Message: "kube-proxy runs in different modes across nodes (" + strings.Join(parts, "; ") + "): a rollout is half done, or nodes were configured apart"}}
}
