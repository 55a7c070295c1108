package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestMorePaths: one node (node1) with the echo pod, a client pod on node1
// and the outside client. The plugin's prediction must match the packets
// for:
//
//	(1) the cluster IP from a pod on the node: DNAT, no masquerade (the
//	    echo pod sees the client pod's IP);
//	(2) the cluster IP from the node itself: DNAT with masquerade (the echo
//	    pod sees the node's IP);
//	(3) the node port from the outside client: DNAT, masqueraded, and the
//	    connection's conntrack entry is DNATed to the predicted endpoint;
//	(4) a Service externalIP the client routes to node1: DNAT, with the
//	    source the pod sees matching the predicted masquerade.
func TestMorePaths(t *testing.T) {
	setup(t).eachMode(t, "more", func(t *testing.T, c *cluster, mode string) {
		n1 := c.addNode("node1", node1IP, node1Pods)
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		fromPod := c.addPod(n1, e2eNS, clientPod1, clientPod1IP, clientLabels)
		client := c.addClient("client", clientIP)
		c.run("ip", "-n", client, "route", "add", extIP+"/32", "via", node1IP)

		const svc, extSvc = "echo-more", "echo-ext"
		np := c.nodePortService(svc, "echo", "Cluster", true)
		clusterIP := c.serviceClusterIP(svc)
		c.service(extSvc, fmt.Sprintf(`{"type":"ClusterIP","selector":{"app":"echo"},"externalIPs":[%q],
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`, extIP))
		c.putSlice(extSvc, []slicePod{{podIP, podName}})
		t.Logf("%s: cluster IP %s node port %d; %s: external IP %s", svc, clusterIP, np, extSvc, extIP)
		c.settle(map[*node]func(string) string{n1: wantInRules(clusterIP, fmt.Sprint(np), podIP, extIP)})

		wantOne := func(t *testing.T, p entryPath) {
			t.Helper()
			if p.Verdict != "DNAT" || len(p.Endpoints) != 1 {
				t.Errorf("plugin: %s %+v, want DNAT to only %s:8080 (why: %s)", p.Verdict, p.Endpoints, podIP, p.Why)
			}
		}

		t.Run("1-clusterip-from-pod", func(t *testing.T) {
			got := mustReach(t, fromPod, clusterIP, 80)
			p := c.trace(t, svc, "--from", "pod/"+e2eNS+"/"+clientPod1).portPath(t, "node1", "ClusterIP", "the given pod", clusterIP, 80)
			wantOne(t, p)
			if p.Masquerade {
				t.Errorf("plugin: masquerade from a pod on the node, want none")
			}
			wantReached(t, got, p, clientPod1IP, node1IP)
			wantConntrack(t, n1, clientPod1IP, clusterIP, 80, p)
			t.Logf("curl %s:80 from %s -> %v; plugin %s masquerade=%v", clusterIP, clientPod1, got, p.Verdict, p.Masquerade)
		})

		t.Run("2-clusterip-from-node", func(t *testing.T) {
			got := mustReach(t, n1.ns, clusterIP, 80)
			p := c.trace(t, svc).portPath(t, "node1", "ClusterIP", "this node", clusterIP, 80)
			wantOne(t, p)
			if !p.Masquerade {
				t.Errorf("plugin: no masquerade from the node itself, want it")
			}
			wantReached(t, got, p, node1IP, node1IP)
			t.Logf("curl %s:80 from node1 -> %v; plugin %s masquerade=%v", clusterIP, got, p.Verdict, p.Masquerade)
		})

		t.Run("3-nodeport-from-client", func(t *testing.T) {
			got := mustReach(t, client, node1IP, np)
			p := c.trace(t, svc).path(t, "node1", mode, node1IP, np)
			wantOne(t, p)
			wantReached(t, got, p, clientIP, node1IP)
			wantConntrack(t, n1, clientIP, node1IP, np, p)
			t.Logf("curl node1:%d -> %v; plugin %s masquerade=%v", np, got, p.Verdict, p.Masquerade)
		})

		t.Run("4-external-ip", func(t *testing.T) {
			got := mustReach(t, client, extIP, 80)
			p := c.trace(t, extSvc).portPath(t, "node1", "ExternalIP", "external client", extIP, 80)
			wantOne(t, p)
			wantReached(t, got, p, clientIP, node1IP)
			wantConntrack(t, n1, clientIP, extIP, 80, p)
			t.Logf("curl %s:80 -> %v; plugin %s masquerade=%v", extIP, got, p.Verdict, p.Masquerade)
		})
	})
}

// serviceClusterIP returns the cluster IP the apiserver gave a Service.
func (c *cluster) serviceClusterIP(name string) string {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+e2eNS+"/services/"+name, nil)
	if err != nil || code != 200 {
		c.t.Fatalf("GET service %s: %d %v\n%s", name, code, err, body)
	}
	var s struct {
		Spec serviceSpec `json:"spec"`
	}
	if err := json.Unmarshal(body, &s); err != nil || s.Spec.ClusterIP == "" {
		c.t.Fatalf("service %s has no cluster IP: %v\n%s", name, err, body)
	}
	return s.Spec.ClusterIP
}
