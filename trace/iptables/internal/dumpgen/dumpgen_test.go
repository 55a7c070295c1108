package dumpgen

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

// kubeProxyOverall is kube-proxy's expected ruleset of TestOverallIPTablesRules,
// copied verbatim from k8s.io/kubernetes@v1.37.2
// pkg/proxy/iptables/proxier_test.go (lines 1709-1803). It is kube-proxy's
// iptables-restore input, sorted by that test's sortIPTablesRules (shared
// chains by Service name); saveForm turns each rule into what iptables-save
// prints for it.
const kubeProxyOverall = `*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3002 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
`

// overallServices are the Services and EndpointSlices of kube-proxy's
// TestOverallIPTablesRules (proxier_test.go lines 1550-1704), as kube-proxy's
// service and endpoint trackers present them to syncProxyRules: svc2's
// health-check node port counts (Local policy), svc5's does not; svc4 is
// of type NodePort but has no node port; only svc4's 10.180.0.5 is on the
// test node.
func overallServices() []Service {
	ep := func(s string, local bool) Endpoint { return Endpoint{Addr: netip.MustParseAddrPort(s), Local: local} }
	ip := netip.MustParseAddr
	return []Service{
		{Namespace: "ns1", Name: "svc1", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.41"), Port: 80,
			Endpoints: []Endpoint{ep("10.180.0.1:80", false)}},
		{Namespace: "ns2", Name: "svc2", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.42"), Port: 80,
			NodePort: 3001, LoadBalancerIPs: []netip.Addr{ip("1.2.3.4")}, ExternalIPs: []netip.Addr{ip("192.168.99.22")},
			ExternalPolicyLocal: true, HealthCheckNodePort: 30000,
			Endpoints: []Endpoint{ep("10.180.0.2:80", false)}},
		{Namespace: "ns3", Name: "svc3", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.43"), Port: 80,
			NodePort: 3003, Endpoints: []Endpoint{ep("10.180.0.3:80", false)}},
		{Namespace: "ns4", Name: "svc4", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.44"), Port: 80,
			ExternalIPs: []netip.Addr{ip("192.168.99.33")},
			Endpoints:   []Endpoint{ep("10.180.0.4:80", false), ep("10.180.0.5:80", true)}},
		{Namespace: "ns5", Name: "svc5", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.45"), Port: 80,
			NodePort: 3002, LoadBalancerIPs: []netip.Addr{ip("5.6.7.8")},
			SourceRanges: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25")}, AffinitySeconds: 10800,
			Endpoints: []Endpoint{ep("10.180.0.3:80", false)}},
		{Namespace: "ns6", Name: "svc6", PortName: "p80", Protocol: "tcp", ClusterIP: ip("172.30.0.46"), Port: 80},
	}
}

// kube-proxy's test node (NewFakeProxier: podCIDR 10.0.0.0/8, testNodeIP).
func testConfig() Config {
	cfg := Default(0, 0)
	cfg.ClusterCIDR = netip.MustParsePrefix("10.0.0.0/8")
	cfg.NodeIP = netip.MustParseAddr("192.168.0.2")
	return cfg
}

func write(t testing.TB, c *Cluster) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chains splits a dump into table -> chain -> rule lines, and lists the
// declared chains per table in order.
type chains struct {
	rules map[string]map[string][]string
	decls map[string][]string
}

