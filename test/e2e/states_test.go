package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sliceEP is one endpoint of putSliceStates with its conditions.
type sliceEP struct {
	ip, name                    string
	ready, serving, terminating bool
}

// putSliceStates creates, or replaces, the EndpointSlice <svc>-1 with the
// given endpoints on node1, port 8080, each with its own conditions.
func (c *cluster) putSliceStates(svc string, eps []sliceEP) {
	c.t.Helper()
	var items []string
	for _, e := range eps {
		items = append(items, fmt.Sprintf(`{"addresses":[%q],"conditions":{"ready":%t,"serving":%t,"terminating":%t},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}`, e.ip, e.ready, e.serving, e.terminating, e2eNS, e.name))
	}
	name := svc + "-1"
	path := "/apis/discovery.k8s.io/v1/namespaces/" + e2eNS + "/endpointslices"
	obj := func(rv string) string {
		meta := fmt.Sprintf(`"name":%q,"labels":{"kubernetes.io/service-name":%q,"endpointslice.kubernetes.io/managed-by":"e2e.local"}`, name, svc)
		if rv != "" {
			meta += fmt.Sprintf(`,"resourceVersion":%q`, rv)
		}
		return fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{%s},
		"addressType":"IPv4","endpoints":[%s],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}`, meta, strings.Join(items, ","))
	}
	code, body, err := c.do("GET", path+"/"+name, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if code == 404 {
		c.create(path, obj(""))
		return
	}
	var cur struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if code != 200 || json.Unmarshal(body, &cur) != nil {
		c.t.Fatalf("GET %s/%s: %d\n%s", path, name, code, body)
	}
	code, body, err = c.do("PUT", path+"/"+name, []byte(obj(cur.Metadata.ResourceVersion)))
	if err != nil || code != 200 {
		c.t.Fatalf("PUT %s/%s: %d %v\n%s", path, name, code, err, body)
	}
}

// writeDumps saves each node's rules for the plugin's --dump.
func (c *cluster) writeDumps(tag string, rules map[*node]string) map[string]string {
	c.t.Helper()
	dumps := map[string]string{}
	for n, r := range rules {
		f := filepath.Join(c.dir, n.name+"."+tag+".rules")
		if err := os.WriteFile(f, []byte(r), 0o600); err != nil {
			c.t.Fatal(err)
		}
		dumps[n.name] = f
	}
	return dumps
}

// TestStatesEndpoints (iptables): node1 has echo-0 and echo-1, node2 none.
// (1) echo-0 ready, echo-1 not ready: node1's node port only reaches
// echo-0 and the plugin predicts DNAT to echo-0 alone. (2) echo-0
// terminating but serving, echo-1 not ready: kube-proxy falls back to the
// serving-terminating echo-0; curl reaches it, the plugin predicts it and
// reports no drift.
func TestStatesEndpoints(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	c := newClusterTagged(t, bin, "ste-")
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", "iptables")
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", "iptables")
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	c.addPod(n1, e2eNS, pod2Name, pod2IP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)

	const svc = "st-echo-states"
	np := c.nodePortService(svc, "echo", "Cluster", false)
	t.Logf("node port %d", np)

	onlyPod := func(r string) string {
		if m := wantInRules(fmt.Sprint(np), podIP)(r); m != "" {
			return m
		}
		if strings.Contains(r, pod2IP) {
			return " (not-ready " + pod2IP + " in the rules)"
		}
		return ""
	}
	check := func(t *testing.T, tag string) {
		t.Helper()
		rules := c.settle(map[*node]func(string) string{n1: onlyPod, n2: onlyPod})
		for i := 0; i < 10; i++ {
			res := curl(t, client, node1IP, np, 5*time.Second)
			if res.exit != 0 {
				t.Fatalf("curl node1:%d: exit %d after %v: %s", np, res.exit, res.took, res.out)
			}
			if name := answerName(res.out); name != podName {
				t.Fatalf("curl node1:%d #%d reached %q, want only %s", np, i, name, podName)
			}
		}
		t.Logf("10 curls through node1:%d all reached %s", np, podName)
		tp := tracePlugin(t, c, plugin, svc, c.writeDumps(tag, rules))
		p := tp.path(t, "node1", "iptables", node1IP, np)
		if p.Verdict != "DNAT" || len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) {
			t.Errorf("plugin: node1 verdict %s endpoints %+v, want DNAT to only %s (why: %s)", p.Verdict, p.Endpoints, podIP, p.Why)
		}
		for _, f := range tp.findings(t) {
			switch f.Code {
			case "EndpointMissingFromRules", "StaleEndpointInRules", "NodesDisagree":
				t.Errorf("unexpected drift finding on %s: %s %s", f.Node, f.Code, f.Message)
			}
		}
		t.Logf("plugin: node1 %s endpoints %+v", p.Verdict, p.Endpoints)
	}

	t.Run("ready-and-not-ready", func(t *testing.T) {
		c.putSliceStates(svc, []sliceEP{
			{podIP, podName, true, true, false},
			{pod2IP, pod2Name, false, false, false},
		})
		check(t, "notready")
	})
	t.Run("terminating-serving-fallback", func(t *testing.T) {
		c.putSliceStates(svc, []sliceEP{
			{podIP, podName, false, true, true},
			{pod2IP, pod2Name, false, false, false},
		})
		// The rules may well look the same as before: give kube-proxy
		// time to sync the change before settle compares.
		time.Sleep(2 * time.Second)
		check(t, "terminating")
	})
}

// TestLBLocalPolicy (iptables): a LoadBalancer Service with
// externalTrafficPolicy Local, its address routed from the client first to
// node2 (no endpoint: dropped, the plugin predicts DROP), then to node1
// (DNAT without masquerade: the pod sees the client).
func TestLBLocalPolicy(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	c := newClusterTagged(t, bin, "lbl-")
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", "iptables")
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", "iptables")
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	c.addPod(n1, e2eNS, pod2Name, pod2IP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)

	const svc = "lbl-echo-local"
	c.create("/api/v1/namespaces/"+e2eNS+"/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":%q},
		"spec":{"type":"LoadBalancer","selector":{"app":"echo"},"externalTrafficPolicy":"Local",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, svc))
	c.patchStatus("/api/v1/namespaces/"+e2eNS+"/services/"+svc+"/status",
		fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, lbIP))
	c.putSlice(svc, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})

	rules := c.settle(map[*node]func(string) string{
		n1: wantInRules(lbIP, podIP, pod2IP),
		n2: wantInRules(lbIP),
	})
	tp := tracePlugin(t, c, plugin, svc, c.writeDumps("lblocal", rules), "--source-ip", clientIP)

	t.Run("node2-drop", func(t *testing.T) {
		c.run("ip", "-n", client, "route", "replace", lbIP+"/32", "via", node2IP)
		res := curl(t, client, lbIP, 80, dropWait)
		if res.exit != 28 {
			t.Errorf("curl %s:80 via node2: exit %d after %v, want a timeout (exit 28): %s", lbIP, res.exit, res.took, res.out)
		}
		p := tp.lbPath(t, "node2", lbIP)
		if p.Verdict != "DROP" {
			t.Errorf("plugin: node2 LoadBalancer %s: verdict %s, want DROP (why: %s)", lbIP, p.Verdict, p.Why)
		}
		t.Logf("curl %s:80 via node2: exit %d after %v; plugin %s (%s)", lbIP, res.exit, res.took, p.Verdict, p.Why)
	})

	t.Run("node1-dnat-no-masquerade", func(t *testing.T) {
		c.run("ip", "-n", client, "route", "replace", lbIP+"/32", "via", node1IP)
		res := curl(t, client, lbIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80 via node1: exit %d after %v: %s", lbIP, res.exit, res.took, res.out)
		}
		if name := answerName(res.out); name != podName && name != pod2Name {
			t.Errorf("curl %s:80 reached %q, want %s or %s", lbIP, name, podName, pod2Name)
		}
		out := strings.TrimSpace(res.out)
		i := strings.Index(out, "remote=")
		if i < 0 {
			t.Fatalf("pod's answer %q has no remote address", out)
		}
		ap, err := netip.ParseAddrPort(out[i+len("remote="):])
		if err != nil {
			t.Fatalf("pod's answer %q: %v", out, err)
		}
		if want := netip.MustParseAddr(clientIP); ap.Addr() != want {
			t.Errorf("pod saw %s, want the client's %s (no SNAT)", ap.Addr(), want)
		}
		p := tp.lbPath(t, "node1", lbIP)
		if p.Verdict != "DNAT" || p.Masquerade {
			t.Errorf("plugin: node1 LoadBalancer %s: verdict %s masquerade %v, want DNAT without masquerade (why: %s)", lbIP, p.Verdict, p.Masquerade, p.Why)
		}
		for _, e := range p.Endpoints {
			if e.Masquerade {
				t.Errorf("plugin: node1 endpoint %s masqueraded, want not", e.IP)
			}
		}
		t.Logf("curl %s:80 via node1 -> %s in %v; plugin %s masquerade=%v", lbIP, out, res.took, p.Verdict, p.Masquerade)
	})
}
