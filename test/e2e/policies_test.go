package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	pod1IP        = "10.244.1.3"
	pod1Name      = "echo-1"
	polClientName = "client" // client pod on node2
	polClientIP   = "10.244.2.5"
	polClient1    = "client-n1" // client pod on node1
	polClient1IP  = "10.244.1.5"
)

// TestPolicies runs, per kube-proxy mode, node1 (pods echo-0 and echo-1 and
// a client pod) and node2 (only a client pod), and checks the plugin's
// prediction against the packets for:
//
//	(1) internalTrafficPolicy Local: from node2 (no local endpoint) the
//	    cluster IP is dropped or rejected, as predicted; from node1 DNAT;
//	(2) sessionAffinity ClientIP with two endpoints: 10 curls through
//	    node1's node port reach one pod, and the plugin lists an affinity
//	    entry on that path;
//	(3) a named target port: Service port web 80 -> targetPort http, slice
//	    port web 8080: the cluster IP:80 reaches the pod, predicted DNAT to
//	    the pod:8080.
func TestPolicies(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	for _, mode := range []struct{ name, tag string }{
		{"iptables", "pip-"},
		{"nftables", "pnf-"},
		{"iptables-legacy", "plg-"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.name == "nftables" {
				if _, err := exec.LookPath("nft"); err != nil {
					t.Skip("nft not on PATH")
				}
			}
			runPolicies(t, bin, plugin, echo, mode.name, mode.tag)
		})
	}
}

// portPath returns the plugin's path of kind from "from" to addr:port on
// node, and its affinity entries.
func (tp *traced) portPath(t *testing.T, nodeName, kind, from, addr string, port int) (entryPath, []json.RawMessage) {
	t.Helper()
	p, _ := tp.find(t, nodeName, fmt.Sprintf("%s path from %q to %s:%d", kind, from, addr, port), func(p entryPath) bool {
		return p.Entry.Kind == kind && p.Entry.From == from && p.Entry.Address == netip.MustParseAddr(addr) && int(p.Entry.Port) == port
	})
	return p, p.Affinity
}

