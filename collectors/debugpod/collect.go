package debugpod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Known conditions; errors wrap them so callers can tell with errors.Is.
var (
	// ErrPodSecurity: Pod Security admission rejects host-network pods in
	// the debug namespace.
	ErrPodSecurity = errors.New("pod security rejects the debug pod")
	// ErrForbidden: RBAC does not let the user create pods there.
	ErrForbidden = errors.New("not allowed to create the debug pod")
	// ErrAdmission: another admission controller or webhook rejects it.
	ErrAdmission = errors.New("admission rejects the debug pod")
	// ErrQuota: a ResourceQuota in the debug namespace has no room for the
	// pod, or wants requests or limits it does not set.
	ErrQuota = errors.New("a resource quota rejects the debug pod")
	// ErrLimitRange: a LimitRange in the debug namespace does not accept
	// the pod's requests or limits.
	ErrLimitRange = errors.New("a limit range rejects the debug pod")
	// ErrImagePull: the node cannot pull the image.
	ErrImagePull = errors.New("the node cannot pull the debug image")
	// ErrUnschedulable: the pod cannot run on the node.
	ErrUnschedulable = errors.New("the debug pod cannot run on the node")
	// ErrPodFailed: the pod ended before the dumps were taken.
	ErrPodFailed = errors.New("the debug pod failed")
	// ErrStartTimeout: the pod was not running in time.
	ErrStartTimeout = errors.New("the debug pod did not start in time")
)

// deleteTimeout bounds the final delete, which runs on a fresh context so
// that Ctrl-C still removes the pod.
const deleteTimeout = 5 * time.Second

// DryRun asks the API server to admit the debug pod for node without
// creating it, so RBAC, Pod Security and webhook rejections come back before
// anything exists.
func DryRun(ctx context.Context, c kubernetes.Interface, node string, opts Options) error {
	opts = opts.withDefaults()
	pod := PodSpec(opts, node)
	_, err := c.CoreV1().Pods(opts.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return explainCreateError(err, opts.Namespace)
	}
	return nil
}

// explainCreateError turns an admission or RBAC rejection into one sentence
// with the fix.
func explainCreateError(err error, ns string) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "violates PodSecurity"):
		return fmt.Errorf("%w: namespace %q enforces a Pod Security level that forbids host-network pods; create a namespace for trace-svc's debug pods labelled pod-security.kubernetes.io/enforce=privileged and pass it with --debug-namespace (docs/rbac.md shows one): %s", ErrPodSecurity, ns, msg)
	case apierrors.IsForbidden(err) && (strings.Contains(msg, "exceeded quota") || strings.Contains(msg, "failed quota")):
		return fmt.Errorf("%w: namespace %q has a ResourceQuota without room for the debug pod, which requests cpu %s and memory %s and is limited to cpu %s and memory %s; free some quota there or pass --debug-namespace with a namespace that has room: %s", ErrQuota, ns, RequestCPU, RequestMemory, LimitCPU, LimitMemory, msg)
	case apierrors.IsForbidden(err) && (strings.Contains(msg, " per Container is ") || strings.Contains(msg, " per Pod is ") || strings.Contains(msg, "LimitRange")):
		return fmt.Errorf("%w: namespace %q has a LimitRange that does not accept the debug pod, which requests cpu %s and memory %s and is limited to cpu %s and memory %s; pass --debug-namespace with a namespace whose limits allow that: %s", ErrLimitRange, ns, RequestCPU, RequestMemory, LimitCPU, LimitMemory, msg)
	case apierrors.IsForbidden(err) && strings.Contains(msg, "admission webhook"):
		return fmt.Errorf("%w in namespace %q; pass --debug-namespace with a namespace the webhook allows, or ask its owner for an exception: %s", ErrAdmission, ns, msg)
	case apierrors.IsForbidden(err) && (strings.Contains(msg, "cannot create resource") || strings.Contains(msg, "User \"")):
		return fmt.Errorf("%w: you may not create pods in namespace %q; ask for create on pods and pods/exec there, or pass --debug-namespace with a namespace where you may (or pass --dump to trace saved files): %s", ErrForbidden, ns, msg)
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || strings.Contains(msg, "denied the request"):
		return fmt.Errorf("%w in namespace %q; pass --debug-namespace with a namespace whose admission policies allow trace-svc's debug pod (docs/rbac.md): %s", ErrAdmission, ns, msg)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("debug namespace %q does not exist; pass --debug-namespace with an existing one: %w", ns, err)
	}
	return fmt.Errorf("create debug pod in namespace %q: %w", ns, err)
}

