package tracer

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Candidate default clients (see DefaultClients). The external client a
// trace simulates when none is given (--source-ip) stands for an arbitrary
// client on the internet: the question is "what
// does anyone out there get?". It comes from the documentation ranges
// (RFC 5737 for IPv4, RFC 3849 for IPv6), which no real client has — but
// docs, tests and lab clusters also give those ranges to load balancers,
// external IPs and source ranges (Kubernetes' own Service docs use
// 192.0.2.127 as a load balancer address and 198.51.100.32 as an external
// IP; kube-proxy's tests fence load balancers with 203.0.113.0/25). A
// fixed default would then be the Service's own address, or a client the
// Service's loadBalancerSourceRanges let in by accident. So the default is
// picked per Service: the first candidate that is none of the Service's
// addresses (cluster IPs, external IPs, load balancer ingress), none of the
// nodes' addresses, in none of their pod CIDRs, not in the same /24 (/64)
// as any of those addresses, and outside every loadBalancerSourceRanges
// entry — because an arbitrary internet client is outside them, and the
// trace should show that it is kept out.
var (
	clientCandidatesV4 = []netip.Addr{
		netip.MustParseAddr("192.0.2.10"),    // TEST-NET-1
		netip.MustParseAddr("198.51.100.10"), // TEST-NET-2
		netip.MustParseAddr("203.0.113.10"),  // TEST-NET-3
	}
	clientCandidatesV6 = []netip.Addr{
		netip.MustParseAddr("2001:db8:ffff::10"),
		netip.MustParseAddr("2001:db8:fffe::10"),
		netip.MustParseAddr("2001:db8:fffd::10"),
	}
)

// DefaultClients returns the external clients (IPv4, IPv6) to simulate for
// svc when none is given: the first candidate outside every address of the
// Service, its nodes and its source ranges (the comment on the candidates
// says why they are derived rather than fixed).
func DefaultClients(svc *corev1.Service, nodes []*corev1.Node) (v4, v6 netip.Addr) {
	var taken []netip.Addr
	var fenced []netip.Prefix // pod CIDRs: a client there is a pod, not the internet
	var ranges []netip.Prefix
	add := func(s string) {
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			taken = append(taken, a.Unmap())
		}
	}
	if svc != nil {
		for _, ip := range svc.Spec.ClusterIPs {
			add(ip)
		}
		add(svc.Spec.ClusterIP)
		for _, ip := range svc.Spec.ExternalIPs {
			add(ip)
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			add(ing.IP)
		}
		add(svc.Spec.LoadBalancerIP)
		for _, r := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil {
				ranges = append(ranges, p.Masked())
			}
		}
	}
	for _, n := range nodes {
		if n == nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			add(a.Address)
		}
		cidrs := append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...)
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(strings.TrimSpace(c)); err == nil {
				fenced = append(fenced, p.Masked())
			}
		}
	}
	return pickClient(clientCandidatesV4, 24, taken, fenced, ranges), pickClient(clientCandidatesV6, 64, taken, fenced, ranges)
}

// pickClient returns the first candidate that passes every test, then
// relaxes them: first the neighbourhood (/bits around a taken address),
// then the source ranges (when they cover every candidate, an arbitrary
// client is let in, and that is what the trace should show). A candidate
// that is a taken address itself or in a pod CIDR is never picked while
// another host of its documentation range is free.
func pickClient(candidates []netip.Addr, bits int, taken []netip.Addr, fenced, ranges []netip.Prefix) netip.Addr {
	in := func(a netip.Addr, ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	near := func(a netip.Addr) bool {
		p, _ := a.Prefix(bits)
		return slices.ContainsFunc(taken, p.Contains)
	}
	ok := func(a netip.Addr, neighbours, inRanges bool) bool {
		return !slices.Contains(taken, a) && !in(a, fenced) &&
			(!neighbours || !near(a)) && (!inRanges || !in(a, ranges))
	}
	for _, pass := range []struct{ neighbours, ranges bool }{{true, true}, {false, true}, {false, false}} {
		for _, c := range candidates {
			// The candidate, then the next hosts of its range.
			for a, i := c, 0; i < 64; a, i = a.Next(), i+1 {
				if ok(a, pass.neighbours, pass.ranges) {
					return a
				}
				if pass.neighbours {
					break // the whole /bits is judged by its first host
				}
			}
		}
	}
	return candidates[0]
}