func splitDump(t testing.TB, dump string) chains {
	t.Helper()
	c := chains{rules: map[string]map[string][]string{}, decls: map[string][]string{}}
	table := ""
	for _, line := range strings.Split(dump, "\n") {
		switch {
		case line == "" || line == "COMMIT" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			c.rules[table] = map[string][]string{}
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			c.decls[table] = append(c.decls[table], name)
		case strings.HasPrefix(line, "-A "):
			name, _, _ := strings.Cut(line[3:], " ")
			c.rules[table][name] = append(c.rules[table][name], line)
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	return c
}

// Chains whose rules kube-proxy writes Service by Service in map order (and
// its test sorts by Service name): compared as sets.
var sharedChains = map[string]bool{"KUBE-SERVICES": true, "KUBE-NODEPORTS": true, "KUBE-EXTERNAL-SERVICES": true, "KUBE-PROXY-FIREWALL": true}

// TestMatchesKubeProxy generates the Services of kube-proxy's
// TestOverallIPTablesRules and checks every chain kube-proxy's expected
// output has, rule by rule, against that output turned into save form.
func TestMatchesKubeProxy(t *testing.T) {
	got := splitDump(t, string(write(t, &Cluster{Config: testConfig(), Services: overallServices()})))
	want := splitDump(t, kubeProxyOverall)
	for _, table := range []string{"filter", "nat"} {
		for _, chain := range want.decls[table] {
			var wantRules []string
			for _, r := range want.rules[table][chain] {
				s, err := saveForm(r)
				if err != nil {
					t.Fatal(err)
				}
				wantRules = append(wantRules, s)
			}
			gotRules := slices.Clone(got.rules[table][chain])
			if sharedChains[chain] {
				slices.Sort(wantRules)
				slices.Sort(gotRules)
			}
			if diff := cmp.Diff(wantRules, gotRules); diff != "" {
				t.Errorf("%s %s differs from kube-proxy's rules (-kube-proxy +generated):\n%s", table, chain, diff)
			}
		}
		// The generated dump has no per-Service chain kube-proxy lacks.
		var wantSvc, gotSvc []string
		for _, c := range want.decls[table] {
			if isServiceChain(c) {
				wantSvc = append(wantSvc, c)
			}
		}
		for _, c := range got.decls[table] {
			if isServiceChain(c) {
				gotSvc = append(gotSvc, c)
			}
		}
		slices.Sort(wantSvc)
		if diff := cmp.Diff(wantSvc, gotSvc); diff != "" {
			t.Errorf("%s: per-Service chains differ (-kube-proxy +generated):\n%s", table, diff)
		}
	}
}

func isServiceChain(c string) bool {
	for _, p := range []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"} {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return false
}

// Shape normalization: chain hashes, addresses, Service port names and
// numbers become placeholders, so rules of different clusters compare.
var shapeRules = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`(KUBE-(?:SVC|SVL|EXT|FW|SEP))-[A-Z2-7]{16}`), "$1-#"},
	{regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(/\d+)?(:\d+)?`), "IP"},
	{regexp.MustCompile(`[a-z0-9-]+/[a-z0-9-]+(:[a-z0-9-]+)?`), "SPN"},
	{regexp.MustCompile(`\b\d+\.\d+\b`), "F"},
	{regexp.MustCompile(`\b\d+\b`), "N"},
}

func shape(rule string) string {
	for _, r := range shapeRules {
		rule = r.re.ReplaceAllString(rule, r.repl)
	}
	return rule
}

var commentMatch = regexp.MustCompile(` -m comment --comment ("[^"]*"|\S+)`)

// TestShapesInRealFixtures checks every rule of generated dumps against the
// rulesets real kube-proxy v1.37.2 code wrote in its own packet-flow tests,
// as iptables-nft-save printed them (testdata/iptables/kube-proxy, made by
// hack/kpfixtures/gen.sh): each generated rule must have the shape of a
// rule there. Those tests are all below kube-proxy's large-cluster
// threshold, so for large dumps the endpoint rules are compared with the
// fixtures' rules minus the comment kube-proxy then leaves off. Session
// affinity does not occur in the fixtures; TestMatchesKubeProxy covers it.
func TestShapesInRealFixtures(t *testing.T) {
	files, _ := filepath.Glob("../../../../testdata/iptables/kube-proxy/v1.37.2/*/iptables-nft.save")
	known, uncommented := map[string]bool{}, map[string]bool{}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("ip6tables")) {
			continue // the generator writes IPv4 dumps
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "-A ") {
				continue
			}
			known[shape(line)] = true
			uncommented[shape(commentMatch.ReplaceAllString(line, ""))] = true
		}
	}
	if len(known) == 0 {
		t.Skip("no kube-proxy v1.37.2 fixtures in testdata/iptables/kube-proxy (make fixtures)")
	}
	used := map[string]bool{}
	for _, size := range []struct{ services, endpoints int }{{300, 900}, {300, 3000}} {
		large := size.endpoints > LargeClusterEndpoints
		var b bytes.Buffer
		if err := Write(&b, Default(size.services, size.endpoints)); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(b.String(), "\n") {
			if !strings.HasPrefix(line, "-A ") || strings.Contains(line, " -m recent ") {
				continue
			}
			s := shape(line)
			used[s] = true
			endpointRule := strings.HasPrefix(line, "-A KUBE-SEP-") || strings.HasPrefix(line, "-A KUBE-SVL-") ||
				strings.HasPrefix(line, "-A KUBE-SVC-") && !strings.Contains(line, " cluster IP\"")
			if !known[s] && !(large && endpointRule && uncommented[s]) {
				t.Errorf("%d services, %d endpoints: no rule of this shape in kube-proxy's fixtures:\n  %s\n  %s", size.services, size.endpoints, s, line)
			}
		}
	}
	n := 0
	for s := range known {
		if !used[s] {
			n++
		}
	}
	t.Logf("%d of %d rule shapes of kube-proxy's fixtures occur in generated dumps (the rest: IPv6, masqueradeAll, internalTrafficPolicy Local, nodeport-addresses and other options the generator does not model)", len(known)-n, len(known))
}