// Collect dumps node's dataplane through a debug pod: dry-run, create, wait
// until it runs, exec the dump script, and always delete the pod — on
// success, error, timeout and cancellation. progress gets one line per step
// (may be nil).
func Collect(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, node string, opts Options, progress func(string)) (res *nodedump.Result, err error) {
	opts = opts.withDefaults()
	if progress == nil {
		progress = func(string) {}
	}
	if !opts.skipDryRun {
		if err := DryRun(ctx, c, node, opts); err != nil {
			return nil, fmt.Errorf("node %q: %w", node, err)
		}
	}
	ex := opts.Executor
	if ex == nil {
		ex = nodedump.NewAPIExecutor(c, restConfig)
	}

	pod := PodSpec(opts, node)
	ref := opts.Namespace + "/" + pod.Name
	// The name is ours before Create returns, so the delete is armed first:
	// a Create cut short by Ctrl-C may still have made the pod. It also
	// runs when this node's collection panics: the panic becomes the
	// node's error and the pod still goes.
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, nodedump.PanicError(node, r)
		}
		if found, derr := deletePod(ctx, c, opts.Namespace, pod.Name); derr != nil {
			derr = fmt.Errorf("delete debug pod %q: %w (remove it with kubectl trace-svc cleanup)", ref, derr)
			if err != nil {
				err = errors.Join(err, derr)
			} else if res != nil {
				res.Warnings = append(res.Warnings, trace.Warning{Code: trace.CodeDebugPodNotDeleted, Message: derr.Error()})
			}
		} else if found {
			progress(fmt.Sprintf("node %s: deleted debug pod %s", node, ref))
		}
	}()

	progress(fmt.Sprintf("node %s: creating debug pod %s (image %s)", node, ref, opts.Image))
	if _, err := c.CoreV1().Pods(opts.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("node %q: %w", node, explainCreateError(err, opts.Namespace))
	}
	if err := waitRunning(ctx, c, pod, opts, progress); err != nil {
		return nil, fmt.Errorf("node %q: debug pod %q: %w", node, ref, err)
	}

	progress(fmt.Sprintf("node %s: debug pod %s is running; dumping rules", node, ref))
	res, err = nodedump.Run(ctx, ex, node, nodedump.Target{Namespace: opts.Namespace, Pod: pod.Name, Container: ContainerName},
		nodedump.RunOptions{Script: opts.Script, MaxOutput: opts.MaxOutput, SpoolDir: opts.SpoolDir})
	if errors.Is(err, nodedump.ErrOutputTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("node %q: exec in debug pod %q: %w", node, ref, err)
	}
	res.Pod = ref
	progress(fmt.Sprintf("node %s: %d bytes of rules (%s)", node, res.DumpBytes(), res.Backend))
	return res, nil
}

