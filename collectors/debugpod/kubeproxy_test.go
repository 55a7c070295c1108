package debugpod

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
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

func TestCollectFromKubeProxy(t *testing.T) {
	stdout, stderr := readRecorded(t, "iptables-nft")
	script := []execStep{{argv: ScriptCommand, stdout: string(stdout), stderr: string(stderr)}}
	terminating := kubeProxyPod("kube-proxy-aaaaa", "node-1", corev1.PodRunning)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Unix(0, 0)}
	tests := []struct {
		name     string
		pods     []corev1.Pod
		target   string // namespace/pod/container exec'd into
		exec     []execStep
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
			sentinel: ErrNoKubeProxyPod,
			wantErr:  "no kube-proxy pod runs on node node-1 (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod",
		},
		{
			name:     "no kube-proxy pods at all",
			sentinel: ErrNoKubeProxyPod,
			wantErr:  "no kube-proxy pod runs on node node-1 (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod",
		},
		{
			name:     "pod not running",
			pods:     []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodPending)},
			sentinel: ErrNoKubeProxyPod,
			wantErr:  `kube-proxy pod "kube-system/kube-proxy-x7k2p" on node node-1 is Pending, not Running; use --collector debugpod`,
		},
		{
			name:     "exec failure",
			pods:     []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning)},
			target:   "kube-system/kube-proxy-x7k2p/kube-proxy",
			exec:     []execStep{{argv: ScriptCommand, err: errors.New("connection reset")}},
			contains: []string{`node "node-1"`, `exec in kube-proxy pod "kube-system/kube-proxy-x7k2p" container "kube-proxy"`, "connection reset"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			ex := &scriptedExec{t: t, target: tt.target, steps: tt.exec}
			res, err := CollectFromKubeProxy(context.Background(), c, nil, "node-1", tt.pods, testOptions(ex))
			ex.done()
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
				if res.Node != "node-1" || res.Pod != wantPod || res.Backend != BackendIPTablesNFT || len(res.Chosen) == 0 {
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
	ex := &scriptedExec{t: t, target: "kube-system/kube-proxy-x7k2p/kube-proxy", steps: []execStep{
		{argv: ScriptCommand, err: notFound},
		{argv: []string{"iptables-nft-save", "-c"}, stdout: nftSave},
		{argv: []string{"ip6tables-nft-save", "-c"}},
		{argv: []string{"iptables-legacy-save", "-c"}},
		{argv: []string{"ip6tables-legacy-save", "-c"}},
		{argv: []string{"nft", "list", "ruleset"}},
		{argv: []string{"ip", "-4", "-d", "route", "show", "table", "all"}, stdout: "default via 10.0.0.1 dev eth0 \n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.11 \n"},
		{argv: []string{"ip", "-6", "-d", "route", "show", "table", "all"}, err: noIP},
		{argv: []string{"ip", "-d", "link", "show"}, err: noIP},
		{argv: []string{"ip", "-d", "addr", "show"}, err: noIP},
		{argv: []string{"ip", "rule", "show"}, err: noIP},
		{argv: []string{"ip", "-6", "rule", "show"}, err: noIP},
	}}
	pods := []corev1.Pod{kubeProxyPod("kube-proxy-x7k2p", "node-1", corev1.PodRunning)}
	res, err := CollectFromKubeProxy(context.Background(), fake.NewClientset(), nil, "node-1", pods, testOptions(ex))
	if err != nil {
		t.Fatal(err)
	}
	ex.done()
	if res.Backend != BackendIPTablesNFT || !hasWarning(res, "no shell") {
		t.Errorf("backend %s warnings %q", res.Backend, res.Warnings)
	}
}

func TestCollectAllFromKubeProxy(t *testing.T) {
	stdout, stderr := readRecorded(t, "nftables")
	pods := []corev1.Pod{
		kubeProxyPod("kube-proxy-a", "node-a", corev1.PodRunning),
		kubeProxyPod("kube-proxy-c", "node-c", corev1.PodRunning),
	}
	ex := execFunc(func(_ context.Context, ns, pod, container string, _ []string, out, errOut io.Writer) error {
		if ns != "kube-system" || container != "kube-proxy" || !strings.HasPrefix(pod, "kube-proxy-") {
			t.Errorf("exec in %s/%s container %s", ns, pod, container)
		}
		_, _ = out.Write(stdout)
		_, _ = errOut.Write(stderr)
		return nil
	})
	c := fake.NewClientset()
	var progress []string
	res, err := CollectAllFromKubeProxy(context.Background(), c, nil, pods, []string{"node-a", "node-b", "node-c"}, testOptions(ex), 2,
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
		{Node: "node-a", Pod: "kube-system/kube-proxy-a", Backend: BackendNFTables},
		{Node: "node-b", Err: "no kube-proxy pod runs on node node-b (looked for pods labelled k8s-app=kube-proxy in kube-system); use --collector debugpod"},
		{Node: "node-c", Pod: "kube-system/kube-proxy-c", Backend: BackendNFTables},
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
	if diff := cmp.Diff(want, KubeProxyAccessChecks()); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
}