// TestLargeClusterMode replays kube-proxy's TestSyncProxyRulesLargeClusterMode
// (proxier_test.go lines 5515-5608): with 998 endpoints the endpoint rules
// carry comments, with 1,001 they do not.
func TestLargeClusterMode(t *testing.T) {
	svc := func(ns, name, port string, p uint16, cip string, eps []Endpoint) Service {
		return Service{Namespace: ns, Name: name, PortName: port, Protocol: "tcp", ClusterIP: netip.MustParseAddr(cip), Port: p, Endpoints: eps}
	}
	many := func(prefix string, port uint16) []Endpoint {
		eps := make([]Endpoint, LargeClusterEndpoints/2-1)
		for i := range eps {
			eps[i].Addr = netip.MustParseAddrPort(fmt.Sprintf("%s.%d.%d:%d", prefix, i%256, i/256, port))
		}
		SortEndpoints(eps)
		return eps
	}
	svcs := []Service{
		svc("ns1", "svc1", "p80", 80, "172.30.0.41", many("10.0", 80)),
		svc("ns2", "svc2", "p8080", 8080, "172.30.0.42", many("10.1", 8080)),
	}
	// Lines kube-proxy's test expects (restore form), and where.
	for _, tc := range []struct {
		name  string
		svcs  []Service
		chain string
		rule  string
	}{{
		name:  "998 endpoints",
		svcs:  svcs,
		chain: "KUBE-SEP-DKGQUZGBKLTPAR56",
		rule:  "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
	}, {
		name: "1001 endpoints",
		svcs: append(slices.Clone(svcs), svc("ns3", "svc3", "p8081", 8081, "172.30.0.43", []Endpoint{
			{Addr: netip.MustParseAddrPort("203.0.113.4:8081")},
			{Addr: netip.MustParseAddrPort("203.0.113.8:8081")},
			{Addr: netip.MustParseAddrPort("203.0.113.12:8081")},
		})),
		chain: "KUBE-SEP-RUVVH7YV3PHQBDOS",
		rule:  "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			large := len(tc.svcs) == 3
			d := splitDump(t, string(write(t, &Cluster{Config: testConfig(), Services: tc.svcs})))
			want, err := saveForm(tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			if rules := d.rules["nat"][tc.chain]; len(rules) != 2 || rules[1] != want {
				t.Errorf("chain %s has %q, want its DNAT rule to be %q", tc.chain, rules, want)
			}
			for chain, rules := range d.rules["nat"] {
				for i, r := range rules {
					commented := strings.Contains(r, " -m comment ")
					switch {
					case strings.HasPrefix(chain, "KUBE-SEP-"), strings.HasPrefix(chain, "KUBE-SVC-") && i > 0:
						if commented == large {
							t.Fatalf("large cluster mode %v, but rule %q", large, r)
						}
					}
				}
			}
		})
	}
}

// TestParses checks that generated dumps parse without warnings, that every
// rule tokenizes, and that a packet to the middle Service reaches exactly its
// endpoints with kube-proxy's even split.
func TestParses(t *testing.T) {
	for _, size := range []struct{ services, endpoints int }{{3, 7}, {200, 2000}} {
		t.Run(fmt.Sprintf("%d-services", size.services), func(t *testing.T) {
			c, err := Generate(Default(size.services, size.endpoints))
			if err != nil {
				t.Fatal(err)
			}
			data := write(t, c)
			for mode, parse := range map[string]func() (*iptables.Dump, error){
				"memory":   func() (*iptables.Dump, error) { return iptables.Parse(bytes.NewReader(data)) },
				"readerAt": func() (*iptables.Dump, error) { return iptables.ParseReaderAt(bytes.NewReader(data), int64(len(data))) },
			} {
				d, err := parse()
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if len(d.Warnings) > 0 {
					t.Errorf("%s: warnings: %q", mode, d.Warnings)
				}
				if err := d.Check(); err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if d.Backend() != "nf_tables" {
					t.Errorf("backend %q", d.Backend())
				}
				checkMiddle(t, c, d)
			}
			sep := 0
			for _, s := range c.Services {
				sep += len(s.Endpoints)
			}
			if sep != size.endpoints {
				t.Errorf("%d endpoints generated, want %d", sep, size.endpoints)
			}
		})
	}
}

