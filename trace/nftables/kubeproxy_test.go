package nftables

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace/internal/kpfixture"
)

// The fixtures under testdata/nftables/kube-proxy were recorded from
// kube-proxy's own nftables packet-flow tests (runPacketFlowTests in
// pkg/proxy/nftables/helpers_test.go), loaded with real `nft -f` in a network
// namespace and listed back with `nft list ruleset` and `nft -j list
// ruleset`; see hack/kpfixtures/gen.sh --nftables. The simulator must give
// kube-proxy's answer for every packet, from either format.

func parseFile(t *testing.T, path string) *Ruleset {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := rs.Check(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rs
}

func TestAgreesWithKubeProxyPacketFlowTests(t *testing.T) {
	fixtures := kpfixture.Load(t, "../../testdata/nftables/kube-proxy/*/*/flows.json")
	flows := 0
	for dir, fx := range fixtures {
		local := fx.LocalAddrs()
		for _, file := range []string{"ruleset.nft", "ruleset.json"} {
			path := filepath.Join(dir, file)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: missing %s", dir, file)
				continue
			}
			rs := parseFile(t, path)
			name := strings.TrimPrefix(dir, "../../testdata/nftables/kube-proxy/") + "/" + file
			t.Run(name, func(t *testing.T) {
				for _, fl := range fx.Flows {
					pkt := fl.Packet()
					flows++
					sim, err := Simulate(rs, pkt, Options{LocalAddrs: local})
					if err != nil {
						t.Errorf("%q: %v", fl.Name, err)
						continue
					}
					if got := sim.EndpointList(); got != fl.Output || sim.Masquerade != fl.Masq {
						var rules []string
						for _, r := range sim.Rules {
							rules = append(rules, r.String())
						}
						t.Errorf("%s %s %q: %s\n got  %q masq=%v\n want %q masq=%v\nnotes: %v\nrules:\n  %s",
							fx.Test, fx.Line, fl.Name, pkt, got, sim.Masquerade, fl.Output, fl.Masq, sim.Notes, strings.Join(rules, "\n  "))
					}
					kpfixture.CheckProbabilities(t, fl.Name, sim)
				}
			})
		}
	}
	t.Logf("%d fixtures, %d packet flows checked", len(fixtures), flows)
}
