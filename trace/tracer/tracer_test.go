package tracer

import (
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// The API objects of kube-proxy's TestLoadBalancer (v1.37.2), whose rules
// are in testdata as real iptables-save and nft list ruleset output.
func lbService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "svc1"},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			ClusterIP:                "172.30.0.41",
			ClusterIPs:               []string{"172.30.0.41"},
			Ports:                    []corev1.ServicePort{{Name: "p80", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 3001}},
			LoadBalancerSourceRanges: []string{"192.168.0.0/24", " 203.0.113.0/25"},
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyCluster,
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}, {IP: "5.6.7.8"}}}},
	}
}

func slice(ips ...string) []discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns1", Name: "svc1-abc"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("p80"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for i, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To("node-a"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns1", Name: "web-" + string(rune('a'+i))},
		})
	}
	return []discoveryv1.EndpointSlice{s}
}

func node(name, ip, podCIDR string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}},
	}
}

// osSource adapts an *os.File to ruleset.Source (collectors/file does this
// in the command; trace must not import collectors).
type osSource struct{ f *os.File }

func (s osSource) Head() ([]byte, error) {
	b := make([]byte, 64<<10)
	n, err := s.f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return b[:n], nil
}
func (s osSource) Reader() io.Reader { return io.NewSectionReader(s.f, 0, 1<<40) }
func (s osSource) ReaderAt() (io.ReaderAt, int64, bool) {
	info, err := s.f.Stat()
	if err != nil {
		return nil, 0, false
	}
	return s.f, info.Size(), true
}

// load builds one node's dataplane from saved dumps.
func load(t *testing.T, paths ...string) *ruleset.Dataplane {
	t.Helper()
	var in []ruleset.Input
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		in = append(in, ruleset.Input{Name: path, Source: osSource{f}})
	}
	dp, err := ruleset.Load(in...)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

