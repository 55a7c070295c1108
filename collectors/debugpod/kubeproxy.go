package debugpod

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
)

// KubeProxyContainerName is the container exec'd into when a kube-proxy pod
// has one of that name; otherwise its first container is.
const KubeProxyContainerName = "kube-proxy"

// ErrNoKubeProxyPod: no Running kube-proxy pod was found on the node.
var ErrNoKubeProxyPod = errors.New("no running kube-proxy pod on the node")

// NoKubeProxyPodError says why a node's kube-proxy pod cannot be exec'd
// into: there is none (Pod is empty), or the best one is not Running.
type NoKubeProxyPodError struct {
	Node string
	// Pod ("namespace/name") and Phase describe the pod found when it is
	// not Running.
	Pod   string
	Phase corev1.PodPhase
}

func (e *NoKubeProxyPodError) Error() string {
	if e.Pod == "" {
		return fmt.Sprintf("no kube-proxy pod runs on node %s (looked for pods labelled %s in %s); use --collector debugpod",
			e.Node, cluster.KubeProxySelector, cluster.KubeProxyNamespace)
	}
	phase := string(e.Phase)
	if phase == "" {
		phase = "in no phase yet"
	}
	return fmt.Sprintf("kube-proxy pod %q on node %s is %s, not Running; use --collector debugpod", e.Pod, e.Node, phase)
}

// Unwrap makes errors.Is(err, ErrNoKubeProxyPod) work.
func (e *NoKubeProxyPodError) Unwrap() error { return ErrNoKubeProxyPod }

// KubeProxyAccessChecks lists what collecting through kube-proxy's pods
// needs beyond a trace's reads: exec into them. Exec over SPDY is a POST
// (create), and over WebSocket a GET that also needs create.
func KubeProxyAccessChecks() []cluster.AccessCheck {
	return []cluster.AccessCheck{{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: cluster.KubeProxyNamespace}}
}

// KubeProxyPodOn picks node's kube-proxy pod from kubeProxyPods (as
// collectors/cluster lists them): a Running one, preferably not being
// deleted, ties broken by name. It returns a *NoKubeProxyPodError when there
// is none, or the only ones are not Running.
func KubeProxyPodOn(node string, kubeProxyPods []corev1.Pod) (*corev1.Pod, error) {
	rank := func(p *corev1.Pod) int {
		switch {
		case p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil:
			return 2
		case p.Status.Phase == corev1.PodRunning:
			return 1
		}
		return 0
	}
	var best *corev1.Pod
	for i := range kubeProxyPods {
		p := &kubeProxyPods[i]
		if p.Spec.NodeName != node {
			continue
		}
		if best == nil || rank(p) > rank(best) || rank(p) == rank(best) && p.Name < best.Name {
			best = p
		}
	}
	if best == nil {
		return nil, &NoKubeProxyPodError{Node: node}
	}
	if best.Status.Phase != corev1.PodRunning {
		return nil, &NoKubeProxyPodError{Node: node, Pod: podNamespace(best) + "/" + best.Name, Phase: best.Status.Phase}
	}
	return best, nil
}

// kubeProxyContainer is the container named kube-proxy, else the first.
func kubeProxyContainer(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == KubeProxyContainerName {
			return c.Name
		}
	}
	if len(p.Spec.Containers) == 0 {
		return ""
	}
	return p.Spec.Containers[0].Name
}

func podNamespace(p *corev1.Pod) string {
	if p.Namespace == "" {
		return cluster.KubeProxyNamespace
	}
	return p.Namespace
}

// CollectFromKubeProxy dumps node's dataplane by exec'ing the dump script
// into the kube-proxy pod that runs there (host network, and the tools
// kube-proxy itself uses), found in kubeProxyPods. No pod is created or
// deleted. Of opts only Executor, MaxOutput and Script are used.
func CollectFromKubeProxy(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, node string, kubeProxyPods []corev1.Pod, opts Options) (*Result, error) {
	return collectFromKubeProxy(ctx, c, restConfig, node, kubeProxyPods, opts, nil)
}

func collectFromKubeProxy(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, node string, kubeProxyPods []corev1.Pod, opts Options, progress func(string)) (*Result, error) {
	if progress == nil {
		progress = func(string) {}
	}
	pod, err := KubeProxyPodOn(node, kubeProxyPods)
	if err != nil {
		return nil, err
	}
	ns := podNamespace(pod)
	ref := ns + "/" + pod.Name
	container := kubeProxyContainer(pod)
	if container == "" {
		return nil, fmt.Errorf("node %q: kube-proxy pod %q has no containers; use --collector debugpod", node, ref)
	}
	ex := opts.Executor
	if ex == nil {
		ex = apiExecutor{client: c, config: restConfig}
	}

	progress(fmt.Sprintf("node %s: dumping rules in kube-proxy pod %s (container %s)", node, ref, container))
	var stdout, stderr bytes.Buffer
	var res *Result
	maxOutput := opts.MaxOutput
	if maxOutput <= 0 {
		maxOutput = DefaultMaxOutput
	}
	limit := newOutputCap(maxOutput)
	err = limit.exec(ctx, ex, ns, pod.Name, container, CommandFor(opts.Script), &stdout, &stderr)
	switch {
	case limit.exceeded():
		return nil, limit.tooLarge(node)
	case err == nil:
		res = ParseOutput(node, stdout.Bytes(), stderr.Bytes())
	case ctx.Err() == nil && noShell(err, stderr.Bytes()):
		// kube-proxy's image without sh: run each dump on its own.
		if res, err = collectDirect(ctx, ex, node, ns, pod.Name, container, newOutputCap(maxOutput), opts.Script); err != nil {
			return nil, fmt.Errorf("node %q: exec in kube-proxy pod %q: %w; use --collector debugpod", node, ref, err)
		}
	default:
		return nil, fmt.Errorf("node %q: exec in kube-proxy pod %q container %q: %w", node, ref, container, err)
	}
	res.Pod = ref
	return res, nil
}

// CollectAllFromKubeProxy collects nodes through their kube-proxy pods with
// at most parallel at once. Results are in the order of nodes; a node
// without a usable kube-proxy pod gets its error and the others go on.
func CollectAllFromKubeProxy(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, kubeProxyPods []corev1.Pod, nodes []string, opts Options, parallel int, progress func(string)) ([]NodeResult, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	return forEachNode(ctx, nodes, parallel, progress, func(node string, progress func(string)) (*Result, error) {
		return collectFromKubeProxy(ctx, c, restConfig, node, kubeProxyPods, opts, progress)
	}), ctx.Err()
}
