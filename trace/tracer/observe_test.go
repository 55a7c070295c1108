package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// The node recorded by hack/conntrack/gen.sh: real connections through
// kube-proxy-shaped rules, its iptables-save -c and conntrack table taken
// in the same run (kernel-counts holds the kernel's own counts).
const recordedNode = "../conntrack/testdata/recorded"

func recordedDataplane(t *testing.T, table string) *ruleset.Dataplane {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join(recordedNode, "iptables-nft-save-c"))
	if err != nil {
		t.Fatal(err)
	}
	in := []ruleset.Input{{Name: "iptables-nft-save -c", Source: bytesSource(rules)}}
	if table != "" {
		data, err := os.ReadFile(filepath.Join(recordedNode, table))
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, ruleset.Input{Name: table, Source: bytesSource(data), Section: conntrack.SectionProc},
			ruleset.Input{Name: "limits", Source: bytesSource("count 70\nmax 65536\n"), Section: conntrack.SectionLimits})
	}
	dp, err := ruleset.Load(in...)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

// h14Service is one of the recorded node's Services: ClusterIP, one port.
func h14Service(name, ip, port string, proto corev1.Protocol, number, nodePort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "h14", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []corev1.ServicePort{{Name: port, Port: number, Protocol: proto, NodePort: nodePort}}},
	}
}

func h14Slice(svc, port string, proto corev1.Protocol, target int32, ips ...string) []discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "h14", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To(target), Protocol: ptr.To(proto)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	return []discoveryv1.EndpointSlice{s}
}

// observedOf flattens a node's observations: "KIND ADDR ENDPOINT" →
// "connections/ruleHits" ("-" for absent).
func observedOf(n trace.NodePaths) map[string]string {
	out := map[string]string{}
	for _, ep := range n.Paths {
		if ep.Entry.From == FromNode {
			continue // the same address as the pod's entry
		}
		for _, pe := range ep.Endpoints {
			c, h := "-", "-"
			if o := pe.Observed; o != nil {
				if o.Connections != nil {
					c = fmt.Sprint(*o.Connections)
				}
				if o.RuleHits != nil {
					h = fmt.Sprint(*o.RuleHits)
				}
			}
			out[fmt.Sprintf("%s %s:%d %s:%d", ep.Entry.Kind, ep.Entry.Address, ep.Entry.Port, pe.IP, pe.Port)] = c + "/" + h
		}
	}
	return out
}

func findingsWith(p *trace.Path, code trace.Code) []trace.Finding {
	var out []trace.Finding
	for _, f := range p.Findings {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

// The recorded node's h14/echo: connections per endpoint equal the
// kernel's counts (kernel-counts), rule hits the DNAT rules' counters
// (iptables-save -c), for the cluster IP and the node port alike.
func TestObservedRecorded(t *testing.T) {
	in := Input{Service: h14Service("echo", "10.96.14.10", "http", corev1.ProtocolTCP, 80, 30080),
		Slices:  h14Slice("echo", "http", corev1.ProtocolTCP, 8080, "10.14.1.2", "10.14.2.2"),
		Nodes:   []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: recordedDataplane(t, "nf_conntrack")}},
		Observe: true}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		// kernel-counts: 10.96.14.10 80 → 10.14.1.2:8080 2, 10.14.2.2:8080 12;
		// 10.14.100.1 30080 → 5 and 3. The DNAT rules: [7:420] and [15:900].
		"ClusterIP 10.96.14.10:80 10.14.1.2:8080":   "2/7",
		"ClusterIP 10.96.14.10:80 10.14.2.2:8080":   "12/15",
		"NodePort 10.14.100.1:30080 10.14.1.2:8080": "5/7",
		"NodePort 10.14.100.1:30080 10.14.2.2:8080": "3/15",
	}
	if diff := cmp.Diff(want, observedOf(p.Nodes[0])); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	cp := findPath(t, p.Nodes[0], "ClusterIP", "10.96.14.10")
	if cp.Observed == nil || *cp.Observed != (trace.PathObserved{Connections: 14}) {
		t.Errorf("path observed %+v", cp.Observed)
	}
	no := p.Nodes[0].Observed
	if no == nil || !no.RuleCounters || no.ConntrackCount != 70 || no.ConntrackMax != 65536 || no.Entries == 0 || len(no.Tables) != 1 {
		t.Errorf("node observed %+v", no)
	}
	for _, f := range p.Findings {
		if f.Severity != trace.SeverityInfo {
			t.Errorf("finding %+v", f)
		}
	}
	// The same trace without observing: nothing observed.
	in.Observe = false
	in.Nodes[0].Dataplane = recordedDataplane(t, "nf_conntrack")
	if p, err = Build(in); err != nil {
		t.Fatal(err)
	}
	for k, v := range observedOf(p.Nodes[0]) {
		if v != "-/-" {
			t.Errorf("--observe=false: %s observed %s", k, v)
		}
	}
	if p.Nodes[0].Observed != nil {
		t.Errorf("--observe=false: node observed %+v", p.Nodes[0].Observed)
	}
}

