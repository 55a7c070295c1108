package ruleset

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// The node layouts recorded by collectors/debugpod's TestRoutesScriptLayouts:
// the route script's real output (NAME.txt) and the node's iptables-save.
const layouts = "../routes/testdata/"

// netipEqual compares addresses and prefixes by value.
var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// layoutSections cuts a recorded route script output into its sections, as
// the debug pod collector does.
func layoutSections(t *testing.T, name string) []routes.Section {
	t.Helper()
	out, err := os.ReadFile(filepath.Join(layouts, name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "@@trace-svc@@"
	var secs []routes.Section
	for len(out) > 0 {
		line, rest, _ := bytes.Cut(out, []byte("\n"))
		out = rest
		sec, ok := bytes.CutPrefix(line, []byte(marker+" begin "))
		if !ok {
			continue
		}
		end := []byte("\n" + marker + " end " + string(sec) + " rc=")
		i := bytes.Index(out, end)
		if i < 0 {
			t.Fatalf("%s: section %s has no end", name, sec)
		}
		secs = append(secs, routes.Section{Name: string(sec), Data: out[:i]})
		_, out, _ = bytes.Cut(out[i+len(end):], []byte("\n"))
	}
	return secs
}

// TestRouteSections: a node's route sections join its rules in one
// dataplane — by the collector's name, or told by their content — and the
// routing is what trace/routes reads from the same sections.
func TestRouteSections(t *testing.T) {
	for _, name := range []string{"flannel", "calico", "cilium", "kindnet", "aws-vpc-cni"} {
		t.Run(name, func(t *testing.T) {
			secs := layoutSections(t, name)
			want, err := routes.Parse(secs)
			if err != nil {
				t.Fatal(err)
			}
			named := []Input{fileInput(t, iptLB)}
			for _, s := range secs {
				named = append(named, Input{Name: s.Name + " output", Source: bytesSource{s.Data, true}, Section: s.Name})
			}
			d, err := Load(named...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, d.Routes(), netipEqual, cmpopts.IgnoreUnexported(routes.Snapshot{})); diff != "" {
				t.Errorf("routes (-routes.Parse +Load):\n%s", diff)
			}
			if diff := cmp.Diff([]string{trace.FormatIPTables}, d.Formats()); diff != "" {
				t.Errorf("formats: route sections are not rule formats (-want +got):\n%s", diff)
			}
			if len(d.Warnings()) > 0 {
				t.Errorf("warnings %+v", d.Warnings())
			}
			if d.ProxyMode() != trace.ModeIPTables {
				t.Errorf("mode %q", d.ProxyMode())
			}

			// By content, as saved files without their names: every
			// section is recognised; ip -6 rule's output reads as ip
			// rule's (it has no address to tell), which the dataplane
			// says.
			var unnamed []Input
			for _, s := range secs {
				unnamed = append(unnamed, Input{Name: s.Name, Source: bytesSource{s.Data, false}})
			}
			d, err = Load(unnamed...)
			if err != nil {
				t.Fatal(err)
			}
			if d.Routes() == nil || len(d.Engines()) != 0 {
				t.Fatalf("routes %v, engines %d", d.Routes(), len(d.Engines()))
			}
			if diff := cmp.Diff(want.Routes, d.Routes().Routes, netipEqual); diff != "" {
				t.Errorf("routes by content (-by name +by content):\n%s", diff)
			}
			if diff := cmp.Diff(want.Interfaces, d.Routes().Interfaces, netipEqual); diff != "" {
				t.Errorf("interfaces by content (-by name +by content):\n%s", diff)
			}
			if ws := d.Warnings(); len(ws) != 1 || ws[0].Code != trace.CodeRoutesIncomplete || !strings.Contains(ws[0].Message, "two ip-rule sections") {
				t.Errorf("warnings %+v", ws)
			}
		})
	}
}

// TestRouteSectionOf: saved dumps are named NODE.SECTION (--save-dumps);
// the name says which section a file is, even for a node name with dots.
func TestRouteSectionOf(t *testing.T) {
	for in, want := range map[string]string{
		"node-1.ip-route":                    routes.SectionIPRoute,
		"/tmp/dumps/node-1.example.ip6-rule": routes.SectionIP6Rule,
		"node-1.proc-net-ipv6_route":         routes.SectionProcIPv6Route,
		"node-1.iptables-nft-save":           "",
		"ip-route":                           "",
		"node-1.ip-route.bak":                "",
	} {
		if got := RouteSectionOf(in); got != want {
			t.Errorf("RouteSectionOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRouteSectionProblems: route sections that say nothing, or more than
// the bound, are warnings or a clear error; the rules still load.
func TestRouteSectionProblems(t *testing.T) {
	d, err := Load(fileInput(t, iptLB), Input{Name: "ip-link", Source: bytesSource{[]byte("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"), true}, Section: routes.SectionIPLink})
	if err != nil {
		t.Fatal(err)
	}
	if ws := d.Warnings(); d.Routes() != nil || len(ws) != 1 || ws[0].Code != trace.CodeRoutesIncomplete || !strings.Contains(ws[0].Message, "hold no routing table") {
		t.Errorf("routes %v, warnings %+v", d.Routes(), ws)
	}
	if d.ProxyMode() != trace.ModeIPTables {
		t.Errorf("mode %q", d.ProxyMode())
	}
	big := append([]byte("default via 10.0.0.1 dev eth0\n"), bytes.Repeat([]byte("10.1.0.0/24 via 10.0.0.2 dev eth0\n"), maxRouteSection/34+1)...)
	_, err = Load(Input{Name: `"node-1.ip-route"`, Source: bytesSource{big, false}})
	if err == nil || !strings.Contains(err.Error(), `read ruleset "node-1.ip-route": route section ip-route is larger than 64 MiB`) {
		t.Errorf("too large: %v", err)
	}
	// A forced rule format does not make a route section rules.
	d, err = Load(Input{Name: "r", Source: bytesSource{[]byte("default via 10.0.0.1 dev eth0 \n"), true}, Format: trace.FormatIPTables})
	if err != nil || d.Routes() == nil || len(d.Engines()) != 0 {
		t.Errorf("forced iptables on ip route output: %v, %v", d, err)
	}
}

// TestNames: every engine's chains, tables and sets, kube-proxy's hashed
// per-Service chains left out, each once.
func TestNames(t *testing.T) {
	d := load(t, iptLB, layouts+"flannel.iptables", nftLB)
	n := d.Names()
	for _, want := range []string{"KUBE-SERVICES", "KUBE-POSTROUTING", "FLANNEL-POSTRTG", "FLANNEL-FWD", "PREROUTING"} {
		if !slices.Contains(n.Chains, want) {
			t.Errorf("chain %s missing from %v", want, n.Chains)
		}
	}
	for _, c := range n.Chains {
		if strings.HasPrefix(c, "KUBE-SVC-") || strings.HasPrefix(c, "KUBE-SEP-") || strings.HasPrefix(c, "service-") {
			t.Errorf("hashed chain %s listed", c)
		}
	}
	if slices.Contains(n.NFTTables, "ip kube-proxy") != true {
		t.Errorf("tables %v", n.NFTTables)
	}
	seen := map[string]bool{}
	for _, c := range n.Chains {
		if seen[c] {
			t.Errorf("chain %s listed twice", c)
		}
		seen[c] = true
	}
}

// FuzzRouteSection: whatever a node prints as a route section — named or
// told by content, next to rules — loads without panicking, and a node
// whose routes load can be asked for any route.
func FuzzRouteSection(f *testing.F) {
	for _, name := range []string{"flannel", "cilium", "aws-vpc-cni"} {
		out, err := os.ReadFile(filepath.Join(layouts, name+".txt"))
		if err != nil {
			f.Fatal(err)
		}
		for i, sec := range bytes.Split(out, []byte("@@trace-svc@@ begin ")) {
			if i == 0 {
				continue
			}
			head, body, _ := bytes.Cut(sec, []byte("\n"))
			body, _, _ = bytes.Cut(body, []byte("\n@@trace-svc@@ end "))
			f.Add(uint8(slices.Index(routes.SectionNames, string(head))), body)
		}
	}
	f.Add(uint8(255), []byte("default via 10.0.0.1 dev eth0\n"))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		section := ""
		if int(which) < len(routes.SectionNames) {
			section = routes.SectionNames[which]
		}
		d, err := Load(Input{Name: "section", Source: bytesSource{data, true}, Section: section})
		if err != nil {
			return
		}
		if r := d.Routes(); r != nil {
			for _, dst := range []string{"10.244.1.5", "fd00::1", "127.0.0.1"} {
				res := r.Lookup(routes.Query{Dst: netip.MustParseAddr(dst)})
				_ = r.Hop("node", res, nil).Line()
			}
		}
	})
}
