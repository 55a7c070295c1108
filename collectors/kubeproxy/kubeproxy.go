// Package kubeproxy collects a node's dataplane by exec'ing the node-dump
// script (collectors/nodedump) into the kube-proxy pod that already runs on
// the node: no pod is created, but the user needs pods/exec in kube-system
// (AccessChecks).
package kubeproxy

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
)

// ContainerName is the container exec'd into when a kube-proxy pod
// has one of that name; otherwise its first container is.
const ContainerName = "kube-proxy"

// ErrNoPod: no Running kube-proxy pod was found on the node.
var ErrNoPod = errors.New("no running kube-proxy pod on the node")

// NoPodError says why a node's kube-proxy pod cannot be exec'd
// into: there is none (Pod is empty), or the best one is not Running.
type NoPodError struct {
	Node string
	// Pod ("namespace/name") and Phase describe the pod found when it is
	// not Running.
	Pod   string
	Phase corev1.PodPhase
}

func (e *NoPodError) Error() string {
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

// Unwrap makes errors.Is(err, ErrNoPod) work.
func (e *NoPodError) Unwrap() error { return ErrNoPod }

// AccessChecks lists what collecting through kube-proxy's pods
// needs beyond a trace's reads: exec into them. Exec over SPDY is a POST
// (create), and over WebSocket a GET that also needs create.
func AccessChecks() []cluster.AccessCheck {
	return []cluster.AccessCheck{{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: cluster.KubeProxyNamespace}}
}

// PodOn picks node's kube-proxy pod from kubeProxyPods (as
// collectors/cluster lists them): a Running one, preferably not being
// deleted, ties broken by name. It returns a *NoPodError when there
// is none, or the only ones are not Running.
func PodOn(node string, kubeProxyPods []corev1.Pod) (*corev1.Pod, error) {
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
		return nil, &NoPodError{Node: node}
	}
	if best.Status.Phase != corev1.PodRunning {
		return nil, &NoPodError{Node: node, Pod: podNamespace(best) + "/" + best.Name, Phase: best.Status.Phase}
	}
	return best, nil
}

// container is the container named kube-proxy, else the first.
func container(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == ContainerName {
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

// Options configure the collection.
type Options struct {
	// Executor runs commands in the pod; nil uses the API server's exec.
	Executor nodedump.Executor
	// Run shapes the dump script and caps its output.
	Run nodedump.RunOptions
}

// Collect dumps node's dataplane by exec'ing the dump script into the
// kube-proxy pod that runs there (host network, and the tools kube-proxy
// itself uses), found in kubeProxyPods. No pod is created or deleted.
func Collect(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, node string, kubeProxyPods []corev1.Pod, opts Options) (*nodedump.Result, error) {
	return collect(ctx, c, restConfig, node, kubeProxyPods, opts, nil)
}

func collect(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, node string, kubeProxyPods []corev1.Pod, opts Options, progress func(string)) (*nodedump.Result, error) {
	if progress == nil {
		progress = func(string) {}
	}
	pod, err := PodOn(node, kubeProxyPods)
	if err != nil {
		return nil, err
	}
	ns := podNamespace(pod)
	ref := ns + "/" + pod.Name
	ctr := container(pod)
	if ctr == "" {
		return nil, fmt.Errorf("node %q: kube-proxy pod %q has no containers; use --collector debugpod", node, ref)
	}
	ex := opts.Executor
	if ex == nil {
		ex = nodedump.NewAPIExecutor(c, restConfig)
	}
	progress(fmt.Sprintf("node %s: dumping rules in kube-proxy pod %s (container %s)", node, ref, ctr))
	res, err := nodedump.Run(ctx, ex, node, nodedump.Target{Namespace: ns, Pod: pod.Name, Container: ctr}, opts.Run)
	switch {
	case errors.Is(err, nodedump.ErrOutputTooLarge):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("node %q: exec in kube-proxy pod %q container %q: %w; use --collector debugpod", node, ref, ctr, err)
	}
	res.Pod = ref
	return res, nil
}

// CollectAll collects nodes through their kube-proxy pods with at most
// parallel at once. Results are in the order of nodes; a node without a
// usable kube-proxy pod gets its error and the others go on.
func CollectAll(ctx context.Context, c kubernetes.Interface, restConfig *rest.Config, kubeProxyPods []corev1.Pod, nodes []string, opts Options, parallel int, progress func(string)) ([]nodedump.NodeResult, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	return nodedump.CollectNodes(ctx, nodes, parallel, progress, func(ctx context.Context, node string, progress func(string)) (*nodedump.Result, error) {
		return collect(ctx, c, restConfig, node, kubeProxyPods, opts, progress)
	}), ctx.Err()
}
