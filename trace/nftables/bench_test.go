package nftables_test

import (
	"bytes"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	. "github.com/trace-svc/kubectl-trace-svc/trace/nftables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables/internal/nftgen"
)

// benchShapes are the rulesets the benchmarks read: 10,000 Services with
// 100,000 endpoints in kube-proxy 1.37's shapes (nftgen, checked against
// real nft), as make bench-ratio runs them.
var benchShapes = []struct {
	name string
	cfg  func(*nftgen.Config)
}{
	{"default", func(*nftgen.Config) {}},
	// A LoadBalancer IP on every Service: service-ips holds 20,000
	// elements, one a line.
	{"external-ips", func(c *nftgen.Config) { c.ExternalIPEvery = 1 }},
	// And 63-character namespaces and names: chain names of ~150 bytes.
	{"long-names", func(c *nftgen.Config) { c.ExternalIPEvery, c.LongNames = 1, true }},
	// And every set and map on one line (service-ips: a 3.7 MB line).
	{"one-line", func(c *nftgen.Config) { c.ExternalIPEvery, c.LongNames, c.Layout = 1, true, nftgen.LayoutOneLine }},
}

type benchRuleset struct {
	data []byte
	svcs []nftgen.Service
}

var benchRulesets sync.Map // shape name → func() benchRuleset

func rulesetOf(name string, adjust func(*nftgen.Config)) benchRuleset {
	f, _ := benchRulesets.LoadOrStore(name, sync.OnceValue(func() benchRuleset {
		cfg := nftgen.DefaultConfig()
		adjust(&cfg)
		var buf bytes.Buffer
		if err := nftgen.Write(&buf, cfg); err != nil {
			panic(err)
		}
		return benchRuleset{buf.Bytes(), nftgen.Services(cfg)}
	}))
	return f.(func() benchRuleset)()
}

func BenchmarkParseText(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.name, func(b *testing.B) {
			rs := rulesetOf(shape.name, shape.cfg)
			b.SetBytes(int64(len(rs.data)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := ParseTextBytes(rs.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseAndSimulate is what `simulate` does: parse, then walk one
// ClusterIP packet to a Service in the middle of the ruleset.
func BenchmarkParseAndSimulate(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.name, func(b *testing.B) {
			rs := rulesetOf(shape.name, shape.cfg)
			svc := rs.svcs[len(rs.svcs)/2]
			pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: svc.ClusterIP, DestinationPort: svc.ServicePort, Protocol: "tcp"}
			opts := Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}}
			b.SetBytes(int64(len(rs.data)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				parsed, err := ParseTextBytes(rs.data)
				if err != nil {
					b.Fatal(err)
				}
				sim, err := Simulate(parsed, pkt, opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(sim.Endpoints) != len(svc.Endpoints) {
					b.Fatalf("%d endpoints, want %d", len(sim.Endpoints), len(svc.Endpoints))
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time (user and system, the garbage
// collector's included) per operation as cpu-ns/op: on a loaded machine
// wall time says more about the other processes than about the parser.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
