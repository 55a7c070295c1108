package run

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

func testNode(name string, cordoned bool) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: cordoned, PodCIDR: "10.0.0.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}}}
}

// facts is a Service with endpoints on the named nodes, in a cluster of
// nodes n0..n(count-1) (those in cordoned are cordoned).
func facts(count int, policy corev1.ServiceExternalTrafficPolicy, endpointsOn []string, cordoned ...string) *cluster.Facts {
	f := &cluster.Facts{Service: &corev1.Service{Spec: corev1.ServiceSpec{ExternalTrafficPolicy: policy}}}
	for i := range count {
		name := fmt.Sprintf("n%d", i)
		f.Nodes = append(f.Nodes, testNode(name, strings.Contains(" "+strings.Join(cordoned, " ")+" ", " "+name+" ")))
	}
	var eps []discoveryv1.Endpoint
	for _, n := range endpointsOn {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}, NodeName: ptr.To(n)})
	}
	f.EndpointSlices = []discoveryv1.EndpointSlice{{Endpoints: eps}}
	return f
}

func names(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

// TestPickNodes: the nodes a trace goes through.
func TestPickNodes(t *testing.T) {
	clusterPolicy := corev1.ServiceExternalTrafficPolicyCluster
	local := corev1.ServiceExternalTrafficPolicyLocal
	for _, tc := range []struct {
		name   string
		facts  *cluster.Facts
		choice NodeChoice
		want   []string
		capped int
		err    string
	}{
		{"endpoint nodes first, then the others", facts(4, clusterPolicy, []string{"n2"}), NodeChoice{}, []string{"n2", "n0", "n1", "n3"}, 0, ""},
		{"cap of 10 by default", facts(12, clusterPolicy, []string{"n11"}), NodeChoice{}, []string{"n11", "n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"}, 2, ""},
		{"a smaller cap", facts(5, clusterPolicy, nil), NodeChoice{Cap: 2}, []string{"n0", "n1"}, 3, ""},
		{"--all-nodes lifts the cap", facts(12, clusterPolicy, nil), NodeChoice{All: true}, []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"}, 0, ""},
		{"Local policy: one node without endpoints shows the drop", facts(5, local, []string{"n3", "n1"}), NodeChoice{}, []string{"n1", "n3", "n0"}, 0, ""},
		{"cordoned nodes left out", facts(4, clusterPolicy, []string{"n3"}, "n0", "n2"), NodeChoice{}, []string{"n3", "n1"}, 0, ""},
		{"a cordoned node with an endpoint stays", facts(3, clusterPolicy, []string{"n1"}, "n1"), NodeChoice{}, []string{"n1", "n0", "n2"}, 0, ""},
		{"--node: exactly those, sorted", facts(4, clusterPolicy, []string{"n0"}), NodeChoice{Named: []string{"n3", "n1"}}, []string{"n1", "n3"}, 0, ""},
		{"--node beats the cap and cordoning", facts(12, clusterPolicy, nil, "n11"), NodeChoice{Named: []string{"n11"}}, []string{"n11"}, 0, ""},
		{"dumped nodes join named ones once", facts(4, clusterPolicy, nil), NodeChoice{Named: []string{"n2"}, Dumped: []string{"n0", "n2"}}, []string{"n0", "n2"}, 0, ""},
		{"unknown node", facts(2, clusterPolicy, nil), NodeChoice{Named: []string{"nope"}}, nil, 0, `node "nope" is not in the cluster`},
		{"every node cordoned", facts(2, clusterPolicy, nil, "n0", "n1"), NodeChoice{}, nil, 0, "the cluster has no nodes to trace through"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickNodes(tc.facts, tc.choice)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, names(got.Nodes)); diff != "" || got.Capped != tc.capped {
				t.Errorf("nodes (-want +got):\n%s\ncapped %d, want %d", diff, got.Capped, tc.capped)
			}
		})
	}
}

func TestParseFrom(t *testing.T) {
	for _, tc := range []struct {
		in, kind, pod, err string
	}{
		{"", "", "", ""},
		{"lb", trace.EntryLoadBalancer, "", ""},
		{"nodeport", trace.EntryNodePort, "", ""},
		{"clusterip", trace.EntryClusterIP, "", ""},
		{"external-ip", trace.EntryExternalIP, "", ""},
		{"pod/shop/web-0", trace.EntryClusterIP, "shop/web-0", ""},
		{"pod/shop", "", "", "is not one of"},
		{"pod/shop/web/0", "", "", "is not one of"},
		{"pod//web", "", "", "is not one of"},
		{"LB", "", "", `--from "LB" is not one of lb, nodeport, clusterip, external-ip, pod/NAMESPACE/NAME`},
	} {
		f, err := ParseFrom(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseFrom(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		pod := ""
		if f.Pod.Name != "" {
			pod = f.Pod.Namespace + "/" + f.Pod.Name
		}
		if err != nil || f.Kind != tc.kind || pod != tc.pod {
			t.Errorf("ParseFrom(%q) = %+v, %v", tc.in, f, err)
		}
		if tc.in != "" && f.String() != tc.in {
			t.Errorf("From(%q).String() = %q", tc.in, f.String())
		}
	}
}

// lbObjects are the API objects behind kube-proxy's TestLoadBalancer
// (v1.37.2), whose real rules are in testdata.
func lbObjects() []runtime.Object {
	return []runtime.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "svc1"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "172.30.0.41", ClusterIPs: []string{"172.30.0.41"},
				Ports:                 []corev1.ServicePort{{Name: "p80", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 3001}},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns1", Name: "svc1-x", Labels: map[string]string{discoveryv1.LabelServiceName: "svc1"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.180.0.1"}, NodeName: ptr.To("node-a"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns1", Name: "web-0"}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("p80"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "node-a"},
			Status: corev1.PodStatus{PodIP: "10.180.0.1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.3"}}}},
	}
}

