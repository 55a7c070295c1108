package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestDrift: two nodes, the pod on node1. Once both kube-proxies have
// settled, node2's is killed and a second endpoint (a second pod on node1)
// is added to the EndpointSlice. node1 picks it up, node2 cannot: the
// plugin must report node2 drifting (EndpointMissingFromRules on node2,
// NodesDisagree) and nothing of the kind on node1, and the packets agree —
// node2's node port only ever reaches the old pod, node1's reaches both.
func TestDrift(t *testing.T) {
	setup(t).eachMode(t, "dft", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		client := c.addClient("client", clientIP)

		const svc = "echo-drift"
		np := c.nodePortService(svc, "echo", "Cluster", true)
		t.Logf("node port %d", np)
		c.settle(map[*node]func(string) string{
			n1: wantInRules(fmt.Sprint(np), podIP),
			n2: wantInRules(fmt.Sprint(np), podIP),
		})

		c.stop("kube-proxy-node2")

		// The second pod, on node1, added to the same EndpointSlice.
		c.addPod(n1, e2eNS, pod2Name, pod2IP, echoLabels)
		c.putSlice(svc, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})
		c.settle(map[*node]func(string) string{n1: wantInRules(fmt.Sprint(np), podIP, pod2IP)})
		if strings.Contains(string(c.rules(n2)), pod2IP) {
			t.Fatalf("node2's rules have %s although its kube-proxy was killed", pod2IP)
		}

		tp := c.trace(t, svc)
		on1, on2 := tp.findingsOn("node1"), tp.findingsOn("node2")
		if f, ok := on2["EndpointMissingFromRules"]; !ok {
			t.Errorf("no EndpointMissingFromRules finding for node2 in:\n%s", tp.raw)
		} else if !strings.Contains(f.Message, pod2IP) {
			t.Errorf("EndpointMissingFromRules on node2 does not name %s: %s", pod2IP, f.Message)
		}
		disagree := false
		for _, f := range tp.Findings {
			disagree = disagree || f.Code == "NodesDisagree"
		}
		if !disagree {
			t.Errorf("no NodesDisagree finding in:\n%s", tp.raw)
		}
		for _, code := range []string{"EndpointMissingFromRules", "StaleEndpointInRules"} {
			if f, ok := on1[code]; ok {
				t.Errorf("unexpected drift finding on node1: %s %s", code, f.Message)
			}
		}

		// The packets: node2 still only knows the old pod, as predicted.
		p2 := tp.path(t, "node2", mode, node2IP, np)
		for i := 0; i < 10; i++ {
			got := mustReach(t, client, node2IP, np)
			wantReached(t, got, p2, clientIP, node2IP)
			if got.name != podName {
				t.Fatalf("curl node2:%d #%d reached %s, want only the old pod %s", np, i, got.name, podName)
			}
		}
		t.Logf("10 curls through node2:%d all reached %s", np, podName)
		// node1 balances over both (each missed with probability 2^-20).
		p1 := tp.path(t, "node1", mode, node1IP, np)
		seen := map[string]int{}
		for i := 0; i < 20 && len(seen) < 2; i++ {
			got := mustReach(t, client, node1IP, np)
			wantReached(t, got, p1, clientIP, node1IP)
			seen[got.name]++
		}
		if seen[podName] == 0 || seen[pod2Name] == 0 {
			t.Errorf("curls through node1:%d reached %v, want both %s and %s", np, seen, podName, pod2Name)
		}
		wantConntrack(t, n1, clientIP, node1IP, np, p1)
		wantConntrack(t, n2, clientIP, node2IP, np, p2)
		t.Logf("curls through node1:%d reached %v", np, seen)
	})
}

// TestLoadBalancerSourceRanges: a LoadBalancer Service, externalTrafficPolicy
// Cluster, whose address the client routes to node1. With source ranges
// that include the client, curl reaches the pod masqueraded and the plugin
// predicts DNAT with masquerade; with ranges that exclude it, the
// connection hangs and the plugin, with the same --source-ip, predicts
// DROP.
func TestLoadBalancerSourceRanges(t *testing.T) {
	setup(t).eachMode(t, "lbr", func(t *testing.T, c *cluster, mode string) {
		n1 := c.addNode("node1", node1IP, node1Pods)
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		client := c.addClient("client", clientIP)
		c.run("ip", "-n", client, "route", "add", lbIP+"/32", "via", node1IP)

		const svc, allowed, other = "echo-lb", "10.250.0.0/24", "192.0.2.0/24"
		c.service(svc, fmt.Sprintf(`{"type":"LoadBalancer","selector":{"app":"echo"},"externalTrafficPolicy":"Cluster",
		  "loadBalancerSourceRanges":[%q],
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`, allowed))
		c.setLoadBalancer(svc, lbIP)
		c.putSlice(svc, []slicePod{{podIP, podName}})

		t.Run("allowed", func(t *testing.T) {
			c.settle(map[*node]func(string) string{n1: wantInRules(lbIP, podIP, allowed)})
			got := mustReach(t, client, lbIP, 80)
			p := c.trace(t, svc, "--source-ip", clientIP).lbPath(t, "node1", lbIP)
			if p.Verdict != "DNAT" || !p.Masquerade {
				t.Errorf("plugin: node1 LoadBalancer %s from %s: %s masquerade=%v, want DNAT with masquerade (why: %s)", lbIP, clientIP, p.Verdict, p.Masquerade, p.Why)
			}
			wantReached(t, got, p, clientIP, node1IP)
			wantConntrack(t, n1, clientIP, lbIP, 80, p)
			t.Logf("curl %s:80 -> %v; plugin %s masquerade=%v", lbIP, got, p.Verdict, p.Masquerade)
		})

		t.Run("excluded", func(t *testing.T) {
			code, body, err := c.do("PATCH", "/api/v1/namespaces/"+e2eNS+"/services/"+svc,
				[]byte(fmt.Sprintf(`{"spec":{"loadBalancerSourceRanges":[%q]}}`, other)))
			if err != nil || code != 200 {
				t.Fatalf("PATCH service %s: %d %v\n%s", svc, code, err, body)
			}
			c.settle(map[*node]func(string) string{n1: func(r string) string {
				if m := wantInRules(lbIP, podIP, other)(r); m != "" {
					return m
				}
				if strings.Contains(r, allowed) {
					return " (old range " + allowed + " still there)"
				}
				return ""
			}})
			res := mustHang(t, client, lbIP, 80)
			p := c.trace(t, svc, "--source-ip", clientIP).lbPath(t, "node1", lbIP)
			if p.Verdict != "DROP" {
				t.Errorf("plugin: node1 LoadBalancer %s from %s: verdict %s, want DROP (why: %s)", lbIP, clientIP, p.Verdict, p.Why)
			}
			t.Logf("curl %s:80 from %s: exit %d after %v; plugin %s (%s)", lbIP, clientIP, res.exit, res.took, p.Verdict, p.Why)
		})
	})
}