// TestEntryPoints sends a packet to every entry point of every Service of a
// generated dump and checks the outcome kube-proxy's rules are meant to
// give: the cluster IP reaches all endpoints; node ports and load-balancer
// IPs reach all endpoints, or only this node's with externalTrafficPolicy
// Local (DROP when there are none); loadBalancerSourceRanges drop other
// clients; a Service without endpoints is REJECTed everywhere.
func TestEntryPoints(t *testing.T) {
	c, err := Generate(Default(200, 2000))
	if err != nil {
		t.Fatal(err)
	}
	d, err := iptables.Parse(bytes.NewReader(write(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	node := c.Config.NodeIP
	pod := netip.MustParseAddr("10.0.0.2")
	allowed := netip.MustParseAddr("203.0.113.9") // in the generated source ranges
	outside := netip.MustParseAddr("198.51.100.7")
	kinds := map[string]int{}
	for _, s := range c.Services {
		all, local := []string{}, []string{}
		for _, e := range s.Endpoints {
			all = append(all, e.Addr.String())
			if e.Local {
				local = append(local, e.Addr.String())
			}
		}
		external := all
		if s.ExternalPolicyLocal {
			external = local
		}
		// want is the sorted endpoint list, or a verdict.
		expect := func(eps []string) string {
			switch {
			case len(s.Endpoints) == 0:
				return "REJECT"
			case len(eps) == 0:
				return "DROP"
			}
			slices.Sort(eps)
			return strings.Join(eps, ",")
		}
		type probe struct {
			kind     string
			src, dst netip.Addr
			port     uint16
			want     string
		}
		probes := []probe{{"cluster IP", pod, s.ClusterIP, s.Port, expect(all)}}
		if s.NodePort != 0 {
			probes = append(probes, probe{"node port", outside, node, s.NodePort, expect(external)})
		}
		for _, ip := range s.ExternalIPs {
			probes = append(probes, probe{"external IP", outside, ip, s.Port, expect(external)})
		}
		for _, ip := range s.LoadBalancerIPs {
			if len(s.SourceRanges) > 0 {
				probes = append(probes, probe{"load balancer, allowed source", allowed, ip, s.Port, expect(external)})
				want := "DROP"
				if len(s.Endpoints) == 0 {
					want = "REJECT"
				}
				probes = append(probes, probe{"load balancer, other source", outside, ip, s.Port, want})
			} else {
				probes = append(probes, probe{"load balancer", outside, ip, s.Port, expect(external)})
			}
		}
		for _, p := range probes {
			pkt := trace.Packet{Source: p.src, Destination: p.dst, DestinationPort: p.port, Protocol: s.Protocol}
			sim, err := iptables.Simulate(d, pkt, iptables.Options{LocalAddrs: []netip.Addr{node}})
			if err != nil {
				t.Fatal(err)
			}
			got := string(sim.Verdict)
			if sim.Verdict == trace.VerdictDNAT {
				var eps []string
				for _, e := range sim.Endpoints {
					eps = append(eps, e.AddrPort().String())
				}
				slices.Sort(eps)
				got = strings.Join(eps, ",")
			}
			if got != p.want {
				t.Errorf("%s of %s (%s): got %s, want %s", p.kind, s.ServicePortName(), pkt, got, p.want)
			}
			outcome := p.want
			if strings.Contains(outcome, ":") {
				outcome = "DNAT"
			}
			kinds[p.kind+" -> "+outcome]++
		}
	}
	t.Logf("probes: %v", kinds)
}

func checkMiddle(t *testing.T, c *Cluster, d *iptables.Dump) {
	t.Helper()
	s, err := c.Middle()
	if err != nil {
		t.Fatal(err)
	}
	pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: s.ClusterIP, DestinationPort: s.Port, Protocol: s.Protocol}
	sim, err := iptables.Simulate(d, pkt, iptables.Options{LocalAddrs: []netip.Addr{c.Config.NodeIP}})
	if err != nil {
		t.Fatal(err)
	}
	if sim.Verdict != trace.VerdictDNAT {
		t.Fatalf("verdict %s for %s, want DNAT", sim.Verdict, pkt)
	}
	var got, want []string
	for _, e := range sim.Endpoints {
		got = append(got, e.AddrPort().String())
		if math.Abs(e.Probability-1/float64(len(s.Endpoints))) > 1e-6 {
			t.Errorf("endpoint %s has probability %v, want 1/%d", e.AddrPort(), e.Probability, len(s.Endpoints))
		}
	}
	for _, e := range s.Endpoints {
		want = append(want, e.Addr.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("endpoints of %s (-want +got):\n%s", s.ServicePortName(), diff)
	}
}

// TestEndpointOrder checks kube-proxy's endpoint order (byEndpoint in
// pkg/proxy/endpointslicecache.go sorts by the "ip:port" text, so 10.0.0.10
// comes before 10.0.0.2), which decides the probability cascade, in
// SortEndpoints and in generated Services.
func TestEndpointOrder(t *testing.T) {
	eps := []Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.9:80")},
		{Addr: netip.MustParseAddrPort("10.0.0.2:80")},
		{Addr: netip.MustParseAddrPort("10.0.0.10:80")},
		{Addr: netip.MustParseAddrPort("10.0.0.2:8080")},
	}
	SortEndpoints(eps)
	var got []string
	for _, e := range eps {
		got = append(got, e.Addr.String())
	}
	if diff := cmp.Diff([]string{"10.0.0.10:80", "10.0.0.2:80", "10.0.0.2:8080", "10.0.0.9:80"}, got); diff != "" {
		t.Errorf("SortEndpoints (-want +got):\n%s", diff)
	}
	c, err := Generate(Default(50, 5000))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Services {
		if !slices.IsSortedFunc(s.Endpoints, func(a, b Endpoint) int { return strings.Compare(a.Addr.String(), b.Addr.String()) }) {
			t.Fatalf("endpoints of %s are not in kube-proxy's order", s.ServicePortName())
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Default(300, 1000)
	var a, b bytes.Buffer
	if err := Write(&a, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two runs with the same Config differ")
	}
}

// TestProbability checks the rounding against values iptables-nft-save
// v1.8.9 printed for kube-proxy's --probability arguments.
func TestProbability(t *testing.T) {
	for n, want := range map[int]string{2: "0.50000000000", 3: "0.33333333349", 7: "0.14285714272", 11: "0.09090909082", 21: "0.04761904757", 100: "0.00999999978"} {
		if got := Probability(n); got != want {
			t.Errorf("Probability(%d) = %s, want %s", n, got, want)
		}
	}
}

// saveForm turns one rule of kube-proxy's iptables-restore input into the
// line iptables-save (v1.8.9, nf_tables) prints for it. It knows the options
// kube-proxy uses; TestRoundTrip checks it against the real tools.
func saveForm(rule string) (string, error) {
	toks, err := splitWords(rule)
	if err != nil {
		return "", err
	}
	if len(toks) < 2 || toks[0] != "-A" {
		return "", fmt.Errorf("not a rule: %q", rule)
	}
	out := []string{"-A", toks[1]}
	var src, dst, proto, rest []string
	for i := 2; i < len(toks); i++ {
		neg := toks[i] == "!" && i+1 < len(toks)
		j := i
		if neg {
			j++
		}
		switch toks[j] {
		case "-s", "-d", "-p":
			if j+1 >= len(toks) {
				return "", fmt.Errorf("%s without a value in %q", toks[j], rule)
			}
			v := toks[j+1]
			if toks[j] != "-p" && !strings.Contains(v, "/") {
				v += "/32"
			}
			part := []string{toks[j], v}
			if neg {
				part = append([]string{"!"}, part...)
			}
			switch toks[j] {
			case "-s":
				src = part
			case "-d":
				dst = part
			default:
				proto = part
			}
			i = j + 1
		default:
			rest = append(rest, toks[i])
		}
	}
	out = append(append(append(out, src...), dst...), proto...)
	// Split the rest into "-m NAME ..." and "-j TARGET ..." groups.
	var groups [][]string
	for _, tok := range rest {
		if tok == "-m" || tok == "-j" || len(groups) == 0 {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], tok)
	}
	for _, g := range groups {
		if len(g) < 2 {
			return "", fmt.Errorf("bad option group %q in %q", g, rule)
		}
		switch g[0] + " " + g[1] {
		case "-m comment":
			out = append(out, "-m", "comment", "--comment", saveString(g[3]))
		case "-m statistic":
			for k := range g {
				if g[k] == "--probability" {
					var f float64
					if _, err := fmt.Sscan(g[k+1], &f); err != nil {
						return "", err
					}
					g[k+1] = fmt.Sprintf("%.11f", math.Round(f*0x80000000)/0x80000000)
				}
			}
			out = append(out, g...)
		case "-m recent":
			op, seconds, reap, name := "", "", false, ""
			for k := 2; k < len(g); k++ {
				switch g[k] {
				case "--set", "--rcheck":
					op = g[k]
				case "--seconds":
					k++
					seconds = g[k]
				case "--reap":
					reap = true
				case "--name":
					k++
					name = g[k]
				default:
					return "", fmt.Errorf("recent option %s", g[k])
				}
			}
			out = append(out, "-m", "recent", op)
			if seconds != "" {
				out = append(out, "--seconds", seconds)
			}
			if reap {
				out = append(out, "--reap")
			}
			out = append(out, "--name", name, "--mask", "255.255.255.255", "--rsource")
		case "-m nfacct":
			// xtables prints "--nfacct-name " and then " NAME".
			out = append(out, "-m", "nfacct", "--nfacct-name", " "+g[3])
		case "-j MARK":
			switch g[2] {
			case "--or-mark":
				out = append(out, "-j", "MARK", "--set-xmark", g[3]+"/"+g[3])
			case "--xor-mark":
				out = append(out, "-j", "MARK", "--set-xmark", g[3]+"/0x0")
			default:
				out = append(out, g...)
			}
		case "-j REJECT":
			if len(g) == 2 {
				g = append(g, "--reject-with", "icmp-port-unreachable")
			}
			out = append(out, g...)
		default:
			out = append(out, g...)
		}
	}
	return strings.Join(out, " "), nil
}

// saveString quotes like libxtables' xtables_save_string.
func saveString(s string) string {
	bare := s != ""
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			bare = false
		}
	}
	if bare {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `'`, `\'`)
	return `"` + r.Replace(s) + `"`
}

// splitWords splits a rule into words; double quotes group words.
func splitWords(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		word, rest, _ := strings.Cut(s, " ")
		out = append(out, word)
		s = rest
	}
	return out, nil
}

