package debugpod

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
)

// fakeClock moves on by step each time it is read.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// A debug pod that takes more than a few seconds to run gets a line that
// says what it waits for — its phase, its container's state, the last event
// — once it is slow, again when that changes, and not on every poll.
func TestCollectSaysWhatItWaitsFor(t *testing.T) {
	stdout, stderr := nodedumptest.Recorded(t, "iptables-nft")
	ex := scripted(t, nodedumptest.Step{Argv: nodedumptest.ScriptCommand, Stdout: string(stdout), Stderr: string(stderr)})
	gets := 0
	c := newClient(t, func(p *corev1.Pod) {
		gets++
		switch {
		case gets >= 8:
			p.Status.Phase = corev1.PodRunning
		default:
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
		}
	})
	// The kubelet's events: scheduled, then pulling the image; pulled
	// from the sixth read of the pod on.
	c.PrependReactor("list", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fs := a.(k8stesting.ListAction).GetListRestrictions().Fields.String(); !strings.HasPrefix(fs, "involvedObject.name=trace-svc-") {
			t.Errorf("events listed with %q", fs)
		}
		name := strings.TrimPrefix(a.(k8stesting.ListAction).GetListRestrictions().Fields.String(), "involvedObject.name=")
		at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
		evs := []corev1.Event{
			{InvolvedObject: corev1.ObjectReference{Name: name}, Type: corev1.EventTypeNormal, Reason: "Pulling", Message: `Pulling image "registry.k8s.io/kube-proxy:v1.37.2"`, LastTimestamp: at(2)},
			{InvolvedObject: corev1.ObjectReference{Name: name}, Type: corev1.EventTypeNormal, Reason: "Scheduled", Message: "assigned to node-1", LastTimestamp: at(1)},
			{InvolvedObject: corev1.ObjectReference{Name: "someone-else"}, Type: corev1.EventTypeWarning, Reason: "Other", Message: "not ours", LastTimestamp: at(9)},
		}
		if gets >= 6 {
			evs = append(evs, corev1.Event{InvolvedObject: corev1.ObjectReference{Name: name}, Type: corev1.EventTypeNormal, Reason: "Pulled", Message: "Successfully pulled image", LastTimestamp: at(3)})
		}
		return true, &corev1.EventList{Items: evs}, nil
	})
	opts := testOptions(ex)
	opts.StartTimeout = time.Minute
	clock := &fakeClock{t: time.Unix(0, 0), step: time.Second}
	opts.now = clock.now
	var lines []string
	if _, err := Collect(context.Background(), c, nil, "node-1", opts, func(s string) { lines = append(lines, s) }); err != nil {
		t.Fatal(err)
	}
	var waiting []string
	for _, l := range lines {
		if strings.Contains(l, "waiting for debug pod") {
			_, what, _ := strings.Cut(l, ": waiting for debug pod debug/trace-svc-")
			_, what, _ = strings.Cut(what, ": ")
			waiting = append(waiting, what)
			if !strings.HasPrefix(l, "node node-1: ") {
				t.Errorf("line %q does not name the node", l)
			}
		}
	}
	want := []string{
		`Pending, container dump ContainerCreating; last event: Pulling: Pulling image "registry.k8s.io/kube-proxy:v1.37.2"`,
		`Pending, container dump ContainerCreating; last event: Pulled: Successfully pulled image`,
	}
	if diff := cmp.Diff(want, waiting); diff != "" {
		t.Errorf("waiting lines (-want +got):\n%s\nall lines: %q", diff, lines)
	}
	assertNoPods(t, c)
}

// A pod the kubelet has not taken up has no phase yet.
func TestWaitingForUnscheduled(t *testing.T) {
	c := newClient(t, nil)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "debug", Name: "p"}, Status: corev1.PodStatus{
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "node(s) had untolerated taint"}},
	}}
	got := waitingFor(context.Background(), c, p)
	if want := "no status yet (the kubelet has not taken it up), not scheduled: Unschedulable node(s) had untolerated taint"; got != want {
		t.Errorf("waitingFor = %q, want %q", got, want)
	}
}
