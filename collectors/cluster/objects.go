package cluster

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// FactsFromObjects picks the facts for Service namespace/name out of saved
// API objects (kubectl get ... -o yaml), the same facts Collect reads from
// a cluster, with the same not-found error and suggestions.
func FactsFromObjects(objs []runtime.Object, namespace, name string) (*Facts, error) {
	f := &Facts{Pods: map[string]*corev1.Pod{}}
	var services []string
	var pods []*corev1.Pod
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.Service:
			if v.Namespace == namespace {
				services = append(services, v.Name)
				if v.Name == name {
					f.Service = v
				}
			}
		case *discoveryv1.EndpointSlice:
			if v.Namespace == namespace && v.Labels[discoveryv1.LabelServiceName] == name {
				f.EndpointSlices = append(f.EndpointSlices, *v)
			}
		case *corev1.Pod:
			pods = append(pods, v)
			if v.Namespace == KubeProxyNamespace && v.Labels["k8s-app"] == "kube-proxy" {
				f.KubeProxyPods = append(f.KubeProxyPods, *v)
			}
		case *corev1.Node:
			f.Nodes = append(f.Nodes, *v)
		case *networkingv1.NetworkPolicy:
			f.NetworkPoliciesInUse = true
			if v.Namespace == namespace {
				f.NetworkPolicies = append(f.NetworkPolicies, *v)
			}
		}
	}
	if f.Service == nil {
		return nil, &NotFoundError{Namespace: namespace, Name: name, Listed: true, Available: len(services), Suggestions: closeNames(name, services)}
	}
	if f.Service.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, &ExternalNameError{Namespace: namespace, Name: name, ExternalName: f.Service.Spec.ExternalName}
	}
	byName := map[string]*corev1.Pod{}
	for _, p := range pods {
		byName[p.Namespace+"/"+p.Name] = p
	}
	for _, k := range f.podKeys() {
		if p := byName[k.String()]; p != nil {
			f.Pods[k.String()] = p
		} else {
			f.MissingPods = append(f.MissingPods, k.String())
		}
	}
	sort.Slice(f.EndpointSlices, func(i, j int) bool { return f.EndpointSlices[i].Name < f.EndpointSlices[j].Name })
	sort.Slice(f.Nodes, func(i, j int) bool { return f.Nodes[i].Name < f.Nodes[j].Name })
	if len(f.Nodes) == 0 {
		return nil, fmt.Errorf("the saved objects hold no Node: save them with kubectl get service,endpointslices,pods,nodes -o yaml")
	}
	return f, nil
}