// kube-proxy's filter rules accept the packet after its DNAT (KUBE-FORWARD
// for a masquerade-marked one): the rule hits are still the DNAT rule's.
func TestObservedRuleHitsNotTheAccept(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(recordedNode, "iptables-nft-save-c"))
	if err != nil {
		t.Fatal(err)
	}
	rules = append(rules, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"+
		"[99:9900] -A FORWARD -j ACCEPT\n[98:9800] -A OUTPUT -j ACCEPT\nCOMMIT\n"...)
	dp, err := ruleset.Load(ruleset.Input{Name: "rules", Source: bytesSource(rules)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(Input{Service: h14Service("echo", "10.96.14.10", "http", corev1.ProtocolTCP, 80, 30080),
		Slices:  h14Slice("echo", "http", corev1.ProtocolTCP, 8080, "10.14.1.2", "10.14.2.2"),
		Nodes:   []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: dp}},
		Observe: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ClusterIP 10.96.14.10:80 10.14.1.2:8080": "-/7", "ClusterIP 10.96.14.10:80 10.14.2.2:8080": "-/15",
		"NodePort 10.14.100.1:30080 10.14.1.2:8080": "-/7", "NodePort 10.14.100.1:30080 10.14.2.2:8080": "-/15",
	}
	if diff := cmp.Diff(want, observedOf(p.Nodes[0])); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}

// Rule counters without a connection table: rule hits only.
func TestObservedRuleHitsOnly(t *testing.T) {
	in := Input{Service: h14Service("echo", "10.96.14.10", "http", corev1.ProtocolTCP, 80, 0),
		Slices:  h14Slice("echo", "http", corev1.ProtocolTCP, 8080, "10.14.1.2", "10.14.2.2"),
		Nodes:   []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: recordedDataplane(t, "")}},
		Observe: true}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ClusterIP 10.96.14.10:80 10.14.1.2:8080": "-/7", "ClusterIP 10.96.14.10:80 10.14.2.2:8080": "-/15"}
	if diff := cmp.Diff(want, observedOf(p.Nodes[0])); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	if cp := findPath(t, p.Nodes[0], "ClusterIP", "10.96.14.10"); cp.Observed != nil {
		t.Errorf("a path without a connection table has observed %+v", cp.Observed)
	}
}

// The recorded stale UDP entry: h14/dns's only pod moved from 10.14.3.2 to
// 10.14.2.2 while a client kept its socket; the kernel still sends that
// client's datagrams to the old address.
func TestObservedStaleUDP(t *testing.T) {
	in := Input{Service: h14Service("dns", "10.96.14.53", "dns", corev1.ProtocolUDP, 53, 0),
		Slices:  h14Slice("dns", "dns", corev1.ProtocolUDP, 5353, "10.14.2.2"),
		Nodes:   []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: recordedDataplane(t, "nf_conntrack")}},
		Observe: true}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"ClusterIP 10.96.14.53:53 10.14.2.2:5353": "4/4"}, observedOf(p.Nodes[0])); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	cp := findPath(t, p.Nodes[0], "ClusterIP", "10.96.14.53")
	if cp.Observed == nil || *cp.Observed != (trace.PathObserved{Connections: 8, Stale: 4}) {
		t.Errorf("path observed %+v", cp.Observed)
	}
	stale := findingsWith(p, trace.CodeStaleConntrackEntries)
	if len(stale) != 1 {
		t.Fatalf("stale findings %+v", stale)
	}
	f := stale[0]
	for _, want := range []string{"4 conntrack entries", "10.14.3.2:5353", "no longer an endpoint of h14/dns",
		"conntrack -D -f ipv4 -p udp --orig-dst 10.96.14.53 --orig-port-dst 53 --reply-src 10.14.3.2 --reply-port-src 5353"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("finding lacks %q: %s", want, f.Message)
		}
	}
	if f.Severity != trace.SeverityError || f.Node != "node" {
		t.Errorf("finding %+v", f)
	}
}

