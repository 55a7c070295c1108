package run

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// The node recorded by hack/conntrack/gen.sh: its iptables-save -c and its
// conntrack table, with the stale UDP entry of h14/dns.
const recordedConntrack = "../../trace/conntrack/testdata/recorded/"

func dnsObjects() []runtime.Object {
	return []runtime.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "h14", Name: "dns"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.14.53", ClusterIPs: []string{"10.96.14.53"},
				Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "h14", Name: "dns-x", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.14.2.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To(int32(5353)), Protocol: ptr.To(corev1.ProtocolUDP)}},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node"}, Spec: corev1.NodeSpec{PodCIDR: "10.14.0.0/24"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.14.100.1"}}}},
	}
}

// TestTraceObservesSavedDumps: a node's saved iptables-save -c and
// connection table (as --save-dumps names it, and saved by hand under any
// name) are read back with --dump; --observe=false reads neither.
func TestTraceObservesSavedDumps(t *testing.T) {
	dir := t.TempDir()
	table, err := os.ReadFile(recordedConntrack + "nf_conntrack")
	if err != nil {
		t.Fatal(err)
	}
	named, byHand := filepath.Join(dir, "node.conntrack-proc"), filepath.Join(dir, "ct.txt")
	for _, p := range []string{named, byHand} {
		if err := os.WriteFile(p, table, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		table   string
		observe bool
	}{{"saved by --save-dumps", named, true}, {"saved by hand", byHand, true}, {"--observe=false", named, false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Namespace: "h14", Service: "dns", Objects: dnsObjects(), Observe: tc.observe,
				Dumps: map[string][]string{"node": {recordedConntrack + "iptables-nft-save-c", tc.table}}}
			p, err := Trace(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var ep trace.EntryPath
			for _, e := range p.Nodes[0].Paths {
				if e.Entry.From == "pod on this node" {
					ep = e
				}
			}
			stale := 0
			for _, f := range p.Findings {
				if f.Code == trace.CodeStaleConntrackEntries {
					stale++
				}
			}
			o := ep.Endpoints[0].Observed
			switch {
			case !tc.observe:
				if o != nil || ep.Observed != nil || stale != 0 || p.Nodes[0].Observed != nil {
					t.Errorf("--observe=false: endpoint %+v, path %+v, %d stale findings", o, ep.Observed, stale)
				}
			case o == nil || o.Connections == nil || *o.Connections != 4 || o.RuleHits == nil || *o.RuleHits != 4 ||
				ep.Observed == nil || ep.Observed.Stale != 4 || stale != 1:
				t.Errorf("endpoint %+v, path %+v, %d stale findings; want 4 connections, 4 rule hits, 4 stale", o, ep.Observed, stale)
			}
		})
	}
}
