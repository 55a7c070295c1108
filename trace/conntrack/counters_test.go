package conntrack

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

// TestRecordedDNATCountersMatchConntrack checks, on the recorded node, what
// the tracer's ruleHits will rest on: kube-proxy's nat rules see only a
// connection's first packet, so
//
//   - the packet counter of an endpoint's DNAT rule (KUBE-SEP-*) is the
//     number of connections sent to that endpoint through any of the
//     Service port's addresses (ClusterIP and NodePort share the chain),
//     since the chain was last written;
//   - the counter of the KUBE-SERVICES / KUBE-NODEPORTS rule that matches
//     one address is the number of connections to that address.
//
// With no entry expired yet, both equal conntrack's counts exactly. (The
// endpoint chain of h14/dns's old pod C was deleted when the pod moved, so
// its connections — the stale ones — are counted by no rule any more.)
func TestRecordedDNATCountersMatchConntrack(t *testing.T) {
	v4 := func(s string, port uint16, p Proto) Frontend {
		return Frontend{Addr: netip.MustParseAddr(s), Port: port, Proto: p}
	}
	// the Service ports (rule comments) and their addresses
	ports := map[string][]Frontend{
		"h14/echo:http": {v4("10.96.14.10", 80, ProtoTCP), v4("10.14.100.1", 30080, ProtoTCP), v4("fd14:96::10", 80, ProtoTCP), v4("fd14:100::1", 30080, ProtoTCP)},
		"h14/echo:dns":  {v4("10.96.14.10", 53, ProtoUDP), v4("fd14:96::10", 53, ProtoUDP)},
		"h14/echo:sctp": {v4("10.96.14.10", 9, ProtoSCTP), v4("fd14:96::10", 9, ProtoSCTP)},
		"h14/dns:dns":   {v4("10.96.14.53", 53, ProtoUDP)},
	}
	var all []Frontend
	for _, fs := range ports {
		all = append(all, fs...)
	}
	f, err := os.Open(filepath.Join(recorded, "nf_conntrack"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	obs, err := Observe(f, all, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byFrontend := map[Frontend]*FrontendCount{}
	for i := range obs.Frontends {
		byFrontend[obs.Frontends[i].Frontend] = &obs.Frontends[i]
	}

	dnatRules, entryRules := 0, 0
	for _, name := range []string{"iptables-nft-save-c", "ip6tables-nft-save-c"} {
		data, err := os.Open(filepath.Join(recorded, name))
		if err != nil {
			t.Fatal(err)
		}
		dump, err := iptables.Parse(data)
		data.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range dump.Table("nat").Chains() {
			rules, err := c.Rules()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				switch {
				case r.Target.Name == "DNAT":
					// ruleHits: connections to this endpoint over every
					// address of the Service port
					port := strings.TrimSpace(r.Comment)
					ep := netip.AddrPortFrom(r.Target.NAT.Addr, r.Target.NAT.Port)
					want := 0
					if ports[port] == nil {
						t.Errorf("%s: DNAT rule of unknown service port %q", name, port)
					}
					for _, fe := range ports[port] {
						if b, ok := byFrontend[fe].Backend(ep); ok {
							want += b.Connections
						}
					}
					if int(r.Packets) != want {
						t.Errorf("%s %s DNAT to %s: %d packets, conntrack has %d connections", name, port, ep, r.Packets, want)
					}
					dnatRules++
				case (c.Name == "KUBE-SERVICES" || c.Name == "KUBE-NODEPORTS") && strings.HasPrefix(r.Target.Name, "KUBE-") && r.Target.Name != "KUBE-NODEPORTS":
					fe, ok := entryFrontend(r, dump.IPv6())
					if !ok || byFrontend[fe] == nil {
						t.Errorf("%s: no frontend for %s/%s rule %q", name, c.Name, r.Target.Name, r.Text)
						continue
					}
					if int(r.Packets) != byFrontend[fe].Connections {
						t.Errorf("%s %s/%s rule for %s: %d packets, conntrack has %d connections", name, c.Name, r.Target.Name, fe, r.Packets, byFrontend[fe].Connections)
					}
					entryRules++
				}
			}
		}
	}
	// kube-proxy rewrote h14/dns's service chain when the pod moved
	// (iptables-restore with the chain re-declared): its rule's counter
	// restarted, while KUBE-SERVICES's rule kept counting.
	data, err := os.Open(filepath.Join(recorded, "iptables-nft-save-c"))
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	dump, err := iptables.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	svc := dump.Chain("nat", iptables.ServiceChain(iptables.PrefixService, "h14/dns:dns", "udp"))
	rules, err := svc.Rules()
	if err != nil {
		t.Fatal(err)
	}
	dns := byFrontend[v4("10.96.14.53", 53, ProtoUDP)]
	toB, _ := dns.Backend(netip.MustParseAddrPort("10.14.2.2:5353"))
	if last := rules[len(rules)-1]; int(last.Packets) != toB.Connections || toB.Connections >= dns.Connections {
		t.Errorf("h14/dns service chain counted %d since the rewrite; want the %d connections to B, fewer than all %d", last.Packets, toB.Connections, dns.Connections)
	}

	if dnatRules != 13 || entryRules != 9 {
		t.Errorf("checked %d DNAT rules and %d entry rules, want 13 and 9", dnatRules, entryRules)
	}
}

// entryFrontend reads the address a KUBE-SERVICES or KUBE-NODEPORTS rule
// matches: -d ADDR -p PROTO --dport PORT (KUBE-NODEPORTS: the node's
// address, which the rule leaves to -m addrtype).
func entryFrontend(r *iptables.Rule, ipv6 bool) (Frontend, bool) {
	p, ok := ParseProto(r.Protocol)
	if !ok {
		return Frontend{}, false
	}
	fields := strings.Fields(r.Text)
	var port uint16
	for i, f := range fields {
		if f == "--dport" && i+1 < len(fields) {
			n, err := netip.ParseAddrPort("0.0.0.0:" + fields[i+1])
			if err != nil {
				return Frontend{}, false
			}
			port = n.Port()
		}
	}
	if port == 0 {
		return Frontend{}, false
	}
	addr := netip.MustParseAddr("10.14.100.1")
	if ipv6 {
		addr = netip.MustParseAddr("fd14:100::1")
	}
	if r.Destination != nil {
		addr = r.Destination.Prefix.Addr()
	}
	return Frontend{Addr: addr, Port: port, Proto: p}, true
}
