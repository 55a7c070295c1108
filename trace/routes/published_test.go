package routes

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func loadPublished(t *testing.T, files ...string) *Snapshot {
	t.Helper()
	var secs []Section
	for _, f := range files {
		// unnamed: the sections are told by their content.
		secs = append(secs, Section{Name: f, Data: readFixture(t, "published/"+f)})
	}
	s, err := Parse(secs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPublishedCalicoIPIP: Calico in IPIP mode with BIRD, as published
// (testdata/published/README.md).
func TestPublishedCalicoIPIP(t *testing.T) {
	s := loadPublished(t, "calico-ipip.ip-route", "calico-ipip.ip-link")
	if diff := cmp.Diff([]string{SectionIPRoute, SectionIPLink}, s.Sections); diff != "" {
		t.Errorf("sections by content (-want +got):\n%s", diff)
	}
	if tunl, ok := s.Interface("tunl0"); !ok || tunl.Kind != KindIPIP || tunl.Tunnel == nil || tunl.LinkName != "" {
		t.Errorf("tunl0: %+v", tunl)
	}
	if eth, _ := s.Interface("eth0"); eth.Kind != KindDevice {
		t.Errorf("eth0 kind %q, want device (ip -d prints its parentbus)", eth.Kind)
	}
	nodes := resolver(map[string][]string{"node-a": {"172.26.12.198/32", "192.168.44.64/26"}, "node-b": {"172.26.5.10/32", "192.168.31.0/26"}, "node-c": {"172.26.8.43/32", "192.168.97.192/26"}})
	for _, tt := range []struct{ dst, line string }{
		{"192.168.31.7", "tunl0 IPIP tunnel → node-b"},
		{"192.168.97.200", "tunl0 IPIP tunnel → node-c"},
		{"192.168.44.65", "local veth cali3f6e2e1b7a9"},
		{"192.168.44.70", "blackhole route 192.168.44.64/26 proto bird"},
		{"172.26.3.3", "on-link eth0"},
	} {
		res := s.Lookup(Query{Dst: netip.MustParseAddr(tt.dst)})
		if got := s.Hop("node-a", res, nodes).Line(); got != tt.line {
			t.Errorf("%s: %q, want %q", tt.dst, got, tt.line)
		}
	}
	d := Detect(Facts{Snapshot: s})
	if diff := cmp.Diff([]string{"Calico (IPIP)"}, d.Names()); diff != "" {
		t.Errorf("detect (-want +got):\n%s", diff)
	}
}

func TestPublishedCalicoCrossSubnet(t *testing.T) {
	s := loadPublished(t, "calico-crosssubnet.ip-route")
	for _, tt := range []struct {
		dst  string
		dev  string
		via  string
		kind Verdict
	}{
		{"192.168.23.70", "eth1", "10.10.10.10", VerdictForward},
		{"192.168.209.66", "vxlan.calico", "192.168.209.64", VerdictForward},
		{"192.168.81.65", "cali1020bde6575", "", VerdictForward},
		{"192.168.81.100", "", "", VerdictBlackhole},
	} {
		res := s.Lookup(Query{Dst: netip.MustParseAddr(tt.dst)})
		via := ""
		if res.Via.IsValid() {
			via = res.Via.String()
		}
		if res.Dev != tt.dev || via != tt.via || res.Verdict != tt.kind {
			t.Errorf("%s: %s via %q dev %q", tt.dst, res.Verdict, via, res.Dev)
		}
		if len(res.Notes) == 0 {
			t.Errorf("%s: no note that the rules were assumed", tt.dst)
		}
	}
	// no interfaces given: the plugin is still named by Felix's routes.
	if diff := cmp.Diff([]string{"Calico"}, Detect(Facts{Snapshot: s}).Names()); diff != "" {
		t.Errorf("detect (-want +got):\n%s", diff)
	}
}

func TestParseIPRouteShapes(t *testing.T) {
	in := "10.1.0.0/24 proto static metric 20\n\tnexthop via 10.0.0.2 dev eth0 weight 1\n\tnexthop via 10.0.0.3 dev eth1 weight 2 onlink\n" +
		"10.2.0.0/24 nexthop via 10.0.0.2 dev eth0 weight 1 nexthop via 10.0.0.3 dev eth1 weight 1\n" +
		"default via inet6 fe80::1 dev eth0 proto 2\n" +
		"unreachable 10.9.0.0/16 table 100 proto 12\n" +
		"throw 10.8.0.0/16 table 100\n" +
		"2001:db8::/64 from 2001:db8:1::/48 via 2001:db8::1 dev eth0 metric 1024 pref medium\n" +
		"bogus line here\n"
	rs, ws, err := ParseIPRoute([]byte(in), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 6 || len(ws) != 1 {
		t.Fatalf("%d routes %q", len(rs), ws)
	}
	if n := rs[0].Nexthops; len(n) != 2 || n[1].Weight != 2 || !n[1].Onlink || rs[0].Dev != "eth0" || rs[0].Metric != 20 {
		t.Errorf("multipath: %+v", rs[0])
	}
	if len(rs[1].Nexthops) != 2 {
		t.Errorf("one-line multipath: %+v", rs[1])
	}
	if rs[2].Via != netip.MustParseAddr("fe80::1") || !rs[2].Dst.Addr().Is4() || rs[2].Protocol != "kernel" {
		t.Errorf("IPv4 via IPv6: %+v", rs[2])
	}
	if rs[3].Type != Unreachable || rs[3].Table != "100" || rs[3].Protocol != "bird" || rs[4].Type != Throw {
		t.Errorf("types: %+v %+v", rs[3], rs[4])
	}
	if rs[5].From != netip.MustParsePrefix("2001:db8:1::/48") || rs[5].Metric != 1024 {
		t.Errorf("source route: %+v", rs[5])
	}
	s := &Snapshot{Routes: rs, Rules4: []Rule{
		{Priority: 10, Action: ActionLookup, Table: "100", SuppressPrefixLen: -1},
		{Priority: 20, Action: ActionLookup, Table: TableMain, SuppressPrefixLen: 0},
		{Priority: 30, Action: ActionLookup, Table: TableMain, SuppressPrefixLen: -1},
	}}
	if res := s.Lookup(Query{Dst: netip.MustParseAddr("10.9.1.1")}); res.Verdict != VerdictUnreachable || res.Errno != "No route to host" {
		t.Errorf("unreachable: %+v", res)
	}
	// throw falls through; suppress_prefixlength 0 skips the default route
	// at 20, rule 30 takes it.
	if res := s.Lookup(Query{Dst: netip.MustParseAddr("10.8.1.1")}); res.Verdict != VerdictForward || res.Rule.Priority != 30 {
		t.Errorf("throw/suppress: %+v", res)
	}
	if res := s.Lookup(Query{Dst: netip.MustParseAddr("10.1.0.9")}); res.Rule.Priority != 20 || len(res.Nexthops) != 2 {
		t.Errorf("multipath lookup: %+v", res)
	}
}

func TestDetectSection(t *testing.T) {
	for _, name := range layoutNames {
		for _, s := range splitScript(t, readFixture(t, name+".txt")) {
			got := DetectSection(s.Data)
			want := s.Name
			if s.Name == SectionIP6Rule {
				want = SectionIPRule // "from all" has no family
			}
			if got != want {
				t.Errorf("%s: %s detected as %q", name, s.Name, got)
			}
		}
	}
}
