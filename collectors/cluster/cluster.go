// Package cluster collects what a trace needs from the API server, with the
// user's own credentials: the Service, its EndpointSlices, the Pods behind
// them, the Nodes, the kube-proxy pods and the server version. It asks only
// for what is needed (the Service's slices by label, pods by name) and hands
// the API objects on unchanged; what they mean for a packet is trace's
// business.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

const (
	// discoveryServiceNameLabel ties an EndpointSlice to its Service
	// (discoveryv1.LabelServiceName).
	discoveryServiceNameLabel = discoveryv1.LabelServiceName

	// KubeProxyNamespace and KubeProxySelector find the kube-proxy pods of
	// a kubeadm-style cluster (the DaemonSet's pod label).
	KubeProxyNamespace = metav1.NamespaceSystem
	KubeProxySelector  = "k8s-app=kube-proxy"

	// parallelGets bounds the concurrent GETs (pods, access reviews).
	parallelGets = 8
	// podListThreshold: a Service with more pods than this (in its own
	// namespace, with a selector) gets one LIST of pods by the Service's
	// selector instead of one GET per pod.
	podListThreshold = 32
	// listPageSize is the page size of cluster-sized lists (nodes,
	// kube-proxy pods), so that a big cluster is read in chunks.
	listPageSize = 500
)

// Facts is what the API server says about one Service: raw API objects,
// sorted by name, not interpreted.
type Facts struct {
	Service *corev1.Service
	// EndpointSlices are the slices labelled with the Service's name.
	EndpointSlices []discoveryv1.EndpointSlice
	// Pods are the pods the endpoints' targetRefs name, keyed
	// "namespace/name".
	Pods map[string]*corev1.Pod
	// MissingPods are the pods ("namespace/name") an endpoint names but the
	// API server no longer has (deleted since the slice was written).
	MissingPods []string
	Nodes       []corev1.Node
	// KubeProxyPods are the pods in kube-system labelled k8s-app=kube-proxy.
	// Empty either because there are none (no kube-proxy, or another
	// label) or because listing them was forbidden: KubeProxyPodsErr then
	// says so.
	KubeProxyPods    []corev1.Pod
	KubeProxyPodsErr error
	// ServerVersion is the API server's git version, e.g. "v1.37.2".
	ServerVersion string
	// NetworkPolicies are those of the Service's namespace; InUse says
	// whether the cluster has any NetworkPolicy at all (so a missing one
	// is worth a remark). Err is set when listing them was not allowed;
	// the trace goes on without.
	NetworkPolicies      []networkingv1.NetworkPolicy
	NetworkPoliciesInUse bool
	NetworkPoliciesErr   error
}

// Collect reads the facts for the Service namespace/name. Bound its time
// with ctx. Errors are one sentence naming the verb and the object; known
// conditions are typed: *NotFoundError, *ExternalNameError, *ForbiddenError
// (see the Err* sentinels). A Service with no endpoints is not an error
// here: the facts are still worth tracing; see Facts.CheckEndpoints.
func Collect(ctx context.Context, c kubernetes.Interface, namespace, name string) (*Facts, error) {
	if namespace == "" || name == "" {
		return nil, fmt.Errorf("collect service %q in namespace %q: the namespace and the name are required", name, namespace)
	}
	svc, err := getService(ctx, c, namespace, name)
	if err != nil {
		return nil, err
	}
	f := &Facts{Service: svc, Pods: map[string]*corev1.Pod{}}

	if f.EndpointSlices, err = listEndpointSlices(ctx, c, namespace, name); err != nil {
		return nil, err
	}
	if err := f.getPods(ctx, c); err != nil {
		return nil, err
	}
	if f.Nodes, err = listNodes(ctx, c); err != nil {
		return nil, err
	}
	f.KubeProxyPods, err = listKubeProxyPods(ctx, c)
	var fe *ForbiddenError
	if errors.As(err, &fe) {
		// The caller can still collect rules through a helper pod.
		f.KubeProxyPods, f.KubeProxyPodsErr = nil, fe
	} else if err != nil {
		return nil, err
	}

	f.NetworkPolicies, f.NetworkPoliciesInUse, f.NetworkPoliciesErr = listNetworkPolicies(ctx, c, namespace)

	v, err := c.Discovery().ServerVersionWithContext(ctx)
	if err != nil {
		// /version is a non-resource URL; kubectl auth can-i takes it as is.
		return nil, request{verb: "get", resource: "/version", what: "server version"}.wrap(err)
	}
	f.ServerVersion = v.GitVersion
	return f, nil
}

