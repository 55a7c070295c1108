package cluster

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Test fixtures: small builders for the API objects a trace reads.

func service(ns, name string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			Selector:   map[string]string{"app": name},
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080),
			}},
			SessionAffinity:       corev1.ServiceAffinityNone,
			InternalTrafficPolicy: ptrTo(corev1.ServiceInternalTrafficPolicyCluster),
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// endpoint is one endpoint of a slice; pod "" means no targetRef.
type endpoint struct {
	ip, pod, node, zone         string
	ready, serving, terminating bool
	hintZones                   []string
	hintNodes                   []string
	targetNamespace, targetKind string
}

func slice(ns, svc, name string, eps ...endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptrTo("http"), Protocol: ptrTo(corev1.ProtocolTCP), Port: ptrTo[int32](8080),
		}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses: []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptrTo(e.ready), Serving: ptrTo(e.serving), Terminating: ptrTo(e.terminating),
			},
		}
		if e.node != "" {
			ep.NodeName = ptrTo(e.node)
		}
		if e.zone != "" {
			ep.Zone = ptrTo(e.zone)
		}
		if len(e.hintZones)+len(e.hintNodes) > 0 {
			ep.Hints = &discoveryv1.EndpointHints{}
			for _, z := range e.hintZones {
				ep.Hints.ForZones = append(ep.Hints.ForZones, discoveryv1.ForZone{Name: z})
			}
			for _, n := range e.hintNodes {
				ep.Hints.ForNodes = append(ep.Hints.ForNodes, discoveryv1.ForNode{Name: n})
			}
		}
		if e.pod != "" {
			kind := e.targetKind
			if kind == "" {
				kind = "Pod"
			}
			tns := e.targetNamespace
			if tns == "" {
				tns = ns
			}
			ep.TargetRef = &corev1.ObjectReference{Kind: kind, Namespace: tns, Name: e.pod}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func pod(ns, name, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

func node(name, ip, zone string) *corev1.Node {
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelTopologyZone: zone,
		}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func kubeProxyPod(nodeName string) *corev1.Pod {
	p := pod(metav1.NamespaceSystem, "kube-proxy-"+nodeName, nodeName, "192.168.0.1", map[string]string{"k8s-app": "kube-proxy"})
	p.Spec.HostNetwork = true
	return p
}

// forbidden is the error the API server returns when RBAC denies a request,
// worded as k8s.io/apiserver does.
func forbidden(user, verb, group, resource, namespace, name string) error {
	where := fmt.Sprintf("in the namespace %q", namespace)
	if namespace == "" {
		where = "at the cluster scope"
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: group, Resource: resource}, name,
		fmt.Errorf("User %q cannot %s resource %q in API group %q %s", user, verb, resource, group, where))
}

func ptrTo[T any](v T) *T { return &v }
