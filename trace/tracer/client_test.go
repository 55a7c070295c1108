package tracer

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

func TestDefaultClients(t *testing.T) {
	lb := func(ips ...string) corev1.LoadBalancerStatus {
		var s corev1.LoadBalancerStatus
		for _, ip := range ips {
			s.Ingress = append(s.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		spec   corev1.ServiceSpec
		status corev1.LoadBalancerStatus
		nodes  []*corev1.Node
		v4, v6 string
	}{
		{name: "nothing taken", v4: "192.0.2.10", v6: "2001:db8:ffff::10"},
		{
			// Kubernetes' docs give a load balancer 192.0.2.127: a client in
			// its /24 is not an arbitrary internet client.
			name: "load balancer in TEST-NET-1", status: lb("192.0.2.127", "2001:db8:ffff::1"),
			v4: "198.51.100.10", v6: "2001:db8:fffe::10",
		},
		{
			name: "the old default is the load balancer", status: lb("203.0.113.10"),
			spec: corev1.ServiceSpec{ExternalIPs: []string{"198.51.100.32"}, ClusterIPs: []string{"192.0.2.10"}},
			// every /24 has one of the Service's addresses: the first
			// candidate that is none of them.
			v4: "192.0.2.11", v6: "2001:db8:ffff::10",
		},
		{
			// kube-proxy's TestLoadBalancer: the old default was inside.
			name:   "source ranges",
			spec:   corev1.ServiceSpec{LoadBalancerSourceRanges: []string{"192.168.0.0/24", " 203.0.113.0/25", "192.0.2.0/24"}},
			status: lb("1.2.3.4"),
			v4:     "198.51.100.10", v6: "2001:db8:ffff::10",
		},
		{
			// Ranges that let everyone in: an arbitrary client is let in.
			name: "source ranges cover every candidate", spec: corev1.ServiceSpec{LoadBalancerSourceRanges: []string{"0.0.0.0/0", "::/0"}},
			v4: "192.0.2.10", v6: "2001:db8:ffff::10",
		},
		{
			name:  "a node's pod CIDR and address",
			nodes: []*corev1.Node{node("n1", "198.51.100.2", "192.0.2.0/24")},
			v4:    "203.0.113.10", v6: "2001:db8:ffff::10",
		},
		{
			name:  "taken everywhere",
			nodes: []*corev1.Node{node("n1", "203.0.113.10", "192.0.2.0/24"), node("n2", "198.51.100.10", "10.0.0.0/24")},
			// 192.0.2.0/24 is a pod network; 198.51.100.10 and
			// 203.0.113.10 are nodes: the next host of TEST-NET-2.
			v4: "198.51.100.11", v6: "2001:db8:ffff::10",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &corev1.Service{Spec: tc.spec, Status: corev1.ServiceStatus{LoadBalancer: tc.status}}
			v4, v6 := DefaultClients(svc, tc.nodes)
			if diff := cmp.Diff([]string{tc.v4, tc.v6}, []string{v4.String(), v6.String()}); diff != "" {
				t.Errorf("DefaultClients (-want +got):\n%s", diff)
			}
		})
	}
}

// The LoadBalancer of kube-proxy's TestLoadBalancer, traced with no client
// given: an arbitrary internet client is outside its source ranges, so the
// load balancer's entries drop it, while the node port (which kube-proxy
// does not fence) still reaches the pod.
func TestBuildDefaultClientOutsideSourceRanges(t *testing.T) {
	for _, dump := range []string{iptablesLB, nftLB} {
		t.Run(dump, func(t *testing.T) {
			p, err := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"),
				Nodes: []Node{{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, dump)}}})
			if err != nil {
				t.Fatal(err)
			}
			n := p.Nodes[0]
			for _, want := range []struct {
				kind, addr string
				verdict    trace.Verdict
			}{
				{"LoadBalancer", "1.2.3.4", trace.VerdictDrop},
				{"NodePort", "192.168.0.2", trace.VerdictDNAT},
			} {
				got := findPath(t, n, want.kind, want.addr)
				if got.Entry.Source != netip.MustParseAddr("192.0.2.10") || got.Verdict != want.verdict {
					t.Errorf("%s %s from %s: %s, want %s from 192.0.2.10 (why: %s)", want.kind, want.addr, got.Entry.Source, got.Verdict, want.verdict, got.Why)
				}
			}
		})
	}
}
