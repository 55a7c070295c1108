package kubeproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// kubeProxyPod is a kube-proxy pod as collectors/cluster lists it.
func kubeProxyPod(name, node string, phase corev1.PodPhase, containers ...string) corev1.Pod {
	if len(containers) == 0 {
		containers = []string{"kube-proxy"}
	}
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, Labels: map[string]string{"k8s-app": "kube-proxy"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "registry.k8s.io/kube-proxy:v1.37.2"})
	}
	return p
}

// in checks that every exec goes to target ("namespace/pod/container").
func in(target string) func(ns, pod, container string) error {
	return func(ns, pod, container string) error {
		if got := ns + "/" + pod + "/" + container; got != target {
			return fmt.Errorf("exec in %s, want %s", got, target)
		}
		return nil
	}
}

func TestCollectFromKubeProxy(t *testing.T) {
	stdout, stderr := nodedumptest.Recorded(t, "iptables-nft")
	script := []nodedumptest.Step{{Argv: nodedumptest.ScriptCommand, Stdout: string(stdout), Stderr: string(stderr)}}
	terminating := kubeProxyPod("kube-proxy-aaaaa", "node-1", corev1.PodRunning)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Unix(0, 0)}
	tests := []struct {
		name     string
		pods     []corev1.Pod
		target   string // namespace/pod/container exec'd into
		exec     []nodedumptest.Step
		sentinel error
		wantErr  string // the whole message
		contains []string
	}{
		{
			name: "pod on the node",
			pods: []corev1.Pod{
				kubeProxyPod("kube-proxy-other", "node-2", corev1.PodRunning),
				kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning),
			},
			target: "kube-system/kube-proxy-x7k2p/kube-proxy",
			exec:   script,
		},
		{
			name:   "container named kube-proxy, not the first",
			pods:   []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning, "sidecar", "kube-proxy")},
			target: "kube-system/kube-proxy-x7k2p/kube-proxy",
			exec:   script,
		},
		{
			name:   "first container when none is named kube-proxy",
			pods:   []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning, "proxy", "sidecar")},
			target: "kube-system/kube-proxy-x7k2p/proxy",
			exec:   script,
		},
		{
			name: "running pod preferred over pending and terminating ones",
			pods: []corev1.Pod{
				kubeProxyPod("kube-proxy-00000", "node-1", corev1.PodPending),
				terminating,
				kubeProxyPod("kube-proxy-zzzzz", "node-1", corev1.PodRunning),
			},
			target: "kube-system/kube-proxy-zzzzz/kube-proxy",
			exec:   script,
		},
		{
			name:     "no pod on the node",
			pods:     []corev1.Pod{kubeProxyPod("kube-proxy-other", "node-2", corev1.PodRunning)},
			sentinel: ErrNoPod,
			wantErr:  "no kube-proxy pod runs on node node-1 (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod",
		},
		{
			name:     "no kube-proxy pods at all",
			sentinel: ErrNoPod,
			wantErr:  "no kube-proxy pod runs on node node-1 (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod",
		},
		{
			name:     "pod not running",
			pods:     []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodPending)},
			sentinel: ErrNoPod,
			wantErr:  `kube-proxy pod "kube-system/kube-proxy-x7k2p" on node node-1 is Pending, not Running; use --collector debugpod`,
		},
		{
			name:     "exec failure",
			pods:     []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning)},
			target:   "kube-system/kube-proxy-x7k2p/kube-proxy",
			exec:     []nodedumptest.Step{{Argv: nodedumptest.ScriptCommand, Err: errors.New("connection reset")}},
			contains: []string{`node "node-1"`, `exec in kube-proxy pod "kube-system/kube-proxy-x7k2p" container "kube-proxy"`, "connection reset"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			ex := &nodedumptest.ScriptedExec{T: t, Where: in(tt.target), Steps: tt.exec}
			res, err := Collect(context.Background(), c, nil, "node-1", tt.pods, Options{Executor: ex, Run: nodedump.RunOptions{Script: nodedump.DefaultScriptOptions}})
			ex.Done()
			// Nothing is created, read or deleted: the pods come from the
			// caller and the exec from the executor.
			if len(c.Actions()) != 0 {
				t.Errorf("API actions %v, want none", c.Actions())
			}
			if tt.wantErr == "" && tt.contains == nil {
				if err != nil {
					t.Fatal(err)
				}
				wantPod := strings.Join(strings.Split(tt.target, "/")[:2], "/")
				if res.Node != "node-1" || res.Pod != wantPod || res.Backend != nodedump.BackendIPTablesNFT || len(res.Chosen) == 0 {
					t.Errorf("result node=%s pod=%s backend=%s chosen=%v", res.Node, res.Pod, res.Backend, res.Chosen)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v is not %v", err, tt.sentinel)
			}
			if tt.wantErr != "" && err.Error() != tt.wantErr {
				t.Errorf("error\n got %s\nwant %s", err, tt.wantErr)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// TestCollectFromKubeProxyWithoutShell: a kube-proxy image without sh still
// gives its dumps, one command at a time, in kube-proxy's container.
func TestCollectFromKubeProxyWithoutShell(t *testing.T) {
	nftSave := "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
	notFound := errors.New(`command terminated with non-zero exit code: exit code 127: exec: "sh": executable file not found in $PATH`)
	noIP := errors.New(`exec: "ip": executable file not found in $PATH`)
	ex := &nodedumptest.ScriptedExec{T: t, Where: in("kube-system/kube-proxy-x7k2p/kube-proxy"), Steps: []nodedumptest.Step{
		{Argv: nodedumptest.ScriptCommand, Err: notFound},
		{Argv: []string{"iptables-nft-save", "-c"}, Stdout: nftSave},
		{Argv: []string{"ip6tables-nft-save", "-c"}},
		{Argv: []string{"iptables-legacy-save", "-c"}},
		{Argv: []string{"ip6tables-legacy-save", "-c"}},
		{Argv: []string{"nft", "list", "ruleset"}},
		{Argv: []string{"ip", "-4", "-d", "route", "show", "table", "all"}, Stdout: "default via 10.0.0.1 dev eth0 \n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.11 \n"},
		{Argv: []string{"ip", "-6", "-d", "route", "show", "table", "all"}, Err: noIP},
		{Argv: []string{"ip", "-d", "link", "show"}, Err: noIP},
		{Argv: []string{"ip", "-d", "addr", "show"}, Err: noIP},
		{Argv: []string{"ip", "rule", "show"}, Err: noIP},
		{Argv: []string{"ip", "-6", "rule", "show"}, Err: noIP},
	}}
	pods := []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning)}
	res, err := Collect(context.Background(), fake.NewClientset(), nil, "node-1", pods, Options{Executor: ex, Run: nodedump.RunOptions{Script: nodedump.DefaultScriptOptions}})
	if err != nil {
		t.Fatal(err)
	}
	ex.Done()
	if res.Backend != nodedump.BackendIPTablesNFT || !slices.ContainsFunc(res.Warnings, func(w trace.Warning) bool { return strings.Contains(w.Message, "no shell") }) {
		t.Errorf("backend %s warnings %q", res.Backend, res.Warnings)
	}
}

func TestCollectAllFromKubeProxy(t *testing.T) {
	stdout, stderr := nodedumptest.Recorded(t, "nftables")
	pods := []corev1.Pod{
		kubeProxyPod("kube-proxy-a", "node-a", corev1.PodRunning),
		kubeProxyPod("kube-proxy-c", "node-c", corev1.PodRunning),
	}
	ex := nodedumptest.ExecFunc(func(_ context.Context, ns, pod, container string, _ []string, out, errOut io.Writer) error {
		if ns != "kube-system" || container != "kube-proxy" || !strings.HasPrefix(pod, "kube-proxy-") {
			t.Errorf("exec in %s/%s container %s", ns, pod, container)
		}
		_, _ = out.Write(stdout)
		_, _ = errOut.Write(stderr)
		return nil
	})
	c := fake.NewClientset()
	var progress []string
	res, err := CollectAll(context.Background(), c, nil, pods, []string{"node-a", "node-b", "node-c"}, Options{Executor: ex, Run: nodedump.RunOptions{Script: nodedump.DefaultScriptOptions}}, 2,
		func(s string) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	type got struct{ Node, Pod, Backend, Err string }
	var gots []got
	for _, r := range res {
		g := got{Node: r.Node}
		if r.Result != nil {
			g.Pod, g.Backend = r.Result.Pod, r.Result.Backend
		}
		if r.Err != nil {
			g.Err = r.Err.Error()
		}
		gots = append(gots, g)
	}
	want := []got{
		{Node: "node-a", Pod: "kube-system/kube-proxy-a", Backend: nodedump.BackendNFTables},
		{Node: "node-b", Err: "no kube-proxy pod runs on node node-b (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod"},
		{Node: "node-c", Pod: "kube-system/kube-proxy-c", Backend: nodedump.BackendNFTables},
	}
	if diff := cmp.Diff(want, gots); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if len(c.Actions()) != 0 {
		t.Errorf("API actions %v, want none", c.Actions())
	}
	if len(progress) != 2 {
		t.Errorf("progress %q", progress)
	}
}

func TestKubeProxyAccessChecks(t *testing.T) {
	want := []cluster.AccessCheck{{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "kube-system"}}
	if diff := cmp.Diff(want, AccessChecks()); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
}
