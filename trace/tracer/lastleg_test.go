package tracer

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// The network plugin layouts of trace/routes/testdata, recorded in network
// namespaces built here (NAME.txt: the debug pod's route script output;
// NAME.iptables: the plugin's own chains), with the rules kube-proxy writes
// on that node for shop/web (testdata/lastleg, from dumpgen).
const layoutDir = "../routes/testdata/"

// layoutSections cuts a recorded route script output into its sections.
func layoutSections(t *testing.T, name string) []routes.Section {
	t.Helper()
	out, err := os.ReadFile(filepath.Join(layoutDir, name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "@@trace-svc@@"
	var secs []routes.Section
	for len(out) > 0 {
		line, rest, _ := bytes.Cut(out, []byte("\n"))
		out = rest
		sec, ok := bytes.CutPrefix(line, []byte(marker+" begin "))
		if !ok {
			continue
		}
		end := []byte("\n" + marker + " end " + string(sec) + " rc=")
		i := bytes.Index(out, end)
		if i < 0 {
			t.Fatalf("%s: section %s has no end", name, sec)
		}
		secs = append(secs, routes.Section{Name: string(sec), Data: out[:i]})
		_, out, _ = bytes.Cut(out[i+len(end):], []byte("\n"))
	}
	return secs
}

// layoutDataplane is a node's dataplane as the runner builds it from a live
// collection: the rule dumps, then every route section under its name.
func layoutDataplane(t *testing.T, name string, kubeProxy bool) *ruleset.Dataplane {
	t.Helper()
	var in []ruleset.Input
	files := []string{layoutDir + name + ".iptables"}
	if kubeProxy {
		files = append([]string{"testdata/lastleg/" + name + ".kube-proxy.iptables"}, files...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, ruleset.Input{Name: f, Source: bytesSource(data)})
	}
	for _, s := range layoutSections(t, name) {
		in = append(in, ruleset.Input{Name: s.Name, Source: bytesSource(s.Data), Section: s.Name})
	}
	dp, err := ruleset.Load(in...)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

type layoutNode struct {
	name, ip string
	podCIDRs []string
	notes    map[string]string
}

type layoutEndpoint struct {
	ip, node string
	// want is the tree line of the route from the node itself
	// (ClusterIP from this node).
	want string
}

// lastLegLayouts: each layout's node (first), the cluster's other nodes,
// and shop/web's endpoints — the Service of testdata/lastleg (dumpgen's
// lastleg_test.go writes its rules).
var lastLegLayouts = []struct {
	name    string
	nodes   []layoutNode
	eps     []layoutEndpoint
	plugins []string
}{
	{"flannel",
		[]layoutNode{{"flannel-a", "10.0.0.11", []string{"10.244.0.0/24"}, nil}, {"flannel-b", "10.0.0.12", []string{"10.244.1.0/24"}, nil}, {"flannel-c", "10.0.0.13", []string{"10.244.2.0/24"}, nil}},
		[]layoutEndpoint{
			{"10.244.0.2", "flannel-a", "local bridge cni0"},
			{"10.244.1.5", "flannel-b", "flannel.1 VXLAN tunnel → flannel-b"},
			{"10.244.2.7", "flannel-c", "flannel.1 VXLAN tunnel → flannel-c"},
		},
		[]string{"flannel (VXLAN)"}},
	// Calico's IPAM blocks are not the nodes' pod CIDRs: a node is known
	// by its address, or by the VXLAN tunnel address Calico annotates it
	// with.
	{"calico",
		[]layoutNode{{"calico-a", "172.17.0.7", nil, nil}, {"calico-b", "172.17.0.6", nil, nil}, {"calico-c", "172.17.0.5", nil, nil},
			{"calico-d", "10.1.0.9", nil, map[string]string{"projectcalico.org/IPv4VXLANTunnelAddr": "10.65.3.0"}}},
		[]layoutEndpoint{
			{"10.65.0.2", "calico-a", "local veth cali29f56ea1ab2"},
			{"10.65.1.3", "calico-b", "via eth0 → calico-b 172.17.0.6"},
			{"10.65.3.4", "calico-d", "vxlan.calico VXLAN tunnel → calico-d"},
		},
		[]string{"Calico (VXLAN)"}},
	// Cilium without its kube-proxy replacement: kube-proxy's rules
	// decide, Cilium's eBPF forwards what the kernel hands cilium_host.
	{"cilium",
		[]layoutNode{{"cilium-a", "192.168.1.15", []string{"10.0.0.0/24"}, nil}, {"cilium-b", "192.168.1.16", []string{"10.0.1.0/24"}, nil}},
		[]layoutEndpoint{
			{"10.0.0.20", "cilium-a", "cilium_host (forwarded by eBPF) → cilium-a"},
			{"10.0.1.5", "cilium-b", "cilium_host (forwarded by eBPF) → cilium-b"},
		},
		[]string{"Cilium (VXLAN)"}},
	{"kindnet",
		[]layoutNode{{"kind-worker", "172.18.0.3", []string{"10.244.1.0/24"}, nil}, {"kind-control-plane", "172.18.0.2", []string{"10.244.0.0/24"}, nil}, {"kind-worker2", "172.18.0.4", []string{"10.244.2.0/24"}, nil}},
		[]layoutEndpoint{
			{"10.244.1.2", "kind-worker", "local veth vethb2bab332"},
			{"10.244.0.5", "kind-control-plane", "via eth0 → kind-control-plane 172.18.0.2"},
			{"10.244.2.7", "kind-worker2", "via eth0 → kind-worker2 172.18.0.4"},
		},
		[]string{"kindnet (native routing)"}},
	// AWS VPC CNI: pods have VPC addresses and nodes no pod CIDR, so a
	// pod on another node in the node's subnet is reached on-link, its
	// node unknown to the route.
	{"aws-vpc-cni",
		[]layoutNode{{"ip-192-168-70-10", "192.168.70.10", nil, nil}, {"ip-192-168-90-5", "192.168.90.5", nil, nil}},
		[]layoutEndpoint{
			{"192.168.70.181", "ip-192-168-70-10", "local veth eni0f3a9c1b2d2"},
			{"192.168.71.12", "ip-192-168-70-10", "local veth eni0f3a9c1b2d3"},
			{"192.168.90.7", "ip-192-168-90-5", "on-link eth0"},
		},
		[]string{"AWS VPC CNI (native VPC routing)"}},
}

func (l layoutNode) object() *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: l.name, Annotations: l.notes},
		Spec:   corev1.NodeSpec{PodCIDRs: l.podCIDRs},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: l.ip}, {Type: corev1.NodeHostName, Address: l.name}}}}
	if len(l.podCIDRs) > 0 {
		n.Spec.PodCIDR = l.podCIDRs[0]
	}
	return n
}