// TestRoundTrip proves the format against the real tools: kube-proxy's
// expected rules and generated dumps (small and large cluster mode) are
// loaded with iptables-nft-restore into a network namespace of their own,
// and iptables-nft-save must print the same rules back (ignoring the
// "# Generated by" and "# Completed on" lines and chain counters). Needs
// root, ip (iproute2), iptables-nft-restore/-save and nfacct.
func TestRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, tool := range []string{"ip", "iptables-nft-restore", "iptables-nft-save", "nfacct"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (apt-get install iproute2 iptables nfacct)", tool)
		}
	}
	ns := fmt.Sprintf("tsvc-bench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	inNS := func(t *testing.T, stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	// kube-proxy >= 1.30 counts packets in nfacct objects that must exist
	// before rules use them.
	for _, acct := range []string{"localhost_nps_accepted_pkts", "ct_state_invalid_dropped_pkts"} {
		inNS(t, nil, "nfacct", "add", acct)
	}
	// roundTrip replaces the tables the dump has (iptables-restore flushes
	// and rebuilds each table it is given) and returns what iptables-save
	// prints, normalized.
	roundTrip := func(t *testing.T, dump []byte) []string {
		t.Helper()
		inNS(t, dump, "iptables-nft-restore")
		return normalize(strings.Split(inNS(t, nil, "iptables-nft-save"), "\n"))
	}

	t.Run("kube-proxy rules in save form", func(t *testing.T) {
		// saveForm must predict what the tools print for kube-proxy's rules.
		var want []string
		for _, line := range strings.Split(kubeProxyOverall, "\n") {
			if strings.HasPrefix(line, "-A ") {
				s, err := saveForm(line)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			}
		}
		var got []string
		for _, line := range roundTrip(t, []byte(kubeProxyOverall)) {
			if strings.HasPrefix(line, "-A ") {
				got = append(got, line)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("saveForm disagrees with iptables-nft-save (-saveForm +tools):\n%s", diff)
		}
	})
	for _, tc := range []struct {
		name    string
		cluster func() (*Cluster, error)
	}{
		{"TestOverallIPTablesRules services", func() (*Cluster, error) {
			return &Cluster{Config: testConfig(), Services: overallServices()}, nil
		}},
		{"1000 services", func() (*Cluster, error) { return Generate(Default(1000, 5000)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := tc.cluster()
			if err != nil {
				t.Fatal(err)
			}
			dump := write(t, cl)
			want := normalize(strings.Split(string(dump), "\n"))
			got := roundTrip(t, dump)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("iptables-nft-save prints the generated dump differently (-generated +tools):\n%s", diff)
			}
		})
	}
}

// normalize drops comment and empty lines and zeroes chain counters.
func normalize(lines []string) []string {
	var out []string
	for _, l := range lines {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
			continue
		case strings.HasPrefix(l, ":"):
			if i := strings.LastIndexByte(l, '['); i > 0 {
				l = l[:i] + "[0:0]"
			}
		}
		out = append(out, l)
	}
	return out
}

