package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	iptablesFixtures = "../../testdata/iptables/kube-proxy/v1.37.2/"
	nftFixtures      = "../../testdata/nftables/kube-proxy/v1.37.2/"
)

// scenarios are Services whose API objects (testdata/scenarios/DIR) match
// one of kube-proxy's own tests, traced through the rules kube-proxy wrote
// for that test (real iptables-save and nft list ruleset output). Each mode
// lists the node's dumps, relative to the fixture directories.
//
// Some scenarios also carry the node's route sections, recorded from a node
// layout built here in network namespaces (routeLayouts): their paths then
// end in the route the node takes to each endpoint. The others have none,
// as a dump saved before routes were collected.
var scenarios = []struct {
	name, dir, service, namespace, node string
	iptables, nftables                  []string
	extra                               []string
	// routes names the layout under testdata/scenarios/routes whose
	// recorded sections are the node's routes; "" for none.
	routes string
}{
	{"loadbalancer", "loadbalancer", "svc1", "ns1", "node-a",
		[]string{"TestLoadBalancer/iptables-nft.save"}, []string{"TestLoadBalancer/ruleset.nft"}, nil, ""},
	// The default client is an arbitrary internet client, outside the
	// source ranges; this one is inside them.
	{"loadbalancer-allowed", "loadbalancer", "svc1", "ns1", "node-a",
		[]string{"TestLoadBalancer/iptables-nft.save"}, []string{"TestLoadBalancer/ruleset.nft"}, []string{"--source-ip", "203.0.113.7"}, ""},
	{"local-policy", "local-policy", "svc1", "ns1", "test-node",
		[]string{"TestExternalTrafficPolicyLocal/iptables-nft.save"}, []string{"TestExternalTrafficPolicyLocal/ruleset.nft"}, nil, "calico-bgp"},
	{"multi-port", "multi-port", "svc2", "ns2", "test-node",
		[]string{"TestClusterIPGeneral/iptables-nft.save"}, []string{"TestClusterIPGeneral/ruleset.nft"}, nil, "calico-bgp"},
	{"no-endpoints", "no-endpoints", "svc1", "ns1", "test-node",
		[]string{"TestNoEndpointsReject/iptables-nft.save"}, []string{"TestNoEndpointsReject/ruleset.nft"}, nil, ""},
	// kube-proxy's static nftables trace rules hold svc5's affinity set; its
	// iptables counterpart leaves the recent matches out, so nftables only.
	{"affinity", "affinity", "svc5", "ns5", "test-node",
		nil, []string{"TestTracePacketV4/ruleset.nft"}, nil, ""},
	{"dual-stack", "dual-stack", "svc1", "ns1", "test-node",
		[]string{"TestNodePorts_ipv4__localhost-nodeports_enabled/iptables-nft.save", "TestNodePorts_ipv6__localhost-nodeports_enabled/iptables-nft.save"},
		[]string{"TestNodePorts_ipv4/ruleset.nft", "TestNodePorts_ipv6/ruleset.nft"}, nil, "calico-bgp"},
	// The same node with its last leg broken four ways: every route
	// finding fires.
	{"broken-routes", "broken-routes", "svc1", "ns1", "test-node",
		[]string{"TestNodePorts_ipv4__localhost-nodeports_enabled/iptables-nft.save", "TestNodePorts_ipv6__localhost-nodeports_enabled/iptables-nft.save"},
		[]string{"TestNodePorts_ipv4/ruleset.nft", "TestNodePorts_ipv6/ruleset.nft"}, nil, "calico-bgp-broken"},
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
				for _, f := range routeDumps(t, sc.routes) {
					base = append(base, "--dump", sc.node+"="+f)
				}
				base = append(base, sc.extra...)
				for _, out := range []struct{ format, ext string }{{"tree", "txt"}, {"json", "json"}, {"dot", "dot"}} {
					stdout, stderr, err := runCLI(t, append(append([]string{}, base...), "-o", out.format)...)
					if err != nil {
						t.Fatalf("%v\n%s", err, stderr)
					}
					golden(t, fmt.Sprintf("scenario-%s-%s.%s", sc.name, mode.name, out.ext), stdout)
					if out.format == "json" && sc.routes != "" && sc.name != "broken-routes" {
						checkNoRouteFindings(t, stdout)
					}
					if out.format == "tree" {
						for i, line := range strings.Split(stdout, "\n") {
							if n := utf8.RuneCountInString(line); n > 80 {
								t.Errorf("tree line %d is %d runes wide:\n%s", i+1, n, line)
							}
						}
					}
				}
			})
		}
	}
}

// routeDumps are the saved route sections of a layout (NODE.SECTION files,
// as --save-dumps writes them); none for "".
func routeDumps(t *testing.T, layout string) []string {
	t.Helper()
	if layout == "" {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(routesDir, layout, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded route sections for layout %s (run go test ./cmd/cli -run TestScenarioRoutes -record-routes as root): %v", layout, err)
	}
	return files
}

// checkNoRouteFindings: a scenario whose pods sit where its node's routes
// send them (every one with routes but broken-routes) is silent about the
// last leg; the route findings fire only on broken-routes.
func checkNoRouteFindings(t *testing.T, pathJSON string) {
	t.Helper()
	var path struct {
		Findings []struct {
			Code string `json:"code"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(pathJSON), &path); err != nil {
		t.Fatal(err)
	}
	for _, f := range path.Findings {
		if strings.HasPrefix(f.Code, "Route") && f.Code != "RoutesAssumed" {
			t.Errorf("finding %s on a scenario whose routes are healthy", f.Code)
		}
	}
}