// loadText builds a dataplane from a dump held in a string.
func loadText(t *testing.T, dump string) *ruleset.Dataplane {
	t.Helper()
	dp, err := ruleset.Load(ruleset.Input{Source: bytesSource(dump)})
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

const (
	iptablesLB = "../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save"
	nftLB      = "../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft"
)

func findPath(t *testing.T, n trace.NodePaths, kind, addr string) trace.EntryPath {
	t.Helper()
	for _, p := range n.Paths {
		if p.Entry.Kind == kind && p.Entry.Address.String() == addr {
			return p
		}
	}
	t.Fatalf("node %s has no %s %s path; paths: %+v", n.Name, kind, addr, n.Paths)
	return trace.EntryPath{}
}

func endpointsOf(p trace.EntryPath) []string {
	var out []string
	for _, e := range p.Endpoints {
		out = append(out, netip.AddrPortFrom(e.IP, e.Port).String())
	}
	return out
}

// TestBuildAgainstRealRules: every entry of kube-proxy's TestLoadBalancer
// Service, through the real iptables and nftables rules, agrees with
// kube-proxy's own packet-flow expectations, and the endpoints carry the
// API's pod.
func TestBuildAgainstRealRules(t *testing.T) {
	for _, dump := range []string{iptablesLB, nftLB} {
		t.Run(dump, func(t *testing.T) {
			// A client inside the source ranges, as in kube-proxy's flows
			// (the default client is outside them).
			in := Input{Service: lbService(), Slices: slice("10.180.0.1"), Client: netip.MustParseAddr("203.0.113.10"),
				Nodes: []Node{{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, dump), ProxyMode: "iptables"}}}
			p, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if p.SchemaVersion != trace.PathSchemaVersion || p.Service.Type != "LoadBalancer" || len(p.Nodes) != 1 {
				t.Fatalf("path head: %+v", p)
			}
			n := p.Nodes[0]
			// kind, address, verdict, masquerade (kube-proxy's flows for the
			// same sources: 203.0.113.10 is inside 203.0.113.0/25).
			for _, want := range []struct {
				kind, addr string
				verdict    trace.Verdict
				masq       bool
			}{
				{"LoadBalancer", "1.2.3.4", trace.VerdictDNAT, true},
				{"LoadBalancer", "5.6.7.8", trace.VerdictDNAT, true},
				{"NodePort", "192.168.0.2", trace.VerdictDNAT, true},
				{"ClusterIP", "172.30.0.41", trace.VerdictDNAT, false},
			} {
				got := findPath(t, n, want.kind, want.addr)
				if got.Verdict != want.verdict || got.Masquerade != want.masq {
					t.Errorf("%s %s: %s masq=%v, want %s masq=%v", want.kind, want.addr, got.Verdict, got.Masquerade, want.verdict, want.masq)
				}
				if eps := endpointsOf(got); !slices.Equal(eps, []string{"10.180.0.1:80"}) {
					t.Errorf("%s: endpoints %v", want.kind, eps)
				}
				e := got.Endpoints[0]
				if !e.InRules || !e.InAPI || e.Pod == nil || e.Pod.Name != "web-a" || !e.SameNode || e.Probability != 1 {
					t.Errorf("%s: endpoint %+v", want.kind, e)
				}
				if len(got.Chains) == 0 || len(got.Rules) == 0 {
					t.Errorf("%s: no chains", want.kind)
				}
			}
			if cp := findPath(t, n, "ClusterIP", "172.30.0.41"); cp.Entry.Source.String() != "10.0.0.2" || cp.Entry.From != FromPod {
				t.Errorf("ClusterIP entry source %s (%s)", cp.Entry.Source, cp.Entry.From)
			}
			// From the node itself kube-proxy masquerades (the source is
			// outside the cluster CIDR): kube-proxy's "node to cluster IP".
			var fromNode *trace.EntryPath
			for i, ep := range n.Paths {
				if ep.Entry.Kind == "ClusterIP" && ep.Entry.From == FromNode {
					fromNode = &n.Paths[i]
				}
			}
			if fromNode == nil || fromNode.Entry.Source.String() != "192.168.0.2" || fromNode.Verdict != trace.VerdictDNAT || !fromNode.Masquerade {
				t.Errorf("ClusterIP from the node: %+v", fromNode)
			}
			for _, f := range p.Findings {
				if f.Severity != "info" {
					t.Errorf("a healthy Service has findings: %+v", p.Findings)
				}
			}

			// A client outside the source ranges is dropped at the LB IPs, not
			// at the node port.
			in.Client = netip.MustParseAddr("203.0.113.130")
			p, _ = Build(in)
			lb := findPath(t, p.Nodes[0], "LoadBalancer", "1.2.3.4")
			if lb.Verdict != trace.VerdictDrop || !strings.Contains(lb.Why, "outside loadBalancerSourceRanges") || lb.DecidedBy == nil {
				t.Errorf("blocked client: %s why=%q by=%v", lb.Verdict, lb.Why, lb.DecidedBy)
			}
			if np := findPath(t, p.Nodes[0], "NodePort", "192.168.0.2"); np.Verdict != trace.VerdictDNAT {
				t.Errorf("node port must bypass source ranges, got %s", np.Verdict)
			}
		})
	}
}

// TestDrift: the API lists an endpoint the rules lack, and the rules DNAT to
// one the API no longer has.
func TestDrift(t *testing.T) {
	in := Input{Service: lbService(), Slices: slice("10.180.0.9"),
		Nodes: []Node{{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, iptablesLB)}}}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	cp := findPath(t, p.Nodes[0], "ClusterIP", "172.30.0.41")
	var stale, missing bool
	for _, e := range cp.Endpoints {
		switch netip.AddrPortFrom(e.IP, e.Port).String() {
		case "10.180.0.1:80":
			stale = e.InRules && !e.InAPI
		case "10.180.0.9:80":
			missing = !e.InRules && e.InAPI && e.Pod != nil
		}
	}
	if !stale || !missing {
		t.Errorf("endpoints %+v", cp.Endpoints)
	}
	codes := map[string]int{}
	for _, f := range p.Findings {
		codes[string(f.Code)]++
		if f.Severity == "info" {
			continue
		}
		if f.Node != "node-a" || !strings.Contains(f.Message, "node-a") {
			t.Errorf("finding does not name the node: %+v", f)
		}
	}
	if codes["StaleEndpointInRules"] == 0 || codes["EndpointMissingFromRules"] == 0 {
		t.Errorf("findings %v", codes)
	}
}

