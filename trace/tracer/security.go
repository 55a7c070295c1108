package tracer

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// securityFindings are the hardening remarks that follow from the way
// requests reach the Service: who can reach it, what the pods behind it may
// do, and what the traffic policy costs.
// localhost are the localhostNodePorts findings of the traced nodes, port
// by port.
func securityFindings(p *trace.Path, in Input, localhost []trace.Finding) []trace.Finding {
	var out []trace.Finding
	svc := p.Service
	name := svc.Namespace + "/" + svc.Name
	if svc.Type == string(corev1.ServiceTypeLoadBalancer) && len(svc.LoadBalancerSourceRanges) == 0 {
		out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodeLoadBalancerOpen,
			Message: fmt.Sprintf("LoadBalancer %s has no loadBalancerSourceRanges: any client that reaches the load balancer reaches the pods unless a cloud firewall says otherwise (some providers ignore the field; check yours)", name)})
	}
	if len(svc.LoadBalancerSourceRanges) > 0 {
		out = append(out, unenforcedRanges(p)...)
	}
	if svc.Type == string(corev1.ServiceTypeLoadBalancer) || svc.Type == string(corev1.ServiceTypeNodePort) {
		switch svc.ExternalTrafficPolicy {
		case "Local":
			out = append(out, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeLocalPolicyTradeoff,
				Message: fmt.Sprintf("externalTrafficPolicy Local keeps client source IPs for %s, but a node without an endpoint drops external traffic (the load balancer must use healthCheckNodePort %d) and load follows the endpoints per node, not per pod", name, svc.HealthCheckNodePort)})
		default:
			out = append(out, trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeClientIPHidden,
				Message: fmt.Sprintf("externalTrafficPolicy Cluster: external requests to %s are source-NATed to a node's address, so the pods never see the client's IP (use Local to keep it)", name)})
		}
	}
	out = append(out, podFindings(p, in)...)
	out = append(out, networkPolicyFindings(p, in)...)
	out = append(out, localhost...)
	return out
}

// unenforcedRanges: a LoadBalancer entry that a client outside every source
// range still reaches means the node does not enforce the ranges.
func unenforcedRanges(p *trace.Path) []trace.Finding {
	var ranges []netip.Prefix
	for _, r := range p.Service.LoadBalancerSourceRanges {
		if pr, err := netip.ParsePrefix(r); err == nil {
			ranges = append(ranges, pr)
		}
	}
	var out []trace.Finding
	for _, n := range p.Nodes {
		for _, ep := range n.Paths {
			if ep.Entry.Kind != trace.EntryLoadBalancer || ep.Verdict != trace.VerdictDNAT {
				continue
			}
			inside := slices.ContainsFunc(ranges, func(pr netip.Prefix) bool { return pr.Contains(ep.Entry.Source) })
			if !inside {
				out = append(out, trace.Finding{Severity: trace.SeverityError, Code: trace.CodeSourceRangesNotEnforced, Node: n.Name,
					Message: fmt.Sprintf("node %s lets client %s, outside loadBalancerSourceRanges %s, reach %s:%d: its rules do not enforce the ranges", n.Name, ep.Entry.Source, strings.Join(p.Service.LoadBalancerSourceRanges, ", "), ep.Entry.Address, ep.Entry.Port)})
			}
		}
	}
	return out
}

