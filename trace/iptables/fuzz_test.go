package iptables

import (
	"bytes"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// fuzzSeeds are the committed real dumps (kube-proxy fixtures and variants)
// plus the inline samples of this package's tests.
func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{[]byte(countersDump)}
	for _, pattern := range []string{
		"../../testdata/iptables/kube-proxy/*/*/iptables-*.save",
		"../../testdata/iptables/variants/*.save",
	} {
		files, _ := filepath.Glob(pattern)
		for i, name := range files {
			if i%4 != 0 && len(files) > 16 {
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

// FuzzParse checks that Parse never panics, and that a dump it accepts keeps
// every rule line: nothing is silently dropped.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Parse(bytes.NewReader(in))
		d2, err2 := ParseReaderAt(bytes.NewReader(in), int64(len(in)))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Parse and ParseReaderAt disagree: %v / %v", err, err2)
		}
		if err != nil {
			checkErrorLen(t, err)
			return
		}
		e1, e2 := d.Check(), d2.Check()
		if (e1 == nil) != (e2 == nil) {
			t.Fatalf("Check disagrees between modes: %v / %v", e1, e2)
		}
		checkErrorLen(t, e1)
		// Every "-A CHAIN body" line of the input must come back exactly
		// once as a rule of CHAIN (counters stay in front of the body).
		want := map[string]int{}
		for _, line := range strings.Split(string(in), "\n") {
			line = strings.TrimRight(line, "\r")
			counters := ""
			if strings.HasPrefix(line, "[") {
				end := strings.IndexByte(line, ']')
				counters = line[:end+1] + " "
				line = strings.TrimLeft(line[end+1:], " ")
			}
			if !strings.HasPrefix(line, "-A ") {
				continue
			}
			chain, body, _ := strings.Cut(strings.TrimLeft(line[3:], " "), " ")
			want[chain+"\x00"+counters+body]++
		}
		for _, dump := range []*Dump{d, d2} {
			got := map[string]int{}
			for _, tb := range dump.Tables() {
				for _, c := range tb.Chains() {
					if err := c.RawRules(func(_ int, text string) bool {
						got[c.Name+"\x00"+text]++
						return true
					}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("rules lost or changed (-input +parsed):\n%s", diff)
			}
		}
	})
}

// FuzzParseRule checks that tokenizing any rule body never panics and that
// every accepted rule keeps its text.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		`-m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC`,
		`[5:300] -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O`,
		`-p tcp -m recent --set --name KUBE-SEP-A --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination [fd00::1]:80`,
		`! -s 10.0.0.0/8 -m addrtype ! --dst-type LOCAL -m mark ! --mark 0x4000/0x4000 -j MARK --set-xmark 0x4000/0x4000`,
		`-m set --match-set KUBE-CLUSTER-IP dst,dst -m multiport --dports 1:100,200 -g KUBE-X`,
		`-m comment --comment "say \"hi\" \\" -j REJECT --reject-with icmp6-port-unreachable`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if strings.ContainsAny(body, "\n") {
			return
		}
		r, err := parseRule(body)
		if err != nil {
			checkErrorLen(t, err)
			return
		}
		if !strings.HasSuffix(body, r.Text) {
			t.Fatalf("rule text %q is not the end of the body %q", r.Text, body)
		}
	})
}

// FuzzSimulate checks that any dump Parse accepts can be walked for any
// packet without a panic, and that the branches' probabilities sum to 1.
func FuzzSimulate(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, "10.0.0.2", "172.30.0.41", uint16(80), "tcp", "192.168.0.2")
	}
	f.Add([]byte(countersDump), "203.0.113.5", "192.168.0.2", uint16(3001), "udp", "192.168.0.2")
	// A protocol name of 1,200 bytes that %q makes four times longer: the
	// error names an excerpt of it (found by fuzzing in CI).
	f.Add([]byte(countersDump), "203.0.113.5", "192.168.0.2", uint16(3001), strings.Repeat("\xff\"0", 400), "192.168.0.2")
	f.Fuzz(func(t *testing.T, in []byte, src, dst string, port uint16, proto, node string) {
		d, err := Parse(bytes.NewReader(in))
		if err != nil {
			return
		}
		s, err1 := netip.ParseAddr(src)
		ds, err2 := netip.ParseAddr(dst)
		n, err3 := netip.ParseAddr(node)
		if err1 != nil || err2 != nil || err3 != nil {
			return
		}
		pkt := trace.Packet{Source: s, Destination: ds, DestinationPort: port, Protocol: proto}
		sim, err := Simulate(d, pkt, Options{LocalAddrs: []netip.Addr{n}, MaxBranches: 10000})
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