// TestNodesDisagreeAndErrors: a node whose rules are for another Service
// state disagrees with its peer; a node that could not be read says why.
func TestNodesDisagreeAndErrors(t *testing.T) {
	other := "../../testdata/iptables/kube-proxy/v1.37.2/TestNoEndpointsReject/iptables-nft.save"
	in := Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{
		{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, iptablesLB)},
		{Node: node("node-b", "192.168.0.2", "10.0.1.0/24"), Dataplane: load(t, other)},
		{Node: node("node-c", "192.168.0.4", "10.0.2.0/24"), Err: os.ErrDeadlineExceeded},
	}}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	var disagree, notCollected bool
	for _, f := range p.Findings {
		disagree = disagree || f.Code == "NodesDisagree" && strings.Contains(f.Message, "node-a") && strings.Contains(f.Message, "node-b")
		notCollected = notCollected || f.Code == "NodeNotCollected" && f.Node == "node-c"
	}
	if !disagree || !notCollected {
		t.Errorf("findings %+v", p.Findings)
	}
	if p.Nodes[2].Error == "" || len(p.Nodes[2].Paths) != 0 {
		t.Errorf("node-c: %+v", p.Nodes[2])
	}
}

func TestExternalNameAndHeadless(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	p, err := Build(Input{Service: svc})
	if err != nil || len(p.Findings) != 1 || p.Findings[0].Code != "ExternalName" || !strings.Contains(p.Findings[0].Message, "db.example.com") {
		t.Errorf("ExternalName: %+v %v", p, err)
	}
	svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "h"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}}}
	p, _ = Build(Input{Service: svc, Nodes: []Node{{Node: node("n", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, iptablesLB)}}})
	if !p.Service.Headless || len(p.Nodes[0].Paths) != 0 {
		t.Errorf("headless: %+v", p)
	}
}

func findingCodes(p *trace.Path) map[string]int {
	codes := map[string]int{}
	for _, f := range p.Findings {
		codes[string(f.Code)]++
	}
	return codes
}

// TestSecurityFindings: each finding fires where it should and not on a
// Service that does things right.
func TestSecurityFindings(t *testing.T) {
	nodeA := node("node-a", "192.168.0.2", "10.0.0.0/24")
	rules := load(t, iptablesLB)

	// kube-proxy's TestLoadBalancer Service: ranges set and enforced.
	p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{Node: nodeA, Dataplane: rules}}})
	codes := findingCodes(p)
	if codes["LoadBalancerOpen"]+codes["SourceRangesNotEnforced"]+codes["PodHostNetwork"] != 0 || codes["ClientIPHidden"] != 1 || codes["NodePortOnLocalhost"] != 1 {
		t.Errorf("healthy LB: %v", codes)
	}

	// The same rules but the API says the ranges exclude our client, and a
	// Service without ranges: open, and unenforced where rules let it in.
	open := lbService()
	open.Spec.LoadBalancerSourceRanges = nil
	p, _ = Build(Input{Service: open, Slices: slice("10.180.0.1"), Nodes: []Node{{Node: nodeA, Dataplane: rules}}})
	if findingCodes(p)["LoadBalancerOpen"] != 1 {
		t.Errorf("no source ranges: %v", findingCodes(p))
	}
	local := "../../testdata/iptables/kube-proxy/v1.37.2/TestExternalTrafficPolicyLocal/iptables-nft.save"
	narrow := lbService()
	narrow.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"}
	narrow.Status.LoadBalancer.Ingress = narrow.Status.LoadBalancer.Ingress[:1]
	p, _ = Build(Input{Service: narrow, Slices: slice("10.180.0.1", "10.180.2.1"), Nodes: []Node{{Node: nodeA, Dataplane: load(t, local)}}})
	if findingCodes(p)["SourceRangesNotEnforced"] != 1 {
		t.Errorf("rules without a firewall chain for a Service with ranges: %v", findingCodes(p))
	}

	// Pods that run with too much.
	pods := map[string]*corev1.Pod{
		"ns1/web-a": {Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c",
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}}}}},
		"ns1/web-b": {Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}},
	}
	p, _ = Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Pods: pods, Nodes: []Node{{Node: nodeA, Dataplane: rules}}})
	codes = findingCodes(p)
	if codes["PodHostNetwork"] != 1 || codes["PodCapabilities"] != 1 || codes["PodPrivileged"] != 1 {
		t.Errorf("risky pods: %v", codes)
	}
}

