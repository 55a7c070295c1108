package nftables

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

const tinyRuleset = `table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		elements = { 172.30.0.41, 172.30.0.42 }
	}

	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : goto service-a,
			     172.30.0.42 . udp . 53 : goto service-b }
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr . meta l4proto . th dport vmap @service-ips
	}

	chain service-a {
		numgen random mod 3 vmap { 0 : goto endpoint-1, 1 : goto endpoint-2, 2 : goto endpoint-3 }
	}

	chain service-b {
		meta l4proto udp dnat ip to numgen random mod 2 map { 0 : 10.180.0.4 . 53, 1 : 10.180.0.5 . 53 }
	}

	chain endpoint-1 {
		meta l4proto tcp dnat to 10.180.0.1:8080
	}

	chain endpoint-2 {
		meta l4proto tcp dnat to 10.180.0.2:8080
	}

	chain endpoint-3 {
		meta l4proto tcp dnat to 10.180.0.3:8080
	}
}
`

func TestParseTextModel(t *testing.T) {
	rs, err := ParseText(strings.NewReader(tinyRuleset))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Check(); err != nil {
		t.Fatal(err)
	}
	tb := rs.Table("ip", "kube-proxy")
	if tb == nil || tb.Comment != "rules for kube-proxy" {
		t.Fatalf("table: %+v", tb)
	}
	m := tb.Sets["service-ips"]
	elems, err := m.Elements()
	if err != nil {
		t.Fatal(err)
	}
	if !m.IsMap || m.DataType != "verdict" || len(m.KeyType) != 3 || len(elems) != 2 {
		t.Fatalf("map: %+v", m)
	}
	if e := elems[0]; e.Comment != "ns1/svc1:p80" || e.Data != "goto service-a" || strings.Join(e.Key, "|") != "172.30.0.41|tcp|80" {
		t.Errorf("element: %+v", e)
	}
	c := tb.Chains["nat-prerouting"]
	if !c.Base || c.Hook != "prerouting" || c.Type != "nat" || c.Priority != -100 || c.Policy != "accept" {
		t.Errorf("base chain: %+v", c)
	}
	if r := tb.Chains["endpoint-2"].Rules()[0]; r.Line != 32 || r.Unknown != "" || r.Stmts[1].To != netip.MustParseAddrPort("10.180.0.2:8080") {
		t.Errorf("rule: %+v", r)
	}
	sim, err := Simulate(rs, trace.Packet{Source: netip.MustParseAddr("10.0.0.9"), Destination: netip.MustParseAddr("172.30.0.41"), DestinationPort: 80, Protocol: "tcp"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sim.EndpointList(); got != "10.180.0.1:8080, 10.180.0.2:8080, 10.180.0.3:8080" {
		t.Errorf("endpoints %q", got)
	}
	for _, e := range sim.Endpoints {
		if e.Probability < 0.3333 || e.Probability > 0.3334 {
			t.Errorf("%s: probability %v, want 1/3", e.AddrPort(), e.Probability)
		}
	}
	sim, err = Simulate(rs, trace.Packet{Source: netip.MustParseAddr("10.0.0.9"), Destination: netip.MustParseAddr("172.30.0.42"), DestinationPort: 53, Protocol: "udp"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sim.EndpointList(); got != "10.180.0.4:53, 10.180.0.5:53" {
		t.Errorf("udp endpoints %q", got)
	}
	// TCP to the UDP port: no map element, nothing happens.
	sim, _ = Simulate(rs, trace.Packet{Source: netip.MustParseAddr("10.0.0.9"), Destination: netip.MustParseAddr("172.30.0.42"), DestinationPort: 53, Protocol: "tcp"}, Options{})
	if sim.Verdict != trace.VerdictNone {
		t.Errorf("tcp to udp service: verdict %s", sim.Verdict)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "the ruleset is empty"},
		{"only comments", "# nothing\n\n", "no table found"},
		{"not nft", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", `line 1: expected "table FAMILY NAME {"`},
		{"truncated", "table ip kube-proxy {\n\tchain a {\n\t\tdrop\n", "line 1: table ip kube-proxy is not closed"},
		{"stray brace", "table ip t {\n}\n}\n", "line 3: } without an open table"},
		{"open elements", "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.2.3.4,\n", "line 4: a statement opened with { is never closed"},
		{"bad header", "table ip t {\n\tchain c {\n\t\ttype nat hook prerouting priority sideways; policy accept;\n\t}\n}\n", `line 3: chain c: priority "sideways"`},
		{"duplicate chain", "table ip t {\n\tchain c {\n\t}\n\tchain c {\n\t}\n}\n", "chain c is declared twice"},
		{"unknown table line", "table ip t {\n\tbanana\n}\n", `line 2: unexpected "banana" in table ip t`},
		{"json garbage", `{"nftables": [`, "not nft JSON"},
		{"json no array", `{"foo": 1}`, `JSON without an "nftables" array`},
		{"json rule before table", `{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": []}}]}`, "object 1 refers to table ip t before it is declared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to wrap ErrMalformed and contain %q", err, tc.want)
			}
		})
	}
}

func TestCheckFindsMissingTargets(t *testing.T) {
	// Elements are read on first use; Check reads them all.
	rs, err := ParseText(strings.NewReader("table ip t {\n\tmap m {\n\t\ttype ipv4_addr : verdict\n\t\telements = { 1.2.3.4 }\n\t}\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Check(); err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `line 4: set m: map element "1.2.3.4" has no " : "`) {
		t.Errorf("Check() = %v", err)
	}
	for _, in := range []string{
		"table ip t {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n",
		"table ip t {\n\tchain c {\n\t\tip daddr @nosuchset drop\n\t}\n}\n",
		"table ip t {\n\tmap m {\n\t\ttype ipv4_addr : verdict\n\t\telements = { 1.2.3.4 : goto nowhere }\n\t}\n}\n",
	} {
		rs, err := ParseText(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Check(); err == nil || !strings.Contains(err.Error(), "does not have") {
			t.Errorf("Check() = %v for\n%s", err, in)
		}
	}
}

// TestUnknownStatementsAreNoted: a rule the evaluator cannot read is kept
// with its text, never matches, and the simulation says so.
func TestUnknownStatementsAreNoted(t *testing.T) {
	in := "table ip kube-proxy {\n\tchain c {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tlimit rate 10/second drop\n\t\tip daddr 10.0.0.1 reject\n\t}\n}\n"
	rs, err := ParseText(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Tables[0].Chains["c"].Rules()[0]
	if r.Unknown == "" || r.Text != "limit rate 10/second drop" {
		t.Fatalf("rule %+v", r)
	}
	sim, err := Simulate(rs, trace.Packet{Source: netip.MustParseAddr("10.0.0.9"), Destination: netip.MustParseAddr("10.0.0.1"), DestinationPort: 80, Protocol: "tcp"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sim.Verdict != trace.VerdictReject || !slices.ContainsFunc(sim.Notes, func(n string) bool { return strings.Contains(n, "line 4") && strings.Contains(n, "limit") }) {
		t.Errorf("verdict %s notes %q", sim.Verdict, sim.Notes)
	}
}

// TestMixedTables: on a node that kept iptables-nft's tables next to
// kube-proxy's nftables table (real nft output, both formats), the other
// tables are read, not evaluated, and the simulation names them.
func TestMixedTables(t *testing.T) {
	for _, file := range []string{"mixed-tables.nft", "mixed-tables.json"} {
		rs := parseFile(t, "../../testdata/nftables/variants/"+file)
		var names []string
		for _, tb := range rs.Tables {
			names = append(names, tb.Family+" "+tb.Name)
		}
		for _, want := range []string{"ip kube-proxy", "ip nat", "ip filter"} {
			if !slices.Contains(names, want) {
				t.Errorf("%s: tables %v lack %s", file, names, want)
			}
		}
		unknown := 0
		for _, c := range rs.Table("ip", "nat").Chains {
			for _, r := range c.Rules() {
				if r.Unknown != "" {
					unknown++
				}
			}
		}
		if unknown == 0 {
			t.Errorf("%s: iptables-nft's xt rules were not flagged as unknown", file)
		}
		sim, err := Simulate(rs, trace.Packet{Source: netip.MustParseAddr("203.0.113.2"), Destination: netip.MustParseAddr("192.168.0.2"), DestinationPort: 3001, Protocol: "tcp"}, Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}})
		if err != nil {
			t.Fatal(err)
		}
		if sim.EndpointList() != "10.180.0.1:80" || !sim.Masquerade {
			t.Errorf("%s: %s masq=%v", file, sim.EndpointList(), sim.Masquerade)
		}
		if !slices.ContainsFunc(sim.Notes, func(n string) bool { return strings.Contains(n, "ip nat") && strings.Contains(n, "not evaluated") }) {
			t.Errorf("%s: notes %q do not name the skipped tables", file, sim.Notes)
		}
	}
}

// TestAffinityFromLiveSet: a live node's affinity set holds real clients;
// the simulation reports the pin for a client in the set, not for others,
// and --affinity-endpoint overrides the dump.
func TestAffinityFromLiveSet(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("192.168.0.2")}
	for _, file := range []string{"affinity-live.nft", "affinity-live.json"} {
		rs := parseFile(t, "../../testdata/nftables/variants/"+file)
		pkt := func(src string) trace.Packet {
			return trace.Packet{Source: netip.MustParseAddr(src), Destination: netip.MustParseAddr("172.30.0.45"), DestinationPort: 80, Protocol: "tcp"}
		}
		for _, tc := range []struct {
			src      string
			opts     Options
			wantHit  bool
			wantNote bool
		}{
			{"10.0.0.2", Options{WalkOptions: trace.WalkOptions{LocalAddrs: local}}, true, true},
			{"10.0.0.3", Options{WalkOptions: trace.WalkOptions{LocalAddrs: local}}, false, false},
			{"10.0.0.3", Options{WalkOptions: trace.WalkOptions{LocalAddrs: local, AffinityEndpoint: netip.MustParseAddrPort("10.180.0.3:80")}}, true, false},
		} {
			sim, err := Simulate(rs, pkt(tc.src), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(sim.Affinity) != 1 || sim.Affinity[0].Hit != tc.wantHit || sim.Affinity[0].Endpoint != "10.180.0.3:80" {
				t.Errorf("%s from %s: affinity %+v", file, tc.src, sim.Affinity)
			}
			noted := slices.ContainsFunc(sim.Notes, func(n string) bool { return strings.Contains(n, "already holds the client") })
			if noted != tc.wantNote {
				t.Errorf("%s from %s: notes %q", file, tc.src, sim.Notes)
			}
			if sim.EndpointList() != "10.180.0.3:80" {
				t.Errorf("%s from %s: %s", file, tc.src, sim.EndpointList())
			}
		}
	}
}
