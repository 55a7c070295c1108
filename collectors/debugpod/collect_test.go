package debugpod

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

var podsGR = schema.GroupResource{Resource: "pods"}

// newClient is a fake clientset that, like the API server, stores nothing
// on a dry-run create, and gives each pod the status setStatus writes when
// it is read (nil leaves it Pending).
func newClient(t *testing.T, setStatus func(*corev1.Pod)) *fake.Clientset {
	t.Helper()
	c := fake.NewClientset()
	c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateActionImpl)
		if len(ca.GetCreateOptions().DryRun) > 0 {
			return true, ca.GetObject(), nil
		}
		return false, nil, nil
	})
	c.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ga := a.(k8stesting.GetAction)
		obj, err := c.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ga.GetNamespace(), ga.GetName())
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*corev1.Pod).DeepCopy()
		if setStatus != nil {
			setStatus(pod)
		}
		return true, pod, nil
	})
	return c
}

func running(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }

// scriptedExec answers each exec in order with the next step, checking the
// argv, as knftables' fake does.
type scriptedExec struct {
	t *testing.T
	// target is the "namespace/pod/container" every exec must go to; empty
	// is a debug pod's dump container.
	target string
	mu     sync.Mutex
	steps  []execStep
}

type execStep struct {
	argv           []string
	stdout, stderr string
	err            error
}

func (e *scriptedExec) Exec(_ context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.target != "" {
		if got := ns + "/" + pod + "/" + container; got != e.target {
			e.t.Errorf("exec in %s, want %s", got, e.target)
		}
	} else if container != ContainerName || !strings.HasPrefix(pod, "trace-svc-") || ns == "" {
		e.t.Errorf("exec in %s/%s container %s", ns, pod, container)
	}
	if len(e.steps) == 0 {
		e.t.Errorf("unexpected exec %q", argv)
		return errors.New("unexpected exec")
	}
	s := e.steps[0]
	e.steps = e.steps[1:]
	if diff := cmp.Diff(s.argv, argv); diff != "" {
		e.t.Errorf("exec argv (-want +got):\n%s", diff)
	}
	_, _ = io.WriteString(stdout, s.stdout)
	_, _ = io.WriteString(stderr, s.stderr)
	return s.err
}

func (e *scriptedExec) done() {
	e.t.Helper()
	if len(e.steps) != 0 {
		e.t.Errorf("%d exec steps not run", len(e.steps))
	}
}

func testOptions(ex Executor) Options {
	o := NewOptions()
	o.Namespace = "debug"
	o.Image = "registry.k8s.io/kube-proxy:v1.37.2"
	o.Executor = ex
	o.PollInterval = time.Millisecond
	o.StartTimeout = 200 * time.Millisecond
	return o
}

// verbs lists the pod actions as "verb[dry-run]".
func verbs(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		v := a.GetVerb()
		if ca, ok := a.(k8stesting.CreateActionImpl); ok && len(ca.GetCreateOptions().DryRun) > 0 {
			v += "(dry-run)"
		}
		if da, ok := a.(k8stesting.DeleteAction); ok {
			o := da.GetDeleteOptions()
			if o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != 0 || o.PropagationPolicy == nil || *o.PropagationPolicy != metav1.DeletePropagationBackground {
				v += "(not immediate)"
			}
		}
		if len(out) > 0 && out[len(out)-1] == v && v == "get" {
			continue // polls collapse
		}
		out = append(out, v)
	}
	return out
}

func assertNoPods(t *testing.T, c *fake.Clientset) {
	t.Helper()
	pods, err := c.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d debug pods remain: %s", len(pods.Items), pods.Items[0].Name)
	}
}