// Flags for TestWriteDumpFile, which test/bench runs to get a dump: that
// package cannot import this internal one.
var (
	outFile   = flag.String("dumpgen.out", "", "TestWriteDumpFile writes a dump to this file and its target Service to FILE.target.json")
	services  = flag.Int("dumpgen.services", 10000, "Services in the dump TestWriteDumpFile writes")
	endpoints = flag.Int("dumpgen.endpoints", 100000, "endpoints in the dump TestWriteDumpFile writes")
	nodePorts = flag.Bool("dumpgen.nodeports", false, "TestWriteDumpFile gives every Service a node port (a KUBE-EXT chain and a KUBE-NODEPORTS rule each)")
	counters  = flag.Bool("dumpgen.counters", false, "TestWriteDumpFile writes the dump as iptables-save -c does, with counters before every rule")
	longNames = flag.Bool("dumpgen.longnames", false, "TestWriteDumpFile gives every namespace and Service a 63-character name")
	lbs       = flag.Bool("dumpgen.loadbalancers", false, "TestWriteDumpFile makes every Service a LoadBalancer with an ingress IP and an external IP")
)

// Target is what TestWriteDumpFile writes next to the dump: the Service
// benchmarks send a packet to, and the dump's size.
type Target struct {
	Service   Service `json:"service"`
	Services  int     `json:"services"`
	Endpoints int     `json:"endpoints"`
	Bytes     int64   `json:"bytes"`
}

