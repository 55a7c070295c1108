package tracer

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// TestForeignTableDecides: on the nodes recorded under testdata/foreign
// (kube-proxy's rules plus Docker's FORWARD policy DROP, or a firewalld
// table rejecting forwarded traffic — real packets died there), the
// ClusterIP path is refused by the foreign table, one finding names it, and
// kube-proxy is not blamed for endpoints it did program.
func TestForeignTableDecides(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "svc1"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "172.30.0.41", ClusterIPs: []string{"172.30.0.41"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	slices := []discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns1", Name: "svc1-abc"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.180.0.1"}, NodeName: ptr.To("node-b"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}},
	}}
	for _, tc := range []struct {
		scenario, verdict, by string
	}{
		{"docker-forward-drop-nftables-mode", "DROP", "iptables-nft table filter chain FORWARD policy drop — not kube-proxy's"},
		{"firewalld-reject-iptables-mode", "REJECT", "nftables table firewalld chain filter_FORWARD (line "},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			dir := "../../testdata/foreign/" + tc.scenario + "/"
			in := Input{Service: svc, Slices: slices,
				Nodes: []Node{{Node: node("node-a", "192.168.0.2", "10.180.0.0/24"), Dataplane: load(t, dir+"iptables-nft.save", dir+"ruleset.nft")}}}
			p, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			cp := findPath(t, p.Nodes[0], "ClusterIP", "172.30.0.41")
			if string(cp.Verdict) != tc.verdict || cp.DecidedBy == nil || !cp.DecidedBy.Foreign {
				t.Fatalf("path %s decided by %+v, want %s by a foreign table", cp.Verdict, cp.DecidedBy, tc.verdict)
			}
			if !strings.Contains(cp.Why, tc.by) {
				t.Errorf("why %q does not name %q", cp.Why, tc.by)
			}
			var foreign []trace.Finding
			for _, f := range p.Findings {
				switch f.Code {
				case trace.CodeForeignTableDecides:
					foreign = append(foreign, f)
				case trace.CodeEndpointMissingFromRules, trace.CodeStaleEndpointInRules:
					t.Errorf("kube-proxy blamed for a foreign table's refusal: %+v", f)
				}
			}
			if len(foreign) != 1 {
				t.Fatalf("ForeignTableDecides findings %+v, want one", foreign)
			}
			f := foreign[0]
			if f.Severity != trace.SeverityError || f.Node != "node-a" || !strings.Contains(f.Message, tc.by) ||
				!strings.Contains(f.Message, "ClusterIP 172.30.0.41:80") || !strings.Contains(f.Message, "which kube-proxy DNATed to 10.180.0.1:80, is ") {
				t.Errorf("finding %+v", f)
			}
		})
	}
}
