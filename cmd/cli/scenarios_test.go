package cli

import (
	"fmt"
	"testing"
)

const (
	iptablesFixtures = "../../testdata/iptables/kube-proxy/v1.37.2/"
	nftFixtures      = "../../testdata/nftables/kube-proxy/v1.37.2/"
)

// scenarios are Services whose API objects (testdata/scenarios/DIR) match
// one of kube-proxy's own tests, traced through the rules kube-proxy wrote
// for that test (real iptables-save and nft list ruleset output). Each mode
// lists the node's dumps, relative to the fixture directories.
var scenarios = []struct {
	name, dir, service, namespace, node string
	iptables, nftables                  []string
	extra                               []string
}{
	{"loadbalancer", "loadbalancer", "svc1", "ns1", "node-a",
		[]string{"TestLoadBalancer/iptables-nft.save"}, []string{"TestLoadBalancer/ruleset.nft"}, nil},
	{"loadbalancer-blocked", "loadbalancer", "svc1", "ns1", "node-a",
		[]string{"TestLoadBalancer/iptables-nft.save"}, []string{"TestLoadBalancer/ruleset.nft"}, []string{"--source-ip", "203.0.113.130"}},
	{"local-policy", "local-policy", "svc1", "ns1", "test-node",
		[]string{"TestExternalTrafficPolicyLocal/iptables-nft.save"}, []string{"TestExternalTrafficPolicyLocal/ruleset.nft"}, nil},
	{"multi-port", "multi-port", "svc2", "ns2", "test-node",
		[]string{"TestClusterIPGeneral/iptables-nft.save"}, []string{"TestClusterIPGeneral/ruleset.nft"}, nil},
	{"no-endpoints", "no-endpoints", "svc1", "ns1", "test-node",
		[]string{"TestNoEndpointsReject/iptables-nft.save"}, []string{"TestNoEndpointsReject/ruleset.nft"}, nil},
	// kube-proxy's static nftables trace rules hold svc5's affinity set; its
	// iptables counterpart leaves the recent matches out, so nftables only.
	{"affinity", "affinity", "svc5", "ns5", "test-node",
		nil, []string{"TestTracePacketV4/ruleset.nft"}, nil},
	{"dual-stack", "dual-stack", "svc1", "ns1", "test-node",
		[]string{"TestNodePorts_ipv4__localhost-nodeports_enabled/iptables-nft.save", "TestNodePorts_ipv6__localhost-nodeports_enabled/iptables-nft.save"},
		[]string{"TestNodePorts_ipv4/ruleset.nft", "TestNodePorts_ipv6/ruleset.nft"}, nil},
}

// TestScenarioGoldens pins the tree, the JSON Path and the DOT diagram of
// every scenario in each mode (go test ./cmd/cli -update).
func TestScenarioGoldens(t *testing.T) {
	for _, sc := range scenarios {
		for _, mode := range []struct {
			name, dir string
			dumps     []string
		}{{"iptables", iptablesFixtures, sc.iptables}, {"nftables", nftFixtures, sc.nftables}} {
			if len(mode.dumps) == 0 {
				continue
			}
			t.Run(sc.name+"-"+mode.name, func(t *testing.T) {
				base := []string{sc.service, "-n", sc.namespace, "--objects", "../../testdata/scenarios/" + sc.dir + "/objects.yaml", "--color", "never"}
				for _, d := range mode.dumps {
					base = append(base, "--dump", sc.node+"="+mode.dir+d)
				}
				base = append(base, sc.extra...)
				for _, out := range []struct{ format, ext string }{{"tree", "txt"}, {"json", "json"}, {"dot", "dot"}} {
					stdout, stderr, err := runCLI(t, append(append([]string{}, base...), "-o", out.format)...)
					if err != nil {
						t.Fatalf("%v\n%s", err, stderr)
					}
					golden(t, fmt.Sprintf("scenario-%s-%s.%s", sc.name, mode.name, out.ext), stdout)
				}
			})
		}
	}
}