func TestWriteDumpFile(t *testing.T) {
	if *outFile == "" {
		t.Skip("writes a dump only with -dumpgen.out FILE")
	}
	cfg := Default(*services, *endpoints)
	if *nodePorts {
		cfg.NodePortEvery = 1
	}
	cfg.LongNames = *longNames
	if *lbs {
		cfg.LoadBalancerEvery, cfg.ExternalIPEvery = 1, 1
	}
	c, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	dump := buf.Bytes()
	if *counters {
		dump = WithCounters(dump)
	}
	if err := os.WriteFile(*outFile, dump, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(*outFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Middle()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(Target{Service: s, Services: *services, Endpoints: *endpoints, Bytes: info.Size()}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Clean(*outFile)+".target.json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLongNames checks that LongNames gives names of the longest length
// Kubernetes allows that are still valid DNS labels and stay distinct.
func TestLongNames(t *testing.T) {
	cfg := Default(200, 1000)
	cfg.LongNames = true
	c, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	label := regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	seen := map[string]bool{}
	for _, s := range c.Services {
		for _, name := range []string{s.Namespace, s.Name} {
			if len(name) != maxNameLen || !label.MatchString(name) {
				t.Fatalf("name %q: want a DNS label of %d characters", name, maxNameLen)
			}
		}
		if seen[s.Namespace+"/"+s.Name] {
			t.Fatalf("Service %s/%s generated twice", s.Namespace, s.Name)
		}
		seen[s.Namespace+"/"+s.Name] = true
	}
}
