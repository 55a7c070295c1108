package iptables

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/internal/kpfixture"
)

// The fixtures under testdata/iptables/kube-proxy were recorded from
// kube-proxy's own packet-flow tests (runPacketFlowTests in
// pkg/proxy/iptables/proxier_test.go) and loaded through real
// iptables-restore / iptables-save in a network namespace, once per backend;
// see hack/kpfixtures. Each flows.json holds kube-proxy's expected answer for
// every packet. The simulator must give the same answer on every case.

func loadFlowFixtures(t *testing.T) map[string]kpfixture.Fixture {
	t.Helper()
	return kpfixture.Load(t, "../../testdata/iptables/kube-proxy/*/*/flows.json")
}

func parseFixture(t *testing.T, path string) *Dump {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := d.Check(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

func TestAgreesWithKubeProxyPacketFlowTests(t *testing.T) {
	fixtures, flows := kpfixture.Agree(t, "../../testdata/iptables/kube-proxy", []string{"iptables-nft.save", "iptables-legacy.save"},
		func(t *testing.T, path string) kpfixture.Simulator {
			d := parseFixture(t, path)
			return func(pkt trace.Packet, local []netip.Addr) (*trace.Simulation, error) {
				return Simulate(d, pkt, Options{LocalAddrs: local})
			}
		})
	t.Logf("%d fixtures, %d packet flows checked", fixtures, flows)
}

// TestChainNamesInRealDumps recomputes every KUBE-SVC-* and KUBE-SEP-* name
// in the fixtures from the Service port and endpoint that the rules' comments
// name: the hash must explain every chain kube-proxy wrote.
func TestChainNamesInRealDumps(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/iptables/kube-proxy/*/*/iptables-nft.save")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	checked := 0
	for _, path := range files {
		d := parseFixture(t, path)
		nat := d.Table("nat")
		if nat == nil {
			continue
		}
		for _, c := range nat.Chains() {
			rules, _ := c.Rules()
			for _, r := range rules {
				switch {
				case strings.HasPrefix(c.Name, PrefixEndpoint) && r.Target.Name == "DNAT" && r.Comment != "":
					want := EndpointChain(r.Comment, r.Protocol, netip.AddrPortFrom(r.Target.NAT.Addr, r.Target.NAT.Port))
					if want != c.Name {
						t.Errorf("%s: chain %s DNATs %q to %s but the hash gives %s", path, c.Name, r.Comment, r.Target.NAT.Raw, want)
					}
					checked++
				case strings.HasPrefix(c.Name, PrefixService) && strings.Contains(r.Comment, " -> "):
					svcPort, _, _ := strings.Cut(r.Comment, " -> ")
					sep := d.Chain("nat", r.Target.Name)
					proto := ""
					if sep != nil {
						sr, _ := sep.Rules()
						for _, x := range sr {
							if x.Target.Name == "DNAT" {
								proto = x.Protocol
							}
						}
					}
					if want := ServiceChain(PrefixService, svcPort, proto); want != c.Name {
						t.Errorf("%s: chain %s serves %q but the hash gives %s", path, c.Name, svcPort, want)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no chain names checked")
	}
	t.Logf("%d chain names recomputed", checked)
}

// TestVariantsBehaveLikeThePlainDump: the same kube-proxy rules saved with
// counters, with the legacy-tables warning, next to other software's raw and
// mangle tables, or by ip6tables-save -c (testdata/iptables/variants, written
// by hack/kpfixtures/variants.sh with the real tools) give exactly the answers
// kube-proxy expects for the plain dump.
func TestVariantsBehaveLikeThePlainDump(t *testing.T) {
	fixtures := loadFlowFixtures(t)
	base := "../../testdata/iptables/kube-proxy/v1.37.2/"
	for _, tc := range []struct {
		variant, fixture string
		warning          bool
		counters         bool
		tables           []string
	}{
		{"counters-nft.save", "TestLoadBalancer", false, true, []string{"filter", "nat"}},
		{"counters-legacy.save", "TestLoadBalancer", false, true, []string{"mangle", "filter", "nat"}},
		{"legacy-warning.save", "TestLoadBalancer", true, false, []string{"filter", "nat"}},
		{"all-tables.save", "TestLoadBalancer", false, false, []string{"raw", "mangle", "filter", "nat"}},
		{"ipv6-counters.save", "TestNodePorts_ipv6__localhost-nodeports_enabled", false, true, []string{"filter", "nat"}},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			fx, ok := fixtures[base+tc.fixture]
			if !ok {
				t.Fatalf("fixture %s missing", tc.fixture)
			}
			d := parseFixture(t, "../../testdata/iptables/variants/"+tc.variant)
			var tables []string
			for _, tb := range d.Tables() {
				tables = append(tables, tb.Name)
			}
			for _, want := range tc.tables {
				if !strings.Contains(" "+strings.Join(tables, " ")+" ", " "+want+" ") {
					t.Errorf("tables %v lack %s", tables, want)
				}
			}
			if got := len(d.Warnings) > 0; got != tc.warning {
				t.Errorf("warnings %q, want a warning: %v", d.Warnings, tc.warning)
			}
			if d.IPv6() != fx.IPv6 {
				t.Errorf("IPv6() = %v, want %v", d.IPv6(), fx.IPv6)
			}
			counted := 0
			for _, tb := range d.Tables() {
				for _, c := range tb.Chains() {
					rules, err := c.Rules()
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rules {
						if r.Packets > 0 {
							counted++
						}
					}
				}
			}
			if tc.counters && counted == 0 {
				t.Error("no rule kept its counters")
			}
			local := fx.LocalAddrs()
			for _, fl := range fx.Flows {
				sim, err := Simulate(d, fl.Packet(), Options{LocalAddrs: local})
				if err != nil {
					t.Fatalf("%q: %v", fl.Name, err)
				}
				if got := sim.EndpointList(); got != fl.Output || sim.Masquerade != fl.Masq {
					t.Errorf("%q: got %q masq=%v, want %q masq=%v", fl.Name, got, sim.Masquerade, fl.Output, fl.Masq)
				}
			}
		})
	}
}