// CheckEndpoints returns a *NoEndpointsError when no EndpointSlice lists an
// endpoint (ready or not), nil otherwise.
func (f *Facts) CheckEndpoints() error {
	for _, s := range f.EndpointSlices {
		if len(s.Endpoints) > 0 {
			return nil
		}
	}
	return &NoEndpointsError{
		Namespace: f.Service.Namespace, Name: f.Service.Name,
		Selector: f.Service.Spec.Selector, Slices: len(f.EndpointSlices),
	}
}

func getService(ctx context.Context, c kubernetes.Interface, namespace, name string) (*corev1.Service, error) {
	svc, err := c.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, notFound(ctx, c, namespace, name, err)
	case err != nil:
		return nil, request{verb: "get", resource: "services", namespace: namespace, name: name,
			what: fmt.Sprintf("service %q", namespace+"/"+name)}.wrap(err)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, &ExternalNameError{Namespace: namespace, Name: name, ExternalName: svc.Spec.ExternalName}
	}
	return svc, nil
}

// notFound builds the not-found error, with suggestions when the namespace's
// Services can be listed; when they cannot (forbidden, or any other error),
// it just says not found.
func notFound(ctx context.Context, c kubernetes.Interface, namespace, name string, cause error) error {
	e := &NotFoundError{Namespace: namespace, Name: name, Err: cause}
	list, err := c.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return e
	}
	names := make([]string, 0, len(list.Items))
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	e.Listed, e.Available = true, len(names)
	e.Suggestions = closeNames(name, names)
	return e
}

func listEndpointSlices(ctx context.Context, c kubernetes.Interface, namespace, name string) ([]discoveryv1.EndpointSlice, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryServiceNameLabel: name}).String()
	list, err := c.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, request{verb: "list", group: discoveryv1.GroupName, resource: "endpointslices", namespace: namespace,
			what: fmt.Sprintf("endpointslices in namespace %q with label %s", namespace, sel)}.wrap(err)
	}
	slices := list.Items
	sort.Slice(slices, func(i, j int) bool { return slices[i].Name < slices[j].Name })
	return slices, nil
}

type podKey struct{ namespace, name string }

func (k podKey) String() string { return k.namespace + "/" + k.name }