// conntrackLines makes n default-layout TCP entries from clients to
// frontend, replied by backend.
func conntrackLines(n int, frontend, backend string, state string) string {
	fa, fp, _ := strings.Cut(frontend, ":")
	ba, bp, _ := strings.Cut(backend, ":")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "tcp      6 431999 %s src=10.14.100.%d dst=%s sport=%d dport=%s src=%s dst=10.14.0.1 sport=%s dport=%d [ASSURED] mark=0 use=1\n",
			state, 2+i%200, fa, 40000+i, fp, ba, bp, 40000+i)
	}
	return b.String()
}

func TestObservedSplitAndDropped(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(recordedNode, "iptables-nft-save-c"))
	if err != nil {
		t.Fatal(err)
	}
	// 30 connections, all to 10.14.2.2 where the rules predict 50/50; and
	// 3 to an address the node's rules do not know (no rule: NONE).
	table := conntrackLines(30, "10.96.14.10:80", "10.14.2.2:8080", "ESTABLISHED")
	dp, err := ruleset.Load(ruleset.Input{Name: "rules", Source: bytesSource(rules)}, ruleset.Input{Name: "ct", Source: bytesSource(table)})
	if err != nil {
		t.Fatal(err)
	}
	svc := h14Service("echo", "10.96.14.10", "http", corev1.ProtocolTCP, 80, 0)
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	p, err := Build(Input{Service: svc, Slices: h14Slice("echo", "http", corev1.ProtocolTCP, 8080, "10.14.1.2", "10.14.2.2"),
		Nodes: []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: dp}}, Observe: true, ShowClients: true})
	if err != nil {
		t.Fatal(err)
	}
	split := findingsWith(p, trace.CodeObservedSplitDiffers)
	if len(split) != 1 || split[0].Severity != trace.SeverityInfo || !strings.Contains(split[0].Message, "10.14.2.2:8080 100%") || !strings.Contains(split[0].Message, "sessionAffinity") {
		t.Errorf("split findings %+v", split)
	}
	cp := findPath(t, p.Nodes[0], "ClusterIP", "10.96.14.10")
	var b *trace.Observed
	for _, pe := range cp.Endpoints {
		if pe.IP.String() == "10.14.2.2" {
			b = pe.Observed
		}
	}
	if b == nil || len(b.Clients) != 30 || b.States["ESTABLISHED"] != 30 {
		t.Errorf("--show-clients: %+v", b)
	}

	// A Service whose rules reject (no endpoints), with connections on the
	// node all the same.
	dump := `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.14.99/32 -p tcp -m comment --comment "h14/gone:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
`
	dp, err = ruleset.Load(ruleset.Input{Name: "rules", Source: bytesSource(dump)},
		ruleset.Input{Name: "ct", Source: bytesSource(conntrackLines(3, "10.96.14.99:80", "10.14.1.2:8080", "ESTABLISHED"))})
	if err != nil {
		t.Fatal(err)
	}
	p, err = Build(Input{Service: h14Service("gone", "10.96.14.99", "http", corev1.ProtocolTCP, 80, 0),
		Nodes: []Node{{Node: node("node", "10.14.100.1", "10.14.0.0/24"), Dataplane: dp}}, Observe: true})
	if err != nil {
		t.Fatal(err)
	}
	dropped := findingsWith(p, trace.CodeTrafficWhereRulesDrop)
	if len(dropped) != 1 || !strings.Contains(dropped[0].Message, "3 connections to ClusterIP 10.96.14.99:80/tcp, which its rules reject") {
		t.Errorf("dropped findings %+v", dropped)
	}
	// 10.14.1.2 is no endpoint of a Service without endpoints: stale,
	// open TCP connections.
	if stale := findingsWith(p, trace.CodeStaleConntrackEntries); len(stale) != 1 || stale[0].Severity != trace.SeverityWarning || !strings.Contains(stale[0].Message, "3 still open") {
		t.Errorf("stale findings %+v", stale)
	}
}
