package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
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
var collectLiveHook func(context.Context, *cluster.Facts, []string, string) []nodedump.NodeResult

func runTrace(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runTraceWith(t, nil, args...)
}

// runTraceWith is runTrace with setup changing the options (client,
// executor, ...) before the flags are parsed.
func runTraceWith(t *testing.T, setup func(*TraceOptions), args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ns := "ns1"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &TraceOptions{Output: "tree", Color: "never", Timeout: time.Minute, Collector: "debugpod", Observe: true, ConntrackMaxBytes: nodedump.DefaultConntrackMaxBytes, configFlags: flags, collectLive: collectLiveHook,
		client: fake.NewClientset(lbObjects()...), IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}
	if setup != nil {
		setup(o)
	}
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
// The client is inside the Service's source ranges, as in kube-proxy's
// flows; the default one, an arbitrary internet client, is kept out of the
// load balancer.
func TestTraceFromDumps(t *testing.T) {
	for _, tc := range []struct{ dump, source, lb string }{
		{lbDump, "203.0.113.10", "DNAT 10.180.0.1 web-0"},
		{"node-a=../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft", "203.0.113.10", "DNAT 10.180.0.1 web-0"},
		{lbDump, "", "DROP "},
		{"node-a=../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft", "", "DROP "},
	} {
		dump := tc.dump
		args := []string{"svc1", "--dump", dump, "-o", "json"}
		if tc.source != "" {
			args = append(args, "--source-ip", tc.source)
		}
		out, stderr, err := runTrace(t, args...)
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
			"LoadBalancer 1.2.3.4":  tc.lb,
			"NodePort 192.168.0.2":  "DNAT 10.180.0.1 web-0",
			"ClusterIP 172.30.0.41": "DNAT 10.180.0.1 web-0",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s from %q: %s = %q, want %q (all: %v)", dump, tc.source, k, got[k], v, got)
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
// (collectors/nodedump/testdata/recorded).
func TestTraceLiveCollection(t *testing.T) {
	stdout, err := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stdout")
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stderr")
	var asked []string
	collectLiveHook = func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
		asked = nodes
		var out []nodedump.NodeResult
		for _, n := range nodes {
			out = append(out, nodedump.NodeResult{Node: n, Result: nodedump.ParseOutput(n, stdout, stderr)})
		}
		return out
	}
	t.Cleanup(func() { collectLiveHook = nil })
	saved := t.TempDir()
	out, _, err := runTrace(t, "svc1", "--dump", lbDump, "--node", "node-b", "-o", "json", "--save-dumps", saved, "--source-ip", "203.0.113.10")
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
		out, stderr, err := runCLI(t, "svc1", "-n", "ns1", "--objects", "../../testdata/scenarios/loadbalancer/objects.yaml", "--dump", dump, "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		for _, want := range []string{`"kind": "LoadBalancer"`, `"address": "1.2.3.4"`, `"name": "web-0"`, `"verdict": "DNAT"`, `"inRules": true`, `"inAPI": true`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %s", dump, want)
			}
		}
	}
	_, _, err := runCLI(t, "svc1", "-n", "ns1", "--objects", "trace_test.go", "--dump", lbDump)
	if err == nil || !strings.Contains(err.Error(), `objects file "trace_test.go"`) {
		t.Errorf("bad objects file: %v", err)
	}
}

