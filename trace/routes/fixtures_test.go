package routes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The fixtures were recorded by collectors/debugpod's
// TestRoutesScriptLayouts -update: each layout under testdata/layouts
// built in network namespaces, the route script's real output with ip
// (NAME.txt) and with only sh and cat (NAME-noip.txt), the kernel's
// answers to `ip route get` for every query (NAME.routeget.json), and
// the node's iptables-save and ipset names.
var layoutNames = []string{"aws-vpc-cni", "calico", "cilium", "flannel", "kindnet"}

const marker = "@@trace-svc@@"

// splitScript cuts the route script's output into sections, as the
// debug pod collector does (begin NAME … \n end NAME rc=N).
func splitScript(t testing.TB, out []byte) []Section {
	t.Helper()
	var secs []Section
	for len(out) > 0 {
		line, rest, _ := bytes.Cut(out, []byte("\n"))
		out = rest
		name, ok := bytes.CutPrefix(line, []byte(marker+" begin "))
		if !ok {
			continue
		}
		end := []byte("\n" + marker + " end " + string(name) + " rc=")
		i := bytes.Index(out, end)
		if i < 0 {
			t.Fatalf("section %s has no end", name)
		}
		secs = append(secs, Section{Name: string(name), Data: out[:i]})
		_, out, _ = bytes.Cut(out[i+len(end):], []byte("\n"))
	}
	return secs
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadLayout(t testing.TB, name string) *Snapshot {
	t.Helper()
	s, err := Parse(splitScript(t, readFixture(t, name+".txt")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type routeGetCase struct {
	Dst      string `json:"dst"`
	Src      string `json:"src,omitempty"`
	IIF      string `json:"iif,omitempty"`
	Mark     uint32 `json:"mark,omitempty"`
	Get      string `json:"get"`
	FibMatch string `json:"fibmatch"`
}

func (c routeGetCase) query() Query {
	q := Query{Dst: netip.MustParseAddr(c.Dst), IIF: c.IIF, Mark: c.Mark}
	if c.Src != "" {
		q.Src = netip.MustParseAddr(c.Src)
	}
	return q
}

func (c routeGetCase) String() string {
	s := "ip route get " + c.Dst
	if c.Src != "" {
		s += " from " + c.Src + " iif " + c.IIF
	}
	if c.Mark != 0 {
		s += fmt.Sprintf(" mark 0x%x", c.Mark)
	}
	return s
}

// TestLookupAgreesWithKernel replays every recorded `ip route get` of
// every layout against Lookup on the recorded route sections.
func TestLookupAgreesWithKernel(t *testing.T) {
	total := 0
	for _, name := range layoutNames {
		t.Run(name, func(t *testing.T) {
			s := loadLayout(t, name)
			if len(s.Warnings) > 0 {
				t.Errorf("warnings: %q", s.Warnings)
			}
			var cases []routeGetCase
			if err := json.Unmarshal(readFixture(t, name+".routeget.json"), &cases); err != nil {
				t.Fatal(err)
			}
			if len(cases) < 50 {
				t.Fatalf("only %d recorded queries", len(cases))
			}
			for _, c := range cases {
				get, err := ParseRouteGet([]byte(c.Get))
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				var fib *Route
				if get.Err == "" && !strings.HasPrefix(c.FibMatch, "RTNETLINK") && c.Dst != "255.255.255.255" {
					rs, ws, err := ParseIPRoute([]byte(c.FibMatch), 0)
					if err != nil || len(ws) > 0 || len(rs) != 1 {
						t.Fatalf("%s: fibmatch %q: %v %q", c, c.FibMatch, err, ws)
					}
					fib = &rs[0]
				}
				res := s.Lookup(c.query())
				if err := CompareRouteGet(res, get, fib); err != nil {
					t.Errorf("%s: %v", c, err)
				}
				// The Path carries a Hop; read back, it still agrees
				// (multipath aside: a Hop keeps one path).
				if len(res.Nexthops) <= 1 {
					if err := CompareHop(s.Hop("node", res, nil), res.Query.Dst.Is6(), get, fib); err != nil {
						t.Errorf("%s: hop: %v", c, err)
					}
				}
			}
			total += len(cases)
		})
	}
	t.Logf("%d recorded kernel lookups agree", total)
}

// TestWithoutIP: the sh-and-cat output of every layout parses; its kinds
// agree with ip -d link's (or are "virtual"); its lookups agree with the
// kernel on the layouts without policy rules, and say what they assumed.
func TestWithoutIP(t *testing.T) {
	for _, name := range layoutNames {
		t.Run(name, func(t *testing.T) {
			withIP := loadLayout(t, name)
			s, err := Parse(splitScript(t, readFixture(t, name+"-noip.txt")))
			if err != nil {
				t.Fatal(err)
			}
			if s.RoutesFrom4 != FromProc || s.RoutesFrom6 != FromProc || s.Rules4 != nil {
				t.Errorf("routes from %s/%s, rules %v", s.RoutesFrom4, s.RoutesFrom6, s.Rules4)
			}
			for _, ifc := range withIP.Interfaces {
				got, ok := s.Interface(ifc.Name)
				if !ok || got.Kind != ifc.Kind && got.Kind != KindVirtual || got.KindFrom != FromSysfs {
					t.Errorf("interface %s: sysfs %+v, ip kind %s", ifc.Name, got, ifc.Kind)
				}
			}
			custom := len(s.Tables) > 2
			if custom != slices.ContainsFunc(s.Warnings, func(w string) bool { return strings.Contains(w, "policy rules probably") }) {
				t.Errorf("tables %v, warnings %q", s.Tables, s.Warnings)
			}
			if custom {
				return
			}
			var cases []routeGetCase
			if err := json.Unmarshal(readFixture(t, name+".routeget.json"), &cases); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				get, _ := ParseRouteGet([]byte(c.Get))
				res := s.Lookup(c.query())
				if !slices.Contains(res.Notes, "policy rules unknown: the local, main and default tables were assumed") {
					t.Fatalf("%s: notes %q", c, res.Notes)
				}
				switch v := get.Verdict(); {
				case res.Query.Dst.Is6() && res.Verdict == VerdictUnreachable && v.Dropped():
				case v == VerdictLocal || v == VerdictBroadcast || get.Err != "":
					if v != res.Verdict && get.Err != res.Errno {
						t.Errorf("%s: kernel %s, lookup %s", c, v, res.Verdict)
					}
				default:
					if err := CompareRouteGet(res, get, nil); err != nil {
						t.Errorf("%s: %v", c, err)
					}
				}
			}
		})
	}
}

var chainRE = regexp.MustCompile(`(?m)^:(\S+) `)

func layoutFacts(t *testing.T, name string) Facts {
	var chains []string
	for _, m := range chainRE.FindAllStringSubmatch(string(readFixture(t, name+".iptables")), -1) {
		chains = append(chains, m[1])
	}
	return Facts{Snapshot: loadLayout(t, name), Chains: chains, IPSets: strings.Fields(string(readFixture(t, name+".ipsets")))}
}

func TestDetectLayouts(t *testing.T) {
	want := map[string]struct {
		names   []string
		service string
	}{
		"flannel":     {names: []string{"flannel (VXLAN)"}},
		"calico":      {names: []string{"Calico (VXLAN)"}},
		"kindnet":     {names: []string{"kindnet (native routing)"}},
		"aws-vpc-cni": {names: []string{"AWS VPC CNI (native VPC routing)"}},
		"cilium":      {names: []string{"Cilium (VXLAN)"}, service: "Cilium kube-proxy replacement"},
	}
	for _, name := range layoutNames {
		t.Run(name, func(t *testing.T) {
			d := Detect(layoutFacts(t, name))
			if diff := cmp.Diff(want[name].names, d.Names()); diff != "" {
				t.Errorf("plugins (-want +got):\n%s\n%+v", diff, d.Plugins)
			}
			got := ""
			if d.Service != nil {
				got = d.Service.Name
			}
			if got != want[name].service {
				t.Errorf("service dataplane %q, want %q", got, want[name].service)
			}
			if d.KubeProxy {
				t.Errorf("no layout has kube-proxy's rules")
			}
			fs := d.Findings("node-a")
			if (len(fs) == 1) != (want[name].service != "") {
				t.Errorf("findings %+v", fs)
			}
			for _, p := range d.Plugins {
				if len(p.Evidence) == 0 {
					t.Errorf("%s without evidence", p.Name)
				}
			}
		})
	}
}

// resolver is the cluster around the layouts: node addresses and pod
// CIDRs, as the tracer would give them from the API.
func resolver(nodes map[string][]string) NodeResolver {
	return func(a netip.Addr) string {
		for node, ps := range nodes {
			for _, p := range ps {
				if netip.MustParsePrefix(p).Contains(a) {
					return node
				}
			}
		}
		return ""
	}
}

func TestHops(t *testing.T) {
	clusters := map[string]map[string][]string{
		"flannel": {"node-a": {"10.0.0.11/32", "10.244.0.0/24"}, "node-b": {"10.0.0.12/32", "10.244.1.0/24"}, "node-c": {"10.0.0.13/32", "10.244.2.0/24"}},
		"calico":  {"node-a": {"172.17.0.7/32", "10.65.0.0/26"}, "node-b": {"172.17.0.6/32", "10.65.1.0/26"}, "node-c": {"172.17.0.5/32", "10.65.2.0/26"}, "node-d": {"172.17.9.9/32", "10.65.3.0/26"}},
		"kindnet": {"node-a": {"172.18.0.3/32", "10.244.1.0/24"}, "node-b": {"172.18.0.2/32", "10.244.0.0/24"}, "node-c": {"172.18.0.4/32", "10.244.2.0/24"}},
		"aws-vpc-cni": {"node-a": {"192.168.70.10/32", "192.168.70.20/32", "192.168.70.181/32", "192.168.71.12/32", "192.168.80.44/32"},
			"node-b": {"192.168.64.77/32", "192.168.90.0/24"}},
		"cilium": {"node-a": {"192.168.1.15/32", "10.0.0.0/24"}, "node-b": {"192.168.1.16/32", "10.0.1.0/24"}},
	}
	tests := []struct {
		layout string
		q      Query
		line   string
		kind   Kind
		node   string
	}{
		{"flannel", Query{Dst: ip("10.244.0.3")}, "local bridge cni0", KindBridge, "node-a"},
		{"flannel", Query{Dst: ip("10.244.1.5")}, "flannel.1 VXLAN tunnel → node-b", KindVXLAN, "node-b"},
		{"flannel", Query{Dst: ip("10.0.0.12"), Src: ip("10.244.0.2"), IIF: "cni0"}, "on-link eth0 → node-b", KindVeth, "node-b"},
		{"calico", Query{Dst: ip("10.65.0.2")}, "local veth cali29f56ea1ab2", KindVeth, "node-a"},
		{"calico", Query{Dst: ip("10.65.1.5")}, "via eth0 → node-b 172.17.0.6", KindVeth, "node-b"},
		{"calico", Query{Dst: ip("10.65.3.7")}, "vxlan.calico VXLAN tunnel → node-d", KindVXLAN, "node-d"},
		{"calico", Query{Dst: ip("10.65.0.9")}, "blackhole route 10.65.0.0/26 proto 80", "", ""},
		{"calico", Query{Dst: ip("fd00:65::9")}, "blackhole route fd00:65::/122 proto 80", "", ""},
		{"calico", Query{Dst: ip("fd00:65:dead::1")}, "unreachable route fd00:65:dead::/64", "", ""},
		{"kindnet", Query{Dst: ip("10.244.1.3")}, "local veth vethb2bab333", KindVeth, "node-a"},
		{"kindnet", Query{Dst: ip("10.244.2.9")}, "via eth0 → node-c 172.18.0.4", KindVeth, "node-c"},
		{"kindnet", Query{Dst: ip("172.18.0.3")}, "delivered locally (an address of this node)", KindLoopback, "node-a"},
		{"aws-vpc-cni", Query{Dst: ip("192.168.71.12")}, "local veth eni0f3a9c1b2d3", KindVeth, "node-a"},
		{"aws-vpc-cni", Query{Dst: ip("192.168.90.7"), Src: ip("192.168.71.12"), IIF: "eni0f3a9c1b2d3"}, "via eth1 → node-b 192.168.64.1", KindVeth, "node-b"},
		{"aws-vpc-cni", Query{Dst: ip("192.168.90.7"), Src: ip("192.168.70.181"), IIF: "eni0f3a9c1b2d2"}, "on-link eth0 → node-b", KindVeth, "node-b"},
		{"cilium", Query{Dst: ip("10.0.1.5")}, "cilium_host (forwarded by eBPF) → node-b", KindVeth, "node-b"},
		{"cilium", Query{Dst: ip("10.0.0.30")}, "cilium_host (forwarded by eBPF) → node-a", KindVeth, "node-a"},
	}
	for _, tt := range tests {
		t.Run(tt.layout+" "+tt.q.Dst.String(), func(t *testing.T) {
			s := loadLayout(t, tt.layout)
			res := s.Lookup(tt.q)
			h := s.Hop("node-a", res, resolver(clusters[tt.layout]))
			if h.Line() != tt.line || h.Kind != tt.kind || h.Node != tt.node {
				t.Errorf("got %q kind %q node %q, want %q %q %q\n%+v", h.Line(), h.Kind, h.Node, tt.line, tt.kind, tt.node, res)
			}
			if _, err := json.Marshal(h); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestFindings(t *testing.T) {
	kindnet := loadLayout(t, "kindnet")
	calico := loadLayout(t, "calico")
	cluster := resolver(map[string][]string{"node-a": {"172.18.0.3/32", "10.244.1.0/24"}, "node-c": {"172.18.0.4/32", "10.244.2.0/24"}, "node-b": {"172.18.0.2/32", "10.244.0.0/24"}})
	noDefault, err := Parse([]Section{{Name: SectionIPRoute, Data: []byte("unicast 10.244.0.0/24 dev cni0 table main proto kernel scope link src 10.244.0.1\nlocal 10.244.0.1 dev cni0 table local proto kernel scope host src 10.244.0.1\n")},
		{Name: SectionIPRule, Data: []byte("0:\tfrom all lookup local\n32766:\tfrom all lookup main\n")}})
	if err != nil {
		t.Fatal(err)
	}
	codes := func(s *Snapshot, ep Endpoint) []string {
		res := s.Lookup(Query{Dst: ep.Addr})
		var out []string
		for _, f := range EndpointFindings("node-a", ep, res, s.Hop("node-a", res, cluster)) {
			out = append(out, f.Severity+" "+f.Code)
		}
		return out
	}
	tests := []struct {
		name string
		s    *Snapshot
		ep   Endpoint
		want []string
	}{
		{"healthy local pod", kindnet, Endpoint{Addr: ip("10.244.1.3"), Ready: true, Node: "node-a"}, nil},
		{"healthy remote pod", kindnet, Endpoint{Addr: ip("10.244.2.9"), Ready: true, Node: "node-c"}, nil},
		{"healthy calico pods", calico, Endpoint{Addr: ip("10.65.0.2"), Ready: true, Node: "node-a"}, nil},
		{"local by the API, routed away", kindnet, Endpoint{Addr: ip("10.244.2.9"), Ready: true, Node: "node-a"}, []string{"warning RouteLeavesNode"}},
		{"routed to another node", kindnet, Endpoint{Addr: ip("10.244.2.9"), Ready: true, Node: "node-b"}, []string{"warning RouteToWrongNode"}},
		{"blackhole to a ready pod", calico, Endpoint{Addr: ip("10.65.0.9"), Ready: true, Node: "node-a"}, []string{"error RouteDrops"}},
		{"blackhole to a pod not ready", calico, Endpoint{Addr: ip("10.65.0.9"), Node: "node-a"}, []string{"warning RouteDrops"}},
		{"no route", noDefault, Endpoint{Addr: ip("10.9.9.9"), Ready: true, Node: "node-c"}, []string{"error RouteMissing"}},
		{"node unknown", kindnet, Endpoint{Addr: ip("10.244.2.9"), Ready: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, codes(tt.s, tt.ep)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
