package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestDebugImageWithoutNFT: node2's image under the plugin's default name
// (registry.k8s.io/kube-proxy:<version>) has no nft — a node with its own,
// different image under a well-known name, which the kubelet uses as it is
// (IfNotPresent). The plugin traces as a user would, with its default
// image. node1 is traced as always. On node2, kube-proxy's rules are where
// the image's tools can read them in the iptables modes, and the trace
// there must be the same as with a full image; in nftables mode they are
// not, and the plugin must say that nft is what is missing.
func TestDebugImageWithoutNFT(t *testing.T) {
	setup(t).eachMode(t, "nonft", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.importImage(n2, noNFTImage)
		c.tagImage(n2, noNFTImage, kubeProxyImage())
		np := c.nodePortService("echo-cluster", "echo", "Cluster", true)
		check := wantInRules(fmt.Sprint(np), podIP)
		c.settle(map[*node]func(string) string{n1: check, n2: check})

		p := c.startPlugin(t, "echo-cluster", "-o", "json")
		err := <-p.exited
		t.Logf("plugin exit: %v\nstderr:\n%s", err, p.stderr.String())
		out := p.stdout.String()
		c.wantDebugPodsGone(t, "default")

		var tp traced
		tp.raw = []byte(out)
		if jerr := json.Unmarshal([]byte(out), &tp.pathDoc); jerr != nil {
			t.Fatalf("plugin printed no JSON (exit %v): %v\n%s\nstderr:\n%s", err, jerr, out, p.stderr.String())
		}
		for _, f := range tp.Findings {
			t.Logf("finding %s %s %s: %s", f.Severity, f.Node, f.Code, f.Message)
		}
		if p1 := tp.path(t, "node1", mode, node1IP, np); p1.Verdict != "DNAT" {
			t.Errorf("plugin: node1 %s, want DNAT (its image is complete)", p1.Verdict)
		}
		// What the plugin says about node2: its error, and its findings.
		said := ""
		for _, n := range tp.Nodes {
			if n.Name == "node2" {
				said += n.Error + "\n"
			}
		}
		for _, f := range tp.Findings {
			if f.Node == "node2" {
				said += f.Message + "\n"
			}
		}
		if mode == "nftables" {
			if !mentionsNFT(said) && !mentionsNFT(p.stderr.String()) {
				t.Errorf("plugin: node2's image has no nft and kube-proxy runs in nftables mode, but the plugin does not say nft is missing; it says:\n%s\nstderr:\n%s", said, p.stderr.String())
			}
			t.Logf("about node2 the plugin says:\n%s", said)
			return
		}
		// iptables modes: the image's iptables reads node2's rules.
		if p2 := tp.path(t, "node2", mode, node2IP, np); p2.Verdict != "DNAT" || !p2.Masquerade {
			t.Errorf("plugin: node2 %s masquerade=%v, want DNAT with masquerade (iptables needs no nft)", p2.Verdict, p2.Masquerade)
		}
		t.Logf("about node2 the plugin says:\n%s", said)
	})
}

// mentionsNFT tells whether a message names the nft tool.
func mentionsNFT(s string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
	}) {
		if f == "nft" {
			return true
		}
	}
	return false
}
