package conntrack

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadIPVS(t *testing.T) {
	f, err := os.Open("testdata/ipvs/ip_vs_conn")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []IPVSConn
	st, err := ScanIPVS(f, func(c *IPVSConn) error { got = append(got, *c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []IPVSConn{
		{Proto: ProtoTCP, Client: ap("10.14.100.2:53400"), Virtual: ap("10.96.14.10:80"), Dest: ap("10.14.1.2:8080"), State: "ESTABLISHED", Expires: 899, Line: 2},
		{Proto: ProtoTCP, Client: ap("10.14.100.2:53402"), Virtual: ap("10.96.14.10:80"), Dest: ap("10.14.2.2:8080"), State: "TIME_WAIT", Expires: 118, Line: 3},
		{Proto: ProtoTCP, Client: ap("10.14.100.2:53404"), Virtual: ap("10.96.14.10:80"), Dest: ap("10.14.1.2:8080"), State: "FIN_WAIT", Expires: 60, Line: 4},
		{Proto: ProtoTCP, Client: ap("10.14.100.3:40000"), Virtual: ap("10.96.14.10:80"), Dest: ap("10.14.1.2:8080"), State: "SYN_RECV", Expires: 30, Line: 5},
		{Proto: ProtoTCP, Client: ap("10.14.100.2:0"), Virtual: ap("10.96.14.10:80"), Dest: ap("10.14.1.2:8080"), State: "ASSURED", Expires: 10799, Line: 6},
		{Proto: ProtoUDP, Client: ap("10.14.9.2:40053"), Virtual: ap("10.96.14.53:53"), Dest: ap("10.14.3.2:5353"), State: "UDP", Expires: 299, Line: 7},
		{Proto: ProtoUDP, Client: ap("10.14.100.2:41000"), Virtual: ap("10.96.14.53:53"), Dest: ap("10.14.2.2:5353"), State: "UDP", Expires: 12, Line: 8},
		{Proto: ProtoSCTP, Client: ap("10.14.100.2:40000"), Virtual: ap("10.96.14.10:9"), Dest: ap("10.14.2.2:9"), State: "INIT1", Expires: 2, Line: 9},
		{Proto: ProtoTCP, Client: ap("10.14.100.2:53500"), Virtual: ap("10.14.100.1:30080"), Dest: ap("10.14.2.2:8080"), State: "ESTABLISHED", Expires: 900, Line: 10},
		{Proto: ProtoTCP, Client: ap("[fd14:100::2]:50844"), Virtual: ap("[fd14:96::10]:80"), Dest: ap("[fd14:2::2]:8080"), State: "ESTABLISHED", Expires: 897, Line: 11},
		{Proto: ProtoTCP, Client: ap("[fd14:100::2]:50846"), Virtual: ap("[fd14:96::10]:80"), Dest: ap("[fd14:1::2]:8080"), State: "CLOSE_WAIT", Expires: 58, Line: 12},
		{Proto: ProtoUDP, Client: ap("10.14.100.2:5060"), Virtual: ap("10.96.14.60:5060"), Dest: ap("10.14.1.2:5060"), State: "UDP", Expires: 299, PEName: "sip", PEData: "a84b4c76e66710@pc33.atlanta.example", Line: 13},
		{Proto: 0, Client: ap("10.14.100.2:0"), Virtual: ap("0.0.0.1:0"), Dest: ap("10.14.1.2:0"), State: "NONE", Expires: 360, Line: 14},
	}
	if diff := cmp.Diff(want, got, addrs); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if st.Entries != len(want) || st.Skipped != 0 || st.Format != FormatIPVS {
		t.Errorf("stats %+v", st)
	}

	old, err := os.Open("testdata/ipvs/ip_vs_conn-2.6.32")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	n := 0
	if _, err := ScanIPVS(old, func(c *IPVSConn) error { n++; return nil }); err != nil || n != 3 {
		t.Errorf("pre-2.6.37 layout: %d entries, %v", n, err)
	}
}

func TestObserveIPVS(t *testing.T) {
	f, err := os.Open("testdata/ipvs/ip_vs_conn")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ap := netip.MustParseAddrPort
	http := Frontend{Addr: a4("10.96.14.10"), Port: 80, Proto: ProtoTCP}
	dns := Frontend{Addr: a4("10.96.14.53"), Port: 53, Proto: ProtoUDP}
	http6 := Frontend{Addr: a4("fd14:96::10"), Port: 80, Proto: ProtoTCP}
	obs, err := Observe(f, []Frontend{http, dns, http6}, Options{Clients: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []FrontendCount{
		{Frontend: http, Connections: 4, Templates: 1, Backends: []BackendCount{
			{Backend: ap("10.14.1.2:8080"), Connections: 3, States: map[string]int{"ESTABLISHED": 1, "FIN_WAIT": 1, "SYN_RECV": 1},
				Clients: []ClientCount{{Addr: a4("10.14.100.2"), Connections: 2}, {Addr: a4("10.14.100.3"), Connections: 1}}},
			{Backend: ap("10.14.2.2:8080"), Connections: 1, States: map[string]int{"TIME_WAIT": 1},
				Clients: []ClientCount{{Addr: a4("10.14.100.2"), Connections: 1}}},
		}},
		{Frontend: dns, Connections: 2, Backends: []BackendCount{
			{Backend: ap("10.14.2.2:5353"), Connections: 1, States: map[string]int{"UDP": 1}, Clients: []ClientCount{{Addr: a4("10.14.100.2"), Connections: 1}}},
			{Backend: ap("10.14.3.2:5353"), Connections: 1, States: map[string]int{"UDP": 1}, Clients: []ClientCount{{Addr: a4("10.14.9.2"), Connections: 1}}},
		}},
		{Frontend: http6, Connections: 2, Backends: []BackendCount{
			{Backend: ap("[fd14:1::2]:8080"), Connections: 1, States: map[string]int{"CLOSE_WAIT": 1}, Clients: []ClientCount{{Addr: a4("fd14:100::2"), Connections: 1}}},
			{Backend: ap("[fd14:2::2]:8080"), Connections: 1, States: map[string]int{"ESTABLISHED": 1}, Clients: []ClientCount{{Addr: a4("fd14:100::2"), Connections: 1}}},
		}},
	}
	if diff := cmp.Diff(want, obs.Frontends, addrs); diff != "" {
		t.Errorf("frontends (-want +got):\n%s", diff)
	}
	if obs.Matched != 9 {
		t.Errorf("matched %d, want 9 (8 connections and a template)", obs.Matched)
	}
	fc := obs.Frontends[1]
	if stale := fc.Stale([]netip.AddrPort{ap("10.14.2.2:5353")}); len(stale) != 1 || stale[0].Backend != ap("10.14.3.2:5353") {
		t.Errorf("stale %+v", stale)
	}
}

func TestReadIPVSBadLines(t *testing.T) {
	tests := []struct {
		line string
		why  string
	}{
		{"TCP 0A0E6402 D098 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED", "too few fields"},
		{"XYZ 0A0E6402 D098 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED 1", "unknown protocol"},
		{"TCP 0A0E640G D098 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED 1", "bad client address"},
		{"TCP 0A0E6402 D09 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED 1", "bad client address"},
		{"TCP 0A0E6402 D098 fd14:0096:0000:0000:0000:0000:0000:0010 0050 0A0E0102 1F90 ESTABLISHED 1", "different families"},
		{"TCP 0A0E6402 D098 0A600E0A 0050 0A0E0102 1F90 established 1", "bad state"},
		{"TCP 0A0E6402 D098 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED -1", "bad expiry"},
		{"IP_999 0A0E6402 D098 0A600E0A 0050 0A0E0102 1F90 ESTABLISHED 1", "unknown protocol"},
	}
	for _, tt := range tests {
		_, err := ScanIPVS(strings.NewReader("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"+tt.line+"\n"), func(*IPVSConn) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%q: error %v, want %q", tt.line, err, tt.why)
		}
	}
}
