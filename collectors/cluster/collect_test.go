package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testVersion = "v1.37.2"

// world is a small cluster: namespace shop with Service web (ClusterIP by
// default; mutate changes it), three pods on two nodes, two slices for web,
// one for another Service, kube-proxy on both nodes.
func world(mutate ...func(*corev1.Service)) []runtime.Object {
	sel := map[string]string{"app": "web"}
	return []runtime.Object{
		service("shop", "web", mutate...),
		service("shop", "api"),
		slice("shop", "web", "web-b7x2k",
			endpoint{ip: "10.244.1.5", pod: "web-1", node: "node-a", zone: "zone-a", ready: true, serving: true, hintZones: []string{"zone-a"}},
			endpoint{ip: "10.244.2.7", pod: "web-2", node: "node-b", zone: "zone-b", ready: false, serving: false},
		),
		slice("shop", "web", "web-a91qp",
			endpoint{ip: "10.244.2.9", pod: "web-3", node: "node-b", zone: "zone-b", ready: false, serving: true, terminating: true, hintNodes: []string{"node-b"}},
		),
		slice("shop", "api", "api-zz9k1", endpoint{ip: "10.244.1.99", pod: "api-1", node: "node-a", ready: true, serving: true}),
		pod("shop", "web-1", "node-a", "10.244.1.5", sel),
		pod("shop", "web-2", "node-b", "10.244.2.7", sel),
		pod("shop", "web-3", "node-b", "10.244.2.9", sel),
		pod("shop", "api-1", "node-a", "10.244.1.99", map[string]string{"app": "api"}),
		pod("other", "unrelated", "node-a", "10.244.1.100", sel),
		node("node-b", "192.168.0.12", "zone-b"),
		node("node-a", "192.168.0.11", "zone-a"),
		kubeProxyPod("node-a"),
		kubeProxyPod("node-b"),
	}
}

func newClient(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: testVersion}
	return c
}

func TestCollectServiceTypes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Service)
	}{
		{"ClusterIP", func(*corev1.Service) {}},
		{"ClusterIP session affinity and local internal policy", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptrTo[int32](600)}}
			s.Spec.InternalTrafficPolicy = ptrTo(corev1.ServiceInternalTrafficPolicyLocal)
		}},
		{"NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053})
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.ExternalIPs = []string{"198.51.100.20"}
		}},
		{"LoadBalancer", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 31080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32100
			s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24", "203.0.113.7/32"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
				{IP: "203.0.113.10", IPMode: ptrTo(corev1.LoadBalancerIPModeVIP)},
				{IP: "203.0.113.11", IPMode: ptrTo(corev1.LoadBalancerIPModeProxy)},
				{Hostname: "web.lb.example.com"},
			}
		}},
		{"headless", func(s *corev1.Service) {
			s.Spec.ClusterIP = corev1.ClusterIPNone
			s.Spec.ClusterIPs = []string{corev1.ClusterIPNone}
		}},
		{"dual-stack", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			s.Spec.ClusterIPs = []string{"fd00:10:96::a", "10.96.0.10"}
			s.Spec.ClusterIP = "fd00:10:96::a"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := service("shop", "web", tt.mutate)
			c := newClient(world(tt.mutate)...)
			f, err := Collect(context.Background(), c, "shop", "web")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Spec, f.Service.Spec); diff != "" {
				t.Errorf("service spec (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want.Status, f.Service.Status); diff != "" {
				t.Errorf("service status (-want +got):\n%s", diff)
			}
			checkWorldFacts(t, f)
		})
	}
}

