package debugpod

import (
	"context"
	"errors"
	"fmt"
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
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
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

// inDebugPod checks that an exec goes to a debug pod's dump container.
func inDebugPod(ns, pod, container string) error {
	if container != ContainerName || !strings.HasPrefix(pod, "trace-svc-") || ns == "" {
		return fmt.Errorf("exec in %s/%s container %s", ns, pod, container)
	}
	return nil
}

// scripted is an executor for a debug pod that expects steps.
func scripted(t *testing.T, steps ...nodedumptest.Step) *nodedumptest.ScriptedExec {
	return &nodedumptest.ScriptedExec{T: t, Where: inDebugPod, Steps: steps}
}

func testOptions(ex nodedump.Executor) Options {
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
	stdout, stderr := nodedumptest.Recorded(t, "iptables-nft")
	ex := &nodedumptest.ScriptedExec{T: t, Where: inDebugPod, Steps: []nodedumptest.Step{{Argv: nodedumptest.ScriptCommand, Stdout: string(stdout), Stderr: string(stderr)}}}
	c := newClient(t, running)
	var progress []string
	res, err := Collect(context.Background(), c, nil, "node-1", testOptions(ex), func(s string) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	ex.Done()
	if res.Node != "node-1" || res.Backend != nodedump.BackendIPTablesNFT || res.ProxyMode != "iptables" || !strings.HasPrefix(res.Pod, "debug/trace-svc-") {
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
		exec      []nodedumptest.Step
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
			contains:  []string{`namespace "debug" enforces a Pod Security level that forbids host-network pods`, "create a namespace for trace-svc's debug pods labelled pod-security.kubernetes.io/enforce=privileged", "--debug-namespace"},
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
			name: "quota without room is not blamed on host network",
			reactor: func(c *fake.Clientset) {
				c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(podsGR, "trace-svc-x", errors.New("exceeded quota: compute, requested: limits.memory=512Mi, used: limits.memory=1800Mi, limited: limits.memory=2Gi"))
				})
			},
			sentinel:  ErrQuota,
			contains:  []string{`namespace "debug" has a ResourceQuota without room for the debug pod, which requests cpu 10m and memory 32Mi and is limited to cpu 1 and memory 512Mi`, "--debug-namespace", "exceeded quota: compute"},
			wantVerbs: []string{"create(dry-run)"},
		},
		{
			name: "quota that wants what the pod does not set",
			reactor: func(c *fake.Clientset) {
				c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(podsGR, "trace-svc-x", errors.New("failed quota: storage: must specify limits.ephemeral-storage for: dump"))
				})
			},
			sentinel:  ErrQuota,
			contains:  []string{"has a ResourceQuota without room", "must specify limits.ephemeral-storage"},
			wantVerbs: []string{"create(dry-run)"},
		},
		{
			name: "limit range",
			reactor: func(c *fake.Clientset) {
				c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(podsGR, "trace-svc-x", errors.New("[minimum cpu usage per Container is 100m, but request is 10m, maximum memory usage per Container is 256Mi, but limit is 512Mi]"))
				})
			},
			sentinel:  ErrLimitRange,
			contains:  []string{`namespace "debug" has a LimitRange that does not accept the debug pod`, "minimum cpu usage per Container is 100m"},
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
			exec:      []nodedumptest.Step{{Argv: nodedumptest.ScriptCommand, Err: errors.New("connection reset")}},
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
			ex := scripted(t, tt.exec...)
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
			ex.Done()
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
	// It points to a namespace of its own, never to relabelling this one.
	if strings.Contains(msg, "label it") || strings.Contains(msg, "default") {
		t.Errorf("message %q tells people to relabel the namespace", msg)
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
	_, err := Collect(context.Background(), c, nil, "node-1", testOptions(scripted(t)), nil)
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
	opts := testOptions(scripted(t))
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
	ex := &nodedumptest.ScriptedExec{T: t, Where: inDebugPod, Steps: []nodedumptest.Step{
		{Argv: nodedumptest.ScriptCommand, Err: notFound},
		{Argv: []string{"iptables-nft-save", "-c"}, Stdout: nftSave},
		{Argv: []string{"ip6tables-nft-save", "-c"}, Stdout: ""},
		{Argv: []string{"iptables-legacy-save", "-c"}, Stdout: ""},
		{Argv: []string{"ip6tables-legacy-save", "-c"}, Stdout: ""},
		{Argv: []string{"nft", "list", "ruleset"}, Err: errors.New(`exec: "nft": executable file not found in $PATH`)},
		{Argv: []string{"ip", "-4", "-d", "route", "show", "table", "all"}, Stdout: "default via 10.0.0.1 dev eth0 \n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.11 \n"},
		{Argv: []string{"ip", "-6", "-d", "route", "show", "table", "all"}, Err: noIP},
		{Argv: []string{"ip", "-d", "link", "show"}, Err: noIP},
		{Argv: []string{"ip", "-d", "addr", "show"}, Err: noIP},
		{Argv: []string{"ip", "rule", "show"}, Err: noIP},
		{Argv: []string{"ip", "-6", "rule", "show"}, Err: noIP},
	}}
	c := newClient(t, running)
	res, err := Collect(context.Background(), c, nil, "node-1", testOptions(ex), nil)
	if err != nil {
		t.Fatal(err)
	}
	ex.Done()
	if res.Backend != nodedump.BackendIPTablesNFT || !cmp.Equal(res.Chosen, []string{nodedump.DumpIPTablesNFT}) {
		t.Errorf("backend %s chosen %v", res.Backend, res.Chosen)
	}
	if d, _ := res.Dump(nodedump.DumpIPTablesNFT); string(d.Data) != nftSave {
		t.Errorf("iptables-nft-save data %q", d.Data)
	}
	if _, ok := res.Dump(nodedump.DumpNFT); ok {
		t.Error("nft is reported although it is absent")
	}
	if !slices.ContainsFunc(res.Warnings, func(w trace.Warning) bool { return strings.Contains(w.Message, "no shell") }) || !slices.ContainsFunc(res.Warnings, func(w trace.Warning) bool { return w.Code == trace.CodeConntrackUnavailable }) {
		t.Errorf("warnings %q", res.Warnings)
	}
	// ip answered for IPv4 routes only: the route section is kept, and
	// the others are absent.
	if d, ok := res.Dump(nodedump.DumpIPRoute); !ok || !strings.HasPrefix(string(d.Data), "default via") || d.Family != "" {
		t.Errorf("ip-route dump %+v", d)
	}
	assertNoPods(t, c)
}

