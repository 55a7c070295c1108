package nftables

import (
	"bytes"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// fuzzSeeds are a sample of the committed real rulesets in one format, plus
// the package's inline samples.
func fuzzSeeds(f *testing.F, file string) [][]byte {
	seeds := [][]byte{[]byte(tinyRuleset)}
	for _, pattern := range []string{
		"../../testdata/nftables/kube-proxy/*/*/" + file,
		"../../testdata/nftables/variants/*" + filepath.Ext(file),
	} {
		files, _ := filepath.Glob(pattern)
		for i, name := range files {
			if i%6 != 0 && len(files) > 12 {
				continue // a sample keeps the seed corpus quick to replay
			}
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// FuzzParseText: ParseText never panics, and every rule it returns is text
// of the input (possibly joined from continued lines): nothing is invented.
func FuzzParseText(f *testing.F) {
	for _, s := range fuzzSeeds(f, "ruleset.nft") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, err := ParseText(bytes.NewReader(in))
		if err != nil {
			checkErrorLen(t, err)
			return
		}
		checkErrorLen(t, rs.Check())
		checkNotesLen(t, rs)
		lines := strings.Split(string(in), "\n")
		joined := strings.Join(strings.Fields(string(in)), " ")
		rules := 0
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules() {
					rules++
					if !strings.Contains(joined, strings.Join(strings.Fields(r.Text), " ")) {
						t.Fatalf("rule %q (line %d) is not in the input", r.Text, r.Line)
					}
				}
			}
		}
		if rules > len(lines) {
			t.Fatalf("%d rules from %d lines", rules, len(lines))
		}
	})
}

// FuzzParseJSON: ParseJSON never panics on any input.
func FuzzParseJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f, "ruleset.json") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, err := ParseJSON(bytes.NewReader(in))
		if err == nil {
			err = rs.Check()
		}
		checkErrorLen(t, err)
	})
}

// FuzzSimulate: any ruleset Parse accepts can be walked for any packet
// without a panic, and the branches' probabilities sum to 1.
func FuzzSimulate(f *testing.F) {
	for _, s := range fuzzSeeds(f, "ruleset.nft") {
		f.Add(s, "10.0.0.2", "172.30.0.41", uint16(80), "tcp", "192.168.0.2")
	}
	f.Add([]byte(tinyRuleset), "203.0.113.5", "172.30.0.42", uint16(53), "udp", "192.168.0.2")
	// A protocol name of 1,200 bytes that %q makes four times longer: the
	// error names an excerpt of it (found by fuzzing in CI).
	f.Add([]byte(tinyRuleset), "203.0.113.5", "172.30.0.42", uint16(53), strings.Repeat("\xff\"0", 400), "192.168.0.2")
	f.Fuzz(func(t *testing.T, in []byte, src, dst string, port uint16, proto, node string) {
		rs, err := Parse(bytes.NewReader(in))
		if err != nil {
			return
		}
		s, err1 := netip.ParseAddr(src)
		d, err2 := netip.ParseAddr(dst)
		n, err3 := netip.ParseAddr(node)
		if err1 != nil || err2 != nil || err3 != nil {
			return
		}
		sim, err := Simulate(rs, trace.Packet{Source: s, Destination: d, DestinationPort: port, Protocol: proto}, Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{n}, MaxBranches: 10000}})
		if err != nil {
			checkErrorLen(t, err)
			return
		}
		sum := 0.0
		for _, o := range sim.Outcomes {
			sum += o.Probability
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("outcome probabilities sum to %v, want 1", sum)
		}
	})
}

// checkErrorLen fails when err echoes more of the input than a short
// excerpt: its message must stay within maxErrorLen whatever the input.
func checkErrorLen(t *testing.T, err error) {
	t.Helper()
	if err != nil && len(err.Error()) > maxErrorLen {
		t.Fatalf("error of %d bytes: %.200s…", len(err.Error()), err)
	}
}

// checkNotesLen fails when a rule's Unknown (which notes repeat) echoes more
// than an excerpt of the rule.
func checkNotesLen(t *testing.T, rs *Ruleset) {
	t.Helper()
	for _, tb := range rs.Tables {
		for _, c := range tb.Chains {
			for _, r := range c.Rules() {
				if len(r.Unknown) > maxErrorLen {
					t.Fatalf("rule at line %d: Unknown of %d bytes", r.Line, len(r.Unknown))
				}
			}
		}
	}
}
