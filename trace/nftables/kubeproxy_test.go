package nftables

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// The fixtures under testdata/nftables/kube-proxy were recorded from
// kube-proxy's own nftables packet-flow tests (runPacketFlowTests in
// pkg/proxy/nftables/helpers_test.go), loaded with real `nft -f` in a network
// namespace and listed back with `nft list ruleset` and `nft -j list
// ruleset`; see hack/kpfixtures/gen.sh --nftables. The simulator must give
// kube-proxy's answer for every packet, from either format.

type flowFixture struct {
	KubernetesVersion string   `json:"kubernetesVersion"`
	Test              string   `json:"test"`
	Line              string   `json:"line"`
	IPv6              bool     `json:"ipv6"`
	NodeIPs           []string `json:"nodeIPs"`
	Flows             []struct {
		Name     string `json:"name"`
		SourceIP string `json:"sourceIP"`
		Protocol string `json:"protocol"`
		DestIP   string `json:"destIP"`
		DestPort int    `json:"destPort"`
		Output   string `json:"output"`
		Masq     bool   `json:"masq"`
	} `json:"flows"`
}

func loadFixtures(t *testing.T) map[string]flowFixture {
	t.Helper()
	files, _ := filepath.Glob("../../testdata/nftables/kube-proxy/*/*/flows.json")
	if len(files) == 0 {
		t.Fatal("no kube-proxy nftables fixtures under testdata/nftables/kube-proxy (run hack/kpfixtures/gen.sh --nftables)")
	}
	out := map[string]flowFixture{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx flowFixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Dir(f)] = fx
	}
	return out
}

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
	fixtures := loadFixtures(t)
	flows := 0
	for dir, fx := range fixtures {
		var local []netip.Addr
		for _, ip := range fx.NodeIPs {
			local = append(local, netip.MustParseAddr(ip))
		}
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
					pkt := trace.Packet{
						Source:          netip.MustParseAddr(fl.SourceIP),
						Destination:     netip.MustParseAddr(fl.DestIP),
						DestinationPort: uint16(fl.DestPort),
						Protocol:        fl.Protocol,
					}
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
					checkProbabilities(t, fl.Name, sim)
				}
			})
		}
	}
	t.Logf("%d fixtures, %d packet flows checked", len(fixtures), flows)
}

// checkProbabilities: branches are disjoint and cover every packet.
func checkProbabilities(t *testing.T, name string, sim *trace.Simulation) {
	t.Helper()
	total, eps := 0.0, 0.0
	for _, o := range sim.Outcomes {
		total += o.Probability
	}
	for _, e := range sim.Endpoints {
		eps += e.Probability
	}
	if total < 1-1e-9 || total > 1+1e-9 {
		t.Errorf("%q: outcome probabilities sum to %v", name, total)
	}
	if sim.Verdict == trace.VerdictDNAT && (eps < 1-1e-9 || eps > 1+1e-9) {
		t.Errorf("%q: endpoint probabilities sum to %v", name, eps)
	}
}