type bytesSource []byte

func (b bytesSource) Head() ([]byte, error) { return b, nil }
func (b bytesSource) Reader() io.Reader     { return strings.NewReader(string(b)) }
func (b bytesSource) ReaderAt() (io.ReaderAt, int64, bool) {
	return strings.NewReader(string(b)), int64(len(b)), true
}

// TestDriftByChainsModesAndBalance: a node without the Service's chain, a
// node whose weights are off, nodes in different modes.
func TestDriftByChainsModesAndBalance(t *testing.T) {
	nodeA := node("node-a", "192.168.0.2", "10.0.0.0/24")
	nodeB := node("node-b", "192.168.0.3", "10.0.1.0/24")
	healthy := load(t, iptablesLB)
	noChain := load(t, "../../testdata/iptables/kube-proxy/v1.37.2/TestNoEndpointsReject/iptables-nft.save")
	p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{
		{Node: nodeA, Dataplane: healthy, ProxyMode: "iptables"},
		{Node: nodeB, Dataplane: noChain, ProxyMode: "nftables"},
	}})
	var missing, modes int
	for _, f := range p.Findings {
		if f.Code == "ServiceChainMissing" {
			missing++
			if f.Node != "node-b" || !strings.Contains(f.Message, "KUBE-SVC-XPGD46QRK7WJZT7O") {
				t.Errorf("wrong node or chain: %+v", f)
			}
		}
		if f.Code == "ProxyModesDiffer" {
			modes++
		}
	}
	if missing != 1 || modes != 1 {
		t.Errorf("findings %v", findingCodes(p))
	}

	// Weights written for three endpoints on a two-endpoint Service.
	uneven := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
-A KUBE-SVC-XPGD46QRK7WJZT7O -j KUBE-SEP-B
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 10.180.0.2:80
COMMIT
`
	rs := loadText(t, uneven)
	svc := lbService()
	svc.Spec.Type, svc.Status.LoadBalancer.Ingress, svc.Spec.LoadBalancerSourceRanges = corev1.ServiceTypeClusterIP, nil, nil
	svc.Spec.Ports[0].NodePort = 0
	p, _ = Build(Input{Service: svc, Slices: slice("10.180.0.1", "10.180.0.2"), Nodes: []Node{{Node: nodeA, Dataplane: rs}}})
	if c := findingCodes(p); c["UnevenProbabilities"] != 1 || c["ServiceChainMissing"] != 0 {
		t.Errorf("uneven weights: %v", c)
	}
	// And the even kube-proxy rules do not trigger it.
	p, _ = Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{Node: nodeA, Dataplane: healthy}}})
	if c := findingCodes(p); c["UnevenProbabilities"]+c["ServiceChainMissing"]+c["ProxyModesDiffer"] != 0 {
		t.Errorf("healthy: %v", c)
	}
}

// TestTopologyHints: with same-zone hints kube-proxy programs only the
// zone's endpoints; the trace must not call the others missing — and must
// when the hints are absent.
func TestTopologyHints(t *testing.T) {
	one := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-A - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -j KUBE-SEP-A
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80
COMMIT
`
	rs := loadText(t, one)
	svc := lbService()
	svc.Spec.Type, svc.Status.LoadBalancer.Ingress, svc.Spec.LoadBalancerSourceRanges = corev1.ServiceTypeClusterIP, nil, nil
	svc.Spec.Ports[0].NodePort = 0
	n := node("node-a", "192.168.0.2", "10.0.0.0/24")
	n.Labels = map[string]string{corev1.LabelTopologyZone: "zone-a"}
	for _, hinted := range []bool{true, false} {
		slices := slice("10.180.0.1", "10.180.0.2")
		if hinted {
			slices[0].Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}}
			slices[0].Endpoints[1].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-b"}}}
		}
		p, _ := Build(Input{Service: svc, Slices: slices, Nodes: []Node{{Node: n, Dataplane: rs}}})
		if got := findingCodes(p)["EndpointMissingFromRules"]; (got == 0) != hinted {
			t.Errorf("hinted=%v: findings %v", hinted, findingCodes(p))
		}
	}
}

