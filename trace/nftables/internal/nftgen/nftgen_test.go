package nftgen

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
)

func generate(t *testing.T, cfg Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMatchesKubeProxyShapes: a small generated ruleset has exactly the
// fixed chains, sets and maps of kube-proxy 1.37's real ruleset
// (TestExternalTrafficPolicyCluster fixture), and its Services work.
func TestMatchesKubeProxyShapes(t *testing.T) {
	cfg := Config{Services: 3, EndpointsPerService: 2, NodePortEvery: 2, NodeIP: "192.168.0.2", LocalEvery: 2}
	gen, err := nftables.ParseText(bytes.NewReader(generate(t, cfg)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.Check(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../../../testdata/nftables/kube-proxy/v1.37.2/TestExternalTrafficPolicyCluster/ruleset.nft")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	real, err := nftables.ParseText(f)
	if err != nil {
		t.Fatal(err)
	}
	gt, rt := gen.Table("ip", "kube-proxy"), real.Table("ip", "kube-proxy")
	for name, rc := range rt.Chains {
		if strings.Contains(name, "/") {
			continue // per-Service chains are compared by shape below
		}
		gc := gt.Chains[name]
		if gc == nil {
			t.Errorf("chain %s missing", name)
			continue
		}
		var want, got []string
		for _, r := range rc.Rules() {
			want = append(want, r.Text)
		}
		for _, r := range gc.Rules() {
			got = append(got, r.Text)
		}
		if diff := cmp.Diff(want, got); diff != "" || rc.Hook != gc.Hook || rc.Priority != gc.Priority {
			t.Errorf("chain %s differs from kube-proxy's (-real +generated):\n%s", name, diff)
		}
	}
	for name, rs := range rt.Sets {
		gs := gt.Sets[name]
		if gs == nil || !cmp.Equal(rs.KeyType, gs.KeyType) || rs.DataType != gs.DataType || rs.Comment != gs.Comment {
			t.Errorf("set %s differs: %+v vs %+v", name, rs, gs)
		}
	}
	for _, s := range Services(cfg) {
		pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: s.ClusterIP, DestinationPort: s.ServicePort, Protocol: "tcp"}
		sim, err := nftables.Simulate(gen, pkt, nftables.Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr(cfg.NodeIP)}}})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, e := range s.Endpoints {
			want = append(want, e.String())
		}
		if got := sim.EndpointList(); got != strings.Join(want, ", ") {
			t.Errorf("%s: %s, want %v", s.Name, got, want)
		}
	}
}

// TestRealNftReadsItTheSame loads 1,000-Service rulesets (nftgen's mix, and
// a LoadBalancer IP on every Service with 63-character names) into a
// scratch network namespace with `nft -f` and lists them back: the model
// parsed from nft's own listing must equal the generated one, so the
// benchmark measures what a node prints.
func TestRealNftReadsItTheSame(t *testing.T) {
	lb := DefaultConfig()
	lb.ExternalIPEvery, lb.LongNames = 1, true
	for _, cfg := range []Config{DefaultConfig(), lb} {
		cfg.Services = 1000
		gen := generate(t, cfg)
		listed := nftList(t, gen)
		a, err := nftables.ParseText(bytes.NewReader(gen))
		if err != nil {
			t.Fatal(err)
		}
		b, err := nftables.ParseText(bytes.NewReader(listed))
		if err != nil {
			t.Fatal(err)
		}
		at, bt := a.Table("ip", "kube-proxy"), b.Table("ip", "kube-proxy")
		if len(at.Chains) != len(bt.Chains) || len(at.Sets) != len(bt.Sets) {
			t.Fatalf("%d chains / %d sets generated, nft lists %d / %d", len(at.Chains), len(at.Sets), len(bt.Chains), len(bt.Sets))
		}
		for name, c := range at.Chains {
			var want, got []string
			for _, r := range c.Rules() {
				want = append(want, r.Text)
			}
			for _, r := range bt.Chains[name].Rules() {
				got = append(got, r.Text)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("chain %s (-generated +nft):\n%s", name, diff)
			}
		}
		for name, s := range at.Sets {
			set := func(es []nftables.Element) map[string]string {
				m := map[string]string{}
				for _, e := range es {
					m[strings.Join(e.Key, " . ")] = e.Data
				}
				return m
			}
			ae, _ := s.Elements()
			be, _ := bt.Sets[name].Elements()
			if diff := cmp.Diff(set(ae), set(be)); diff != "" {
				t.Fatalf("set %s (-generated +nft):\n%s", name, diff)
			}
		}
		t.Logf("external IPs every %d, long names %v: generated %d bytes; nft lists %d bytes", cfg.ExternalIPEvery, cfg.LongNames, len(gen), len(listed))
	}
}