// checkWorldFacts checks what world() gives, whatever the Service's type.
func checkWorldFacts(t *testing.T, f *Facts) {
	t.Helper()
	var slices, nodes, proxies, pods []string
	for _, s := range f.EndpointSlices {
		slices = append(slices, s.Name)
	}
	for _, n := range f.Nodes {
		nodes = append(nodes, n.Name)
	}
	for _, p := range f.KubeProxyPods {
		proxies = append(proxies, p.Name)
	}
	for k, p := range f.Pods {
		if k != p.Namespace+"/"+p.Name {
			t.Errorf("pod %s/%s under key %q", p.Namespace, p.Name, k)
		}
		pods = append(pods, k)
	}
	sort.Strings(pods)
	got := map[string][]string{"slices": slices, "nodes": nodes, "kube-proxy": proxies, "pods": pods, "missing": f.MissingPods}
	want := map[string][]string{
		"slices":     {"web-a91qp", "web-b7x2k"},
		"nodes":      {"node-a", "node-b"},
		"kube-proxy": {"kube-proxy-node-a", "kube-proxy-node-b"},
		"pods":       {"shop/web-1", "shop/web-2", "shop/web-3"},
		"missing":    nil,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
	if f.ServerVersion != testVersion {
		t.Errorf("ServerVersion = %q, want %q", f.ServerVersion, testVersion)
	}
	if f.KubeProxyPodsErr != nil {
		t.Errorf("KubeProxyPodsErr = %v", f.KubeProxyPodsErr)
	}
	if err := f.CheckEndpoints(); err != nil {
		t.Errorf("CheckEndpoints() = %v", err)
	}
}

func TestCollectEndpointConditions(t *testing.T) {
	objs := world()
	f, err := Collect(context.Background(), newClient(objs...), "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	// The slices come back as the API has them: conditions, node, zone,
	// hints untouched.
	want := []discoveryv1.EndpointSlice{*objs[3].(*discoveryv1.EndpointSlice), *objs[2].(*discoveryv1.EndpointSlice)}
	for i := range want {
		if diff := cmp.Diff(want[i].Endpoints, f.EndpointSlices[i].Endpoints); diff != "" {
			t.Errorf("slice %s endpoints (-want +got):\n%s", want[i].Name, diff)
		}
		if diff := cmp.Diff(want[i].Ports, f.EndpointSlices[i].Ports); diff != "" {
			t.Errorf("slice %s ports (-want +got):\n%s", want[i].Name, diff)
		}
	}
	term := f.EndpointSlices[0].Endpoints[0]
	if !*term.Conditions.Terminating || !*term.Conditions.Serving || *term.Conditions.Ready ||
		*term.NodeName != "node-b" || *term.Zone != "zone-b" || term.Hints.ForNodes[0].Name != "node-b" {
		t.Errorf("terminating endpoint = %+v", term)
	}
}

func TestCollectMissingPodTolerated(t *testing.T) {
	objs := world()
	var kept []runtime.Object
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Name == "web-2" {
			continue // deleted after the slice was written
		}
		kept = append(kept, o)
	}
	f, err := Collect(context.Background(), newClient(kept...), "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"shop/web-2"}, f.MissingPods); diff != "" {
		t.Errorf("MissingPods (-want +got):\n%s", diff)
	}
	if len(f.Pods) != 2 || f.Pods["shop/web-1"] == nil || f.Pods["shop/web-3"] == nil {
		t.Errorf("Pods = %v", f.Pods)
	}
	if len(f.Nodes) != 2 {
		t.Errorf("collection stopped after the missing pod: %d nodes", len(f.Nodes))
	}
}

func TestCollectSkipsNonPodTargets(t *testing.T) {
	objs := []runtime.Object{
		service("shop", "web"),
		slice("shop", "web", "web-1",
			endpoint{ip: "10.0.0.1", ready: true, serving: true},                                     // no targetRef
			endpoint{ip: "10.0.0.2", pod: "vm-1", targetKind: "VirtualMachineInstance", ready: true}, // not a pod
			endpoint{ip: "10.0.0.3", pod: "web-x", targetNamespace: "elsewhere", ready: true},        // pod in another namespace
		),
		pod("elsewhere", "web-x", "node-a", "10.0.0.3", nil),
	}
	c := newClient(objs...)
	f, err := Collect(context.Background(), c, "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Pods) != 1 || f.Pods["elsewhere/web-x"] == nil {
		t.Errorf("Pods = %v", f.Pods)
	}
	for _, a := range c.Actions() {
		if a.GetResource().Resource == "pods" && a.GetNamespace() == "shop" {
			t.Errorf("unexpected %s", describeAction(a))
		}
	}
}

func TestCollectExternalName(t *testing.T) {
	c := newClient(service("shop", "db", func(s *corev1.Service) {
		s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.prod.example.com"}
	}))
	f, err := Collect(context.Background(), c, "shop", "db")
	if f != nil || !errors.Is(err, ErrExternalName) {
		t.Fatalf("Collect = %v, %v; want ErrExternalName", f, err)
	}
	want := `service "shop/db" is of type ExternalName: the cluster DNS answers db.shop.svc with a CNAME to "db.prod.example.com" (spec.externalName), ` +
		`so clients connect to that name directly and kube-proxy writes no rules for it; there is no proxy path to trace`
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	if got := actionList(c); !cmp.Equal(got, []string{"get services shop db"}) {
		t.Errorf("actions after an ExternalName Service: %v", got)
	}
}

func TestCollectNotFound(t *testing.T) {
	names := func(ns string, n ...string) []runtime.Object {
		var objs []runtime.Object
		for _, name := range n {
			objs = append(objs, service(ns, name))
		}
		return objs
	}
	tests := []struct {
		name    string
		objs    []runtime.Object
		reactor k8stesting.ReactionFunc // on "list services"
		want    string
	}{
		{
			name: "two close names",
			objs: append(names("shop", "web-frontend", "webb", "cart", "payments"), service("other", "web")),
			want: `service "web" not found in namespace "shop"; did you mean "webb" or "web-frontend"?`,
		},
		{
			name: "three close names, closest first",
			objs: names("shop", "wbe", "we", "web-v2", "web-canary", "zzz"),
			want: `service "web" not found in namespace "shop"; did you mean "we", "wbe" or "web-v2"?`,
		},
		{
			name: "none close",
			objs: append(names("shop", "cart", "payments"), service("other", "web")),
			want: `service "web" not found in namespace "shop"; kubectl get services -n shop lists them`,
		},
		{
			name: "empty namespace",
			objs: names("other", "web"),
			want: `service "web" not found in namespace "shop"; there are no services in namespace "shop"`,
		},
		{
			name: "listing forbidden",
			objs: names("shop", "webb"),
			reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, forbidden("alice", "list", "", "services", "shop", "")
			},
			want: `service "web" not found in namespace "shop"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objs...)
			if tt.reactor != nil {
				c.PrependReactor("list", "services", tt.reactor)
			}
			_, err := Collect(context.Background(), c, "shop", "web")
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrServiceNotFound) || !apierrors.IsNotFound(err) {
				t.Errorf("errors.Is(ErrServiceNotFound) / IsNotFound false for %v", err)
			}
			want := []string{"get services shop web", "list services shop"}
			if diff := cmp.Diff(want, actionList(c)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCollectForbidden(t *testing.T) {
	tests := []struct {
		name           string
		verb, resource string
		err            error
		want           string
	}{
		{
			name: "get service", verb: "get", resource: "services",
			err:  forbidden("alice", "get", "", "services", "shop", "web"),
			want: `you are not allowed to get services "web" in namespace "shop" (user "alice"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i get services/web -n shop)`,
		},
		{
			name: "list endpointslices", verb: "list", resource: "endpointslices",
			err:  forbidden("alice", "list", "discovery.k8s.io", "endpointslices", "shop", ""),
			want: `you are not allowed to list endpointslices.discovery.k8s.io in namespace "shop" (user "alice"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list endpointslices.discovery.k8s.io -n shop)`,
		},
		{
			name: "get pod", verb: "get", resource: "pods",
			err:  forbidden("system:serviceaccount:ci:tracer", "get", "", "pods", "shop", "web-1"),
			want: `you are not allowed to get pods "web-1" in namespace "shop" (user "system:serviceaccount:ci:tracer"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i get pods/web-1 -n shop)`,
		},
		{
			name: "list nodes", verb: "list", resource: "nodes",
			err:  forbidden("alice", "list", "", "nodes", "", ""),
			want: `you are not allowed to list nodes at the cluster scope (user "alice"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list nodes)`,
		},
		{
			// A denial not worded by the authorizer: the call site names
			// the request, the server's message is kept.
			name: "terse forbidden", verb: "list", resource: "endpointslices",
			err:  apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("denied by policy")),
			want: `you are not allowed to list endpointslices.discovery.k8s.io in namespace "shop": endpointslices.discovery.k8s.io is forbidden: denied by policy; ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list endpointslices.discovery.k8s.io -n shop)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(world()...)
			c.PrependReactor(tt.verb, tt.resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetNamespace() == metav1.NamespaceSystem {
					return false, nil, nil
				}
				if g, ok := a.(k8stesting.GetAction); ok && tt.resource == "pods" && g.GetName() != "web-1" {
					return false, nil, nil
				}
				return true, nil, tt.err
			})
			_, err := Collect(context.Background(), c, "shop", "web")
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var fe *ForbiddenError
			if !errors.As(err, &fe) || !errors.Is(err, ErrForbidden) || !apierrors.IsForbidden(err) {
				t.Errorf("not a *ForbiddenError / ErrForbidden / IsForbidden: %#v", err)
			}
		})
	}
}

