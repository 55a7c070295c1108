package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var recordDemo = flag.String("record-demo", "", "TestRecordDemo: record the demo bundle (the API objects and two nodes' dumps) into this directory, e.g. $PWD/testdata/demo")

// TestRecordDemo records the cluster `make demo` traces: two nodes, node1
// running kube-proxy in iptables mode (nf_tables backend) and node2 in
// nftables mode, and a LoadBalancer Service shop/web with a pod on each.
// Once both kube-proxies have programmed it, node2's is stopped and a third
// pod (on node1) is added to the EndpointSlice: node1 picks it up, node2
// cannot — real drift. The plugin then collects both nodes through its
// debug pods as a user would (--save-dumps), and must report the drift on
// node2 only; the bundle is the API objects (as kubectl get -o json would
// save them) and, per node, the dump of kube-proxy's backend and the
// node's route sections, exactly as the debug pods saved them. Opt-in:
// -record-demo DIR (see testdata/demo/README.md).
func TestRecordDemo(t *testing.T) {
	if *recordDemo == "" {
		t.Skip("records the demo bundle only when asked: -record-demo DIR")
	}
	out, err := filepath.Abs(*recordDemo)
	if err != nil {
		t.Fatal(err)
	}
	s := setup(t)
	for _, tool := range []string{"iptables-nft-save", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH", tool)
		}
	}
	c := s.cluster(t, "demo-", "iptables")
	const ns, svc = "shop", "web"
	c.create("/api/v1/namespaces", fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, ns))
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24")
	c.mode = "nftables" // node2's kube-proxy, started by addNode
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24")
	c.routePodCIDR(n1, n2)
	c.routePodCIDR(n2, n1)

	labels := map[string]string{"app": "web"}
	type pod struct {
		name, ip string
		node     *node
	}
	// (Not the pod CIDRs' .2, the address the plugin's "pod on this node"
	// client takes: the demo's pods are not their own clients.)
	web1 := pod{"web-1", "10.244.1.10", n1}
	web2 := pod{"web-2", "10.244.2.10", n2}
	web3 := pod{"web-3", "10.244.1.11", n1}
	for _, p := range []pod{web1, web2} {
		c.addPod(p.node, ns, p.name, p.ip, labels)
	}
	c.create("/api/v1/namespaces/"+ns+"/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},
		"spec":{"type":"LoadBalancer","selector":{"app":"web"},"externalTrafficPolicy":"Cluster",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, svc))
	c.patchStatus("/api/v1/namespaces/"+ns+"/services/"+svc+"/status",
		fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, lbIP))
	slice := func(pods ...pod) {
		var eps []string
		for _, p := range pods {
			eps = append(eps, fmt.Sprintf(`{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
			  "nodeName":%q,"targetRef":{"kind":"Pod","namespace":%q,"name":%q}}`, p.ip, p.node.name, ns, p.name))
		}
		obj := fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
		  "metadata":{"name":"web-1","labels":{"kubernetes.io/service-name":%q,"endpointslice.kubernetes.io/managed-by":"e2e.local"}},
		  "addressType":"IPv4","endpoints":[%s],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}`, svc, strings.Join(eps, ","))
		path := "/apis/discovery.k8s.io/v1/namespaces/" + ns + "/endpointslices"
		if code, _, _ := c.do("GET", path+"/web-1", nil); code == 404 {
			c.create(path, obj)
			return
		}
		if code, body, err := c.do("PATCH", path+"/web-1", []byte(`{"endpoints":[`+strings.Join(eps, ",")+`]}`)); err != nil || code != 200 {
			t.Fatalf("PATCH EndpointSlice: %d %v\n%s", code, err, body)
		}
	}
	slice(web1, web2)
	both := wantInRules(lbIP, web1.ip, web2.ip)
	c.settle(map[*node]func(string) string{n1: both, n2: both})

	// node2's kube-proxy goes away; the Service gets a third pod.
	c.stop("kube-proxy-node2")
	c.addPod(n1, ns, web3.name, web3.ip, labels)
	slice(web1, web2, web3)
	c.settle(map[*node]func(string) string{n1: wantInRules(web3.ip)})
	if strings.Contains(string(c.rules(n2)), web3.ip) {
		t.Fatalf("node2's rules have %s although its kube-proxy was stopped", web3.ip)
	}

	// Traffic, so that the nodes' kernels have something to show next to
	// the prediction: an outside client whose route to the load balancer
	// leads to node2, and node1's node port.
	client := c.addClient("client", clientIP)
	c.run("ip", "-n", client, "route", "add", lbIP+"/32", "via", node2IP)
	np := c.nodePortOf(ns, svc)
	reached := map[string]map[string]int{"node2 load balancer": {}, "node1 node port": {}}
	for i := 0; i < 12; i++ {
		reached["node2 load balancer"][mustReach(t, client, lbIP, 80).name]++
		reached["node1 node port"][mustReach(t, client, node1IP, np).name]++
	}
	t.Logf("12 curls each reached %v", reached)
	if n := reached["node2 load balancer"][web3.name]; n > 0 {
		t.Fatalf("node2 sent %d of 12 connections to %s, which its rules lack", n, web3.name)
	}

	// The plugin collects both nodes through its debug pods.
	c.waitNodesReady()
	saved := filepath.Join(c.dir, "saved")
	raw := c.runPlugin(t, append([]string{svc, "-n", ns, "--kubeconfig", c.adminKubeconfig, "-o", "json", "--save-dumps", saved}, debugPodFlags...)...)
	var p pathDoc
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("decode plugin output: %v\n%s", err, raw)
	}
	c.checkRoutes(t, raw)
	drift := map[string]bool{}
	for _, f := range p.Findings {
		t.Logf("finding %s %s %s: %s", f.Severity, f.Node, f.Code, f.Message)
		if f.Code == "EndpointMissingFromRules" {
			drift[f.Node] = strings.Contains(f.Message, web3.ip)
		}
	}
	if !drift["node2"] || len(drift) != 1 {
		t.Fatalf("want EndpointMissingFromRules for %s on node2 only, got %v", web3.ip, drift)
	}

	// The bundle: the objects, and what the debug pods saved of kube-proxy's
	// backend and the routes.
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(out, "node*.*"))
	for _, f := range old {
		os.Remove(f)
	}
	keep := map[string][]string{
		"node1": {"iptables-nft-save", "ip6tables-nft-save", "conntrack-proc", "conntrack-limits"},
		"node2": {"nft", "conntrack-proc", "conntrack-limits"},
	}
	routeSections := []string{"ip-route", "ip6-route", "ip-rule", "ip6-rule", "ip-link", "ip-addr", "proc-net-route", "proc-net-ipv6_route", "proc-net-fib_trie", "proc-net-if_inet6", "sys-class-net"}
	files, _ := filepath.Glob(filepath.Join(saved, "*"))
	for _, f := range files {
		base := filepath.Base(f)
		node, section, _ := strings.Cut(base, ".")
		if !slices.Contains(keep[node], section) && !slices.Contains(routeSections, section) {
			t.Logf("left out of the bundle: %s (%d bytes)", base, fileSize(f))
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, base), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%d bytes)", base, len(b))
	}
	var items []json.RawMessage
	for _, path := range []string{
		"/api/v1/namespaces/" + ns + "/services",
		"/apis/discovery.k8s.io/v1/namespaces/" + ns + "/endpointslices",
		"/api/v1/namespaces/" + ns + "/pods",
		"/api/v1/nodes",
	} {
		items = append(items, c.listForKubectl(t, path)...)
	}
	list, _ := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "objects.json"), append(list, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded objects.json (%d objects) into %s", len(items), out)

	// The bundle, traced offline, says what the live trace said.
	args := []string{svc, "-n", ns, "--objects", filepath.Join(out, "objects.json"), "-o", "json"}
	recorded, _ := filepath.Glob(filepath.Join(out, "node*.*"))
	for _, f := range recorded {
		args = append(args, "--dump", strings.SplitN(filepath.Base(f), ".", 2)[0]+"="+f)
	}
	var offline pathDoc
	if raw := c.runPlugin(t, args...); json.Unmarshal(raw, &offline) != nil {
		t.Fatalf("decode offline output:\n%s", raw)
	}
	if !reflect.DeepEqual(nodesByName(offline), nodesByName(p)) {
		t.Errorf("the bundle traced offline differs from the live trace")
	}
	if got, want := findingSet(offline), findingSet(p); !reflect.DeepEqual(got, want) {
		t.Errorf("findings offline %v, live %v", got, want)
	}
}

// listForKubectl lists the objects at path the way kubectl get -o json
// prints them: each with its apiVersion and kind, without managedFields.
func (c *cluster) listForKubectl(t *testing.T, path string) []json.RawMessage {
	t.Helper()
	code, body, err := c.do("GET", path, nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v\n%s", path, code, err, body)
	}
	var list struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, it := range list.Items {
		it["apiVersion"] = list.APIVersion
		it["kind"] = strings.TrimSuffix(list.Kind, "List")
		if md, ok := it["metadata"].(map[string]any); ok {
			delete(md, "managedFields")
		}
		b, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// nodePortOf reads the node port the apiserver gave the Service's first
// port.
func (c *cluster) nodePortOf(ns, svc string) int {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+ns+"/services/"+svc, nil)
	if err != nil || code != 200 {
		c.t.Fatalf("GET service %s/%s: %d %v\n%s", ns, svc, code, err, body)
	}
	var s struct {
		Spec serviceSpec `json:"spec"`
	}
	if err := json.Unmarshal(body, &s); err != nil || len(s.Spec.Ports) == 0 || s.Spec.Ports[0].NodePort == 0 {
		c.t.Fatalf("service %s/%s has no node port: %v\n%s", ns, svc, err, body)
	}
	return s.Spec.Ports[0].NodePort
}