func runPolicies(t *testing.T, bin, plugin, echo, mode, tag string) {
	start := time.Now()
	c := newClusterTagged(t, bin, tag)
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", mode)
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", mode)
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	c.addPod(n1, e2eNS, pod1Name, pod1IP, map[string]string{"app": "echo"}, echo)
	c.addPod(n2, e2eNS, polClientName, polClientIP, map[string]string{"app": "client"}, echo)
	c.addPod(n1, e2eNS, polClient1, polClient1IP, map[string]string{"app": "client"}, echo)
	clientNS2 := c.prefix + n2.name + "-" + polClientName
	clientNS1 := c.prefix + n1.name + "-" + polClient1
	client := c.addClient("client", clientIP)

	svcPath := "/api/v1/namespaces/" + e2eNS + "/services"
	slicePath := "/apis/discovery.k8s.io/v1/namespaces/" + e2eNS + "/endpointslices"

	// (1) ClusterIP, internalTrafficPolicy Local, only echo-0 (node1).
	const itpSvc, affSvc, namedSvc = "echo-itp", "echo-aff", "echo-named"
	c.create(svcPath, fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},
		"spec":{"type":"ClusterIP","selector":{"app":"echo"},"internalTrafficPolicy":"Local",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, itpSvc))
	c.putSlice(itpSvc, []slicePod{{podIP, podName}})
	itpIP := c.serviceClusterIP(itpSvc)

	// (2) NodePort, sessionAffinity ClientIP, echo-0 and echo-1.
	aff := c.create(svcPath, fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},
		"spec":{"type":"NodePort","selector":{"app":"echo"},"externalTrafficPolicy":"Cluster",
		  "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":300}},
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, affSvc))
	affNP := int(aff["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["nodePort"].(float64))
	c.putSlice(affSvc, []slicePod{{podIP, podName}, {pod1IP, pod1Name}})

	// (3) Multi-port, named target port: web 80 -> http (8080 in the
	// slice's port "web"), metrics 9090 -> 9090.
	c.create(svcPath, fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},
		"spec":{"type":"ClusterIP","selector":{"app":"echo"},
		  "ports":[{"name":"web","port":80,"targetPort":"http","protocol":"TCP"},
		           {"name":"metrics","port":9090,"targetPort":9090,"protocol":"TCP"}]}}`, namedSvc))
	c.create(slicePath, fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
		"metadata":{"name":"%s-1","labels":{"kubernetes.io/service-name":%q,"endpointslice.kubernetes.io/managed-by":"e2e.local"}},
		"addressType":"IPv4",
		"endpoints":[{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}],
		"ports":[{"name":"web","port":8080,"protocol":"TCP"},{"name":"metrics","port":9090,"protocol":"TCP"}]}`,
		namedSvc, namedSvc, podIP, e2eNS, podName))
	namedIP := c.serviceClusterIP(namedSvc)
	t.Logf("%s %s; %s node port %d; %s %s", itpSvc, itpIP, affSvc, affNP, namedSvc, namedIP)

	check := wantInRules(itpIP, namedIP, fmt.Sprint(affNP), podIP, pod1IP)
	rules := c.settle(map[*node]func(string) string{n1: check, n2: check})
	dumps := map[string]string{}
	for _, n := range []*node{n1, n2} {
		f := filepath.Join(c.dir, n.name+".pol.rules")
		if err := os.WriteFile(f, []byte(rules[n]), 0o600); err != nil {
			t.Fatal(err)
		}
		dumps[n.name] = f
	}

	t.Run("1-internal-traffic-policy-local", func(t *testing.T) {
		res := curl(t, clientNS2, itpIP, 80, dropWait)
		var saw string
		switch {
		case res.exit == 28:
			saw = "DROP"
		case res.exit == 7 && res.took < dropWait/2:
			saw = "REJECT"
		default:
			t.Fatalf("curl %s:80 from node2's pod: exit %d after %v, want a drop (28) or a refusal (7): %s", itpIP, res.exit, res.took, res.out)
		}
		tp := tracePlugin(t, c, plugin, itpSvc, dumps, "--from", "pod/"+e2eNS+"/"+polClientName)
		p, _ := tp.portPath(t, "node2", "ClusterIP", "the given pod", itpIP, 80)
		if p.Verdict != saw {
			t.Errorf("plugin: node2 verdict %s, the packets say %s (curl exit %d after %v; why: %s)", p.Verdict, saw, res.exit, res.took, p.Why)
		}
		t.Logf("node2: curl %s:80 exit %d after %v (%s); plugin %s (%s)", itpIP, res.exit, res.took, saw, p.Verdict, p.Why)

		res = curl(t, clientNS1, itpIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80 from node1's pod: exit %d after %v: %s", itpIP, res.exit, res.took, res.out)
		}
		if got := answerName(res.out); got != podName {
			t.Errorf("answer %q from %q, want %s", strings.TrimSpace(res.out), got, podName)
		}
		tp = tracePlugin(t, c, plugin, itpSvc, dumps, "--from", "pod/"+e2eNS+"/"+polClient1)
		p, _ = tp.portPath(t, "node1", "ClusterIP", "the given pod", itpIP, 80)
		if p.Verdict != "DNAT" || len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Port != 8080 {
			t.Errorf("plugin: node1 verdict %s endpoints %+v, want DNAT to only %s:8080 (why: %s)", p.Verdict, p.Endpoints, podIP, p.Why)
		}
		t.Logf("node1: curl %s:80 -> %s; plugin %s", itpIP, strings.TrimSpace(res.out), p.Verdict)
	})

	t.Run("2-session-affinity-clientip", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 10; i++ {
			res := curl(t, client, node1IP, affNP, 5*time.Second)
			if res.exit != 0 {
				t.Fatalf("curl %d node1:%d: exit %d after %v: %s", i, affNP, res.exit, res.took, res.out)
			}
			seen[answerName(res.out)]++
		}
		if len(seen) != 1 {
			t.Errorf("10 curls through node1:%d reached %v, want one pod (ClientIP affinity)", affNP, seen)
		}
		tp := tracePlugin(t, c, plugin, affSvc, dumps)
		p, affinity := tp.portPath(t, "node1", "NodePort", "external client", node1IP, affNP)
		if p.Verdict != "DNAT" || len(p.Endpoints) != 2 {
			t.Errorf("plugin: node1:%d verdict %s endpoints %+v, want DNAT to two endpoints (why: %s)", affNP, p.Verdict, p.Endpoints, p.Why)
		}
		if len(affinity) == 0 {
			t.Errorf("plugin: node1:%d path lists no affinity entry in:\n%s", affNP, tp.raw)
		}
		t.Logf("curls through node1:%d reached %v; plugin %s with %d affinity entries", affNP, seen, p.Verdict, len(affinity))
	})

	t.Run("3-named-target-port", func(t *testing.T) {
		res := curl(t, clientNS1, namedIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80 from node1's pod: exit %d after %v: %s", namedIP, res.exit, res.took, res.out)
		}
		if got := answerName(res.out); got != podName {
			t.Errorf("answer %q from %q, want %s", strings.TrimSpace(res.out), got, podName)
		}
		tp := tracePlugin(t, c, plugin, namedSvc, dumps, "--from", "pod/"+e2eNS+"/"+polClient1)
		p, _ := tp.portPath(t, "node1", "ClusterIP", "the given pod", namedIP, 80)
		if p.Verdict != "DNAT" || len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Port != 8080 {
			t.Errorf("plugin: %s:80 verdict %s endpoints %+v, want DNAT to only %s:8080 (why: %s)", namedIP, p.Verdict, p.Endpoints, podIP, p.Why)
		}
		t.Logf("curl %s:80 -> %s; plugin %s to %s:%d", namedIP, strings.TrimSpace(res.out), p.Verdict, p.Endpoints[0].IP, p.Endpoints[0].Port)
	})
	t.Logf("%s done in %v", mode, time.Since(start).Round(time.Millisecond))
}
