package ruleset

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

const ipvsReal = "../../testdata/ipvs/real/"

// TestIPVSSourcesDetected: each way a node prints its IPVS table, and
// ipset save, is told by content — ipvsadm -Sn's "-A -t" is not an
// iptables rule, ipset's "create" no nft script — and makes one IPVS
// engine with the iptables dump.
func TestIPVSSourcesDetected(t *testing.T) {
	for _, table := range []string{"node1.proc-net-ip_vs", "node1.ipvsadm-Sn", "node1.ipvsadm-Ln"} {
		d := load(t, ipvsReal+"node1.iptables-legacy-save", ipvsReal+table, ipvsReal+"node1.ipset-save")
		if got, want := strings.Join(d.Formats(), ","), "iptables,ipvs,ipset"; got != want {
			t.Errorf("%s: formats %s, want %s", table, got, want)
		}
		if len(d.Engines()) != 1 || d.Engines()[0].Name() != "ipvs" || d.ProxyMode() != trace.ModeIPVS {
			t.Errorf("%s: engines %v, mode %q; want one ipvs engine", table, d.Engines(), d.ProxyMode())
		}
		if n := d.Names(); len(n.IPSets) < 20 {
			t.Errorf("%s: %d ipset names", table, len(n.IPSets))
		}
		for _, w := range d.Warnings() {
			t.Errorf("%s: unexpected warning %v", table, w)
		}
	}
}

// TestIPVSIncompleteSaid: an IPVS table without the ipsets, or without the
// iptables dump, is traced with a warning saying what is missing.
func TestIPVSIncompleteSaid(t *testing.T) {
	for _, files := range [][]string{
		{"node1.iptables-legacy-save", "node1.proc-net-ip_vs"},
		{"node1.proc-net-ip_vs", "node1.ipset-save"},
	} {
		d := load(t, ipvsReal+files[0], ipvsReal+files[1])
		var codes []trace.Code
		for _, w := range d.Warnings() {
			codes = append(codes, w.Code)
		}
		if len(codes) != 1 || codes[0] != trace.CodeIPVSIncomplete {
			t.Errorf("%v: warnings %v, want one IPVSIncomplete", files, codes)
		}
		sim, err := d.Simulate(trace.Packet{Source: netip.MustParseAddr("10.244.1.5"), Destination: netip.MustParseAddr("10.96.100.11"), DestinationPort: 80, Protocol: "tcp"}, Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("10.250.0.11")}})
		if err != nil {
			t.Fatal(err)
		}
		if sim.IPVS == nil || sim.Verdict != trace.VerdictDNAT || len(sim.Notes) == 0 {
			t.Errorf("%v: verdict %s, ipvs %v, notes %v; want DNAT through the virtual server, with a note", files, sim.Verdict, sim.IPVS, sim.Notes)
		}
	}
}

