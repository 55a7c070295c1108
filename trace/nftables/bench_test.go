package nftables_test

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	. "github.com/trace-svc/kubectl-trace-svc/trace/nftables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables/internal/nftgen"
)

// The benchmark ruleset: 10,000 Services with 100,000 endpoints in
// kube-proxy 1.37's shapes (nftgen, validated against real nft).
var bigRuleset = sync.OnceValues(func() ([]byte, []nftgen.Service) {
	cfg := nftgen.DefaultConfig()
	var buf bytes.Buffer
	if err := nftgen.Write(&buf, cfg); err != nil {
		panic(err)
	}
	return buf.Bytes(), nftgen.Services(cfg)
})

func BenchmarkParseText(b *testing.B) {
	data, _ := bigRuleset()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTextBytes(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndSimulate is what `simulate` does: parse, then walk one
// ClusterIP packet to a Service in the middle of the ruleset.
func BenchmarkParseAndSimulate(b *testing.B) {
	data, svcs := bigRuleset()
	svc := svcs[len(svcs)/2]
	pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: svc.ClusterIP, DestinationPort: svc.ServicePort, Protocol: "tcp"}
	opts := Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rs, err := ParseTextBytes(data)
		if err != nil {
			b.Fatal(err)
		}
		sim, err := Simulate(rs, pkt, opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(sim.Endpoints) != len(svc.Endpoints) {
			b.Fatalf("%d endpoints, want %d", len(sim.Endpoints), len(svc.Endpoints))
		}
	}
}
