package e2e

import (
	"fmt"
	"testing"
)

// TestScenarios: node1 with the only pod, node2 without. For each
// scenario, the plugin's prediction (through debug pods) must match what
// the packets do:
//
//	(a) a NodePort-only Service, externalTrafficPolicy Cluster, reached on
//	    node2: DNAT to the pod on node1, masqueraded (the pod sees node2),
//	    and node2's conntrack shows that DNAT;
//	(b) a Service without endpoints: its node port is refused on both
//	    nodes (REJECT);
//	(c) externalTrafficPolicy Local: node2 has no local endpoint and drops
//	    (DROP); node1 DNATs without masquerade (the pod sees the client).
//
// In each, the node itself also connects to the Service's cluster IP, and
// the packets must do what the plugin predicts for "this node".
func TestScenarios(t *testing.T) {
	setup(t).eachMode(t, "sc", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		client := c.addClient("client", clientIP)

		npCluster := c.nodePortService("echo-cluster", "echo", "Cluster", true)
		npEmpty := c.nodePortService("empty", "nothing", "Cluster", false)
		npLocal := c.nodePortService("echo-local", "echo", "Local", true)
		t.Logf("node ports: echo-cluster %d, empty %d, echo-local %d", npCluster, npEmpty, npLocal)
		check := wantInRules(fmt.Sprint(npCluster), fmt.Sprint(npEmpty), fmt.Sprint(npLocal), podIP)
		c.settle(map[*node]func(string) string{n1: check, n2: check})

		// fromNode checks the cluster IP from node n itself against the
		// plugin's prediction for that node.
		fromNode := func(t *testing.T, tp *traced, n *node, svc string) entryPath {
			t.Helper()
			ip := c.serviceClusterIP(svc)
			p := tp.portPath(t, n.name, "ClusterIP", "this node", ip, 80)
			t.Logf("from %s itself, %s:80 %s; plugin %s masquerade=%v %s", n.name, ip, packetsAgree(t, n.ns, ip, 80, p, n.ip, n.ip), p.Verdict, p.Masquerade, p.Why)
			return p
		}

		t.Run("a-nodeport-cluster-policy-masquerade", func(t *testing.T) {
			got := mustReach(t, client, node2IP, npCluster)
			tp := c.trace(t, "echo-cluster")
			p := tp.path(t, "node2", mode, node2IP, npCluster)
			if p.Verdict != "DNAT" || !p.Masquerade || len(p.Endpoints) != 1 {
				t.Errorf("plugin: node2 %s masquerade=%v endpoints %+v, want DNAT to echo-0 with masquerade", p.Verdict, p.Masquerade, p.Endpoints)
			}
			wantReached(t, got, p, clientIP, node2IP)
			wantConntrack(t, n2, clientIP, node2IP, npCluster, p)
			t.Logf("curl node2:%d -> %v; plugin %s masquerade=%v", npCluster, got, p.Verdict, p.Masquerade)
			if p := fromNode(t, tp, n2, "echo-cluster"); p.Verdict != "DNAT" {
				t.Errorf("plugin: cluster IP from node2 %s, want DNAT", p.Verdict)
			}
		})

		t.Run("b-no-endpoints-reject", func(t *testing.T) {
			tp := c.trace(t, "empty")
			for _, n := range []*node{n1, n2} {
				res := mustRefuse(t, client, n.ip, npEmpty)
				p := tp.path(t, n.name, mode, n.ip, npEmpty)
				if p.Verdict != "REJECT" {
					t.Errorf("plugin: %s verdict %s, want REJECT (why: %s)", n.name, p.Verdict, p.Why)
				}
				t.Logf("curl %s:%d refused in %v (exit %d); plugin %s (%s)", n.name, npEmpty, res.took, res.exit, p.Verdict, p.Why)
				if p := fromNode(t, tp, n, "empty"); p.Verdict != "REJECT" {
					t.Errorf("plugin: cluster IP from %s %s, want REJECT", n.name, p.Verdict)
				}
			}
		})

		t.Run("c-nodeport-local-policy", func(t *testing.T) {
			tp := c.trace(t, "echo-local")
			res := mustHang(t, client, node2IP, npLocal)
			p := tp.path(t, "node2", mode, node2IP, npLocal)
			if p.Verdict != "DROP" {
				t.Errorf("plugin: node2 verdict %s, want DROP (why: %s)", p.Verdict, p.Why)
			}
			t.Logf("curl node2:%d timed out after %v; plugin %s (%s)", npLocal, res.took, p.Verdict, p.Why)

			got := mustReach(t, client, node1IP, npLocal)
			p = tp.path(t, "node1", mode, node1IP, npLocal)
			if p.Verdict != "DNAT" || p.Masquerade {
				t.Errorf("plugin: node1 %s masquerade=%v, want DNAT without masquerade", p.Verdict, p.Masquerade)
			}
			wantReached(t, got, p, clientIP, node1IP)
			wantConntrack(t, n1, clientIP, node1IP, npLocal, p)
			t.Logf("curl node1:%d -> %v; plugin %s masquerade=%v", npLocal, got, p.Verdict, p.Masquerade)
			// The external policy does not apply inside the cluster.
			if p := fromNode(t, tp, n2, "echo-local"); p.Verdict != "DNAT" {
				t.Errorf("plugin: cluster IP from node2 %s, want DNAT", p.Verdict)
			}
		})
	})
}