func TestCollectVersionForbidden(t *testing.T) {
	c := newClient(world()...)
	c.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
		// As the API server words a denied non-resource URL.
		return true, nil, apierrors.NewForbidden(schema.GroupResource{}, "", errors.New(`User "alice" cannot get path "/version"`))
	})
	_, err := Collect(context.Background(), c, "shop", "web")
	want := `you are not allowed to get /version (user "alice"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i get /version)`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestCollectKubeProxyForbiddenTolerated(t *testing.T) {
	c := newClient(world()...)
	c.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden("alice", "list", "", "pods", a.GetNamespace(), "")
	})
	f, err := Collect(context.Background(), c, "shop", "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.KubeProxyPods) != 0 || !errors.Is(f.KubeProxyPodsErr, ErrForbidden) {
		t.Errorf("KubeProxyPods = %d, err %v", len(f.KubeProxyPods), f.KubeProxyPodsErr)
	}
	want := `you are not allowed to list pods in namespace "kube-system" (user "alice"): ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list pods -n kube-system)`
	if f.KubeProxyPodsErr.Error() != want {
		t.Errorf("KubeProxyPodsErr:\n got %s\nwant %s", f.KubeProxyPodsErr, want)
	}
	if f.ServerVersion != testVersion {
		t.Errorf("collection stopped: ServerVersion %q", f.ServerVersion)
	}
}