// shopWeb is the Service of testdata/lastleg with the given endpoints.
func shopWeb(eps []layoutEndpoint) (*corev1.Service, []discoveryv1.EndpointSlice) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}}},
	}
	sl := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for i, e := range eps {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(e.node),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: fmt.Sprintf("web-%d", i)},
		})
	}
	return svc, []discoveryv1.EndpointSlice{sl}
}

// TestLastLegLayouts sends shop/web's traffic through five network
// plugins' real layouts, the whole way: the node's dataplane (kube-proxy's
// rules, the plugin's chains, the route sections) → the tracer → the Path.
// Every endpoint of every path gets the route the kernel would take, the
// plugin is named in the node, and a healthy layout gives no route finding.
func TestLastLegLayouts(t *testing.T) {
	for _, l := range lastLegLayouts {
		t.Run(l.name, func(t *testing.T) {
			svc, slices_ := shopWeb(l.eps)
			var all []*corev1.Node
			for _, n := range l.nodes {
				all = append(all, n.object())
			}
			self := Node{Node: all[0], Dataplane: layoutDataplane(t, l.name, true)}
			p, err := Build(Input{Service: svc, Slices: slices_, Nodes: []Node{self}, AllNodes: all})
			if err != nil {
				t.Fatal(err)
			}
			np := p.Nodes[0]
			if np.Error != "" || np.RoutesFrom != "ip" {
				t.Fatalf("node %+v", np)
			}
			var plugins []string
			for _, pl := range np.NetworkPlugins {
				plugins = append(plugins, pl.Name+" ("+pl.Mode+")")
			}
			if diff := cmp.Diff(l.plugins, plugins); diff != "" {
				t.Errorf("network plugins (-want +got):\n%s", diff)
			}
			for _, f := range p.Findings {
				if strings.HasPrefix(string(f.Code), "Route") || f.Severity != trace.SeverityInfo {
					t.Errorf("finding on a healthy layout: %+v", f)
				}
			}
			want := map[netip.Addr]string{}
			for _, e := range l.eps {
				want[netip.MustParseAddr(e.ip)] = e.want
			}
			n := 0
			for _, ep := range np.Paths {
				if ep.Verdict != trace.VerdictDNAT || len(ep.Endpoints) != len(l.eps) {
					t.Errorf("%s %s from %s: %s to %d endpoints", ep.Entry.Kind, ep.Entry.Address, ep.Entry.From, ep.Verdict, len(ep.Endpoints))
				}
				for _, pe := range ep.Endpoints {
					if pe.Route == nil {
						t.Errorf("%s from %s: endpoint %s has no route", ep.Entry.Kind, ep.Entry.From, pe.IP)
						continue
					}
					n++
					if ep.Entry.From == FromNode && pe.Route.Line() != want[pe.IP] {
						t.Errorf("from the node, endpoint %s: route %q, want %q (%+v)", pe.IP, pe.Route.Line(), want[pe.IP], pe.Route)
					}
					if ep.Entry.From != FromNode && (pe.Route.IIF == "" || !pe.Route.Src.IsValid()) {
						t.Errorf("%s from %s %s: endpoint %s looked up without the incoming interface: %+v", ep.Entry.Kind, ep.Entry.From, ep.Entry.Source, pe.IP, pe.Route)
					}
				}
			}
			if n < 2*len(l.eps) {
				t.Errorf("only %d endpoint routes", n)
			}
		})
	}
}