// TestIPVSProgrammed: drift in IPVS mode asks for the virtual server and
// the KUBE-CLUSTER-IP entry of a Service port's cluster IP.
func TestIPVSProgrammed(t *testing.T) {
	d := load(t, ipvsReal+"node1.iptables-legacy-save", ipvsReal+"node1.proc-net-ip_vs", ipvsReal+"node1.ipset-save")
	svc := trace.ServiceInfo{Namespace: "e2e", Name: "ipvs-cip", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.100.11")}}
	for _, tc := range []struct {
		kind  ObjectKind
		port  uint16
		name  string
		found bool
	}{
		{ObjectService, 80, "IPVS virtual server TCP 10.96.100.11:80", true},
		{ObjectService, 81, "IPVS virtual server TCP 10.96.100.11:81", false},
		{ObjectIPSetEntry, 80, "ipset KUBE-CLUSTER-IP entry 10.96.100.11,tcp:80", true},
		{ObjectIPSetEntry, 81, "ipset KUBE-CLUSTER-IP entry 10.96.100.11,tcp:81", false},
	} {
		c := d.Programmed(tc.kind, svc, trace.ServicePort{Protocol: "tcp", Port: tc.port}, false)
		if !c.Applicable || c.Name != tc.name || c.Found != tc.found {
			t.Errorf("%s port %d: %+v, want %s found %v", tc.kind, tc.port, c, tc.name, tc.found)
		}
	}
	if c := d.Programmed(ObjectExternal, svc, trace.ServicePort{Protocol: "tcp", Port: 80}, false); c.Applicable {
		t.Errorf("external of a Service with no external or load balancer IP: %+v, want not applicable", c)
	}

	// External and load balancer IPs: each has a virtual server and an
	// entry in its ipset; the answer names the first that lacks one. A
	// load balancer IP in ipMode Proxy is the load balancer's, not
	// kube-proxy's.
	a := netip.MustParseAddr
	lb := func(ip, mode string) trace.LBIngress { return trace.LBIngress{IP: a(ip), IPMode: mode} }
	http := trace.ServicePort{Protocol: "tcp", Port: 80}
	for _, tc := range []struct {
		name  string
		svc   trace.ServiceInfo
		kind  ObjectKind
		want  string
		found bool
	}{
		{"load balancer IP", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.16")}, LoadBalancerIngress: []trace.LBIngress{lb("203.0.113.50", "")}},
			ObjectExternal, "IPVS virtual server TCP 203.0.113.50:80", true},
		{"external IP", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.18")}, ExternalIPs: []netip.Addr{a("198.51.100.7")}},
			ObjectExternal, "IPVS virtual server TCP 198.51.100.7:80", true},
		{"a second load balancer IP without a virtual server", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.16")}, LoadBalancerIngress: []trace.LBIngress{lb("203.0.113.50", "VIP"), lb("203.0.113.99", "")}},
			ObjectExternal, "IPVS virtual server TCP 203.0.113.99:80", false},
		{"load balancer IP in ipMode Proxy", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.16")}, LoadBalancerIngress: []trace.LBIngress{lb("203.0.113.99", "Proxy")}},
			ObjectExternal, "", false},
		{"ipset entries of every address", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.16")}, LoadBalancerIngress: []trace.LBIngress{lb("203.0.113.50", "")}},
			ObjectIPSetEntry, "ipset KUBE-CLUSTER-IP entry 10.96.100.16,tcp:80", true},
		{"external IP not in KUBE-EXTERNAL-IP", trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.18")}, ExternalIPs: []netip.Addr{a("198.51.100.8")}},
			ObjectIPSetEntry, "ipset KUBE-EXTERNAL-IP entry 198.51.100.8,tcp:80", false},
	} {
		c := d.Programmed(tc.kind, tc.svc, http, false)
		if tc.want == "" {
			if c.Applicable {
				t.Errorf("%s: %+v, want not applicable", tc.name, c)
			}
			continue
		}
		if !c.Applicable || c.Name != tc.want || c.Found != tc.found {
			t.Errorf("%s: %+v, want %s found %v", tc.name, c, tc.want, tc.found)
		}
	}
}

// TestIPVSAddressBound: with the node's interfaces, drift asks whether a
// cluster IP is on kube-ipvs0.
func TestIPVSAddressBound(t *testing.T) {
	d := load(t, ipvsReal+"node1.iptables-legacy-save", ipvsReal+"node1.proc-net-ip_vs", ipvsReal+"node1.ipset-save", ipvsReal+"node1.ip-addr", ipvsReal+"node1.ip-route-table-all")
	for ip, found := range map[string]bool{"10.96.100.11": true, "10.96.100.99": false} {
		svc := trace.ServiceInfo{ClusterIPs: []netip.Addr{netip.MustParseAddr(ip)}}
		c := d.Programmed(ObjectAddressBound, svc, trace.ServicePort{Protocol: "tcp", Port: 80}, false)
		if !c.Applicable || c.Found != found || c.Name != "address "+ip+" on kube-ipvs0" {
			t.Errorf("%s: %+v, want found %v", ip, c, found)
		}
	}
	// Every Service address is bound: the external and load balancer IPs
	// too; the answer names the first that is not.
	a := netip.MustParseAddr
	svc := trace.ServiceInfo{ClusterIPs: []netip.Addr{a("10.96.100.16")}, ExternalIPs: []netip.Addr{a("198.51.100.7")},
		LoadBalancerIngress: []trace.LBIngress{{IP: a("203.0.113.50")}}}
	if c := d.Programmed(ObjectAddressBound, svc, trace.ServicePort{Protocol: "tcp", Port: 80}, false); !c.Applicable || !c.Found {
		t.Errorf("cluster, external and load balancer IPs all bound: %+v", c)
	}
	svc.LoadBalancerIngress = append(svc.LoadBalancerIngress, trace.LBIngress{IP: a("203.0.113.99")})
	if c := d.Programmed(ObjectAddressBound, svc, trace.ServicePort{Protocol: "tcp", Port: 80}, false); !c.Applicable || c.Found || c.Name != "address 203.0.113.99 on kube-ipvs0" {
		t.Errorf("an unbound load balancer IP: %+v", c)
	}
	// Without the interfaces nothing can be told.
	d = load(t, ipvsReal+"node1.iptables-legacy-save", ipvsReal+"node1.proc-net-ip_vs")
	if c := d.Programmed(ObjectAddressBound, trace.ServiceInfo{ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.100.99")}}, trace.ServicePort{Protocol: "tcp", Port: 80}, false); c.Applicable {
		t.Errorf("without ip addr: %+v", c)
	}
}

// FuzzIPVSEngine: hostile IPVS tables, ipsets and rules together never
// panic the load or the walk.
func FuzzIPVSEngine(f *testing.F) {
	read := func(name string) []byte {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	// kube-proxy's own small fixtures: big seeds make each run slow.
	fx := "../../testdata/ipvs/kube-proxy/v1.37.2/TestLoadBalancerSourceRanges/"
	rules, sets := read(fx+"fake.rules"), read(fx+"ipset.save")
	for _, table := range []string{fx + "ip_vs", fx + "ipvsadm.save"} {
		f.Add(read(table), sets, rules)
	}
	f.Add([]byte("-A -t 10.0.0.1:80 -s rr -p 0\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 0\n"), []byte("create S hash:ip,port family inet\nadd S 10.0.0.1,tcp:80\n"),
		[]byte("*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m ipvs ! --vaddr 10.0.0.1/8 --vport 80 -j DROP\n-A OUTPUT -m set ! --match-set S dst,dst,src -j DROP\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, table, sets, rules []byte) {
		d, err := Load(Input{Name: "ipvs", Source: bytesSource{table, true}}, Input{Name: "ipset", Source: bytesSource{sets, false}}, Input{Name: "rules", Source: bytesSource{rules, true}})
		if err != nil {
			return
		}
		for _, pkt := range []trace.Packet{
			{Source: netip.MustParseAddr("10.244.1.5"), Destination: netip.MustParseAddr("10.96.100.11"), DestinationPort: 80, Protocol: "tcp"},
			{Source: netip.MustParseAddr("10.250.0.11"), Destination: netip.MustParseAddr("10.0.0.1"), DestinationPort: 80, Protocol: "tcp"},
			{Source: netip.MustParseAddr("2001:db8::1"), Destination: netip.MustParseAddr("fd00::1"), DestinationPort: 53, Protocol: "udp"},
		} {
			_, _ = d.Simulate(pkt, Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("10.250.0.11")}, AffinityEndpoint: netip.MustParseAddrPort("10.1.0.1:80")})
		}
	})
}

// TestIPVSWithForeignTables: on an IPVS node every other table is walked
// with kube-proxy's rules and IPVS, in the kernel's order. IPVS sits at the
// input hook at priority 98 (NF_IP_PRI_NAT_SRC-2): a host firewall's input
// chain before it drops a Service's packets; one after it never sees the
// packets IPVS scheduled (they leave through output), and an output chain
// sees them on their way to the real server.
func TestIPVSWithForeignTables(t *testing.T) {
	cases := []struct {
		name, nft string
		// dnat is the share that reaches a pod; droppedBy names the
		// foreign chain that drops the rest (none when empty).
		dnat      float64
		droppedBy string
	}{
		{"input-before-ipvs", `table inet hostfw {
	chain input {
		type filter hook input priority filter + 10; policy accept;
		ip daddr 10.96.100.11 tcp dport 80 drop
	}
}
`, 0, "input"},
		{"input-after-ipvs", `table inet hostfw {
	chain input {
		type filter hook input priority srcnat + 50; policy accept;
		ip daddr 10.96.100.11 tcp dport 80 drop
	}
}
`, 1, ""},
		{"output-to-one-real-server", `table inet hostfw {
	chain output {
		type filter hook output priority filter; policy accept;
		ip daddr 10.244.1.2 tcp dport 8080 drop
	}
}
`, 0.5, "output"},
	}
	pkt := trace.Packet{Source: netip.MustParseAddr("10.244.1.5"), Destination: netip.MustParseAddr("10.96.100.11"), DestinationPort: 80, Protocol: "tcp"}
	opts := Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("10.250.0.11")}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fw := t.TempDir() + "/hostfw.nft"
			if err := os.WriteFile(fw, []byte(c.nft), 0o600); err != nil {
				t.Fatal(err)
			}
			d := load(t, ipvsReal+"node1.iptables-legacy-save", ipvsReal+"node1.proc-net-ip_vs", ipvsReal+"node1.ipset-save", fw)
			sim, err := d.Simulate(pkt, opts)
			if err != nil {
				t.Fatal(err)
			}
			var dnat, dropped float64
			for _, o := range sim.Outcomes {
				switch o.Verdict {
				case trace.VerdictDNAT:
					dnat += o.Probability
				case trace.VerdictDrop:
					dropped += o.Probability
					if o.DecidedBy == nil || !o.DecidedBy.Foreign || o.DecidedBy.Chain != c.droppedBy {
						t.Errorf("dropped by %+v, want the foreign chain %s", o.DecidedBy, c.droppedBy)
					}
				}
			}
			if dnat != c.dnat || dnat+dropped != 1 {
				t.Errorf("DNAT %.2f, dropped %.2f; want DNAT %.2f, the rest dropped by %q\n%+v", dnat, dropped, c.dnat, c.droppedBy, sim.Outcomes)
			}
			if c.dnat > 0 && sim.IPVS == nil {
				t.Errorf("no IPVS hop in the simulation")
			}
			if c.droppedBy != "" && !strings.Contains(strings.Join(sim.Notes, "\n"), "not kube-proxy's") {
				t.Errorf("notes %q do not say the drop is not kube-proxy's", sim.Notes)
			}
		})
	}
}
