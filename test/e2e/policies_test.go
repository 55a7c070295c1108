package e2e

import (
	"fmt"
	"testing"
)

// TestPolicies: node1 has echo-0, echo-1 and a client pod, node2 only a
// client pod. The plugin's prediction must match the packets for:
//
//	(1) a ClusterIP-only Service with internalTrafficPolicy Local: from
//	    node2's pod (no local endpoint) the cluster IP is blocked (dropped
//	    or rejected) as predicted; from node1's pod DNAT to echo-0,
//	    unmasqueraded; from each node itself, what the plugin predicts;
//	(2) sessionAffinity ClientIP with two endpoints: 10 curls through
//	    node1's node port reach one pod, and the plugin lists the affinity
//	    check on that path;
//	(3) a multi-port Service with named target ports — web 80 -> http
//	    (8080), metrics 9090 -> metrics (9090): each port reaches the pod
//	    on its own target port, as predicted.
func TestPolicies(t *testing.T) {
	setup(t).eachMode(t, "pol", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.addPod(n1, e2eNS, pod2Name, pod2IP, echoLabels)
		fromPod1 := c.addPod(n1, e2eNS, clientPod1, clientPod1IP, clientLabels)
		fromPod2 := c.addPod(n2, e2eNS, clientPod2, clientPod2IP, clientLabels)
		client := c.addClient("client", clientIP)

		const itpSvc, affSvc, namedSvc = "echo-itp", "echo-aff", "echo-named"
		itpIP := c.service(itpSvc, `{"type":"ClusterIP","selector":{"app":"echo"},"internalTrafficPolicy":"Local",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`).ClusterIP
		c.putSlice(itpSvc, []slicePod{{podIP, podName}})

		affNP := c.service(affSvc, `{"type":"NodePort","selector":{"app":"echo"},"externalTrafficPolicy":"Cluster",
		  "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":300}},
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`).Ports[0].NodePort
		c.putSlice(affSvc, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})

		namedIP := c.service(namedSvc, `{"type":"ClusterIP","selector":{"app":"echo"},
		  "ports":[{"name":"web","port":80,"targetPort":"http","protocol":"TCP"},
		           {"name":"metrics","port":9090,"targetPort":"metrics","protocol":"TCP"}]}`).ClusterIP
		// The slice's ports carry the Service ports' names with the pod's
		// numbers, as the EndpointSlice controller resolves named ports.
		c.putSliceRaw(namedSvc, fmt.Sprintf(`[{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}]`, podIP, e2eNS, podName),
			`[{"name":"web","port":8080,"protocol":"TCP"},{"name":"metrics","port":9090,"protocol":"TCP"}]`)
		t.Logf("%s %s; %s node port %d; %s %s", itpSvc, itpIP, affSvc, affNP, namedSvc, namedIP)

		check := wantInRules(itpIP, namedIP, fmt.Sprint(affNP), podIP, pod2IP)
		c.settle(map[*node]func(string) string{n1: check, n2: check})

		t.Run("1-internal-traffic-policy-local", func(t *testing.T) {
			saw, res := blocked(t, fromPod2, itpIP, 80)
			p := c.trace(t, itpSvc, "--from", "pod/"+e2eNS+"/"+clientPod2).portPath(t, "node2", "ClusterIP", "the given pod", itpIP, 80)
			if p.Verdict != saw {
				t.Errorf("plugin: node2 verdict %s, the packets say %s (curl exit %d after %v; why: %s)", p.Verdict, saw, res.exit, res.took, p.Why)
			}
			t.Logf("node2: curl %s:80 exit %d after %v; plugin %s (%s)", itpIP, res.exit, res.took, p.Verdict, p.Why)

			got := mustReach(t, fromPod1, itpIP, 80)
			p = c.trace(t, itpSvc, "--from", "pod/"+e2eNS+"/"+clientPod1).portPath(t, "node1", "ClusterIP", "the given pod", itpIP, 80)
			if p.Verdict != "DNAT" || len(p.Endpoints) != 1 {
				t.Errorf("plugin: node1 verdict %s endpoints %+v, want DNAT to only %s:8080 (why: %s)", p.Verdict, p.Endpoints, podIP, p.Why)
			}
			wantReached(t, got, p, clientPod1IP, node1IP)
			wantConntrack(t, n1, clientPod1IP, itpIP, 80, p)
			t.Logf("node1: curl %s:80 -> %v; plugin %s", itpIP, got, p.Verdict)

			tp := c.trace(t, itpSvc)
			for _, n := range []*node{n1, n2} {
				p := tp.portPath(t, n.name, "ClusterIP", "this node", itpIP, 80)
				t.Logf("from %s itself: %s:80 %s; plugin %s %s", n.name, itpIP, packetsAgree(t, n.ns, itpIP, 80, p, n.ip, n.ip), p.Verdict, p.Why)
			}
		})

		t.Run("2-session-affinity-clientip", func(t *testing.T) {
			p := c.trace(t, affSvc).path(t, "node1", mode, node1IP, affNP)
			if p.Verdict != "DNAT" || len(p.Endpoints) != 2 {
				t.Errorf("plugin: node1:%d verdict %s endpoints %+v, want DNAT to two endpoints (why: %s)", affNP, p.Verdict, p.Endpoints, p.Why)
			}
			if len(p.Affinity) == 0 {
				t.Errorf("plugin: node1:%d path lists no affinity check", affNP)
			}
			seen := map[string]int{}
			for i := 0; i < 10; i++ {
				got := mustReach(t, client, node1IP, affNP)
				wantReached(t, got, p, clientIP, node1IP)
				seen[got.name]++
			}
			if len(seen) != 1 {
				t.Errorf("10 curls through node1:%d reached %v, want one pod (ClientIP affinity)", affNP, seen)
			}
			wantConntrack(t, n1, clientIP, node1IP, affNP, p)
			t.Logf("curls through node1:%d reached %v; plugin %s with %d affinity entries", affNP, seen, p.Verdict, len(p.Affinity))
		})

		t.Run("3-multi-port-named-target-ports", func(t *testing.T) {
			tp := c.trace(t, namedSvc, "--from", "pod/"+e2eNS+"/"+clientPod1)
			for _, port := range []struct {
				svc, target int
			}{{80, 8080}, {9090, 9090}} {
				got := mustReach(t, fromPod1, namedIP, port.svc)
				p := tp.portPath(t, "node1", "ClusterIP", "the given pod", namedIP, port.svc)
				if p.Verdict != "DNAT" || len(p.Endpoints) != 1 || int(p.Endpoints[0].Port) != port.target {
					t.Errorf("plugin: %s:%d verdict %s endpoints %+v, want DNAT to only %s:%d (why: %s)", namedIP, port.svc, p.Verdict, p.Endpoints, podIP, port.target, p.Why)
				}
				wantReached(t, got, p, clientPod1IP, node1IP)
				wantConntrack(t, n1, clientPod1IP, namedIP, port.svc, p)
				t.Logf("curl %s:%d -> %v; plugin %s", namedIP, port.svc, got, p.Verdict)
			}
		})
	})
}