func TestCollectorWarningsBecomeFindings(t *testing.T) {
	p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{
		Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, "../../testdata/iptables/variants/legacy-warning.save"),
		Warnings: []trace.Warning{{Code: trace.CodeRulesInSeveralBackends, Message: "kube-proxy rules exist in more than one backend (iptables-nft, iptables-legacy); iptables-nft is used"}},
	}}})
	c := findingCodes(p)
	if c["RulesInSeveralBackends"] != 1 || c["LegacyTablesPresent"] != 1 {
		t.Errorf("findings %v", c)
	}
}

func TestNetworkPolicyFindings(t *testing.T) {
	pods := map[string]*corev1.Pod{
		"ns1/web-a": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-a", Labels: map[string]string{"app": "web"}}},
		"ns1/web-b": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-b", Labels: map[string]string{"app": "other"}}},
	}
	web := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	egressOnly := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "egress"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}
	base := Input{Service: lbService(), Slices: slice("10.180.0.1"), Pods: pods,
		Nodes: []Node{{Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, iptablesLB)}}}
	for _, tc := range []struct {
		inUse    bool
		policies []networkingv1.NetworkPolicy
		want     string // pods named in the finding, "" for none
	}{
		{false, nil, ""},
		{true, nil, "ns1/web-a, ns1/web-b"},
		{true, []networkingv1.NetworkPolicy{web, egressOnly}, "ns1/web-b"},
	} {
		in := base
		in.NetworkPolicies, in.NetworkPoliciesInUse = tc.policies, tc.inUse
		p, _ := Build(in)
		var got string
		for _, f := range p.Findings {
			if f.Code == "PodsWithoutNetworkPolicy" {
				got = f.Message
			}
		}
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want+" behind") {
			t.Errorf("inUse=%v policies=%d: %q, want pods %q", tc.inUse, len(tc.policies), got, tc.want)
		}
	}
}

// TestChainCheckPerFamily: a node's ip6tables dump rightly lacks an IPv4
// Service's chains (found by the e2e suite through real debug pods).
func TestChainCheckPerFamily(t *testing.T) {
	const v6dump = "../../testdata/iptables/kube-proxy/v1.37.2/TestNodePorts_ipv6__localhost-nodeports_enabled/iptables-nft.save"
	v6 := load(t, v6dump)
	p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{
		Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, iptablesLB, v6dump),
	}}})
	if c := findingCodes(p); c["ServiceChainMissing"] != 0 {
		t.Errorf("IPv4 Service with an extra IPv6 dump: %v", c)
	}
	// Only the IPv6 dump: the IPv4 chain cannot be checked, nothing is claimed.
	p, _ = Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{
		Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: v6,
	}}})
	if c := findingCodes(p); c["ServiceChainMissing"] != 0 {
		t.Errorf("IPv4 Service with only an IPv6 dump: %v", c)
	}
}

// TestExternalAndFirewallChains: kube-proxy's TestNodePorts rules were
// written for a NodePort Service; traced as a LoadBalancer with source
// ranges, the firewall chain is missing (and only that), in both modes.
func TestExternalAndFirewallChains(t *testing.T) {
	for _, dump := range []string{
		"../../testdata/iptables/kube-proxy/v1.37.2/TestNodePorts_ipv4__localhost-nodeports_enabled/iptables-nft.save",
		"../../testdata/nftables/kube-proxy/v1.37.2/TestNodePorts_ipv4/ruleset.nft",
	} {
		p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{
			Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: load(t, dump),
		}}})
		c := findingCodes(p)
		if c["FirewallChainMissing"] != 1 || c["ExternalChainMissing"] != 0 || c["ServiceChainMissing"] != 0 {
			t.Errorf("%s: %v", dump, c)
		}
	}
	// kube-proxy 1.22 always used KUBE-FW/KUBE-XLB: no KUBE-EXT is expected.
	old := load(t, "../../testdata/iptables/kube-proxy/v1.22.17/TestKPFixtures122/iptables-nft.save")
	p, _ := Build(Input{Service: lbService(), Slices: slice("10.180.0.1"), Nodes: []Node{{
		Node: node("node-a", "192.168.0.2", "10.0.0.0/24"), Dataplane: old,
	}}})
	if c := findingCodes(p); c["ExternalChainMissing"]+c["FirewallChainMissing"] != 0 {
		t.Errorf("1.22 layout: %v", c)
	}
}