// podKeys returns the pods the endpoints name, each once, sorted.
func (f *Facts) podKeys() []podKey {
	seen := map[podKey]bool{}
	var keys []podKey
	for _, s := range f.EndpointSlices {
		for _, ep := range s.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" || ref.Name == "" {
				continue
			}
			k := podKey{ref.Namespace, ref.Name}
			if k.namespace == "" {
				k.namespace = s.Namespace
			}
			if k.namespace == "" {
				k.namespace = f.Service.Namespace
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// getPods fetches the pods the endpoints name: one GET each, at most
// parallelGets at a time; for a big Service with a selector, first one LIST
// in its namespace by that selector. A pod that is gone is recorded in
// MissingPods, not an error.
func (f *Facts) getPods(ctx context.Context, c kubernetes.Interface) error {
	keys := f.podKeys()
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > podListThreshold && len(f.Service.Spec.Selector) > 0 {
		if err := f.listPodsBySelector(ctx, c); err != nil {
			return err
		}
	}
	var todo []podKey
	for _, k := range keys {
		if f.Pods[k.String()] == nil {
			todo = append(todo, k)
		}
	}

	pods := make([]*corev1.Pod, len(todo))
	gone := make([]bool, len(todo))
	err := forEachBounded(ctx, len(todo), func(ctx context.Context, i int) error {
		k := todo[i]
		pod, err := c.CoreV1().Pods(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			gone[i] = true
			return nil
		case err != nil:
			return request{verb: "get", resource: "pods", namespace: k.namespace, name: k.name,
				what: fmt.Sprintf("pod %q", k.String())}.wrap(err)
		}
		pods[i] = pod
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range todo {
		if gone[i] {
			f.MissingPods = append(f.MissingPods, k.String())
		} else {
			f.Pods[k.String()] = pods[i]
		}
	}
	return nil
}

// listPodsBySelector lists the Service's pods by its selector, in its
// namespace, and keeps those the endpoints name. Forbidden is not an error:
// the pods are then fetched by name.
func (f *Facts) listPodsBySelector(ctx context.Context, c kubernetes.Interface) error {
	ns := f.Service.Namespace
	sel := labels.SelectorFromSet(f.Service.Spec.Selector).String()
	list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if apierrors.IsForbidden(err) {
		return nil
	}
	if err != nil {
		return request{verb: "list", resource: "pods", namespace: ns,
			what: fmt.Sprintf("pods in namespace %q with label %s", ns, sel)}.wrap(err)
	}
	want := map[string]bool{}
	for _, k := range f.podKeys() {
		want[k.String()] = true
	}
	for i := range list.Items {
		p := &list.Items[i]
		if k := (podKey{p.Namespace, p.Name}).String(); want[k] {
			f.Pods[k] = p
		}
	}
	return nil
}

// listNodes lists every node. A whole-cluster list is what is needed here:
// a NodePort or LoadBalancer Service is reachable on every node (each node's
// kube-proxy programs it), and no label narrows the nodes to a Service's.
// It is read in pages so that a big cluster does not come in one response.
func listNodes(ctx context.Context, c kubernetes.Interface) ([]corev1.Node, error) {
	nodes, err := listPages(func(opts metav1.ListOptions) ([]corev1.Node, string, error) {
		list, err := c.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		return list.Items, list.Continue, nil
	}, metav1.ListOptions{})
	if err != nil {
		return nil, request{verb: "list", resource: "nodes", what: "nodes"}.wrap(err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// listKubeProxyPods lists the kube-proxy pods (one per node, so also paged).
func listKubeProxyPods(ctx context.Context, c kubernetes.Interface) ([]corev1.Pod, error) {
	pods, err := listPages(func(opts metav1.ListOptions) ([]corev1.Pod, string, error) {
		list, err := c.CoreV1().Pods(KubeProxyNamespace).List(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		return list.Items, list.Continue, nil
	}, metav1.ListOptions{LabelSelector: KubeProxySelector})
	if err != nil {
		return nil, request{verb: "list", resource: "pods", namespace: KubeProxyNamespace,
			what: fmt.Sprintf("pods in namespace %q with label %s", KubeProxyNamespace, KubeProxySelector)}.wrap(err)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// listPages reads a list in listPageSize-sized pages (page returns one
// page's items and the continue token) until the server has no more, and
// returns all the items. When a continue token expires between pages (410
// Gone), it starts over once with a single unpaged list.
func listPages[T any](page func(metav1.ListOptions) ([]T, string, error), opts metav1.ListOptions) ([]T, error) {
	opts.Limit = listPageSize
	var all []T
	for {
		items, next, err := page(opts)
		if apierrors.IsResourceExpired(err) && opts.Continue != "" {
			opts.Limit, opts.Continue = 0, ""
			items, _, err = page(opts)
			return items, err
		}
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		opts.Continue = next
	}
}

// forEachBounded runs fn(0..n-1) with at most parallelGets at a time. The
// first failure cancels the context the others run with (they then fail
// fast) and is returned; a failure that is not a cancellation wins over the
// cancellations it caused.
func forEachBounded(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelGets)
	for i := range n {
		g.Go(func() error { return fn(ctx, i) })
	}
	return g.Wait()
}

// listNetworkPolicies reads the namespace's NetworkPolicies, and whether the
// cluster uses any (one item is enough to know). Errors are returned, not
// fatal: the trace works without them.
func listNetworkPolicies(ctx context.Context, c kubernetes.Interface, namespace string) ([]networkingv1.NetworkPolicy, bool, error) {
	list, err := c.NetworkingV1().NetworkPolicies(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, false, request{verb: "list", group: networkingv1.GroupName, resource: "networkpolicies", namespace: namespace,
			what: fmt.Sprintf("networkpolicies in namespace %q", namespace)}.wrap(err)
	}
	if len(list.Items) > 0 {
		return list.Items, true, nil
	}
	any, err := c.NetworkingV1().NetworkPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		// Cluster-wide listing is often not allowed; the namespace had none.
		return nil, false, nil
	}
	return nil, len(any.Items) > 0, nil
}