// deletePod deletes now, on a context that survives ctx's cancellation;
// found is false when the pod did not exist.
func deletePod(ctx context.Context, c kubernetes.Interface, ns, name string) (found bool, err error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	err = c.CoreV1().Pods(ns).Delete(dctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		PropagationPolicy:  ptrTo(metav1.DeletePropagationBackground),
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func ptrTo[T any](v T) *T { return &v }

// waitRunning polls the pod until it runs, fails, or StartTimeout passes;
// the error names the cause the pod's status shows. Once the pod takes
// longer than opts.slowAfter, progress gets a line that says what it is
// waiting for (the pod's phase and its last event), again every
// opts.slowEvery or when that changes.
func waitRunning(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, opts Options, progress func(string)) error {
	parent := ctx
	ctx, cancel := context.WithTimeoutCause(ctx, opts.StartTimeout, ErrStartTimeout)
	defer cancel()
	ticker := time.NewTicker(opts.PollInterval)
	defer ticker.Stop()
	var cause error
	start := opts.now()
	var said time.Time
	var saidWhat string
	for {
		p, err := c.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			running, fatal, why := podState(p, opts.Image)
			if running {
				return nil
			}
			if fatal != nil {
				return fatal
			}
			if why != nil {
				cause = why
			}
			if now := opts.now(); now.Sub(start) >= opts.slowAfter {
				what := waitingFor(ctx, c, p)
				if said.IsZero() || now.Sub(said) >= opts.slowEvery || what != saidWhat {
					progress(fmt.Sprintf("node %s: waiting for debug pod %s/%s: %s", pod.Spec.NodeName, pod.Namespace, pod.Name, what))
					said, saidWhat = now, what
				}
			}
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%w: it was deleted before it ran (evicted, or removed by someone else)", ErrPodFailed)
		case ctx.Err() == nil:
			cause = err
		}
		select {
		case <-ctx.Done():
			if parent.Err() == nil && errors.Is(context.Cause(ctx), ErrStartTimeout) {
				if cause == nil {
					cause = eventCause(c, pod)
				}
				if cause == nil {
					return fmt.Errorf("%w: not running after %s (is node %q Ready?)", ErrStartTimeout, opts.StartTimeout, pod.Spec.NodeName)
				}
				return fmt.Errorf("%w: not running after %s: %w", ErrStartTimeout, opts.StartTimeout, cause)
			}
			return parent.Err()
		case <-ticker.C:
		}
	}
}

// podState reads the pod's status: running, a cause that will not go away
// (fatal), or the reason it is not running yet.
func podState(p *corev1.Pod, image string) (running bool, fatal, why error) {
	switch p.Status.Phase {
	case corev1.PodRunning:
		return true, nil, nil
	case corev1.PodFailed, corev1.PodSucceeded:
		msg := strings.TrimSpace(p.Status.Reason + " " + p.Status.Message)
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				msg = strings.TrimSpace(fmt.Sprintf("%s container %s: %s %s (exit code %d)", msg, cs.Name, t.Reason, t.Message, t.ExitCode))
			}
		}
		if msg == "" {
			msg = string(p.Status.Phase)
		}
		hint := ""
		if strings.Contains(msg, "sleep") && strings.Contains(msg, "not found") {
			hint = fmt.Sprintf("; image %s has no sleep: pass --image with one that has sh, sleep, iptables and nft", image)
		}
		return false, fmt.Errorf("%w: %s%s", ErrPodFailed, msg, hint), nil
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
			why = fmt.Errorf("%w: %s", ErrUnschedulable, cond.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable":
			why = fmt.Errorf("%w: %s: image %q: %s (pass --image, or --image-pull-secret for a private registry)", ErrImagePull, w.Reason, cs.Image, w.Message)
			if w.Reason == "InvalidImageName" || w.Reason == "ErrImageNeverPull" {
				return false, why, nil
			}
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "StartError":
			why = fmt.Errorf("%w: %s: %s", ErrPodFailed, w.Reason, w.Message)
		case "", "ContainerCreating", "PodInitializing":
		default:
			why = fmt.Errorf("%s: %s", w.Reason, w.Message)
		}
	}
	return false, nil, why
}

// waitingFor says what a pod that does not run yet waits for: its phase,
// what its status says (not scheduled, a container waiting and why), and
// the last event about it (pulling the image, a sandbox being made, …).
func waitingFor(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) string {
	phase := string(p.Status.Phase)
	if phase == "" {
		phase = "no status yet (the kubelet has not taken it up)"
	}
	parts := []string{phase}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			parts = append(parts, "not scheduled: "+excerpt.Clip(strings.TrimSpace(cond.Reason+" "+cond.Message)))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			parts = append(parts, "container "+cs.Name+" "+excerpt.Clip(w.Reason))
		}
	}
	s := strings.Join(parts, ", ")
	if e := lastEvent(ctx, c, p); e != nil {
		s += "; last event: " + excerpt.Clip(e.Reason+": "+e.Message)
	}
	return s
}

// lastEvent is the newest event about the pod, of any type, or nil (none,
// or events may not be listed).
func lastEvent(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) *corev1.Event {
	evs, err := c.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name})
	if err != nil {
		return nil
	}
	when := func(e *corev1.Event) time.Time {
		switch {
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		}
		return e.CreationTimestamp.Time
	}
	var latest *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if e.InvolvedObject.Name != p.Name {
			continue
		}
		if latest == nil || !when(e).Before(when(latest)) {
			latest = e
		}
	}
	return latest
}

// eventCause finds the latest warning event about the pod, for a timeout
// the pod's status does not explain (sandbox, CNI, volume errors).
func eventCause(c kubernetes.Interface, pod *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	evs, err := c.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
	if err != nil {
		return nil
	}
	var latest *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if e.InvolvedObject.Name != pod.Name || e.Type != corev1.EventTypeWarning {
			continue
		}
		if latest == nil || e.LastTimestamp.After(latest.LastTimestamp.Time) {
			latest = e
		}
	}
	if latest == nil {
		return nil
	}
	if latest.Reason == "FailedScheduling" {
		return fmt.Errorf("%w: %s", ErrUnschedulable, latest.Message)
	}
	return fmt.Errorf("%s: %s", latest.Reason, latest.Message)
}

// CollectAll collects nodes with at most parallel at once, after one
// dry-run so a rejection is reported once rather than per node. Results
// are in the order of nodes.
func CollectAll(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, nodes []string, opts Options, parallel int, progress func(string)) ([]nodedump.NodeResult, error) {
	opts = opts.withDefaults()
	if len(nodes) == 0 {
		return nil, nil
	}
	if err := DryRun(ctx, c, nodes[0], opts); err != nil {
		return nil, err
	}
	opts.skipDryRun = true
	return nodedump.CollectNodes(ctx, nodes, parallel, progress, func(ctx context.Context, node string, progress func(string)) (*nodedump.Result, error) {
		return Collect(ctx, c, restConfig, node, opts, progress)
	}), ctx.Err()
}