// TestLayoutIsWhatNftPrints: for the shapes the benchmarks use, nft lists
// the loaded ruleset line for line as nftgen wrote it (with LayoutNFT):
// every line outside set elements byte for byte, and as many elements on
// each line of a set; the benchmarks read real `nft list ruleset` text. (nft
// lists a large set's elements in its hash order, so the elements on a
// line differ; TestRealNftReadsItTheSame compares the elements.)
func TestLayoutIsWhatNftPrints(t *testing.T) {
	for _, cfg := range []Config{
		{Services: 300, EndpointsPerService: 10, NodePortEvery: 4, NodeIP: "192.168.0.2"},
		{Services: 300, EndpointsPerService: 10, NodePortEvery: 4, NodeIP: "192.168.0.2", ExternalIPEvery: 1, LongNames: true},
	} {
		gen := generate(t, cfg)
		listed := nftList(t, gen)
		if diff := cmp.Diff(layoutOf(gen), layoutOf(listed)); diff != "" {
			t.Errorf("%+v: nft lists the ruleset differently (-generated +nft):\n%s", cfg, diff)
		}
	}
}

// layoutOf returns ruleset's lines with each line of set elements replaced
// by how many elements it holds.
func layoutOf(ruleset []byte) []string {
	var out []string
	inElements := false
	for _, line := range strings.Split(string(ruleset), "\n") {
		text := strings.TrimSpace(line)
		if strings.HasPrefix(text, "elements = { ") {
			inElements, text = true, strings.TrimPrefix(text, "elements = { ")
		}
		if !inElements {
			out = append(out, line)
			continue
		}
		if strings.HasSuffix(text, " }") {
			inElements = false
		}
		out = append(out, fmt.Sprintf("%d elements", strings.Count(strings.TrimSuffix(text, ","), ", ")+1))
	}
	return out
}

// nftList loads ruleset into a scratch network namespace with nft -f and
// returns what nft list ruleset prints; it skips the test without root or
// nft.
func nftList(t *testing.T, ruleset []byte) []byte {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install nftables iproute2)", tool)
		}
	}
	ns := fmt.Sprintf("tsvc-nftgen-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer func() { _ = exec.Command("ip", "netns", "del", ns).Run() }()
	load := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	load.Stdin = bytes.NewReader(ruleset)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -f rejected the generated ruleset: %v: %s", err, out)
	}
	listed, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	return listed
}

// Flags for TestWriteRulesetFile, which test/bench runs to get a ruleset:
// that package cannot import this internal one.
var (
	outFile         = flag.String("nftgen.out", "", "TestWriteRulesetFile writes the 10,000-Service ruleset to this file and its target Service to FILE.target.json")
	externalIPEvery = flag.Int("nftgen.external-ip-every", 0, "give every n-th Service a LoadBalancer IP (1: service-ips holds 2 elements a Service)")
	longNames       = flag.Bool("nftgen.long-names", false, "63-character namespaces and Service names")
	layout          = flag.String("nftgen.layout", "nft", "how set elements are laid out: nft, one-line, one-per-line")
)

func TestWriteRulesetFile(t *testing.T) {
	if *outFile == "" {
		t.Skip("writes a ruleset only with -nftgen.out FILE")
	}
	cfg := DefaultConfig()
	cfg.ExternalIPEvery, cfg.LongNames = *externalIPEvery, *longNames
	var err error
	if cfg.Layout, err = ParseLayout(*layout); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(*outFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(*outFile)
	if err != nil {
		t.Fatal(err)
	}
	svcs := Services(cfg)
	mid := svcs[len(svcs)/2]
	loadBalancers := 0
	for _, s := range svcs {
		if s.LoadBalancerIP.IsValid() {
			loadBalancers++
		}
	}
	var eps []string
	for _, e := range mid.Endpoints {
		eps = append(eps, e.String())
	}
	js, err := json.MarshalIndent(map[string]any{
		"clusterIP": mid.ClusterIP, "port": mid.ServicePort, "endpoints": eps,
		"services": cfg.Services, "totalEndpoints": cfg.Services * cfg.EndpointsPerService, "bytes": info.Size(),
		"serviceIPs": cfg.Services + loadBalancers, "longNames": cfg.LongNames, "layout": cfg.Layout.String(),
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*outFile+".target.json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