func TestCollectOtherErrorsWrapped(t *testing.T) {
	tests := []struct {
		verb, resource string
		want           string
	}{
		{"get", "services", `get service "shop/web": Internal error occurred: etcd timeout`},
		{"list", "endpointslices", `list endpointslices in namespace "shop" with label kubernetes.io/service-name=web: Internal error occurred: etcd timeout`},
		{"get", "pods", `get pod "shop/web-1": Internal error occurred: etcd timeout`},
		{"list", "nodes", `list nodes: Internal error occurred: etcd timeout`},
		{"list", "pods", `list pods in namespace "kube-system" with label k8s-app=kube-proxy: Internal error occurred: etcd timeout`},
		{"get", "version", `get server version: Internal error occurred: etcd timeout`},
	}
	for _, tt := range tests {
		t.Run(tt.verb+" "+tt.resource, func(t *testing.T) {
			c := newClient(world()...)
			internal := apierrors.NewInternalError(errors.New("etcd timeout"))
			react := func(a k8stesting.Action) (bool, runtime.Object, error) {
				if g, ok := a.(k8stesting.GetAction); ok && tt.resource == "pods" && g.GetName() != "web-1" {
					return false, nil, nil
				}
				return true, nil, internal
			}
			if tt.resource == "version" {
				c.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor(tt.verb, tt.resource, react)
			} else {
				c.PrependReactor(tt.verb, tt.resource, react)
			}
			_, err := Collect(context.Background(), c, "shop", "web")
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
			if !apierrors.IsInternalError(err) {
				t.Errorf("the API error is not wrapped: %#v", err)
			}
		})
	}
}

func TestCollectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newClient(world()...)
	c.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel()
		return true, nil, ctx.Err()
	})
	_, err := Collect(ctx, c, "shop", "web")
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "get pod \"shop/web-") {
		t.Errorf("Collect = %v", err)
	}
}

func TestCollectArguments(t *testing.T) {
	for _, args := range [][2]string{{"", "web"}, {"shop", ""}} {
		if _, err := Collect(context.Background(), newClient(), args[0], args[1]); err == nil {
			t.Errorf("Collect(%q, %q) did not fail", args[0], args[1])
		}
	}
}

// TestCollectAsksOnlyForWhatIsNeeded checks every request Collect makes: the
// Service by name, its slices by label, its pods by name, the nodes, the
// kube-proxy pods by label, the version. Never pods or services across the
// cluster, never a list without a selector except nodes.
func TestCollectAsksOnlyForWhatIsNeeded(t *testing.T) {
	c := newClient(world()...)
	if _, err := Collect(context.Background(), c, "shop", "web"); err != nil {
		t.Fatal(err)
	}
	got := actionList(c)
	sort.Strings(got)
	want := []string{
		"get pods shop web-1",
		"get pods shop web-2",
		"get pods shop web-3",
		"get services shop web",
		"get version",
		"list endpointslices shop kubernetes.io/service-name=web",
		"list networkpolicies",
		"list networkpolicies shop",
		"list nodes",
		"list pods kube-system k8s-app=kube-proxy",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	checkNoClusterWideReads(t, c)
}

// TestCollectBigService: past podListThreshold pods, one LIST of the
// Service's pods by its selector in its namespace replaces the GETs; pods
// the list lacks are still fetched by name.
func TestCollectBigService(t *testing.T) {
	sel := map[string]string{"app": "web"}
	objs := []runtime.Object{service("shop", "web"), node("node-a", "192.168.0.11", "zone-a")}
	var eps []endpoint
	n := podListThreshold + 8
	for i := range n {
		name := fmt.Sprintf("web-%02d", i)
		eps = append(eps, endpoint{ip: fmt.Sprintf("10.244.1.%d", i+1), pod: name, node: "node-a", ready: true, serving: true})
		labels := sel
		if i == 0 {
			labels = map[string]string{"app": "web-old"} // relabelled: not in the list
		}
		if i != 1 { // i == 1 is gone
			objs = append(objs, pod("shop", name, "node-a", fmt.Sprintf("10.244.1.%d", i+1), labels))
		}
	}
	objs = append(objs, slice("shop", "web", "web-big", eps...), pod("shop", "web-stray", "node-a", "10.244.1.250", sel))

	t.Run("list", func(t *testing.T) {
		c := newClient(objs...)
		f, err := Collect(context.Background(), c, "shop", "web")
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Pods) != n-1 || f.Pods["shop/web-00"] == nil || f.Pods["shop/web-stray"] != nil {
			t.Errorf("%d pods, web-00 %v, web-stray %v", len(f.Pods), f.Pods["shop/web-00"] != nil, f.Pods["shop/web-stray"] != nil)
		}
		if diff := cmp.Diff([]string{"shop/web-01"}, f.MissingPods); diff != "" {
			t.Errorf("MissingPods (-want +got):\n%s", diff)
		}
		var podReads []string
		for _, a := range actionList(c) {
			if strings.Contains(a, " pods shop") {
				podReads = append(podReads, a)
			}
		}
		sort.Strings(podReads)
		want := []string{"get pods shop web-00", "get pods shop web-01", "list pods shop app=web"}
		if diff := cmp.Diff(want, podReads); diff != "" {
			t.Errorf("pod reads (-want +got):\n%s", diff)
		}
		checkNoClusterWideReads(t, c)
	})
	t.Run("list forbidden", func(t *testing.T) {
		c := newClient(objs...)
		c.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetNamespace() != "shop" {
				return false, nil, nil
			}
			return true, nil, forbidden("alice", "list", "", "pods", "shop", "")
		})
		f, err := Collect(context.Background(), c, "shop", "web")
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Pods) != n-1 || len(f.MissingPods) != 1 {
			t.Errorf("%d pods, missing %v", len(f.Pods), f.MissingPods)
		}
	})
}