// TestKubeProxyReplaced: a Cilium node without kube-proxy's rules (its
// kube-proxy replacement) is traced as such: one finding that says what to
// use instead, no path per entry, and the collector's "no kube-proxy rules"
// warning left out.
func TestKubeProxyReplaced(t *testing.T) {
	l := lastLegLayouts[slices.IndexFunc(lastLegLayouts, func(x struct {
		name    string
		nodes   []layoutNode
		eps     []layoutEndpoint
		plugins []string
	}) bool {
		return x.name == "cilium"
	})]
	svc, sl := shopWeb(l.eps)
	self := Node{Node: l.nodes[0].object(), Dataplane: layoutDataplane(t, "cilium", false),
		Warnings: []trace.Warning{{Code: trace.CodeKubeProxyRulesMissing, Message: "no kube-proxy rules found"}}}
	p, err := Build(Input{Service: svc, Slices: sl, Nodes: []Node{self}})
	if err != nil {
		t.Fatal(err)
	}
	np := p.Nodes[0]
	if np.Error != "" || len(np.Paths) != 0 || np.ServiceDataplane == nil || !np.ServiceDataplane.ReplacesKubeProxy {
		t.Fatalf("node %+v", np)
	}
	var codes []trace.Code
	for _, f := range p.Findings {
		if f.Node == np.Name {
			codes = append(codes, f.Code)
		}
	}
	if diff := cmp.Diff([]trace.Code{trace.CodeKubeProxyReplaced}, codes); diff != "" {
		t.Errorf("node findings (-want +got):\n%s", diff)
	}
	for _, f := range p.Findings {
		if f.Code == trace.CodeKubeProxyReplaced && !strings.Contains(f.Message, "cilium-dbg service list") {
			t.Errorf("finding does not say what to use: %s", f.Message)
		}
	}

	// With kube-proxy's rules, Cilium runs beside them: traced, and said.
	self.Dataplane = layoutDataplane(t, "cilium", true)
	p, err = Build(Input{Service: svc, Slices: sl, Nodes: []Node{self}})
	if err != nil {
		t.Fatal(err)
	}
	if np := p.Nodes[0]; len(np.Paths) == 0 || np.ServiceDataplane == nil || np.ServiceDataplane.ReplacesKubeProxy {
		t.Errorf("node %+v", np)
	}
	if !slices.ContainsFunc(p.Findings, func(f trace.Finding) bool { return f.Code == trace.CodeServiceDataplaneBeside }) {
		t.Errorf("findings %+v", p.Findings)
	}
}

// TestRoutesOnlyNode: a node that gave its routes but no rules at all, and
// no sign of an eBPF dataplane, cannot be traced.
func TestRoutesOnlyNode(t *testing.T) {
	var in []ruleset.Input
	for _, s := range layoutSections(t, "flannel") {
		in = append(in, ruleset.Input{Name: s.Name, Source: bytesSource(s.Data), Section: s.Name})
	}
	dp, err := ruleset.Load(in...)
	if err != nil {
		t.Fatal(err)
	}
	svc, sl := shopWeb(lastLegLayouts[0].eps)
	p, err := Build(Input{Service: svc, Slices: sl, Nodes: []Node{{Node: lastLegLayouts[0].nodes[0].object(), Dataplane: dp}}})
	if err != nil {
		t.Fatal(err)
	}
	if np := p.Nodes[0]; !strings.Contains(np.Error, "no kube-proxy rules were found on node flannel-a") || len(np.NetworkPlugins) != 1 {
		t.Errorf("node %+v", np)
	}
}
