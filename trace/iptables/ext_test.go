package iptables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
)

// fixedIPVS schedules every packet to 10.96.0.1:80/tcp to one real server.
type fixedIPVS struct{ reals []IPVSChoice }

func (f fixedIPVS) Schedule(p IPVSPacket) (IPVSDecision, bool) {
	if p.Dst != netip.MustParseAddr("10.96.0.1") || p.Port != 80 || p.Protocol != "tcp" {
		return IPVSDecision{}, false
	}
	return IPVSDecision{Protocol: "tcp", Addr: p.Dst, Port: p.Port, Choices: f.reals,
		Ref: trace.RuleRef{Table: "ipvs", Chain: "IPVS TCP 10.96.0.1:80", Line: 3, Rule: "scheduler rr"}}, true
}

const extRules = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A POSTROUTING -m set --match-set LOOP dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m set --match-set CIP dst,dst -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m set ! --match-set CIP dst,dst -m set --match-set IPS dst -j REJECT
-A OUTPUT -m ipvs --vaddr 10.96.0.0/16 ! --vport 80 -j DROP
-A OUTPUT -s 10.9.9.9 -m ipvs --vproto 6 --vaddr 10.96.0.1 --vport 80 --vdir ORIGINAL -j DROP
COMMIT
`

const extSets = `create CIP hash:ip,port family inet
add CIP 10.96.0.1,tcp:80
create IPS hash:ip family inet
add IPS 10.96.0.1
create LOOP hash:ip,port,ip family inet
add LOOP 10.244.0.5,tcp:8080,10.244.0.5
`

// TestSetAndIPVSMatches: -m set against the node's ipsets (with !),
// IPVS at local input, -m ipvs only after it, and what is said when the
// sets are not given.
func TestSetAndIPVSMatches(t *testing.T) {
	d, err := Parse(strings.NewReader(extRules))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := ipset.Parse(strings.NewReader(extSets))
	if err != nil {
		t.Fatal(err)
	}
	local := []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("10.0.0.2")}
	ext := Extensions{Sets: sets, IPVS: fixedIPVS{reals: []IPVSChoice{{Addr: netip.MustParseAddr("10.244.0.5"), Port: 8080, Probability: 1}}}}
	for _, tc := range []struct {
		name    string
		src     string
		port    uint16
		ext     Extensions
		verdict trace.Verdict
		masq    bool
		noteHas string
	}{
		{name: "Service port: accepted, scheduled, not masqueraded", src: "10.1.0.1", port: 80, ext: ext, verdict: trace.VerdictDNAT},
		{name: "hairpin: KUBE-LOOP-BACK-like set masquerades", src: "10.244.0.5", port: 80, ext: ext, verdict: trace.VerdictDNAT, masq: true},
		{name: "kube-ipvs0 address on another port: rejected before IPVS", src: "10.1.0.1", port: 81, ext: ext, verdict: trace.VerdictReject},
		{name: "-m ipvs after IPVS: matches the virtual server", src: "10.9.9.9", port: 80, ext: ext, verdict: trace.VerdictDrop},
		{name: "no real server: reject", src: "10.1.0.1", port: 80, ext: Extensions{Sets: sets, IPVS: fixedIPVS{}}, verdict: trace.VerdictReject},
		{name: "no sets: set matches miss, said", src: "10.1.0.1", port: 81, ext: Extensions{IPVS: ext.IPVS}, verdict: trace.VerdictNone, noteHas: "ipsets were not given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := SimulateWith(d, trace.Packet{Source: netip.MustParseAddr(tc.src), Destination: netip.MustParseAddr("10.96.0.1"), DestinationPort: tc.port, Protocol: "tcp"}, Options{LocalAddrs: local}, tc.ext)
			if err != nil {
				t.Fatal(err)
			}
			if sim.Verdict != tc.verdict || sim.Masquerade != tc.masq {
				t.Errorf("verdict %s masquerade %v, want %s %v; rules %v notes %v", sim.Verdict, sim.Masquerade, tc.verdict, tc.masq, sim.Rules, sim.Notes)
			}
			if tc.noteHas != "" && !slices.ContainsFunc(sim.Notes, func(n string) bool { return strings.Contains(n, tc.noteHas) }) {
				t.Errorf("notes %v, want one saying %q", sim.Notes, tc.noteHas)
			}
			if tc.verdict == trace.VerdictDNAT && (len(sim.Endpoints) != 1 || sim.Endpoints[0].AddrPort() != netip.MustParseAddrPort("10.244.0.5:8080")) {
				t.Errorf("endpoints %v", sim.Endpoints)
			}
		})
	}
	// Without IPVS the same dump walks as before: -m ipvs never matches,
	// and the note says why.
	sim, err := Simulate(d, trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: netip.MustParseAddr("10.96.0.1"), DestinationPort: 80, Protocol: "tcp"}, Options{LocalAddrs: local})
	if err != nil {
		t.Fatal(err)
	}
	if sim.Verdict == trace.VerdictDrop || !slices.ContainsFunc(sim.Notes, func(n string) bool { return strings.Contains(n, "IPVS table was not given") }) {
		t.Errorf("without IPVS: %s, notes %v", sim.Verdict, sim.Notes)
	}
}

func TestParseIPVSMatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--vproto", "6", "--vaddr", "1.2.3.4", "--vport", "80"}, true},
		{[]string{"!", "--ipvs"}, true},
		{[]string{"--vaddr"}, false},
		{[]string{"!"}, false},
		{[]string{"--bogus", "1"}, false},
		{nil, false},
	} {
		_, err := parseIPVSMatch(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("%v: err %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}
