package cli

import (
	"fmt"
	"testing"
)

// scenarios are Services whose API objects (testdata/scenarios/NAME) match
// one of kube-proxy's own tests, traced through the rules kube-proxy wrote
// for that test in both modes (real iptables-save and nft list ruleset
// output from testdata/{iptables,nftables}/kube-proxy/v1.37.2/TEST).
var scenarios = []struct {
	name, service, namespace, node, kubeProxyTest string
	extra                                         []string
}{
	{"loadbalancer", "svc1", "ns1", "node-a", "TestLoadBalancer", nil},
	{"loadbalancer-blocked", "svc1", "ns1", "node-a", "TestLoadBalancer", []string{"--source-ip", "203.0.113.130"}},
	{"local-policy", "svc1", "ns1", "test-node", "TestExternalTrafficPolicyLocal", nil},
	{"multi-port", "svc2", "ns2", "test-node", "TestClusterIPGeneral", nil},
	{"no-endpoints", "svc1", "ns1", "test-node", "TestNoEndpointsReject", nil},
}

// TestScenarioGoldens pins the tree, the JSON Path and the DOT diagram of
// every scenario in both dataplane modes (go test ./cmd/cli -update).
func TestScenarioGoldens(t *testing.T) {
	for _, sc := range scenarios {
		dir := sc.name
		if sc.name == "loadbalancer-blocked" {
			dir = "loadbalancer"
		}
		for _, mode := range []struct{ name, dump string }{
			{"iptables", fmt.Sprintf("../../testdata/iptables/kube-proxy/v1.37.2/%s/iptables-nft.save", sc.kubeProxyTest)},
			{"nftables", fmt.Sprintf("../../testdata/nftables/kube-proxy/v1.37.2/%s/ruleset.nft", sc.kubeProxyTest)},
		} {
			t.Run(sc.name+"-"+mode.name, func(t *testing.T) {
				base := []string{sc.service, "-n", sc.namespace, "--objects", "../../testdata/scenarios/" + dir + "/objects.yaml",
					"--dump", sc.node + "=" + mode.dump, "--color", "never"}
				base = append(base, sc.extra...)
				for _, out := range []struct{ format, ext string }{{"tree", "txt"}, {"json", "json"}, {"dot", "dot"}} {
					stdout, stderr, err := run(t, append(append([]string{}, base...), "-o", out.format)...)
					if err != nil {
						t.Fatalf("%v\n%s", err, stderr)
					}
					golden(t, fmt.Sprintf("scenario-%s-%s.%s", sc.name, mode.name, out.ext), stdout)
				}
			})
		}
	}
}