// TestTraceFromAndFailOn: --from narrows the trace to one request, and
// --fail-on turns findings into a non-zero exit.
func TestTraceFromAndFailOn(t *testing.T) {
	out, _, err := runTrace(t, "svc1", "--dump", lbDump, "--from", "nodeport", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, `"kind": "NodePort"`) != 1 || strings.Contains(out, `"kind": "ClusterIP"`) || strings.Contains(out, `"kind": "LoadBalancer"`) {
		t.Errorf("--from nodeport kept other entries:\n%s", out)
	}
	// A client outside the source ranges: the LB entry drops, no finding
	// above info; a Service without endpoints in the API warns.
	if _, _, err := runTrace(t, "svc1", "--dump", lbDump, "--from", "lb", "--source-ip", "203.0.113.130", "--fail-on", "warning", "-o", "json"); err != nil {
		t.Errorf("healthy Service with --fail-on warning: %v", err)
	}
	if _, _, err := runTrace(t, "svc1", "--dump", "node-a=../../testdata/iptables/kube-proxy/v1.37.2/TestNoEndpointsReject/iptables-nft.save", "--fail-on", "warning", "-o", "json"); err == nil || !strings.Contains(err.Error(), "--fail-on warning") || !strings.Contains(err.Error(), "NodesDisagree") && !strings.Contains(err.Error(), "EndpointMissingFromRules") {
		t.Errorf("drifted node with --fail-on warning: %v", err)
	}
	for _, bad := range [][]string{{"--from", "moon"}, {"--from", "pod/only-ns"}, {"--fail-on", "info"}} {
		if _, _, err := runTrace(t, append([]string{"svc1", "--dump", lbDump}, bad...)...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestTraceCollectorFlag(t *testing.T) {
	if _, stderr, err := runTrace(t, "svc1", "--dump", lbDump, "--collector", "kube-proxy"); err != nil {
		t.Errorf("--collector kube-proxy: %v\n%s", err, stderr)
	}
	_, _, err := runTrace(t, "svc1", "--dump", lbDump, "--collector", "ssh")
	want := `--collector "ssh" is not supported: use one of debugpod, kube-proxy (or --dump NODE=FILE for saved dumps)`
	if err == nil || err.Error() != want {
		t.Errorf("--collector ssh: error %v, want %s", err, want)
	}
}

type execFunc func(ctx context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error

func (f execFunc) Exec(ctx context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error {
	return f(ctx, ns, pod, container, argv, stdout, stderr)
}

// TestTraceKubeProxyCollector: --collector kube-proxy execs the dump script
// into the node's kube-proxy pod, found among the pods labelled
// k8s-app=kube-proxy, and creates no pod.
func TestTraceKubeProxyCollector(t *testing.T) {
	stdout, err := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stdout")
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stderr")
	kubeProxy := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-proxy-x7k2p", Labels: map[string]string{"k8s-app": "kube-proxy"}},
		Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.37.2"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	newClient := func(forbidKubeProxyList bool) *fake.Clientset {
		c := fake.NewClientset(append(lbObjects(), kubeProxy)...)
		c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
			r.Status.Allowed = true
			return true, r, nil
		})
		if forbidKubeProxyList {
			c.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetNamespace() != "kube-system" {
					return false, nil, nil
				}
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "",
					errors.New(`User "dev" cannot list resource "pods" in API group "" in the namespace "kube-system"`))
			})
		}
		return c
	}
	var execs []string
	ex := execFunc(func(_ context.Context, ns, pod, container string, argv []string, out, errOut io.Writer) error {
		execs = append(execs, ns+"/"+pod+"/"+container+" "+argv[0])
		_, _ = out.Write(stdout)
		_, _ = errOut.Write(stderr)
		return nil
	})
	var client *fake.Clientset
	setup := func(forbid bool) func(*TraceOptions) {
		return func(o *TraceOptions) {
			client = newClient(forbid)
			o.client, o.restConfig, o.executor = client, &rest.Config{Host: "https://example.invalid"}, ex
		}
	}

	out, _, err := runTraceWith(t, setup(false), "svc1", "--dump", lbDump, "--node", "node-b", "--collector", "kube-proxy", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kube-system/kube-proxy-x7k2p/kube-proxy sh"}, execs); diff != "" {
		t.Errorf("execs (-want +got):\n%s", diff)
	}
	for _, a := range client.Actions() {
		if v := a.GetVerb(); a.GetResource().Resource == "pods" && (v == "create" || v == "delete") {
			t.Errorf("%s pods: --collector kube-proxy must not create or delete pods", v)
		}
	}
	if !strings.Contains(out, `"name": "node-b"`) || !strings.Contains(out, `"verdict": "DNAT"`) || strings.Contains(out, "NodeNotCollected") {
		t.Errorf("node-b through kube-proxy:\n%s", out)
	}

	// node-a has a kube-proxy pod nowhere: the node says so, the trace goes on.
	out, _, err = runTraceWith(t, setup(false), "svc1", "--node", "node-a", "--node", "node-b", "--collector", "kube-proxy", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "no kube-proxy pod runs on node node-a (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod") {
		t.Errorf("node-a without kube-proxy:\n%s", out)
	}

	// Listing kube-proxy's pods is forbidden: every node says so.
	execs = nil
	out, _, err = runTraceWith(t, setup(true), "svc1", "--dump", lbDump, "--node", "node-b", "--collector", "kube-proxy", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "listing kube-proxy pods was forbidden") || !strings.Contains(out, "use --collector debugpod") || len(execs) != 0 {
		t.Errorf("forbidden kube-proxy pods: execs %v\n%s", execs, out)
	}
}

func TestTraceCompareNodes(t *testing.T) {
	other := "node-b=../../testdata/iptables/kube-proxy/v1.37.2/TestNoEndpointsReject/iptables-nft.save"
	// (a client inside the source ranges: the load balancer's entries too
	// show the drift)
	out, _, err := runTrace(t, "svc1", "--dump", lbDump, "--dump", other, "--compare-nodes", "--source-ip", "203.0.113.10")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "trace-compare-nodes.txt", out)
	if !strings.Contains(out, "DNAT 1") || !strings.Contains(out, "REJECT") {
		t.Errorf("table does not show the nodes differ:\n%s", out)
	}
	// The table is a view of the tree; with another output it is refused
	// rather than silently ignored.
	for _, o := range []string{"json", "yaml", "dot"} {
		_, _, err := runTrace(t, "svc1", "--dump", lbDump, "--dump", other, "--compare-nodes", "-o", o)
		if err == nil || !strings.Contains(err.Error(), "--compare-nodes prints a table and cannot be combined with -o "+o) {
			t.Errorf("--compare-nodes -o %s: %v", o, err)
		}
	}
}
