package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// apiServer is a minimal API server over HTTP: it serves the few REST paths
// a trace reads, with the JSON encoding the real one uses, and records every
// request. Any other path is a test failure.
type apiServer struct {
	t      *testing.T
	mu     sync.Mutex
	seen   []string // "METHOD path?query"
	routes map[string]func(w http.ResponseWriter, r *http.Request)
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	s.mu.Unlock()
	h := s.routes[r.Method+" "+r.URL.Path]
	if h == nil {
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
		return
	}
	h(w, r)
}

func writeObject(w http.ResponseWriter, gv schema.GroupVersion, obj runtime.Object) {
	data, err := runtime.Encode(scheme.Codecs.LegacyCodec(gv), obj)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.APIVersion, st.Kind = "v1", "Status"
	data, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_, _ = w.Write(data)
}

func TestCollectOverHTTP(t *testing.T) {
	objs := world(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 31080
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = 32100
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.10", IPMode: ptrTo(corev1.LoadBalancerIPModeProxy)}}
	})
	byName := map[string]runtime.Object{}
	for _, o := range objs {
		m, _ := o.(metav1.Object)
		byName[strings.ToLower(o.GetObjectKind().GroupVersionKind().Kind)+"/"+m.GetNamespace()+"/"+m.GetName()] = o
	}
	core, disc := corev1.SchemeGroupVersion, discoveryv1.SchemeGroupVersion
	podRoute := func(name string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if name == "web-2" { // gone since the slice was written
				writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name))
				return
			}
			writeObject(w, core, byName["pod/shop/"+name])
		}
	}
	srv := &apiServer{t: t}
	srv.routes = map[string]func(http.ResponseWriter, *http.Request){
		"GET /api/v1/namespaces/shop/services/web": func(w http.ResponseWriter, r *http.Request) {
			writeObject(w, core, byName["service/shop/web"])
		},
		"GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices": func(w http.ResponseWriter, r *http.Request) {
			if got := r.URL.Query().Get("labelSelector"); got != "kubernetes.io/service-name=web" {
				t.Errorf("endpointslices labelSelector = %q", got)
				writeStatus(w, apierrors.NewBadRequest("want the service's label selector"))
				return
			}
			list := &discoveryv1.EndpointSliceList{}
			list.Items = append(list.Items, *byName["endpointslice/shop/web-b7x2k"].(*discoveryv1.EndpointSlice),
				*byName["endpointslice/shop/web-a91qp"].(*discoveryv1.EndpointSlice))
			writeObject(w, disc, list)
		},
		"GET /api/v1/namespaces/shop/pods/web-1": podRoute("web-1"),
		"GET /api/v1/namespaces/shop/pods/web-2": podRoute("web-2"),
		"GET /api/v1/namespaces/shop/pods/web-3": podRoute("web-3"),
		"GET /api/v1/nodes": func(w http.ResponseWriter, r *http.Request) {
			// Two pages: node-b first, then node-a.
			list := &corev1.NodeList{}
			switch r.URL.Query().Get("continue") {
			case "":
				list.Items = []corev1.Node{*byName["node//node-b"].(*corev1.Node)}
				list.Continue = "page-2"
			case "page-2":
				list.Items = []corev1.Node{*byName["node//node-a"].(*corev1.Node)}
			default:
				t.Errorf("nodes continue = %q", r.URL.Query().Get("continue"))
			}
			writeObject(w, core, list)
		},
		"GET /api/v1/namespaces/kube-system/pods": func(w http.ResponseWriter, r *http.Request) {
			writeStatus(w, forbidden("alice", "list", "", "pods", "kube-system", "").(*apierrors.StatusError))
		},
		"GET /version": func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(version.Info{Major: "1", Minor: "37", GitVersion: testVersion})
		},
		// NetworkPolicies may be forbidden: the trace goes on without them.
		"GET /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies": func(w http.ResponseWriter, r *http.Request) {
			writeStatus(w, forbidden("alice", "list", "networking.k8s.io", "networkpolicies", "shop", "").(*apierrors.StatusError))
		},
		"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews": func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			// The client sends protobuf or JSON, per r.Header's Content-Type.
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
			review, ok := obj.(*authorizationv1.SelfSubjectAccessReview)
			if err != nil || !ok || review.Spec.ResourceAttributes == nil {
				t.Errorf("review body %s: %v", body, err)
				writeStatus(w, apierrors.NewBadRequest("bad review"))
				return
			}
			review.Status.Allowed = review.Spec.ResourceAttributes.Resource != "nodes"
			writeObject(w, authorizationv1.SchemeGroupVersion, review)
		},
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	c, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, UserAgent: "kubectl-trace-svc/test", QPS: 100, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := Collect(ctx, c, "shop", "web")
	if err != nil {
		t.Fatal(err)
	}

	want := byName["service/shop/web"].(*corev1.Service)
	if diff := cmp.Diff(want.Spec, f.Service.Spec); diff != "" {
		t.Errorf("service spec (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.Status, f.Service.Status); diff != "" {
		t.Errorf("service status (-want +got):\n%s", diff)
	}
	wantSlice := byName["endpointslice/shop/web-a91qp"].(*discoveryv1.EndpointSlice)
	if len(f.EndpointSlices) != 2 || !cmp.Equal(wantSlice.Endpoints, f.EndpointSlices[0].Endpoints) {
		t.Errorf("slices = %+v", f.EndpointSlices)
	}
	var pods []string
	for k := range f.Pods {
		pods = append(pods, k)
	}
	sort.Strings(pods)
	got := map[string]any{
		"pods": pods, "missing": f.MissingPods, "nodes": []string{f.Nodes[0].Name, f.Nodes[1].Name},
		"node-a IP": f.Nodes[0].Status.Addresses[0].Address, "version": f.ServerVersion,
		"pod web-1 node": f.Pods["shop/web-1"].Spec.NodeName, "kube-proxy pods": len(f.KubeProxyPods),
	}
	wantFacts := map[string]any{
		"pods": []string{"shop/web-1", "shop/web-3"}, "missing": []string{"shop/web-2"}, "nodes": []string{"node-a", "node-b"},
		"node-a IP": "192.168.0.11", "version": testVersion, "pod web-1 node": "node-a", "kube-proxy pods": 0,
	}
	if diff := cmp.Diff(wantFacts, got); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
	var fe *ForbiddenError
	if !errors.As(f.KubeProxyPodsErr, &fe) || fe.User != "alice" || fe.Namespace != "kube-system" || fe.Verb != "list" {
		t.Errorf("KubeProxyPodsErr = %#v", f.KubeProxyPodsErr)
	}

	// What went over the wire: the selectors and the pages.
	srv.mu.Lock()
	seen := append([]string(nil), srv.seen...)
	srv.mu.Unlock()
	sort.Strings(seen)
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	wantSeen := []string{
		"GET /api/v1/namespaces/kube-system/pods?" + q("labelSelector", "k8s-app=kube-proxy", "limit", "500"),
		"GET /api/v1/namespaces/shop/pods/web-1?",
		"GET /api/v1/namespaces/shop/pods/web-2?",
		"GET /api/v1/namespaces/shop/pods/web-3?",
		"GET /api/v1/namespaces/shop/services/web?",
		"GET /api/v1/nodes?" + q("continue", "page-2", "limit", "500"),
		"GET /api/v1/nodes?" + q("limit", "500"),
		"GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?" + q("labelSelector", "kubernetes.io/service-name=web"),
		"GET /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies?",
		"GET /version?",
	}
	if diff := cmp.Diff(wantSeen, seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// The access pre-check over the same wire.
	err = CheckAccess(ctx, c, TraceAccessChecks("shop"))
	if err == nil || !strings.HasPrefix(err.Error(), "missing permissions: list nodes at the cluster scope; ") {
		t.Errorf("CheckAccess() = %v", err)
	}
}

// TestCollectNoAPIServer: nothing listens where the kubeconfig points. The
// error says the API server cannot be reached, where, and what to check —
// not client-go's raw "Get https://...: dial tcp ...".
func TestCollectNoAPIServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Collect(context.Background(), c, "shop", "web")
	if err == nil {
		t.Fatal("Collect against a closed port succeeded")
	}
	for _, want := range []string{"cannot talk to the API server at http://" + addr + " to get service \"shop/web\"", "connection refused", "--context or --kubeconfig"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "Get \"http") {
		t.Errorf("error %q repeats client-go's raw request", err)
	}
}