const (
	iptLB = "../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save"
	nftLB = "../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft"
)

// recorded is one node's collection as a debug pod returned it: the real
// dump script's output on a node of the e2e kind (collectors/debugpod's
// recordings).
func recorded(t *testing.T, node, name string) nodedump.NodeResult {
	t.Helper()
	dir := "../../collectors/nodedump/testdata/recorded/"
	stdout, err := os.ReadFile(dir + name + ".stdout")
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.ReadFile(dir + name + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	return nodedump.NodeResult{Node: node, Result: nodedump.ParseOutput(node, stdout, stderr)}
}

// TestTraceMixesSavedAndLive: one node from a saved dump, the other
// collected live; each node's mode comes from what kube-proxy said or,
// without that, from its rules — once, in one place.
func TestTraceMixesSavedAndLive(t *testing.T) {
	var asked []string
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(),
		Dumps: map[string][]string{"node-a": {nftLB}}, Nodes: []string{"node-b"},
		CollectLive: func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
			asked = nodes
			return []nodedump.NodeResult{recorded(t, "node-b", "iptables-legacy")}
		}}
	p, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"node-b"}, asked); diff != "" {
		t.Errorf("collected live (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, n := range p.Nodes {
		got[n.Name] = n.ProxyMode + "/" + n.RulesetFormat + "/" + n.Error
	}
	want := map[string]string{"node-a": "nftables/nft/", "node-b": "iptables/iptables/"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if cfg.Nodes[0] != "node-b" || len(cfg.Nodes) != 1 {
		t.Errorf("the runner changed its config: %v", cfg.Nodes)
	}
}

// TestTraceFromPod: --from pod/NS/NAME traces the ClusterIP from that pod,
// on its node only, without touching the config's node list.
func TestTraceFromPod(t *testing.T) {
	from, _ := ParseFrom("pod/ns1/web-0")
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), From: from,
		Dumps: map[string][]string{"node-a": {iptLB}, "node-b": {iptLB}}}
	p, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The dumps name both nodes: both are traced, each from the pod.
	for _, n := range p.Nodes {
		for _, ep := range n.Paths {
			if ep.Entry.Kind != trace.EntryClusterIP || ep.Entry.Source.String() != "10.180.0.1" {
				t.Errorf("%s: entry %+v", n.Name, ep.Entry)
			}
		}
	}
	cfg.Dumps = map[string][]string{"node-a": {iptLB}}
	cfg.CollectLive = func(context.Context, *cluster.Facts, []string, string) []nodedump.NodeResult {
		t.Fatal("nothing should be collected live")
		return nil
	}
	if p, err = Trace(context.Background(), cfg); err != nil || len(p.Nodes) != 1 || p.Nodes[0].Name != "node-a" {
		t.Fatalf("from the pod's node only: %v %+v", err, p)
	}

	missing, _ := ParseFrom("pod/ns1/nope")
	cfg.From = missing
	if _, err := Trace(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--from pod/ns1/nope: pod ns1/nope is not in the saved objects") {
		t.Errorf("missing pod: %v", err)
	}
}

// TestTraceNodeErrors: a node whose collection failed, or whose saved dump
// cannot be read, is reported on that node; the others are traced.
func TestTraceNodeErrors(t *testing.T) {
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(),
		Dumps: map[string][]string{"node-a": {"does-not-exist.save"}}, Nodes: []string{"node-b"},
		CollectLive: func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
			return failAll(nodes, errors.New("image pull failed"))
		}}
	p, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		if n.Error == "" || n.ProxyMode != trace.ModeUnknown {
			t.Errorf("%s: error %q mode %q", n.Name, n.Error, n.ProxyMode)
		}
	}
	codes := map[trace.Code]int{}
	for _, f := range p.Findings {
		codes[f.Code]++
	}
	if codes[trace.CodeNodeNotCollected] != 2 {
		t.Errorf("findings %v", codes)
	}
}

