package nftables

import (
	"net/netip"
	"os"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
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
	fixtures, flows := kpfixture.Agree(t, "../../testdata/nftables/kube-proxy", []string{"ruleset.nft", "ruleset.json"},
		func(t *testing.T, path string) kpfixture.Simulator {
			rs := parseFile(t, path)
			return func(pkt trace.Packet, local []netip.Addr) (*trace.Simulation, error) {
				return Simulate(rs, pkt, Options{WalkOptions: trace.WalkOptions{LocalAddrs: local}})
			}
		})
	t.Logf("%d fixtures, %d packet flows checked", fixtures, flows)
}