func TestCollectSuccess(t *testing.T) {
	stdout, stderr := readRecorded(t, "iptables-nft")
	ex := &scriptedExec{t: t, steps: []execStep{{argv: ScriptCommand, stdout: string(stdout), stderr: string(stderr)}}}
	c := newClient(t, running)
	var progress []string
	res, err := Collect(context.Background(), c, nil, "node-1", testOptions(ex), func(s string) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	ex.done()
	if res.Node != "node-1" || res.Backend != BackendIPTablesNFT || res.ProxyMode != "iptables" || !strings.HasPrefix(res.Pod, "debug/trace-svc-") {
		t.Errorf("result node=%s backend=%s mode=%s pod=%s", res.Node, res.Backend, res.ProxyMode, res.Pod)
	}
	if diff := cmp.Diff([]string{"create(dry-run)", "create", "get", "delete"}, verbs(c)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	assertNoPods(t, c)
	if len(progress) == 0 || !strings.Contains(progress[len(progress)-1], "deleted debug pod") {
		t.Errorf("progress %q", progress)
	}
}

func TestCollectFailures(t *testing.T) {
	tests := []struct {
		name      string
		reactor   func(c *fake.Clientset)
		status    func(*corev1.Pod)
		exec      []execStep
		sentinel  error
		contains  []string
		wantVerbs []string
	}{
		{
			name: "pod security rejects the dry-run",
			reactor: func(c *fake.Clientset) {
				c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(podsGR, "x", errors.New(`violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)`))
				})
			},
			sentinel:  ErrPodSecurity,
			contains:  []string{`namespace "debug" does not allow host-network pods`, "pod-security.kubernetes.io/enforce=privileged", "--debug-namespace"},
			wantVerbs: []string{"create(dry-run)"},
		},
		{
			name: "rbac forbids creating pods",
			reactor: func(c *fake.Clientset) {
				c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(podsGR, "", errors.New(`User "dev" cannot create resource "pods" in API group "" in the namespace "debug"`))
				})
			},
			sentinel:  ErrForbidden,
			contains:  []string{`you may not create pods in namespace "debug"`, "pods/exec", "--debug-namespace"},
			wantVerbs: []string{"create(dry-run)"},
		},
		{
			name: "image pull error names the image",
			status: func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodPending
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Image: p.Spec.Containers[0].Image, State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "failed to pull: not found"},
				}}}
			},
			sentinel:  ErrImagePull,
			contains:  []string{"did not start in time", `image "registry.k8s.io/kube-proxy:v1.37.2"`, "ErrImagePull", "--image-pull-secret"},
			wantVerbs: []string{"create(dry-run)", "create", "get", "delete"},
		},
		{
			name: "unschedulable",
			status: func(p *corev1.Pod) {
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 1 Insufficient cpu."}}
			},
			sentinel:  ErrUnschedulable,
			contains:  []string{"0/3 nodes are available: 1 Insufficient cpu."},
			wantVerbs: []string{"create(dry-run)", "create", "get", "delete"},
		},
		{
			name: "pending with no cause says the node may not be ready",
			status: func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodPending
			},
			sentinel:  ErrStartTimeout,
			contains:  []string{`is node "node-1" Ready?`},
			wantVerbs: []string{"create(dry-run)", "create", "get", "delete"},
		},
		{
			name: "image without sleep fails at once",
			status: func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodFailed
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					Reason: "StartError", ExitCode: 128, Message: `exec: "sleep": executable file not found in $PATH`,
				}}}}
			},
			sentinel:  ErrPodFailed,
			contains:  []string{"has no sleep", "--image"},
			wantVerbs: []string{"create(dry-run)", "create", "get", "delete"},
		},
		{
			name:      "exec error still deletes",
			status:    running,
			exec:      []execStep{{argv: ScriptCommand, err: errors.New("connection reset")}},
			contains:  []string{"exec in debug pod", "connection reset"},
			wantVerbs: []string{"create(dry-run)", "create", "get", "delete"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.status)
			if tt.reactor != nil {
				tt.reactor(c)
			}
			ex := &scriptedExec{t: t, steps: tt.exec}
			_, err := Collect(context.Background(), c, nil, "node-1", testOptions(ex), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v is not %v", err, tt.sentinel)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if diff := cmp.Diff(tt.wantVerbs, verbs(c)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			ex.done()
			assertNoPods(t, c)
		})
	}
}

// TestPodSecurityMessageIsOneSentence: the rejection reads as one sentence
// with the fix, and names the namespace once.
func TestPodSecurityMessageIsOneSentence(t *testing.T) {
	err := explainCreateError(apierrors.NewForbidden(podsGR, "x", errors.New(`violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)`)), "apps")
	msg := err.Error()
	if strings.Count(msg, "\n") != 0 || strings.Count(msg, `"apps"`) != 1 {
		t.Errorf("message %q", msg)
	}
}

func TestCollectTimeoutNamesWarningEvent(t *testing.T) {
	c := newClient(t, func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending })
	c.PrependReactor("list", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pods, _ := c.Tracker().List(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "debug")
		name := pods.(*corev1.PodList).Items[0].Name
		return true, &corev1.EventList{Items: []corev1.Event{
			{InvolvedObject: corev1.ObjectReference{Name: "someone-else"}, Type: corev1.EventTypeWarning, Reason: "Other", Message: "not ours"},
			{InvolvedObject: corev1.ObjectReference{Name: name}, Type: corev1.EventTypeWarning, Reason: "FailedCreatePodSandBox", Message: "failed to setup network for sandbox"},
		}}, nil
	})
	_, err := Collect(context.Background(), c, nil, "node-1", testOptions(&scriptedExec{t: t}), nil)
	if !errors.Is(err, ErrStartTimeout) || !strings.Contains(err.Error(), "FailedCreatePodSandBox: failed to setup network for sandbox") {
		t.Errorf("error %v", err)
	}
	assertNoPods(t, c)
}

