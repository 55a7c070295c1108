package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStatesEndpoints: node1 has echo-0 and echo-1, node2 none, behind a
// NodePort Service.
//
//	(1) echo-0 ready, echo-1 not ready: node1's node port only ever reaches
//	    echo-0, and the plugin predicts DNAT to echo-0 alone;
//	(2) echo-0 terminating but serving, echo-1 not ready: kube-proxy falls
//	    back to the serving-terminating echo-0; curl reaches it, the plugin
//	    predicts it and reports no drift.
func TestStatesEndpoints(t *testing.T) {
	setup(t).eachMode(t, "st", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.addPod(n1, e2eNS, pod2Name, pod2IP, echoLabels)
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
		check := func(t *testing.T) {
			t.Helper()
			c.settle(map[*node]func(string) string{n1: onlyPod, n2: onlyPod})
			tp := c.trace(t, svc)
			p := tp.path(t, "node1", mode, node1IP, np)
			if p.Verdict != "DNAT" || len(p.Endpoints) != 1 || p.Endpoints[0].IP.String() != podIP {
				t.Errorf("plugin: node1 verdict %s endpoints %+v, want DNAT to only %s (why: %s)", p.Verdict, p.Endpoints, podIP, p.Why)
			}
			for i := 0; i < 10; i++ {
				wantReached(t, mustReach(t, client, node1IP, np), p, clientIP, node1IP)
			}
			wantConntrack(t, n1, clientIP, node1IP, np, p)
			for _, f := range tp.Findings {
				switch f.Code {
				case "EndpointMissingFromRules", "StaleEndpointInRules", "NodesDisagree":
					t.Errorf("unexpected drift finding on %s: %s %s", f.Node, f.Code, f.Message)
				}
			}
			t.Logf("10 curls through node1:%d all reached %s; plugin %s %+v", np, podName, p.Verdict, p.Endpoints)
		}

		t.Run("ready-and-not-ready", func(t *testing.T) {
			c.putSliceStates(svc, []sliceEP{
				{podIP, podName, true, true, false},
				{pod2IP, pod2Name, false, false, false},
			})
			check(t)
		})
		t.Run("terminating-serving-fallback", func(t *testing.T) {
			c.putSliceStates(svc, []sliceEP{
				{podIP, podName, false, true, true},
				{pod2IP, pod2Name, false, false, false},
			})
			// The rules may well look the same as before: give kube-proxy
			// time to sync the change before settle compares.
			time.Sleep(2 * time.Second)
			check(t)
		})
	})
}

// TestLBLocalPolicy: a LoadBalancer Service with externalTrafficPolicy
// Local, its address routed from the client first to node2 (no endpoint:
// dropped, the plugin predicts DROP), then to node1 (DNAT without
// masquerade: the pod sees the client). From node2 itself, the cluster IP
// still reaches the pods on node1, masqueraded, as predicted.
func TestLBLocalPolicy(t *testing.T) {
	setup(t).eachMode(t, "lbl", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.addPod(n1, e2eNS, pod2Name, pod2IP, echoLabels)
		client := c.addClient("client", clientIP)

		const svc = "lbl-echo-local"
		c.service(svc, `{"type":"LoadBalancer","selector":{"app":"echo"},"externalTrafficPolicy":"Local",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`)
		c.setLoadBalancer(svc, lbIP)
		c.putSlice(svc, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})
		c.settle(map[*node]func(string) string{
			n1: wantInRules(lbIP, podIP, pod2IP),
			n2: wantInRules(lbIP),
		})
		tp := c.trace(t, svc, "--source-ip", clientIP)

		t.Run("node2-drop", func(t *testing.T) {
			c.run("ip", "-n", client, "route", "replace", lbIP+"/32", "via", node2IP)
			res := mustHang(t, client, lbIP, 80)
			p := tp.lbPath(t, "node2", lbIP)
			if p.Verdict != "DROP" {
				t.Errorf("plugin: node2 LoadBalancer %s: verdict %s, want DROP (why: %s)", lbIP, p.Verdict, p.Why)
			}
			t.Logf("curl %s:80 via node2: exit %d after %v; plugin %s (%s)", lbIP, res.exit, res.took, p.Verdict, p.Why)
		})

		t.Run("node1-dnat-no-masquerade", func(t *testing.T) {
			c.run("ip", "-n", client, "route", "replace", lbIP+"/32", "via", node1IP)
			got := mustReach(t, client, lbIP, 80)
			p := tp.lbPath(t, "node1", lbIP)
			if p.Verdict != "DNAT" || p.Masquerade || len(p.Endpoints) != 2 {
				t.Errorf("plugin: node1 LoadBalancer %s: verdict %s masquerade %v endpoints %+v, want DNAT to both pods without masquerade (why: %s)", lbIP, p.Verdict, p.Masquerade, p.Endpoints, p.Why)
			}
			wantReached(t, got, p, clientIP, node1IP)
			wantConntrack(t, n1, clientIP, lbIP, 80, p)
			t.Logf("curl %s:80 via node1 -> %v; plugin %s masquerade=%v", lbIP, got, p.Verdict, p.Masquerade)
		})

		t.Run("clusterip-from-node2", func(t *testing.T) {
			ip := c.serviceClusterIP(svc)
			p := tp.portPath(t, "node2", "ClusterIP", "this node", ip, 80)
			if p.Verdict != "DNAT" || !p.Masquerade {
				t.Errorf("plugin: cluster IP from node2: %s masquerade=%v, want DNAT with masquerade (why: %s)", p.Verdict, p.Masquerade, p.Why)
			}
			t.Logf("from node2 itself: %s:80 %s; plugin %s masquerade=%v", ip, packetsAgree(t, n2.ns, ip, 80, p, node2IP, node2IP), p.Verdict, p.Masquerade)
		})
	})
}
