package iptables_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables/internal/dumpgen"
)

// The benchmarks run on the dump of a node in a cluster of 10,000 Services
// with 100,000 endpoints (about 35 MB, kube-proxy in large-cluster mode),
// generated in memory once per test binary. "make bench-ratio" measures the
// whole command against grep on the same dump.
const (
	benchServices  = 10_000
	benchEndpoints = 100_000
)

// benchNodePorts gives every Service of the benchmarks' dump a node port
// (a KUBE-EXT chain each and 10,000 rules in KUBE-NODEPORTS), a shape
// "make bench-ratio" also measures.
var benchNodePorts = flag.Bool("bench.nodeports", false, "benchmark a dump where every Service has a node port")

// benchCounters saves the benchmarks' dump with counters (iptables-save -c),
// as the collectors take it when they observe.
var benchCounters = flag.Bool("bench.counters", false, "benchmark the dump with counters before every rule (iptables-save -c)")

// benchLongNames gives every namespace and Service of the benchmarks' dump
// a 63-character name (comments of some 140 characters).
var benchLongNames = flag.Bool("bench.longnames", false, "benchmark a dump whose namespaces and Services have 63-character names")

// benchLoadBalancers makes every Service of the benchmarks' dump a
// LoadBalancer with an ingress IP and an external IP.
var benchLoadBalancers = flag.Bool("bench.loadbalancers", false, "benchmark a dump where every Service is a LoadBalancer with an external IP")

var bench struct {
	once   sync.Once
	dump   []byte
	target dumpgen.Service
	err    error
}

func benchDump(b *testing.B) ([]byte, dumpgen.Service) {
	b.Helper()
	bench.once.Do(func() {
		cfg := dumpgen.Default(benchServices, benchEndpoints)
		if *benchNodePorts {
			cfg.NodePortEvery = 1
		}
		cfg.LongNames = *benchLongNames
		if *benchLoadBalancers {
			cfg.LoadBalancerEvery, cfg.ExternalIPEvery = 1, 1
		}
		c, err := dumpgen.Generate(cfg)
		if err != nil {
			bench.err = err
			return
		}
		var buf bytes.Buffer
		if bench.err = c.Write(&buf); bench.err != nil {
			return
		}
		bench.dump = buf.Bytes()
		if *benchCounters {
			bench.dump = dumpgen.WithCounters(bench.dump)
		}
		bench.target, bench.err = c.Middle()
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.dump, bench.target
}

// benchFile writes the dump to a file in b's temporary directory and opens
// it, as the command reads a --ruleset file.
func benchFile(b *testing.B) (*os.File, int64) {
	b.Helper()
	dump, _ := benchDump(b)
	name := filepath.Join(b.TempDir(), "node.iptables")
	if err := os.WriteFile(name, dump, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f, int64(len(dump))
}

func BenchmarkParse(b *testing.B) {
	dump, _ := benchDump(b)
	b.SetBytes(int64(len(dump)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iptables.Parse(bytes.NewReader(dump)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseReaderAt(b *testing.B) {
	f, size := benchFile(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iptables.ParseReaderAt(f, size); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSimulate parses the dump and follows one packet from a pod to
// the cluster IP of a Service in the middle of KUBE-SERVICES, as
// "kubectl trace-svc simulate" does: "memory" holds the dump in memory
// (Parse, for standard input), "file" reads rules back from the file
// (ParseReaderAt, for --ruleset FILE).
func BenchmarkSimulate(b *testing.B) {
	dump, target := benchDump(b)
	pkt := trace.Packet{
		Source:          netip.MustParseAddr("10.0.0.2"),
		Destination:     target.ClusterIP,
		DestinationPort: target.Port,
		Protocol:        target.Protocol,
	}
	opts := iptables.Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}
	for _, mode := range []string{"memory", "file"} {
		b.Run(mode, func(b *testing.B) {
			parse := func() (*iptables.Dump, error) { return iptables.Parse(bytes.NewReader(dump)) }
			if mode == "file" {
				f, size := benchFile(b)
				parse = func() (*iptables.Dump, error) { return iptables.ParseReaderAt(f, size) }
			}
			run := func() *trace.Simulation {
				d, err := parse()
				if err != nil {
					b.Fatal(err)
				}
				sim, err := iptables.Simulate(d, pkt, opts)
				if err != nil {
					b.Fatal(err)
				}
				return sim
			}
			checkBenchSimulation(b, run(), target)
			b.SetBytes(int64(len(dump)))
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// checkBenchSimulation makes sure the benchmark measures a real walk: the
// packet is DNATed to exactly the target's endpoints.
func checkBenchSimulation(b *testing.B, sim *trace.Simulation, target dumpgen.Service) {
	b.Helper()
	if sim.Verdict != trace.VerdictDNAT {
		b.Fatalf("verdict %s, want DNAT to %s", sim.Verdict, target.ServicePortName())
	}
	want := map[netip.AddrPort]bool{}
	for _, e := range target.Endpoints {
		want[e.Addr] = true
	}
	for _, e := range sim.Endpoints {
		if !want[e.AddrPort()] {
			b.Fatalf("DNAT to %s, which is not an endpoint of %s", e.AddrPort(), target.ServicePortName())
		}
		delete(want, e.AddrPort())
	}
	if len(want) > 0 {
		b.Fatalf("%d endpoints of %s never reached", len(want), target.ServicePortName())
	}
}
