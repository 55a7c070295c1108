package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
)

// lbObjects are the API objects behind kube-proxy's TestLoadBalancer
// (v1.37.2), whose real rules are in testdata.
func lbObjects() []runtime.Object {
	return []runtime.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "svc1"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "172.30.0.41", ClusterIPs: []string{"172.30.0.41"},
				Ports:                    []corev1.ServicePort{{Name: "p80", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 3001}},
				LoadBalancerSourceRanges: []string{"192.168.0.0/24", "203.0.113.0/25"},
				ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyCluster,
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns1", Name: "svc1-x", Labels: map[string]string{discoveryv1.LabelServiceName: "svc1"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.180.0.1"}, NodeName: ptr.To("node-a"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns1", Name: "web-0"}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("p80"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "node-a"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24", PodCIDRs: []string{"10.0.0.0/24"}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.3"}}}},
	}
}

// collectLiveHook stands in for the debug-pod collector in runTrace.
var collectLiveHook func(context.Context, *cluster.Facts, []string) []debugpod.NodeResult

func runTrace(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ns := "ns1"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &TraceOptions{Output: "tree", Color: "never", Timeout: time.Minute, Collector: "debugpod", configFlags: flags, collectLive: collectLiveHook,
		client: fake.NewClientset(lbObjects()...), IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}
	cmd := &cobra.Command{}
	addTraceFlags(cmd, o)
	fs := cmd.Flags()
	if err := fs.Parse(args[1:]); err != nil {
		return "", "", err
	}
	if err := o.Complete(args[:1]); err != nil {
		return "", "", err
	}
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

const lbDump = "node-a=../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save"

// TestTraceFromDumps: the trace command against an API (fake clientset) and
// a node's real kube-proxy rules gives kube-proxy's answers for every entry.
func TestTraceFromDumps(t *testing.T) {
	for _, dump := range []string{lbDump, "node-a=../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft"} {
		out, stderr, err := runTrace(t, "svc1", "--dump", dump, "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var p struct {
			SchemaVersion string `json:"schemaVersion"`
			Nodes         []struct {
				Name  string `json:"name"`
				Paths []struct {
					Entry struct {
						Kind    string `json:"kind"`
						Address string `json:"address"`
					} `json:"entry"`
					Verdict    string `json:"verdict"`
					Masquerade bool   `json:"masquerade"`
					Endpoints  []struct {
						IP  string `json:"ip"`
						Pod struct{ Name string }
					} `json:"endpoints"`
				} `json:"paths"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		if p.SchemaVersion != "trace-svc.path/v1" || len(p.Nodes) != 1 || p.Nodes[0].Name != "node-a" {
			t.Fatalf("%s: %s", dump, out)
		}
		got := map[string]string{}
		for _, path := range p.Nodes[0].Paths {
			ep := ""
			if len(path.Endpoints) > 0 {
				ep = path.Endpoints[0].IP + " " + path.Endpoints[0].Pod.Name
			}
			got[path.Entry.Kind+" "+path.Entry.Address] = path.Verdict + " " + ep
		}
		want := map[string]string{
			"LoadBalancer 1.2.3.4":  "DNAT 10.180.0.1 web-0",
			"NodePort 192.168.0.2":  "DNAT 10.180.0.1 web-0",
			"ClusterIP 172.30.0.41": "DNAT 10.180.0.1 web-0",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", dump, k, got[k], v, got)
			}
		}
	}
}

func TestTraceOutputs(t *testing.T) {
	tree, _, err := runTrace(t, "svc1", "--dump", lbDump)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "trace-lb-tree.txt", tree)
	dot, _, err := runTrace(t, "svc1", "--dump", lbDump, "-o", "dot")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "trace-lb.dot", dot)
	if _, err := exec.LookPath("dot"); err == nil {
		cmd := exec.Command("dot", "-Tsvg")
		cmd.Stdin = strings.NewReader(dot)
		svg, err := cmd.Output()
		if err != nil || !strings.Contains(string(svg), "web&#45;0") && !strings.Contains(string(svg), "web-0") {
			t.Errorf("dot -Tsvg: %v", err)
		}
	}
}

func TestTraceErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `service "nope" not found in namespace "ns1"`},
		{[]string{"svc2"}, `did you mean "svc1"`},
		{[]string{"svc1", "--dump", "node-a"}, `--dump "node-a" is not NODE=FILE`},
		{[]string{"svc1", "--dump", "node-z=x.iptables"}, `node "node-z" is not in the cluster`},
		{[]string{"svc1", "-o", "xml"}, `--output "xml" is not supported`},
		{[]string{"svc1", "--source-ip", "client"}, `--source-ip "client" is not an IP address`},
	} {
		_, _, err := runTrace(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	// Without an API server to run debug pods through, a node without a
	// dump is traced as not collected, not a failure of the whole trace.
	out, _, err := runTrace(t, "svc1", "--dump", lbDump, "--node", "node-b", "-o", "json")
	if err != nil || !strings.Contains(out, "no API server to run a debug pod through") || !strings.Contains(out, "NodeNotCollected") {
		t.Errorf("node-b without a dump: %v\n%s", err, out)
	}
}

// TestTraceLiveCollection: a node without --dump goes through the live
// collector; here its output is what the real dump script printed in a
// network namespace holding kube-proxy's TestLoadBalancer rules
// (collectors/debugpod/testdata/recorded).
func TestTraceLiveCollection(t *testing.T) {
	stdout, err := os.ReadFile("../../collectors/debugpod/testdata/recorded/iptables-nft.stdout")
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := os.ReadFile("../../collectors/debugpod/testdata/recorded/iptables-nft.stderr")
	var asked []string
	collectLiveHook = func(_ context.Context, _ *cluster.Facts, nodes []string) []debugpod.NodeResult {
		asked = nodes
		var out []debugpod.NodeResult
		for _, n := range nodes {
			out = append(out, debugpod.NodeResult{Node: n, Result: debugpod.ParseOutput(n, stdout, stderr)})
		}
		return out
	}
	t.Cleanup(func() { collectLiveHook = nil })
	saved := t.TempDir()
	out, _, err := runTrace(t, "svc1", "--dump", lbDump, "--node", "node-b", "-o", "json", "--save-dumps", saved)
	if err != nil {
		t.Fatal(err)
	}
	// What was collected can be traced again offline.
	if again, _, err := runTrace(t, "svc1", "--dump", lbDump, "--dump", "node-b="+saved+"/node-b.iptables-nft-save", "-o", "json"); err != nil || !strings.Contains(again, `"name": "node-b"`) {
		t.Errorf("tracing the saved dump again: %v", err)
	}
	if strings.Join(asked, ",") != "node-b" {
		t.Errorf("live collection asked for %v, want node-b only (node-a has a dump)", asked)
	}
	var p struct {
		Nodes []struct {
			Name      string `json:"name"`
			ProxyMode string `json:"proxyMode"`
			Error     string `json:"error"`
			Paths     []struct {
				Verdict string `json:"verdict"`
			} `json:"paths"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		if n.Error != "" || len(n.Paths) == 0 || n.Paths[0].Verdict != "DNAT" || n.ProxyMode != "iptables" {
			t.Errorf("node %s: %+v", n.Name, n)
		}
	}
}

// TestTraceOffline: saved API objects and saved node rules, no cluster — the
// bug-report path, through the real command.
func TestTraceOffline(t *testing.T) {
	for _, dump := range []string{
		"node-a=../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save",
		"node-a=../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.json",
	} {
		out, stderr, err := run(t, "svc1", "-n", "ns1", "--objects", "../../testdata/scenarios/loadbalancer/objects.yaml", "--dump", dump, "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		for _, want := range []string{`"kind": "LoadBalancer"`, `"address": "1.2.3.4"`, `"name": "web-0"`, `"verdict": "DNAT"`, `"inRules": true`, `"inAPI": true`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %s", dump, want)
			}
		}
	}
	_, _, err := run(t, "svc1", "-n", "ns1", "--objects", "trace_test.go", "--dump", lbDump)
	if err == nil || !strings.Contains(err.Error(), `objects file "trace_test.go"`) {
		t.Errorf("bad objects file: %v", err)
	}
}