// CleanupOptions tune Cleanup.
type CleanupOptions struct {
	// All deletes every debug pod, also those a trace may still be using.
	All bool
	// Now is the clock deadlines are judged by; nil is time.Now.
	Now func() time.Time
}

// CleanupPod is one debug pod Cleanup looked at.
type CleanupPod struct {
	// Pod is "namespace/name"; Node the node it dumps.
	Pod, Node string
	// CreatedBy says who made it ("" when the pod does not say: an
	// earlier version's).
	CreatedBy string
	// Why it was deleted or kept.
	Why string
}

// CleanupReport is what Cleanup deleted and kept, each sorted by pod.
type CleanupReport struct {
	Deleted, Kept []CleanupPod
}

// Cleanup deletes the debug pods in namespace ("" is all namespaces) that
// no trace can still be using: those that finished (or are being deleted)
// and those past their deadline (activeDeadlineSeconds from the pod's start,
// or its creation while it has not started; the kubelet kills them then,
// but an unreachable node leaves them). A pod still inside its deadline may
// be another person's trace, running right now: it is kept, and the report
// says why, unless opts.All. Pods are found by DebugPodLabel, so those left
// by earlier versions, without the CreatedByAnnotation, are judged the same
// way.
func Cleanup(ctx context.Context, c kubernetes.Interface, namespace string, opts CleanupOptions) (CleanupReport, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	var rep CleanupReport
	sel := labels.Set{DebugPodLabel: "true"}.AsSelector().String()
	pods, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return rep, fmt.Errorf("list debug pods: %w", err)
	}
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels[DebugPodLabel] != "true" {
			continue
		}
		cp := CleanupPod{Pod: p.Namespace + "/" + p.Name, Node: p.Annotations[NodeAnnotation], CreatedBy: creatorOf(p)}
		if cp.Node == "" {
			cp.Node = p.Spec.NodeName
		}
		del, why := judge(p, now())
		switch {
		case del:
		case opts.All:
			why, del = "--all: "+why, true
		default:
			cp.Why = why
			rep.Kept = append(rep.Kept, cp)
			continue
		}
		cp.Why = why
		if _, err := deletePod(ctx, c, p.Namespace, p.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete debug pod %q: %w", cp.Pod, err))
			continue
		}
		rep.Deleted = append(rep.Deleted, cp)
	}
	byPod := func(a, b CleanupPod) int { return strings.Compare(a.Pod, b.Pod) }
	slices.SortFunc(rep.Deleted, byPod)
	slices.SortFunc(rep.Kept, byPod)
	return rep, errors.Join(errs...)
}

// judge decides whether a debug pod may go: it finished, or its deadline
// passed. why says so, or why the pod may still be in use.
func judge(p *corev1.Pod, now time.Time) (bool, string) {
	switch {
	case p.DeletionTimestamp != nil:
		return true, "it is being deleted"
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return true, fmt.Sprintf("it finished (%s)", p.Status.Phase)
	}
	deadline, assumed := DefaultDeadline, " (it sets none; taken as the default)"
	if s := p.Spec.ActiveDeadlineSeconds; s != nil {
		deadline, assumed = time.Duration(*s)*time.Second, ""
	}
	start, since := p.CreationTimestamp.Time, "created"
	if p.Status.StartTime != nil {
		start, since = p.Status.StartTime.Time, "started"
	}
	end := start.Add(deadline)
	if !now.Before(end) {
		return true, fmt.Sprintf("its deadline of %s%s passed %s ago (%s %s ago)", deadline, assumed, round(now.Sub(end)), since, round(now.Sub(start)))
	}
	phase := strings.ToLower(string(p.Status.Phase))
	if phase == "" {
		phase = "pending"
	}
	return false, fmt.Sprintf("it is %s and inside its deadline (%s left): a trace may be using it", phase, round(end.Sub(now)))
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// creatorOf reads CreatedByAnnotation for people: "alice on laptop-7 at
// 2025-06-01T10:00:00Z", or "" when the pod does not say.
func creatorOf(p *corev1.Pod) string {
	v, ok := p.Annotations[CreatedByAnnotation]
	if !ok {
		return ""
	}
	var c Creator
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return "unreadable " + CreatedByAnnotation + " annotation " + excerpt.Quote(v)
	}
	return c.String()
}
