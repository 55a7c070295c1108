package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestForeignTables: node2 gets a table kube-proxy did not write — in
// nftables mode Docker's iptables-nft rules (FORWARD policy DROP), in the
// iptables modes a firewalld-shaped inet table that rejects forwarded
// traffic (testdata/foreign, the rules trace/ruleset's real-packet test
// uses). A NodePort reached on node2 and forwarded to the pod on node1
// dies there whatever kube-proxy does; the plugin must predict that drop
// or reject, say the table is not kube-proxy's and report
// ForeignTableDecides. Traffic the foreign table lets through still DNATs:
// node2's own connection to the cluster IP (output, not forward) and the
// node port on node1, which has no foreign table.
func TestForeignTables(t *testing.T) {
	setup(t).eachMode(t, "ft", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		client := c.addClient("client", clientIP)
		np := c.nodePortService("echo-cluster", "echo", "Cluster", true)
		check := wantInRules(fmt.Sprint(np), podIP)
		c.settle(map[*node]func(string) string{n1: check, n2: check})

		file, loader, want := "../../testdata/foreign/firewalld.nft", []string{"nft", "-f", "-"}, "REJECT"
		if mode == "nftables" {
			file, loader, want = "../../testdata/foreign/docker.iptables", []string{"iptables-nft-restore", "--noflush"}, "DROP"
		}
		rules, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", n2.ns}, loader...)...)
		cmd.Stdin = bytes.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("load %s into %s: %v\n%s", file, n2.name, err, out)
		}

		tp := c.trace(t, "echo-cluster")
		p := tp.path(t, "node2", mode, node2IP, np)
		if p.Verdict != want || !strings.Contains(p.Why, "not kube-proxy's") {
			t.Errorf("plugin: node2 %s (why: %s), want %s by the foreign table", p.Verdict, p.Why, want)
		}
		t.Logf("client -> node2:%d %s; plugin %s (%s)", np, packetsAgree(t, client, node2IP, np, p, clientIP, node2IP), p.Verdict, p.Why)

		found := false
		for _, f := range tp.Findings {
			found = found || f.Code == "ForeignTableDecides" && f.Node == "node2" && f.Severity == "error"
		}
		if !found {
			t.Errorf("plugin: no ForeignTableDecides error for node2 in %+v", tp.Findings)
		}

		p1 := tp.path(t, "node1", mode, node1IP, np)
		if p1.Verdict != "DNAT" {
			t.Errorf("plugin: node1 %s (why: %s), want DNAT", p1.Verdict, p1.Why)
		}
		t.Logf("client -> node1:%d %s; plugin %s", np, packetsAgree(t, client, node1IP, np, p1, clientIP, node1IP), p1.Verdict)

		ip := c.serviceClusterIP("echo-cluster")
		own := tp.portPath(t, n2.name, "ClusterIP", "this node", ip, 80)
		if own.Verdict != "DNAT" {
			t.Errorf("plugin: cluster IP from node2 itself %s (why: %s), want DNAT: the foreign table filters forwarded traffic only", own.Verdict, own.Why)
		}
		t.Logf("node2 -> %s:80 %s; plugin %s", ip, packetsAgree(t, n2.ns, ip, 80, own, n2.ip, n2.ip), own.Verdict)
	})
}