func TestCheckEndpoints(t *testing.T) {
	tests := []struct {
		name   string
		svc    *corev1.Service
		slices []discoveryv1.EndpointSlice
		want   string
	}{
		{
			name:   "selector, empty slice",
			svc:    service("shop", "web"),
			slices: []discoveryv1.EndpointSlice{*slice("shop", "web", "web-1")},
			want:   `service "shop/web" has no endpoints: no running pod with an IP matches its selector app=web (kubectl get pods -n shop -l app=web)`,
		},
		{
			name: "no selector, no slice",
			svc:  service("shop", "web", func(s *corev1.Service) { s.Spec.Selector = nil }),
			want: `service "shop/web" has no endpoints: it has no selector, so its EndpointSlices (label kubernetes.io/service-name=web) are managed by hand, and they list none`,
		},
		{
			name:   "not ready endpoints are endpoints",
			svc:    service("shop", "web"),
			slices: []discoveryv1.EndpointSlice{*slice("shop", "web", "web-1", endpoint{ip: "10.0.0.1"})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Facts{Service: tt.svc, EndpointSlices: tt.slices}).CheckEndpoints()
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckEndpoints() = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrNoEndpoints) {
				t.Errorf("CheckEndpoints():\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// describeAction words a fake clientset action: "verb resource namespace
// name-or-selector".
func describeAction(a k8stesting.Action) string {
	parts := []string{a.GetVerb(), a.GetResource().Resource}
	if a.GetNamespace() != "" {
		parts = append(parts, a.GetNamespace())
	}
	switch a := a.(type) {
	case k8stesting.GetAction:
		parts = append(parts, a.GetName())
	case k8stesting.ListAction:
		if s := a.GetListRestrictions().Labels; s != nil && !s.Empty() {
			parts = append(parts, s.String())
		}
		if s := a.GetListRestrictions().Fields; s != nil && !s.Empty() {
			parts = append(parts, "fields:"+s.String())
		}
	}
	return strings.Join(parts, " ")
}

func actionList(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		out = append(out, describeAction(a))
	}
	return out
}

// checkNoClusterWideReads fails on a list or watch of pods, services or
// slices without a namespace, or on any list (other than of nodes) without a
// label selector.
func checkNoClusterWideReads(t *testing.T, c *fake.Clientset) {
	t.Helper()
	for _, a := range c.Actions() {
		res := a.GetResource().Resource
		if a.GetVerb() == "watch" {
			t.Errorf("watch: %s", describeAction(a))
		}
		l, ok := a.(k8stesting.ListAction)
		// Nodes are needed whole; NetworkPolicies are read in the Service's
		// namespace, plus one item cluster-wide to know whether any exist.
		if !ok || res == "nodes" || res == "networkpolicies" {
			continue
		}
		if a.GetNamespace() == "" {
			t.Errorf("cluster-wide list: %s", describeAction(a))
		}
		if s := l.GetListRestrictions().Labels; (s == nil || s.Empty()) && res != "services" {
			t.Errorf("list without a selector: %s", describeAction(a))
		}
	}
}
