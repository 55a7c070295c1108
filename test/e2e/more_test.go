package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	clientPodIP   = "10.244.1.5"
	clientPodName = "client-0"
	extIP         = "198.51.100.7" // a Service externalIP the bridge client routes to node1
)

// TestMorePaths runs, per kube-proxy mode, one node (node1) with the echo
// pod, a second pod on node1 acting as client and a client on the bridge,
// and checks the plugin's prediction against the packets for:
//
//	(1) the cluster IP from a pod on the node: DNAT, no masquerade (the
//	    echo pod sees the client pod's IP);
//	(2) the cluster IP from the node itself: DNAT with masquerade (the echo
//	    pod sees the node's IP);
//	(3) conntrack after a curl through the node port: the reply tuple is
//	    the pod IP:port the plugin predicts;
//	(4) a Service externalIP routed from the client to node1: DNAT.
func TestMorePaths(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	for _, mode := range []struct{ name, tag string }{
		{"iptables", "mip-"},
		{"nftables", "mnf-"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.name == "nftables" {
				if _, err := exec.LookPath("nft"); err != nil {
					t.Skip("nft not on PATH")
				}
			}
			runMorePaths(t, bin, plugin, echo, mode.name, mode.tag)
		})
	}
}

func runMorePaths(t *testing.T, bin, plugin, echo, mode, tag string) {
	start := time.Now()
	c := newClusterTagged(t, bin, tag)
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", mode)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	// The client pod: a Pod object with podIP and nodeName, its own netns
	// on node1 (it runs an echo server too, unused).
	c.addPod(n1, e2eNS, clientPodName, clientPodIP, map[string]string{"app": "client"}, echo)
	clientPodNS := c.prefix + n1.name + "-" + clientPodName
	client := c.addClient("client", clientIP)
	c.run("ip", "-n", client, "route", "add", extIP+"/32", "via", node1IP)

	const svc, extSvc = "echo-more", "echo-ext"
	np := c.nodePortService(svc, "echo", "Cluster", true)
	clusterIP := c.serviceClusterIP(svc)
	c.create("/api/v1/namespaces/"+e2eNS+"/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":%q},
		"spec":{"type":"ClusterIP","selector":{"app":"echo"},"externalIPs":[%q],
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, extSvc, extIP))
	c.putSlice(extSvc, []slicePod{{podIP, podName}})
	t.Logf("%s: cluster IP %s node port %d; %s: external IP %s", svc, clusterIP, np, extSvc, extIP)

	rules := c.settle(map[*node]func(string) string{n1: wantInRules(clusterIP, fmt.Sprint(np), podIP, extIP)})
	dump := filepath.Join(c.dir, "node1.more.rules")
	if err := os.WriteFile(dump, []byte(rules[n1]), 0o600); err != nil {
		t.Fatal(err)
	}
	dumps := map[string]string{"node1": dump}
	wantEP := func(t *testing.T, p entryPath) {
		t.Helper()
		if len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Port != 8080 {
			t.Errorf("plugin: endpoints %+v, want only %s:8080", p.Endpoints, podIP)
		}
	}

	t.Run("1-clusterip-from-pod", func(t *testing.T) {
		res := curl(t, clientPodNS, clusterIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80 from pod %s: exit %d after %v: %s", clusterIP, clientPodName, res.exit, res.took, res.out)
		}
		saw := podAnswer(t, res.out)
		tp := tracePlugin(t, c, plugin, svc, dumps, "--from", "pod/"+e2eNS+"/"+clientPodName)
		p := tp.entryPath(t, "node1", "ClusterIP", "the given pod", clusterIP)
		if p.Verdict != "DNAT" || p.Masquerade {
			t.Errorf("plugin: verdict %s masquerade %v, want DNAT without masquerade (why: %s)", p.Verdict, p.Masquerade, p.Why)
		}
		wantEP(t, p)
		if want := netip.MustParseAddr(clientPodIP); saw != want {
			t.Errorf("pod saw %s, want the client pod's %s (no SNAT)", saw, want)
		}
		t.Logf("curl %s:80 from %s -> %s in %v; plugin %s masquerade=%v", clusterIP, clientPodName, strings.TrimSpace(res.out), res.took, p.Verdict, p.Masquerade)
	})

	t.Run("2-clusterip-from-node", func(t *testing.T) {
		res := curl(t, n1.ns, clusterIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80 from node1: exit %d after %v: %s", clusterIP, res.exit, res.took, res.out)
		}
		saw := podAnswer(t, res.out)
		tp := tracePlugin(t, c, plugin, svc, dumps)
		p := tp.entryPath(t, "node1", "ClusterIP", "this node", clusterIP)
		if p.Verdict != "DNAT" || !p.Masquerade {
			t.Errorf("plugin: verdict %s masquerade %v, want DNAT with masquerade (why: %s)", p.Verdict, p.Masquerade, p.Why)
		}
		wantEP(t, p)
		if want := netip.MustParseAddr(node1IP); saw != want {
			t.Errorf("pod saw %s, want node1's %s (masquerade)", saw, want)
		}
		t.Logf("curl %s:80 from node1 -> %s in %v; plugin %s masquerade=%v", clusterIP, strings.TrimSpace(res.out), res.took, p.Verdict, p.Masquerade)
	})

	t.Run("3-conntrack-nodeport", func(t *testing.T) {
		if _, err := exec.LookPath("conntrack"); err != nil {
			t.Skip("conntrack not on PATH")
		}
		res := curl(t, client, node1IP, np, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl node1:%d: exit %d after %v: %s", np, res.exit, res.took, res.out)
		}
		tp := tracePlugin(t, c, plugin, svc, dumps)
		p := tp.path(t, "node1", mode, node1IP, np)
		if p.Verdict != "DNAT" || len(p.Endpoints) != 1 {
			t.Fatalf("plugin: node1:%d verdict %s endpoints %+v, want DNAT to one endpoint", np, p.Verdict, p.Endpoints)
		}
		ep := p.Endpoints[0]
		out, err := exec.Command("ip", "netns", "exec", n1.ns, "conntrack", "-L", "-p", "tcp", "--dport", fmt.Sprint(np)).CombinedOutput()
		if err != nil {
			t.Fatalf("conntrack -L in node1: %v\n%s", err, out)
		}
		// Original direction client -> node1:np, reply direction from the
		// DNAT target: "... src=<client> dst=<node1> sport=X dport=<np> ... src=<pod> dst=... sport=<port> ...".
		re := regexp.MustCompile(fmt.Sprintf(`src=%s dst=%s sport=\d+ dport=%d .*?src=(\S+) dst=\S+ sport=(\d+) `,
			regexp.QuoteMeta(clientIP), regexp.QuoteMeta(node1IP), np))
		m := re.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no conntrack entry for %s -> %s:%d in:\n%s", clientIP, node1IP, np, out)
		}
		if got, want := m[1]+":"+m[2], fmt.Sprintf("%s:%d", ep.IP, ep.Port); got != want {
			t.Errorf("conntrack DNAT target %s, plugin predicts %s", got, want)
		}
		t.Logf("conntrack: %s -> %s:%d DNATed to %s:%s, as the plugin predicts", clientIP, node1IP, np, m[1], m[2])
	})

	t.Run("4-external-ip", func(t *testing.T) {
		res := curl(t, client, extIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80: exit %d after %v: %s", extIP, res.exit, res.took, res.out)
		}
		saw := podAnswer(t, res.out)
		tp := tracePlugin(t, c, plugin, extSvc, dumps)
		p := tp.entryPath(t, "node1", "ExternalIP", "external client", extIP)
		if p.Verdict != "DNAT" {
			t.Errorf("plugin: ExternalIP %s verdict %s, want DNAT (why: %s)", extIP, p.Verdict, p.Why)
		}
		wantEP(t, p)
		// The packets agree with the predicted masquerade: with it the
		// pod sees node1, without it the client.
		want := netip.MustParseAddr(clientIP)
		if p.Masquerade {
			want = netip.MustParseAddr(node1IP)
		}
		if saw != want {
			t.Errorf("pod saw %s, want %s (plugin masquerade=%v)", saw, want, p.Masquerade)
		}
		t.Logf("curl %s:80 -> %s in %v; plugin %s masquerade=%v", extIP, strings.TrimSpace(res.out), res.took, p.Verdict, p.Masquerade)
	})
	t.Logf("%s done in %v", mode, time.Since(start).Round(time.Millisecond))
}

// serviceClusterIP returns the cluster IP the apiserver gave a Service.
func (c *cluster) serviceClusterIP(name string) string {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+e2eNS+"/services/"+name, nil)
	if err != nil || code != 200 {
		c.t.Fatalf("GET service %s: %d %v\n%s", name, code, err, body)
	}
	var s struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &s); err != nil || s.Spec.ClusterIP == "" {
		c.t.Fatalf("service %s has no cluster IP: %v\n%s", name, err, body)
	}
	return s.Spec.ClusterIP
}

// entryPath returns the plugin's path of the given kind, from, to addr on
// node.
func (tp *traced) entryPath(t *testing.T, nodeName, kind, from, addr string) entryPath {
	t.Helper()
	p, _ := tp.find(t, nodeName, fmt.Sprintf("%s path from %q to %s", kind, from, addr), func(p entryPath) bool {
		return p.Entry.Kind == kind && p.Entry.From == from && p.Entry.Address == netip.MustParseAddr(addr)
	})
	return p
}