func TestCollectAll(t *testing.T) {
	stdout, stderr := nodedumptest.Recorded(t, "nftables")
	nodes := []string{"node-a", "node-b", "node-c", "node-d", "node-e"}
	var mu sync.Mutex
	inFlight, peak := 0, 0
	ex := nodedumptest.ExecFunc(func(ctx context.Context, _, _, _ string, _ []string, out, errOut io.Writer) error {
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
		if r.Err != nil || r.Node != nodes[i] || r.Result == nil || r.Result.Node != nodes[i] || r.Result.Backend != nodedump.BackendNFTables {
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

func TestCleanup(t *testing.T) {
	now := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(-d)} }
	pod := func(ns, name string, edit func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: *ago(30 * time.Second),
			Labels:      map[string]string{NameLabel: NameValue, DebugPodLabel: "true"},
			Annotations: map[string]string{NodeAnnotation: "node-1"}},
			Spec:   corev1.PodSpec{NodeName: "node-1", ActiveDeadlineSeconds: ptr.To(int64(120))},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: ago(20 * time.Second)}}
		edit(p)
		return p
	}
	alice := `{"user":"alice","host":"laptop-7","time":"2025-06-01T09:59:30Z"}`
	objs := []runtime.Object{
		pod("debug", "trace-svc-running", func(p *corev1.Pod) { p.Annotations[CreatedByAnnotation] = alice }),
		pod("debug", "trace-svc-succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("debug", "trace-svc-failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
		pod("debug", "trace-svc-past-deadline", func(p *corev1.Pod) { p.Status.StartTime = ago(3 * time.Minute) }),
		pod("debug", "trace-svc-pending", func(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} }),
		pod("debug", "trace-svc-pending-long", func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
			p.CreationTimestamp = *ago(5 * time.Minute)
		}),
		pod("debug", "trace-svc-old-version", func(p *corev1.Pod) {
			p.Labels = map[string]string{DebugPodLabel: "true"}
			p.Annotations = nil
			p.Spec.ActiveDeadlineSeconds = nil
		}),
		pod("other", "trace-svc-elsewhere", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("debug", "web", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"}; p.Status.Phase = corev1.PodSucceeded }),
	}
	c := fake.NewClientset(objs...)
	rep, err := Cleanup(context.Background(), c, "debug", CleanupOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	want := CleanupReport{
		Deleted: []CleanupPod{
			{Pod: "debug/trace-svc-failed", Node: "node-1", Why: "it finished (Failed)"},
			{Pod: "debug/trace-svc-past-deadline", Node: "node-1", Why: "its deadline of 2m0s passed 1m0s ago (started 3m0s ago)"},
			{Pod: "debug/trace-svc-pending-long", Node: "node-1", Why: "its deadline of 2m0s passed 3m0s ago (created 5m0s ago)"},
			{Pod: "debug/trace-svc-succeeded", Node: "node-1", Why: "it finished (Succeeded)"},
		},
		Kept: []CleanupPod{
			{Pod: "debug/trace-svc-old-version", Node: "node-1", Why: "it is running and inside its deadline (1m40s left): a trace may be using it"},
			{Pod: "debug/trace-svc-pending", Node: "node-1", Why: "it is pending and inside its deadline (1m30s left): a trace may be using it"},
			{Pod: "debug/trace-svc-running", Node: "node-1", CreatedBy: "alice on laptop-7 at 2025-06-01T09:59:30Z", Why: "it is running and inside its deadline (1m40s left): a trace may be using it"},
		},
	}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("Cleanup (-want +got):\n%s", diff)
	}
	left := func(ns string) []string {
		pods, _ := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		return names
	}
	if diff := cmp.Diff([]string{"trace-svc-old-version", "trace-svc-pending", "trace-svc-running", "web"}, left("debug")); diff != "" {
		t.Errorf("pods left in debug (-want +got):\n%s", diff)
	}

	// --all deletes what is left, in every namespace, and says why.
	rep, err = Cleanup(context.Background(), c, "", CleanupOptions{All: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, d := range rep.Deleted {
		deleted = append(deleted, d.Pod+": "+d.Why)
	}
	if diff := cmp.Diff([]string{
		"debug/trace-svc-old-version: --all: it is running and inside its deadline (1m40s left): a trace may be using it",
		"debug/trace-svc-pending: --all: it is pending and inside its deadline (1m30s left): a trace may be using it",
		"debug/trace-svc-running: --all: it is running and inside its deadline (1m40s left): a trace may be using it",
		"other/trace-svc-elsewhere: it finished (Succeeded)",
	}, deleted); diff != "" || len(rep.Kept) != 0 {
		t.Errorf("--all deleted (-want +got):\n%s\nkept %v", diff, rep.Kept)
	}
	if diff := cmp.Diff([]string{"web"}, left("")); diff != "" {
		t.Errorf("pods left (-want +got):\n%s", diff)
	}
}

// TestCollectRecoversFromPanic: a panic while collecting one node becomes
// that node's error, its debug pod is deleted, and the other nodes are
// collected.
func TestCollectRecoversFromPanic(t *testing.T) {
	stdout, stderr := nodedumptest.Recorded(t, "iptables-nft")
	ex := nodedumptest.ExecFunc(func(_ context.Context, _, pod, _ string, _ []string, out, errOut io.Writer) error {
		if strings.HasPrefix(pod, "trace-svc-"+NodeHash("node-2")) {
			panic("exec went wrong")
		}
		_, _ = out.Write(stdout)
		_, _ = errOut.Write(stderr)
		return nil
	})
	c := newClient(t, running)
	res, err := CollectAll(context.Background(), c, nil, []string{"node-1", "node-2", "node-3"}, testOptions(ex), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		switch r.Node {
		case "node-2":
			if !errors.Is(r.Err, nodedump.ErrPanic) || !strings.Contains(r.Err.Error(), `node "node-2": internal error while collecting its rules, please report it: exec went wrong`) {
				t.Errorf("node-2: %v", r.Err)
			}
		default:
			if r.Err != nil || r.Result == nil {
				t.Errorf("%s: %v", r.Node, r.Err)
			}
		}
	}
	assertNoPods(t, c)
}
