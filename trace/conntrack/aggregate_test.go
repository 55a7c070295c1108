package conntrack

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func udpLine(client string, sport int, dst string, dport int, reply string, rport int, flags string) string {
	return fmt.Sprintf("ipv4     2 udp      17 28 src=%s dst=%s sport=%d dport=%d %ssrc=%s dst=%s sport=%d dport=%d mark=0 zone=0 use=2\n",
		client, dst, sport, dport, flags, reply, client, rport, sport)
}

func TestAggregatorStatesAndUntranslated(t *testing.T) {
	dns := Frontend{Addr: a4("10.96.0.10"), Port: 53, Proto: ProtoUDP}
	var b strings.Builder
	b.WriteString(udpLine("10.0.0.1", 1000, "10.96.0.10", 53, "10.244.0.5", 53, ""))
	b.WriteString(udpLine("10.0.0.1", 1001, "10.96.0.10", 53, "10.244.0.5", 53, "[UNREPLIED] "))
	b.WriteString(strings.Replace(udpLine("10.0.0.2", 1002, "10.96.0.10", 53, "10.244.0.5", 53, ""), "mark=0", "[ASSURED] mark=0", 1))
	// no DNAT on this node: the reply comes from the Service address itself
	b.WriteString(udpLine("10.0.0.3", 1003, "10.96.0.10", 53, "10.96.0.10", 53, "[UNREPLIED] "))
	// other destinations are not counted
	b.WriteString(udpLine("10.0.0.1", 1004, "10.96.0.11", 53, "10.244.0.6", 53, ""))
	b.WriteString(strings.Replace(udpLine("10.0.0.1", 1005, "10.96.0.10", 53, "10.244.0.6", 53, ""), "udp      17", "udplite  136", 1))

	obs, err := Observe(strings.NewReader(b.String()), []Frontend{dns, dns}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []FrontendCount{{Frontend: dns, Connections: 4, Backends: []BackendCount{
		{Backend: ap("10.96.0.10:53"), Connections: 1, States: map[string]int{StateUnreplied: 1}, Unreplied: 1, Untranslated: true},
		{Backend: ap("10.244.0.5:53"), Connections: 3, States: map[string]int{StateReplied: 1, StateUnreplied: 1, StateAssured: 1}, Unreplied: 1, Assured: 1},
	}}}
	if diff := cmp.Diff(want, obs.Frontends, addrs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if stale := obs.Frontends[0].Stale(nil); len(stale) != 1 || stale[0].Backend != ap("10.244.0.5:53") {
		t.Errorf("stale with no endpoints: %+v (untranslated entries are not stale)", stale)
	}
	if bc, ok := obs.Frontends[0].Backend(ap("10.244.0.5:53")); !ok || bc.Connections != 3 {
		t.Errorf("Backend lookup: %+v %v", bc, ok)
	}
	if _, ok := obs.Frontends[0].Backend(ap("10.244.0.9:53")); ok {
		t.Error("Backend found a backend that is not there")
	}
}

func TestAggregatorBounds(t *testing.T) {
	svc := Frontend{Addr: a4("10.96.0.1"), Port: 443, Proto: ProtoTCP}
	var b strings.Builder
	// 10 backends, backend i gets i+1 connections from distinct clients
	for i := 0; i < 10; i++ {
		for j := 0; j <= i; j++ {
			fmt.Fprintf(&b, "tcp 6 100 STATE%d src=10.1.%d.%d dst=10.96.0.1 sport=1000 dport=443 src=10.244.0.%d dst=10.1.%d.%d sport=6443 dport=1000 [ASSURED] mark=0 use=1\n", j, i, j, i, i, j)
		}
	}
	agg := NewAggregator([]Frontend{svc}, Options{Clients: true, MaxClients: 3, MaxBackends: 4})
	if _, err := Scan(strings.NewReader(b.String()), func(e *Entry) error { agg.Add(e); return nil }); err != nil {
		t.Fatal(err)
	}
	fc := agg.Result()[0]
	if fc.Connections != 55 || len(fc.Backends) != 4 {
		t.Fatalf("connections %d, %d backends", fc.Connections, len(fc.Backends))
	}
	kept := 0
	for _, bc := range fc.Backends {
		kept += bc.Connections
		if len(bc.Clients) > 3 || len(bc.Clients)+bc.OtherClients != bc.Connections {
			t.Errorf("%s: %d clients kept, %d other, %d connections", bc.Backend, len(bc.Clients), bc.OtherClients, bc.Connections)
		}
	}
	if kept+fc.OtherBackends != 55 {
		t.Errorf("kept %d + other %d != 55", kept, fc.OtherBackends)
	}
}

func TestAggregatorBoundsStates(t *testing.T) {
	svc := Frontend{Addr: a4("10.96.0.1"), Port: 443, Proto: ProtoTCP}
	var b strings.Builder
	for i := 0; i < maxStates+10; i++ {
		fmt.Fprintf(&b, "tcp 6 100 WEIRD%d src=10.1.0.1 dst=10.96.0.1 sport=%d dport=443 src=10.244.0.1 dst=10.1.0.1 sport=6443 dport=%d mark=0 use=1\n", i, 1000+i, 1000+i)
	}
	obs, err := Observe(strings.NewReader(b.String()), []Frontend{svc}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := obs.Frontends[0].Backends[0].States
	if len(st) != maxStates+1 || st[StateOther] != 10 {
		t.Errorf("%d states, OTHER %d", len(st), st[StateOther])
	}
}

func TestObserveIPv4MappedFrontend(t *testing.T) {
	f := Frontend{Addr: netip.MustParseAddr("::ffff:10.96.0.10"), Port: 53, Proto: ProtoUDP}
	obs, err := Observe(strings.NewReader(udpLine("10.0.0.1", 1000, "10.96.0.10", 53, "10.244.0.5", 53, "")), []Frontend{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if obs.Frontends[0].Connections != 1 || obs.Frontends[0].Frontend.Addr != a4("10.96.0.10") {
		t.Errorf("%+v", obs.Frontends[0])
	}
}

func TestObserveRejectsXML(t *testing.T) {
	if _, err := Observe(strings.NewReader("<?xml version=\"1.0\"?>\n<conntrack></conntrack>\n"), nil, Options{}); err == nil || !strings.Contains(err.Error(), "-o xml") {
		t.Errorf("error %v", err)
	}
}