func TestCollectCancelledMidWaitDeletes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gets := 0
	c := newClient(t, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		if gets++; gets == 3 {
			cancel() // Ctrl-C while waiting
		}
	})
	opts := testOptions(&scriptedExec{t: t})
	opts.StartTimeout = time.Minute
	_, err := Collect(ctx, c, nil, "node-1", opts, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if diff := cmp.Diff([]string{"create(dry-run)", "create", "get", "delete"}, verbs(c)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	assertNoPods(t, c)
}

func TestCollectWithoutShell(t *testing.T) {
	nftSave := "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
	notFound := errors.New(`command terminated with non-zero exit code: error executing command [sh -c ...], exit code 127: exec: "sh": executable file not found in $PATH`)
	noIP := errors.New(`exec: "ip": executable file not found in $PATH`)
	ex := &scriptedExec{t: t, steps: []execStep{
		{argv: ScriptCommand, err: notFound},
		{argv: []string{"iptables-nft-save", "-c"}, stdout: nftSave},
		{argv: []string{"ip6tables-nft-save", "-c"}, stdout: ""},
		{argv: []string{"iptables-legacy-save", "-c"}, stdout: ""},
		{argv: []string{"ip6tables-legacy-save", "-c"}, stdout: ""},
		{argv: []string{"nft", "list", "ruleset"}, err: errors.New(`exec: "nft": executable file not found in $PATH`)},
		{argv: []string{"ip", "-4", "-d", "route", "show", "table", "all"}, stdout: "default via 10.0.0.1 dev eth0 \n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.11 \n"},
		{argv: []string{"ip", "-6", "-d", "route", "show", "table", "all"}, err: noIP},
		{argv: []string{"ip", "-d", "link", "show"}, err: noIP},
		{argv: []string{"ip", "-d", "addr", "show"}, err: noIP},
		{argv: []string{"ip", "rule", "show"}, err: noIP},
		{argv: []string{"ip", "-6", "rule", "show"}, err: noIP},
	}}
	c := newClient(t, running)
	res, err := Collect(context.Background(), c, nil, "node-1", testOptions(ex), nil)
	if err != nil {
		t.Fatal(err)
	}
	ex.done()
	if res.Backend != BackendIPTablesNFT || !cmp.Equal(res.Chosen, []string{DumpIPTablesNFT}) {
		t.Errorf("backend %s chosen %v", res.Backend, res.Chosen)
	}
	if d, _ := res.Dump(DumpIPTablesNFT); string(d.Data) != nftSave {
		t.Errorf("iptables-nft-save data %q", d.Data)
	}
	if _, ok := res.Dump(DumpNFT); ok {
		t.Error("nft is reported although it is absent")
	}
	if !hasWarning(res, "no shell") || !slices.ContainsFunc(res.Warnings, func(w trace.Warning) bool { return w.Code == trace.CodeConntrackUnavailable }) {
		t.Errorf("warnings %q", res.Warnings)
	}
	// ip answered for IPv4 routes only: the route section is kept, and
	// the others are absent.
	if d, ok := res.Dump(DumpIPRoute); !ok || !strings.HasPrefix(string(d.Data), "default via") || d.Family != "" {
		t.Errorf("ip-route dump %+v", d)
	}
	assertNoPods(t, c)
}

func TestCollectAll(t *testing.T) {
	stdout, stderr := readRecorded(t, "nftables")
	nodes := []string{"node-a", "node-b", "node-c", "node-d", "node-e"}
	var mu sync.Mutex
	inFlight, peak := 0, 0
	ex := execFunc(func(ctx context.Context, _, _, _ string, _ []string, out, errOut io.Writer) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		_, _ = out.Write(stdout)
		_, _ = errOut.Write(stderr)
		return nil
	})
	c := newClient(t, running)
	res, err := CollectAll(context.Background(), c, nil, nodes, testOptions(ex), 2, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.Node != nodes[i] || r.Result == nil || r.Result.Node != nodes[i] || r.Result.Backend != BackendNFTables {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if peak > 2 {
		t.Errorf("%d nodes collected at once, want at most 2", peak)
	}
	dryRuns := 0
	for _, v := range verbs(c) {
		if v == "create(dry-run)" {
			dryRuns++
		}
	}
	if dryRuns != 1 {
		t.Errorf("%d dry-runs, want 1", dryRuns)
	}
	assertNoPods(t, c)
}

type execFunc func(ctx context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error

func (f execFunc) Exec(ctx context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error {
	return f(ctx, ns, pod, container, argv, stdout, stderr)
}

func TestCleanup(t *testing.T) {
	pod := func(ns, name string, debug bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}}}
		if debug {
			p.Labels[DebugPodLabel] = "true"
		}
		return p
	}
	c := fake.NewClientset(pod("debug", "trace-svc-1", true), pod("other", "trace-svc-2", true), pod("debug", "web", false))
	got, err := Cleanup(context.Background(), c, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"debug/trace-svc-1", "other/trace-svc-2"}, got); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	left, _ := c.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if len(left.Items) != 1 || left.Items[0].Name != "web" {
		t.Errorf("left %v", left.Items)
	}
	got, err = Cleanup(context.Background(), c, "debug")
	if err != nil || len(got) != 0 {
		t.Errorf("second cleanup: %v, %v", got, err)
	}
}