// TestTraceNoRulesOnNode: a collection that found no kube-proxy rules says
// so for the node.
func TestTraceNoRulesOnNode(t *testing.T) {
	empty := nodedump.ParseOutput("node-a", []byte(nodedump.Marker+" absent iptables-nft-save\n"+nodedump.Marker+" done\n"), nil)
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: []string{"node-a"},
		CollectLive: func(context.Context, *cluster.Facts, []string, string) []nodedump.NodeResult {
			return []nodedump.NodeResult{{Node: "node-a", Result: empty}}
		}}
	p, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Nodes[0].Error, "no kube-proxy rules were found on node node-a") {
		t.Errorf("error %q", p.Nodes[0].Error)
	}
}

// TestTraceInterrupted: a cancelled context is an interruption, never a
// partial Path.
func TestTraceInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: []string{"node-a"},
		CollectLive: func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
			cancel()
			return failAll(nodes, context.Canceled)
		}}
	if p, err := Trace(ctx, cfg); !errors.Is(err, ErrInterrupted) || p != nil {
		t.Errorf("Trace = %v, %v", p, err)
	}
}

// TestTraceCapNotice: capping the nodes says so once.
func TestTraceCapNotice(t *testing.T) {
	var notices []string
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), NodeCap: 1,
		Notice: func(s string) { notices = append(notices, s) },
		CollectLive: func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
			return failAll(nodes, errors.New("not collected in this test"))
		}}
	if _, err := Trace(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"tracing through 1 of 2 nodes (pass --all-nodes or --node NAME for others)"}, notices); diff != "" {
		t.Errorf("notices (-want +got):\n%s", diff)
	}
}

// TestSavedProxyMode: --dump takes what --save-dumps wrote, NODE.proxyMode
// included: kube-proxy's reported mode, or a warning when the file holds
// anything else.
func TestSavedProxyMode(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "node-a.proxyMode")
	bad := filepath.Join(dir, "node-b.proxyMode")
	if err := os.WriteFile(good, []byte("ipvs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("\x1b]0;pwned\a"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(),
		Dumps: map[string][]string{"node-a": {iptLB, good}, "node-b": {iptLB, bad}}}
	p, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Nodes[0].ProxyMode != trace.ModeIPVS || p.Nodes[1].ProxyMode != trace.ModeIPTables {
		t.Errorf("modes %q, %q", p.Nodes[0].ProxyMode, p.Nodes[1].ProxyMode)
	}
	found := false
	for _, f := range p.Findings {
		if f.Node == "node-b" && f.Code == trace.CodeCollectorWarning && strings.Contains(f.Message, "does not hold kube-proxy's mode") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning for node-b's proxyMode file: %+v", p.Findings)
	}
}

// TestLiveNodeReadsEveryTable: a node in nftables mode whose Docker wrote
// iptables-nft rules (FORWARD policy DROP; recorded in a network namespace,
// where real packets died) is traced with both: the Docker table decides.
// An extra dump that cannot be read leaves kube-proxy's backend alone, with
// a warning.
func TestLiveNodeReadsEveryTable(t *testing.T) {
	dir := "../../testdata/foreign/docker-forward-drop-nftables-mode/"
	read := func(name string) []byte {
		data, err := os.ReadFile(dir + name)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pkt := trace.Packet{Source: netip.MustParseAddr("10.180.0.2"), Destination: netip.MustParseAddr("172.30.0.41"), DestinationPort: 80, Protocol: "tcp"}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	for _, tc := range []struct {
		name     string
		extra    []byte
		backend  string
		warnings int
	}{
		{"docker's table decides", read("iptables-nft.save"), "iptables-nft", 0},
		{"unreadable extra is left out", []byte("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j\n"), "nftables", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &nodedump.Result{Node: "node-a", Backend: nodedump.BackendNFTables, Chosen: []string{nodedump.DumpNFT},
				Dumps: []nodedump.Dump{
					{Name: nodedump.DumpNFT, Family: nodedump.FamilyAll, Data: read("ruleset.nft")},
					{Name: nodedump.DumpIPTablesNFT, Family: nodedump.FamilyIPv4, Data: tc.extra},
				}}
			tn := liveNode(node, nodedump.NodeResult{Node: "node-a", Result: res}, false)
			if tn.Err != nil {
				t.Fatal(tn.Err)
			}
			sim, err := tn.Dataplane.Simulate(pkt, ruleset.Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}})
			if err != nil {
				t.Fatal(err)
			}
			d := sim.Outcomes[0].DecidedBy
			if sim.Verdict != trace.VerdictDrop || d == nil || !d.Policy || d.Backend != tc.backend || len(tn.Warnings) != tc.warnings {
				t.Errorf("verdict %s by %+v, warnings %v; want DROP by %s's FORWARD policy and %d warnings", sim.Verdict, d, tn.Warnings, tc.backend, tc.warnings)
			}
		})
	}
}