// podFindings flags backend pods that run with more than they should.
func podFindings(p *trace.Path, in Input) []trace.Finding {
	seen := map[string]bool{}
	var out []trace.Finding
	for _, key := range slices.Sorted(maps.Keys(in.Pods)) {
		pod := in.Pods[key]
		if pod == nil || seen[key] {
			continue
		}
		seen[key] = true
		if pod.Spec.HostNetwork {
			out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodePodHostNetwork,
				Message: fmt.Sprintf("pod %s behind %s/%s uses the host network: it shares the node's interfaces and ports, and NetworkPolicies do not apply to it", key, p.Service.Namespace, p.Service.Name)})
		}
		for _, c := range pod.Spec.Containers {
			sc := c.SecurityContext
			if sc == nil {
				continue
			}
			if sc.Privileged != nil && *sc.Privileged {
				out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodePodPrivileged,
					Message: fmt.Sprintf("container %s of pod %s (behind %s/%s) is privileged: a request that compromises it owns the node", c.Name, key, p.Service.Namespace, p.Service.Name)})
				continue
			}
			if sc.Capabilities != nil {
				var risky []string
				for _, capability := range sc.Capabilities.Add {
					if capability == "NET_ADMIN" || capability == "NET_RAW" || capability == "SYS_ADMIN" || capability == "ALL" {
						risky = append(risky, string(capability))
					}
				}
				if len(risky) > 0 {
					out = append(out, trace.Finding{Severity: trace.SeverityWarning, Code: trace.CodePodCapabilities,
						Message: fmt.Sprintf("container %s of pod %s (behind %s/%s) adds %s: drop what the workload does not need", c.Name, key, p.Service.Namespace, p.Service.Name, strings.Join(risky, ", "))})
				}
			}
		}
	}
	return out
}

// localhostNodePorts: iptables mode with route_localnet lets a node port be
// reached on 127.0.0.1 — any local process, including host-network pods,
// reaches the Service that way. Checked by sending the packet through node
// n; the findings are keyed by the port's index in the Service.
func localhostNodePorts(p *trace.Path, n Node) map[int]trace.Finding {
	if n.Err != nil || n.Dataplane == nil || !n.Dataplane.Covers(false) {
		return nil
	}
	var out map[int]trace.Finding
	for i, sp := range p.Service.Ports {
		if sp.NodePort == 0 {
			continue
		}
		lo := netip.MustParseAddr("127.0.0.1")
		sim, err := n.Dataplane.Simulate(trace.Packet{Source: lo, Destination: lo, DestinationPort: sp.NodePort, Protocol: sp.Protocol}, ruleset.Options{LocalAddrs: nodeAddrs(n.Node)})
		if err != nil || sim.Verdict != trace.VerdictDNAT {
			continue
		}
		if out == nil {
			out = map[int]trace.Finding{}
		}
		out[i] = trace.Finding{Severity: trace.SeverityInfo, Code: trace.CodeNodePortOnLocalhost, Node: n.Node.Name,
			Message: fmt.Sprintf("node %s accepts node port %d on 127.0.0.1 (kube-proxy's iptables mode sets route_localnet): any process on the node reaches the Service that way", n.Node.Name, sp.NodePort)}
	}
	return out
}

// networkPolicyFindings: in a cluster that uses NetworkPolicies, backend pods
// no ingress policy selects accept connections from anywhere.
func networkPolicyFindings(p *trace.Path, in Input) []trace.Finding {
	if !in.NetworkPoliciesInUse {
		return nil
	}
	var open []string
	for _, key := range slices.Sorted(maps.Keys(in.Pods)) {
		pod := in.Pods[key]
		if pod == nil {
			continue
		}
		selected := false
		for _, np := range in.NetworkPolicies {
			if np.Namespace != "" && np.Namespace != pod.Namespace || !appliesToIngress(np) {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err == nil && sel.Matches(labels.Set(pod.Labels)) {
				selected = true
				break
			}
		}
		if !selected {
			open = append(open, key)
		}
	}
	if len(open) == 0 {
		return nil
	}
	return []trace.Finding{{Severity: trace.SeverityWarning, Code: trace.CodePodsWithoutNetworkPolicy,
		Message: fmt.Sprintf("no ingress NetworkPolicy selects %s behind %s/%s, although the cluster uses NetworkPolicies: any pod can connect to them", strings.Join(open, ", "), p.Service.Namespace, p.Service.Name)}}
}

func appliesToIngress(np networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return true // Ingress is implied
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}
