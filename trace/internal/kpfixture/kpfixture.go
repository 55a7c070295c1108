// Package kpfixture reads the packet-flow fixtures recorded from kube-proxy's
// own tests (hack/kpfixtures): each directory holds a ruleset in the formats
// a node prints and flows.json, kube-proxy's expected answer for every
// packet. Both engines' agreement tests use it.
package kpfixture

import (
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// Fixture is one flows.json.
type Fixture struct {
	KubernetesVersion string `json:"kubernetesVersion"`
	Test              string `json:"test"`
	// Line is where kube-proxy's test ran the flows: a number (iptables
	// tests) or "(from proxier_test.go:N)" (nftables tests).
	Line    json.RawMessage `json:"line"`
	IPv6    bool            `json:"ipv6"`
	NodeIPs []string        `json:"nodeIPs"`
	// ExpectationSource says where the expected outcomes come from when
	// they are not kube-proxy's own packet-flow cases (the 1.22 set).
	ExpectationSource string `json:"expectationSource,omitempty"`
	Flows             []Flow `json:"flows"`
}

// Flow is one packet and kube-proxy's expected answer.
type Flow struct {
	Name     string `json:"name"`
	SourceIP string `json:"sourceIP"`
	Protocol string `json:"protocol"`
	DestIP   string `json:"destIP"`
	DestPort int    `json:"destPort"`
	// Output is kube-proxy's rendering: "ip:port, ip:port", DROP, REJECT,
	// ACCEPT, or "" when nothing happens.
	Output string `json:"output"`
	Masq   bool   `json:"masq"`
	Why    string `json:"why,omitempty"`
}

// Load reads every flows.json matching pattern, keyed by its directory. It
// fails the test when there is none: missing fixtures must not pass.
func Load(t *testing.T, pattern string) map[string]Fixture {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no kube-proxy fixtures match %s (run make fixtures)", pattern)
	}
	out := map[string]Fixture{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx Fixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Dir(f)] = fx
	}
	return out
}

// LocalAddrs are the fixture's node addresses.
func (f Fixture) LocalAddrs() []netip.Addr {
	var out []netip.Addr
	for _, ip := range f.NodeIPs {
		out = append(out, netip.MustParseAddr(ip))
	}
	return out
}

// Packet is the flow's first packet.
func (fl Flow) Packet() trace.Packet {
	proto := fl.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return trace.Packet{
		Source:          netip.MustParseAddr(fl.SourceIP),
		Destination:     netip.MustParseAddr(fl.DestIP),
		DestinationPort: uint16(fl.DestPort),
		Protocol:        proto,
	}
}

// CheckProbabilities fails when a simulation's branches do not cover every
// packet exactly once, or its endpoints' shares do not add up for a DNAT.
func CheckProbabilities(t *testing.T, name string, sim *trace.Simulation) {
	t.Helper()
	total, eps := 0.0, 0.0
	for _, o := range sim.Outcomes {
		total += o.Probability
	}
	for _, e := range sim.Endpoints {
		eps += e.Probability
	}
	if math.Abs(total-1) > 1e-9 {
		t.Errorf("%q: outcome probabilities sum to %v", name, total)
	}
	if sim.Verdict == trace.VerdictDNAT && math.Abs(eps-1) > 1e-9 {
		t.Errorf("%q: endpoint probabilities sum to %v", name, eps)
	}
}

// Simulator walks one packet through a parsed ruleset.
type Simulator func(pkt trace.Packet, local []netip.Addr) (*trace.Simulation, error)

// Agree checks every fixture under root against kube-proxy's expectations:
// for each of files present in a fixture's directory, parse makes a
// Simulator, and every flow must come out as kube-proxy said (endpoints or
// verdict, and the masquerade bit), with probabilities that add up. It
// returns how many fixtures and flows were checked.
func Agree(t *testing.T, root string, files []string, parse func(t *testing.T, path string) Simulator) (fixtures, flows int) {
	t.Helper()
	all := Load(t, filepath.Join(root, "*", "*", "flows.json"))
	for dir, fx := range all {
		local := fx.LocalAddrs()
		for _, file := range files {
			path := filepath.Join(dir, file)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: missing %s", dir, file)
				continue
			}
			sim := parse(t, path)
			rel, _ := filepath.Rel(root, path)
			t.Run(rel, func(t *testing.T) {
				for _, fl := range fx.Flows {
					pkt := fl.Packet()
					flows++
					got, err := sim(pkt, local)
					if err != nil {
						t.Errorf("%q: %v", fl.Name, err)
						continue
					}
					if out := got.EndpointList(); out != fl.Output || got.Masquerade != fl.Masq {
						var rules []string
						for _, r := range got.Rules {
							rules = append(rules, r.String())
						}
						t.Errorf("%s (line %s) %q: %s\n got  %q masq=%v\n want %q masq=%v %s\nnotes: %v\nrules:\n  %s",
							fx.Test, fx.Line, fl.Name, pkt, out, got.Masquerade, fl.Output, fl.Masq, fl.Why, got.Notes, strings.Join(rules, "\n  "))
					}
					CheckProbabilities(t, fl.Name, got)
				}
			})
		}
	}
	return len(all), flows
}
