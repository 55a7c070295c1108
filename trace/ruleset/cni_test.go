package ruleset

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// TestCNIRulesEvaluated: kube-proxy's rules next to each network plugin's
// (testdata/cni, loaded with the real iptables-nft-restore and saved with
// iptables-nft-save by hack/cni/gen.sh). Every match and target the
// plugins use is evaluated or named in a note with what was assumed —
// none is "not evaluated" — and kube-proxy's DNAT still happens where the
// plugin lets the packet through.
func TestCNIRulesEvaluated(t *testing.T) {
	paths, err := filepath.Glob("../../testdata/cni/*.save")
	if err != nil || len(paths) < 6 {
		t.Fatalf("cni dumps: %v %v", paths, err)
	}
	node := netip.MustParseAddr("192.168.0.2")
	packets := []struct {
		name string
		pkt  trace.Packet
		want string // EndpointList
		// per plugin dump, when its rules decide otherwise
		except map[string]string
	}{
		{"pod to ClusterIP", trace.Packet{Source: netip.MustParseAddr("10.180.0.2"), Destination: netip.MustParseAddr("172.30.0.41"), DestinationPort: 80, Protocol: "tcp", InInterface: "eth1"}, "10.180.0.1:80", nil},
		{"Calico workload to ClusterIP", trace.Packet{Source: netip.MustParseAddr("10.180.0.2"), Destination: netip.MustParseAddr("172.30.0.41"), DestinationPort: 80, Protocol: "tcp", InInterface: "cali12345"}, "10.180.0.1:80",
			// The dump has no dispatch entry for the workload's
			// interface: Calico drops it as an unknown interface.
			map[string]string{"calico.save": "DROP"}},
		{"node to ClusterIP", trace.Packet{Source: node, Destination: netip.MustParseAddr("172.30.0.41"), DestinationPort: 80, Protocol: "tcp"}, "10.180.0.1:80", nil},
		{"pod to the internet", trace.Packet{Source: netip.MustParseAddr("10.180.0.2"), Destination: netip.MustParseAddr("198.51.100.7"), DestinationPort: 443, Protocol: "tcp", InInterface: "eth1"}, "", nil},
	}
	for _, path := range paths {
		dp := load(t, path)
		for _, p := range packets {
			sim, err := dp.Simulate(p.pkt, Options{LocalAddrs: []netip.Addr{node}})
			if err != nil {
				t.Fatalf("%s %s: %v", filepath.Base(path), p.name, err)
			}
			want, ok := p.except[filepath.Base(path)]
			if !ok {
				want = p.want
			}
			if got := sim.EndpointList(); got != want {
				t.Errorf("%s %s: %q, want %q (notes %q)", filepath.Base(path), p.name, got, want, sim.Notes)
			}
			for _, n := range sim.Notes {
				if strings.Contains(n, "not evaluate") {
					t.Errorf("%s %s: %s", filepath.Base(path), p.name, n)
				}
			}
			t.Logf("%s %s: %s, notes %q", filepath.Base(path), p.name, sim.Verdict, sim.Notes)
		}
	}
}
