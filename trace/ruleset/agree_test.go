package ruleset

import (
	"net/netip"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/internal/kpfixture"
)

// The node's one netfilter walk (Dataplane.Simulate over every engine's
// HookChains) must give kube-proxy's own answer on every packet of its
// packet-flow tests, in both modes and every dump format, as the engines
// alone do.
func TestDataplaneAgreesWithKubeProxyPacketFlowTests(t *testing.T) {
	simulator := func(t *testing.T, path string) kpfixture.Simulator {
		d := load(t, path)
		return func(pkt trace.Packet, local []netip.Addr) (*trace.Simulation, error) {
			return d.Simulate(pkt, Options{LocalAddrs: local})
		}
	}
	fixtures, flows := kpfixture.Agree(t, "../../testdata/iptables/kube-proxy", []string{"iptables-nft.save", "iptables-legacy.save"}, simulator)
	nf, nflows := kpfixture.Agree(t, "../../testdata/nftables/kube-proxy", []string{"ruleset.nft", "ruleset.json"}, simulator)
	t.Logf("%d fixtures, %d packet flows checked", fixtures+nf, flows+nflows)
}
