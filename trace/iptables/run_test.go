package iptables_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables/internal/dumpgen"
)

// TestReaderAtAgreesWithParse checks the fast path ParseReaderAt takes for
// runs of rules of one chain against Parse, which takes every line on its
// own: the same chains with the same rules on the same lines, for dumpgen
// dumps larger than the parser's read buffer (runs cross buffer ends), with
// and without counters, with CRLF line ends, and with a line longer than the
// buffer in the middle of a run.
func TestReaderAtAgreesWithParse(t *testing.T) {
	cfg := dumpgen.Default(600, 3000)
	cfg.NodePortEvery = 1
	cfg.LongNames = true
	c, err := dumpgen.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	plain := buf.String()
	if len(plain) < 1<<20 {
		t.Fatalf("dump is %d bytes, want one larger than the read buffer", len(plain))
	}
	svc := c.Services[len(c.Services)/2]
	chain := svc.Chain(iptables.PrefixService)
	long := strings.Replace(plain, "-A "+chain+" -m statistic", "-A "+chain+" -m comment --comment "+strings.Repeat("x", 300<<10)+" -m statistic", 1)
	if long == plain {
		t.Fatalf("no rule of %s to lengthen", chain)
	}
	for name, dump := range map[string]string{
		"plain":            plain,
		"counters":         string(dumpgen.WithCounters([]byte(plain))),
		"crlf":             strings.ReplaceAll(plain, "\n", "\r\n"),
		"longline":         long,
		"no final newline": strings.TrimSuffix(plain, "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			mem, err := iptables.Parse(strings.NewReader(dump))
			if err != nil {
				t.Fatal(err)
			}
			file, err := iptables.ParseReaderAt(strings.NewReader(dump), int64(len(dump)))
			if err != nil {
				t.Fatal(err)
			}
			if mem.Lines != file.Lines {
				t.Errorf("Lines: Parse %d, ParseReaderAt %d", mem.Lines, file.Lines)
			}
			want, got := rulesByChain(t, mem), rulesByChain(t, file)
			if len(want) < 1000 {
				t.Fatalf("only %d chains parsed", len(want))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseReaderAt differs from Parse (-Parse +ParseReaderAt):\n%s", diff)
			}
			// Walks read a chain back from the file a piece at a time:
			// the tokenized rules of a chain longer than a piece, and a
			// simulation that stops in its middle, must not tell.
			for _, d := range []*iptables.Dump{mem, file} {
				if n := d.Chain("nat", "KUBE-SERVICES").Len(); n < 500 {
					t.Fatalf("KUBE-SERVICES has %d rules, want a chain longer than a piece", n)
				}
			}
			if diff := cmp.Diff(tokenized(t, mem, "KUBE-SERVICES"), tokenized(t, file, "KUBE-SERVICES")); diff != "" {
				t.Errorf("KUBE-SERVICES tokenized differs (-Parse +ParseReaderAt):\n%s", diff)
			}
			if diff := cmp.Diff(simulateJSON(t, mem, svc), simulateJSON(t, file, svc)); diff != "" {
				t.Errorf("simulation differs (-Parse +ParseReaderAt):\n%s", diff)
			}
		})
	}
}

type lineRule struct {
	Line int
	Text string
}

func rulesByChain(t *testing.T, d *iptables.Dump) map[string][]lineRule {
	t.Helper()
	out := map[string][]lineRule{}
	for _, tb := range d.Tables() {
		for _, c := range tb.Chains() {
			var rules []lineRule
			if err := c.RawRules(func(line int, text string) bool {
				rules = append(rules, lineRule{line, text})
				return true
			}); err != nil {
				t.Fatal(err)
			}
			out[tb.Name+" "+c.Name+" "+c.Policy] = rules
		}
	}
	return out
}

func tokenized(t *testing.T, d *iptables.Dump, chain string) []string {
	t.Helper()
	rules, err := d.Chain("nat", chain).Rules()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		out = append(out, fmt.Sprintf("%d %d %s", r.Line, r.Index, r.Target.Name))
	}
	return out
}

func simulateJSON(t *testing.T, d *iptables.Dump, svc dumpgen.Service) string {
	t.Helper()
	sim, err := iptables.Simulate(d, trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: svc.ClusterIP, DestinationPort: svc.Port, Protocol: svc.Protocol},
		iptables.Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	if sim.Verdict != trace.VerdictDNAT || len(sim.Rules) == 0 {
		t.Fatalf("simulation to %s: verdict %s after %d rules, want DNAT", svc.ServicePortName(), sim.Verdict, len(sim.Rules))
	}
	js, err := json.MarshalIndent(sim, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// TestConcurrentWalksReadChainsOnce: walks on one dump read back from its
// file share the chains they read a piece at a time; walks running at once
// (as the tracer's are, one per node and path) get the answers they get
// alone. Run under the race detector by make test-race.
func TestConcurrentWalksReadChainsOnce(t *testing.T) {
	c, err := dumpgen.Generate(dumpgen.Default(800, 4000))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	dump := buf.Bytes()
	var svcs []dumpgen.Service
	for i := 0; i < len(c.Services) && len(svcs) < 8; i += 97 {
		if s := c.Services[i]; len(s.Endpoints) > 0 {
			svcs = append(svcs, s)
		}
	}
	alone := map[int]string{}
	for i, s := range svcs {
		d, err := iptables.ParseReaderAt(bytes.NewReader(dump), int64(len(dump)))
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = simulateJSON(t, d, s)
	}
	shared, err := iptables.ParseReaderAt(bytes.NewReader(dump), int64(len(dump)))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Go(func() {
			sim, err := iptables.Simulate(shared, trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: s.ClusterIP, DestinationPort: s.Port, Protocol: s.Protocol},
				iptables.Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}})
			if err != nil {
				t.Error(err)
				return
			}
			js, _ := json.MarshalIndent(sim, "", " ")
			got[i] = string(js)
		})
	}
	wg.Wait()
	for i := range svcs {
		if got[i] != alone[i] {
			t.Errorf("%s: the walk run alongside others differs from the walk alone:\n%s", svcs[i].ServicePortName(), cmp.Diff(alone[i], got[i]))
		}
	}
}

// TestFileChangedUnderAWalk: a dump file rewritten after ParseReaderAt
// (more, shorter rules where the parse saw fewer) gives an error naming the
// chain, not a panic or a wrong answer.
func TestFileChangedUnderAWalk(t *testing.T) {
	dump := []byte("*nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n-A PREROUTING -j X\n-A X -p tcp -m comment --comment aaaaaaaaaaaaaaa -j ACCEPT\nCOMMIT\n")
	r := bytes.NewReader(dump)
	d, err := iptables.ParseReaderAt(r, int64(len(dump)))
	if err != nil {
		t.Fatal(err)
	}
	old := "-A X -p tcp -m comment --comment aaaaaaaaaaaaaaa -j ACCEPT\n"
	rules := "-A X -j DROP\n-A X -j DROP\n-A X -j DROP\n-A X -j "
	rules += strings.Repeat("Y", len(old)-len(rules)-1) + "\n" // four rules in the bytes of one
	changed := bytes.Replace(dump, []byte(old), []byte(rules), 1)
	if len(changed) != len(dump) {
		t.Fatalf("changed dump is %d bytes, want %d", len(changed), len(dump))
	}
	r.Reset(changed)
	_, err = d.Chain("nat", "X").Rules()
	if err == nil || !strings.Contains(err.Error(), "the file changed since it was parsed") || !strings.Contains(err.Error(), "chain X") {
		t.Fatalf("Rules after the file changed: %v, want an error saying so", err)
	}
}
