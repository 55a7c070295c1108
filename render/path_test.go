package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"html"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/awalterschulze/gographviz"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./render -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got), run with -update if intended:\n%s", path, diff)
	}
}

func renderTree(t *testing.T, p *trace.Path, color string, wide bool) string {
	t.Helper()
	var b bytes.Buffer
	r, err := NewRenderer(&b, color)
	if err != nil {
		t.Fatal(err)
	}
	if err := PathTree(&b, r, p, PathTreeOptions{Wide: wide}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func renderDOT(t *testing.T, p *trace.Path) string {
	t.Helper()
	var b bytes.Buffer
	if err := PathDOT(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPathGolden(t *testing.T) {
	for _, f := range pathFixtures {
		t.Run(f.name, func(t *testing.T) {
			golden(t, "path-"+f.name+".txt", renderTree(t, f.path(), "never", false))
			golden(t, "path-"+f.name+".dot", renderDOT(t, f.path()))
			var js bytes.Buffer
			if err := PathJSON(&js, f.path()); err != nil {
				t.Fatal(err)
			}
			golden(t, "path-"+f.name+".json", js.String())
		})
	}
	// --wide on the fixtures with long chain names.
	for _, name := range []string{"lb-source-ranges", "dualstack-ipv6"} {
		t.Run(name+"-wide", func(t *testing.T) {
			golden(t, "path-"+name+"-wide.txt", renderTree(t, fixture(t, name), "never", true))
		})
	}
}

func fixture(t *testing.T, name string) *trace.Path {
	t.Helper()
	for _, f := range pathFixtures {
		if f.name == name {
			return f.path()
		}
	}
	t.Fatalf("no fixture %q", name)
	return nil
}

// TestPathTreeFits80Columns checks the narrow tree of every fixture, and
// every narrow tree golden, against 80 columns.
func TestPathTreeFits80Columns(t *testing.T) {
	check := func(t *testing.T, name, out string) {
		t.Helper()
		for i, line := range strings.Split(out, "\n") {
			if n := utf8.RuneCountInString(line); n > treeWidth {
				t.Errorf("%s line %d is %d runes wide:\n%s", name, i+1, n, line)
			}
			if strings.HasSuffix(line, " ") {
				t.Errorf("%s line %d has trailing spaces: %q", name, i+1, line)
			}
		}
	}
	for _, f := range pathFixtures {
		check(t, f.name, renderTree(t, f.path(), "never", false))
	}
	goldens, err := filepath.Glob("testdata/path-*.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		if strings.HasSuffix(g, "-wide.txt") {
			continue
		}
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		check(t, g, string(b))
	}
	// The wide view keeps nftables chain names whole.
	wide := renderTree(t, fixture(t, "lb-source-ranges"), "never", true)
	if !strings.Contains(wide, "firewall-"+fxNFTBase) {
		t.Errorf("wide tree lacks the full chain name firewall-%s:\n%s", fxNFTBase, wide)
	}
}

func TestPathTreeColor(t *testing.T) {
	for _, f := range pathFixtures {
		t.Run(f.name, func(t *testing.T) {
			if out := renderTree(t, f.path(), "always", false); !strings.Contains(out, "\x1b[") {
				t.Errorf("--color always wrote no escape codes:\n%s", out)
			}
			for _, mode := range []string{"never", "auto"} { // auto: a buffer is no terminal
				if out := renderTree(t, f.path(), mode, false); strings.Contains(out, "\x1b") {
					t.Errorf("--color %s wrote escape codes:\n%q", mode, out)
				}
			}
			// Colour changes nothing but the escape codes.
			plain := renderTree(t, f.path(), "never", false)
			if got := stripANSI(renderTree(t, f.path(), "always", false)); got != plain {
				t.Errorf("coloured tree differs from the plain one beyond escape codes:\n%s", cmp.Diff(plain, got))
			}
		})
	}
	t.Run("drop is red", func(t *testing.T) {
		out := renderTree(t, pathLBLocal(), "always", false)
		if !strings.Contains(out, "\x1b[1;31mDROP") && !strings.Contains(out, "\x1b[31;1mDROP") {
			t.Errorf("DROP is not bold red:\n%q", out)
		}
	})
}

// stripANSI removes SGR escape sequences.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < '@' || s[j] > '~') {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestPathJSON(t *testing.T) {
	p := pathNodeError()
	var b bytes.Buffer
	if err := PathJSON(&b, p); err != nil {
		t.Fatal(err)
	}
	if p.SchemaVersion != "" || p.Nodes[1].Paths != nil {
		t.Errorf("PathJSON changed its argument")
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["schemaVersion"] != trace.PathSchemaVersion {
		t.Errorf("schemaVersion = %v, want %s", doc["schemaVersion"], trace.PathSchemaVersion)
	}
	// Lists are [] rather than null, also where the engine left them nil.
	node2 := doc["nodes"].([]any)[1].(map[string]any)
	if paths, ok := node2["paths"].([]any); !ok || len(paths) != 0 {
		t.Errorf("node-2 paths = %#v, want []", node2["paths"])
	}
	if !strings.Contains(b.String(), `"ip": "10.244.1.5"`) || strings.Contains(b.String(), `\u003e`) {
		t.Errorf("addresses or rule text not written plainly:\n%s", b.String())
	}
	// The JSON reads back into the same Path.
	var back trace.Path
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.SchemaVersion != trace.PathSchemaVersion || back.Nodes[0].Paths[0].Endpoints[0].IP != p.Nodes[0].Paths[0].Endpoints[0].IP {
		t.Errorf("round trip lost data: %+v", back)
	}
}

func TestPathYAMLMatchesJSON(t *testing.T) {
	for _, f := range pathFixtures {
		var js, ys bytes.Buffer
		if err := PathJSON(&js, f.path()); err != nil {
			t.Fatal(err)
		}
		if err := PathYAML(&ys, f.path()); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ys.String(), "endpoints:") && !strings.Contains(ys.String(), "\nschemaVersion: "+trace.PathSchemaVersion+"\n") {
			t.Errorf("%s: YAML lacks schemaVersion:\n%s", f.name, ys.String())
		}
		fromYAML, err := yaml.YAMLToJSON(ys.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(js.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(fromYAML, &b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s: YAML and JSON differ (-json +yaml):\n%s", f.name, diff)
		}
	}
}

func TestPathNil(t *testing.T) {
	var b bytes.Buffer
	r, _ := NewRenderer(&b, "never")
	for name, err := range map[string]error{
		"tree": PathTree(&b, r, nil, PathTreeOptions{}),
		"dot":  PathDOT(&b, nil),
		"json": PathJSON(&b, nil),
		"yaml": PathYAML(&b, nil),
	} {
		if err == nil {
			t.Errorf("%s: no error for a nil path", name)
		}
	}
}

// TestPathDOTParses re-reads every DOT output with gographviz and checks the
// structure: one cluster per node, every pod once, drops red.
func TestPathDOTParses(t *testing.T) {
	for _, f := range pathFixtures {
		t.Run(f.name, func(t *testing.T) {
			p := f.path()
			out := renderDOT(t, p)
			g, err := gographviz.Read([]byte(out))
			if err != nil {
				t.Fatalf("gographviz cannot read its own output: %v\n%s", err, out)
			}
			for _, n := range p.Nodes {
				if !g.IsSubGraph(dotQuote("cluster node " + n.Name)) {
					t.Errorf("no cluster for node %s", n.Name)
				}
			}
			pods := 0
			for _, n := range g.Nodes.Nodes {
				if strings.HasPrefix(n.Name, `"pod `) {
					pods++
				}
			}
			want := map[string]bool{}
			for _, n := range p.Nodes {
				for _, ep := range n.Paths {
					for _, e := range ep.Endpoints {
						if e.Pod != nil && (ep.Verdict == trace.VerdictDNAT || !e.InRules) {
							want[e.Pod.Name+e.IP.String()] = true
						}
					}
				}
			}
			if pods != len(want) {
				t.Errorf("%d pod nodes, want %d (each pod once)", pods, len(want))
			}
			for _, e := range g.Edges.Edges {
				if _, ok := g.Nodes.Lookup[e.Src]; !ok {
					t.Errorf("edge from unknown node %s", e.Src)
				}
				if _, ok := g.Nodes.Lookup[e.Dst]; !ok {
					t.Errorf("edge to unknown node %s", e.Dst)
				}
			}
			for _, n := range g.Nodes.Nodes {
				label := n.Attrs["label"]
				if strings.HasPrefix(label, `"DROP`) || strings.HasPrefix(label, `"REJECT`) {
					if n.Attrs["color"] != `"`+dotRed+`"` {
						t.Errorf("%s is not red: %v", n.Name, n.Attrs)
					}
				}
			}
		})
	}
}

func TestPathDOTDeterministic(t *testing.T) {
	for _, f := range pathFixtures {
		first := renderDOT(t, f.path())
		for range 5 {
			if got := renderDOT(t, f.path()); got != first {
				t.Fatalf("%s: DOT output changes between runs:\n%s", f.name, cmp.Diff(first, got))
			}
		}
		// The node order of the Path does not matter either.
		p := f.path()
		for i, j := 0, len(p.Nodes)-1; i < j; i, j = i+1, j-1 {
			p.Nodes[i], p.Nodes[j] = p.Nodes[j], p.Nodes[i]
		}
		if got := renderDOT(t, p); got != first {
			t.Errorf("%s: DOT output depends on node order:\n%s", f.name, cmp.Diff(first, got))
		}
	}
}

func TestPathDOTDrift(t *testing.T) {
	out := renderDOT(t, pathDrift())
	for _, want := range []string{
		`"endpoint 10.244.2.99:8080"`, // stale rule: no pod
		`stale rule, not in API`,
		`missing from\nthis node's rules`,
		`style="dashed"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("drift diagram lacks %s:\n%s", want, out)
		}
	}
}

func needDot(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("graphviz's dot is not installed")
	}
}

// TestPathDOTRendersWithGraphviz feeds every diagram to the real dot and
// checks the SVG names each pod.
func TestPathDOTRendersWithGraphviz(t *testing.T) {
	needDot(t)
	for _, f := range pathFixtures {
		t.Run(f.name, func(t *testing.T) {
			p := f.path()
			cmd := exec.Command("dot", "-Tsvg")
			cmd.Stdin = strings.NewReader(renderDOT(t, p))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("dot -Tsvg: %v\n%s", err, stderr.String())
			}
			svg := html.UnescapeString(string(out)) // dot writes "-" as &#45;
			if s := strings.TrimSpace(stderr.String()); s != "" {
				t.Errorf("dot warned: %s", s)
			}
			for _, n := range p.Nodes {
				if n.Error != "" && !strings.Contains(svg, "error:") {
					t.Errorf("SVG does not show node %s's error", n.Name)
				}
				for _, ep := range n.Paths {
					for _, e := range ep.Endpoints {
						if e.Pod != nil && (ep.Verdict == trace.VerdictDNAT || !e.InRules) &&
							!strings.Contains(svg, ">"+e.Pod.Namespace+"/"+e.Pod.Name+"<") {
							t.Errorf("SVG does not mention pod %s/%s", e.Pod.Namespace, e.Pod.Name)
						}
					}
				}
			}
		})
	}
}

func TestPathImage(t *testing.T) {
	needDot(t)
	ctx := context.Background()
	var svg, png bytes.Buffer
	if err := PathImage(ctx, &svg, pathClusterIP(), "svg"); err != nil {
		t.Fatal(err)
	}
	if s := html.UnescapeString(svg.String()); !strings.Contains(s, "<svg") || !strings.Contains(s, ">shop/web-7d9f8c6b5-x2x4z<") {
		t.Errorf("not an SVG of the path:\n%s", svg.String())
	}
	if err := PathImage(ctx, &png, pathClusterIP(), "png"); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("not a PNG: %q", png.Bytes()[:min(16, png.Len())])
	}
	if err := PathImage(ctx, &png, pathClusterIP(), "pdf"); err == nil || !strings.Contains(err.Error(), "svg, png") {
		t.Errorf("format pdf: err = %v, want one listing svg, png", err)
	}
}

func TestPathImageWithoutGraphviz(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, format := range ImageFormats {
		var b bytes.Buffer
		err := PathImage(context.Background(), &b, pathClusterIP(), format)
		want := "-o " + format + " needs Graphviz's dot on PATH (apt install graphviz, brew install graphviz); use -o dot to get the source"
		if err == nil || err.Error() != want {
			t.Errorf("err = %v, want %q", err, want)
		}
		if !errors.Is(err, ErrNoGraphviz) {
			t.Errorf("errors.Is(%v, ErrNoGraphviz) = false", err)
		}
		if b.Len() != 0 {
			t.Errorf("wrote %d bytes without dot", b.Len())
		}
	}
}

// FuzzDOTQuote: whatever a name holds, the quoted ID and label parse back
// with gographviz to the same node, and Graphviz-safe text comes out.
func FuzzDOTQuote(f *testing.F) {
	for _, s := range []string{
		"", "node-1", "10.244.1.5:8080", "[fd00::1]:80", `service-ULMVA6XW-ns1/svc1/tcp/p80`,
		`say "hi"`, `back\slash`, `trailing\`, "two\nlines", "tab\there", "\xff\xfe", "\ufffd", "→ …",
		"<html>", "a;b{c}d=e", "-- ->", "/* comment */", "# line",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g := &dotGraph{
			name:     s,
			attrs:    map[string]string{"label": s},
			clusters: map[string]map[string]string{"cluster " + s: {"label": s}},
			nodes: map[string]*dotNode{
				s:       {parent: "cluster " + s, attrs: map[string]string{"label": s}},
				s + "2": {attrs: map[string]string{"label": s}},
			},
			edges: map[dotEdgeKey]map[string]string{{s, s + "2", s}: {"label": s}},
		}
		a, err := g.build()
		if err != nil {
			t.Fatal(err)
		}
		out := a.String()
		back, err := gographviz.Read([]byte(out))
		if err != nil {
			t.Fatalf("cannot parse %q: %v\n%s", s, err, out)
		}
		n, ok := back.Nodes.Lookup[dotQuote(s)]
		if !ok {
			t.Fatalf("node %s lost:\n%s", dotQuote(s), out)
		}
		if n.Attrs["label"] != dotQuote(s) {
			t.Errorf("label = %s, want %s", n.Attrs["label"], dotQuote(s))
		}
		if len(back.Edges.Edges) != 1 {
			t.Errorf("%d edges, want 1:\n%s", len(back.Edges.Edges), out)
		}
		if got := dotUnquote(dotQuote(s)); got != dotSafe(s) {
			t.Errorf("unquote(quote(%q)) = %q, want %q", s, got, dotSafe(s))
		}
	})
}

// dotUnquote reverses dotQuote's escapes.
func dotUnquote(q string) string {
	q = q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+1 < len(q) {
			i++
			switch q[i] {
			case 'n':
				b.WriteByte('\n')
			default:
				b.WriteByte(q[i])
			}
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// dotSafe is s with what dotQuote replaces replaced.
func dotSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteRune(r)
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			b.WriteByte(' ')
		case r == utf8.RuneError:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestPathTreeLongNames: a word that cannot fit (a 120-character pod name)
// is cut with "…" at 80 columns and kept whole with --wide.
func TestPathTreeLongNames(t *testing.T) {
	p := pathClusterIP()
	long := "web-" + strings.Repeat("abcdefghij", 12)
	p.Nodes[0].Paths[0].Endpoints[0].Pod.Name = long
	narrow := renderTree(t, p, "never", false)
	for i, line := range strings.Split(narrow, "\n") {
		if n := utf8.RuneCountInString(line); n > treeWidth {
			t.Errorf("line %d is %d runes wide: %s", i+1, n, line)
		}
	}
	if strings.Contains(narrow, long) || !strings.Contains(narrow, "shop/web-abcdefghij") || !strings.Contains(narrow, "…") {
		t.Errorf("long pod name not shortened:\n%s", narrow)
	}
	if wide := renderTree(t, p, "never", true); !strings.Contains(wide, "shop/"+long) {
		t.Errorf("--wide shortened the pod name:\n%s", wide)
	}
}

// --- fixtures ------------------------------------------------------------------

// Fixtures: Paths as the engine builds them for typical (and typically
// broken) Services. Chain names are computed the way kube-proxy names them,
// so the views are tested on names of real length.

var fxIP = netip.MustParseAddr

func fxAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

const (
	fxNS, fxSvc, fxPortName = "shop", "web", "http"
)

// kube-proxy iptables chains for shop/web:http.
var (
	fxSPN     = iptables.ServicePortName(fxNS, fxSvc, fxPortName)
	fxKubeSVC = iptables.ServiceChain(iptables.PrefixService, fxSPN, "tcp")
	fxKubeSVL = iptables.ServiceChain(iptables.PrefixServiceLocal, fxSPN, "tcp")
	fxKubeEXT = iptables.ServiceChain(iptables.PrefixExternal, fxSPN, "tcp")
)

func fxSEP(ep string) string { return iptables.EndpointChain(fxSPN, "tcp", fxAddrPort(ep)) }

// kube-proxy nftables chains for shop/web:http.
var fxNFTBase = nftables.ServiceChainBase(fxNS, fxSvc, "tcp", fxPortName)

func fxNFTEndpoint(ep string) string {
	return nftables.PrefixEndpoint + nftables.EndpointChainBase(fxNS, fxSvc, "tcp", fxPortName, fxAddrPort(ep))
}

func fxPod(name, node string) *trace.PodRef {
	return &trace.PodRef{Namespace: fxNS, Name: name, Node: node}
}

func fxAPIEndpoint(addr, name, node string, ready bool) trace.APIEndpoint {
	a := fxAddrPort(addr)
	return trace.APIEndpoint{
		Port: fxPortName, IP: a.Addr(), TargetPort: a.Port(), Protocol: "tcp",
		Pod: fxPod(name, node), Node: node, Ready: ready, Serving: ready,
	}
}

// ep is an endpoint both the rules and the API agree on.
func fxEndpoint(addr, name, podNode, onNode string, prob float64) trace.PathEndpoint {
	a := fxAddrPort(addr)
	return trace.PathEndpoint{
		IP: a.Addr(), Port: a.Port(), Probability: prob, Pod: fxPod(name, podNode),
		SameNode: podNode == onNode, Ready: true, Serving: true, InRules: true, InAPI: true,
	}
}

func fxPorts(nodePort uint16) []trace.ServicePort {
	return []trace.ServicePort{{Name: fxPortName, Protocol: "tcp", Port: 80, NodePort: nodePort, TargetPort: "8080"}}
}

func fxRule(table, chain string, line int, text string) trace.RuleRef {
	return trace.RuleRef{Table: table, Chain: chain, Line: line, Rule: text}
}

// fxChains describes every chain a fixture's paths name the way the engines
// classify kube-proxy's chain names (trace/ruleset does it for real dumps).
func fxChains(p *trace.Path) *trace.Path {
	kinds := map[string]trace.ChainKind{
		"PREROUTING": trace.ChainHook, "OUTPUT": trace.ChainHook, "FORWARD": trace.ChainHook, "INPUT": trace.ChainHook,
		"POSTROUTING": trace.ChainPostrouting, "KUBE-POSTROUTING": trace.ChainPostrouting,
		"KUBE-SERVICES": trace.ChainDispatch, "KUBE-NODEPORTS": trace.ChainDispatch, "services": trace.ChainDispatch,
		"KUBE-MARK-MASQ": trace.ChainMark, "mark-for-masquerade": trace.ChainMark,
		"KUBE-PROXY-FIREWALL": trace.ChainFilter, "firewall-check": trace.ChainFilter,
		"nat-prerouting": trace.ChainHook, "nat-output": trace.ChainHook, "filter-prerouting-pre-dnat": trace.ChainHook,
		"filter-forward": trace.ChainHook, "nat-postrouting": trace.ChainPostrouting, "masquerading": trace.ChainPostrouting,
	}
	prefixes := []struct {
		prefix string
		hash   int
		kind   trace.ChainKind
	}{
		{"KUBE-SVC-", 16, trace.ChainService}, {"KUBE-SVL-", 16, trace.ChainService}, {"KUBE-EXT-", 16, trace.ChainExternal},
		{"KUBE-FW-", 16, trace.ChainFirewall}, {"KUBE-SEP-", 16, trace.ChainEndpoint},
		{"service-", 8, trace.ChainService}, {"external-", 8, trace.ChainExternal}, {"firewall-", 8, trace.ChainFirewall}, {"endpoint-", 8, trace.ChainEndpoint},
	}
	info := func(name string) trace.ChainInfo {
		if k, ok := kinds[name]; ok {
			return trace.ChainInfo{Kind: k}
		}
		for _, pre := range prefixes {
			if rest, ok := strings.CutPrefix(name, pre.prefix); ok && len(rest) >= pre.hash && rest != strings.ToLower(rest) {
				return trace.ChainInfo{Kind: pre.kind, Short: pre.prefix + rest[:8] + "…"}
			}
		}
		return trace.ChainInfo{Kind: trace.ChainOther}
	}
	for i := range p.Nodes {
		for _, ep := range p.Nodes[i].Paths {
			for _, c := range ep.Chains {
				if p.Nodes[i].ChainInfo == nil {
					p.Nodes[i].ChainInfo = map[string]trace.ChainInfo{}
				}
				p.Nodes[i].ChainInfo[c] = info(c)
			}
		}
	}
	return p
}

// pathClusterIP: a ClusterIP Service with three endpoints over two nodes,
// traced from a pod on each node.
func pathClusterIP() *trace.Path {
	const a, b, c = "10.244.1.5:8080", "10.244.2.7:8080", "10.244.2.9:8080"
	eps := func(node string) []trace.PathEndpoint {
		return []trace.PathEndpoint{
			fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", node, 1.0/3),
			fxEndpoint(b, "web-7d9f8c6b5-q8w9e", "node-2", node, 1.0/3),
			fxEndpoint(c, "web-7d9f8c6b5-m4n7p", "node-2", node, 1.0/3),
		}
	}
	chains := []string{"KUBE-SERVICES", fxKubeSVC, fxSEP(a), fxSEP(b), fxSEP(c)}
	rules := []trace.RuleRef{
		fxRule("nat", "KUBE-SERVICES", 31, `-d 10.96.45.12/32 -p tcp -m comment --comment "shop/web:http cluster IP" -m tcp --dport 80 -j `+fxKubeSVC),
		fxRule("nat", fxKubeSVC, 40, `-m comment --comment "shop/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.33333333349 -j `+fxSEP(a)),
	}
	node := func(name, addr, src string) trace.NodePaths {
		return trace.NodePaths{
			Name: name, Addresses: []netip.Addr{fxIP(addr)}, ProxyMode: "iptables", RulesetFormat: "iptables",
			Paths: []trace.EntryPath{{
				Entry: trace.Entry{
					Kind: "ClusterIP", Address: fxIP("10.96.45.12"), Port: 80, Protocol: "tcp",
					ServicePort: fxPortName, Source: fxIP(src), From: "pod on this node",
				},
				Verdict: trace.VerdictDNAT, Chains: chains, Endpoints: eps(name), Rules: rules,
			}},
		}
	}
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "ClusterIP",
			ClusterIPs:            []netip.Addr{fxIP("10.96.45.12")},
			InternalTrafficPolicy: "Cluster", SessionAffinity: "None",
			Ports: fxPorts(0),
		},
		Nodes: []trace.NodePaths{
			node("node-1", "192.168.0.11", "10.244.1.3"),
			node("node-2", "192.168.0.12", "10.244.2.3"),
		},
		Endpoints: []trace.APIEndpoint{
			fxAPIEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", true),
			fxAPIEndpoint(b, "web-7d9f8c6b5-q8w9e", "node-2", true),
			fxAPIEndpoint(c, "web-7d9f8c6b5-m4n7p", "node-2", true),
		},
	})
}

// pathLBLocal: a LoadBalancer with externalTrafficPolicy Local; node-2 has
// no local endpoint and drops what the load balancer sends it.
func pathLBLocal() *trace.Path {
	const a = "10.244.1.5:8080"
	lb := trace.Entry{Kind: "LoadBalancer", Address: fxIP("203.0.113.10"), Port: 80, Protocol: "tcp",
		ServicePort: fxPortName, Source: fxIP("198.51.100.7"), From: "external client"}
	np := func(addr string) trace.Entry {
		return trace.Entry{Kind: "NodePort", Address: fxIP(addr), Port: 30080, Protocol: "tcp",
			ServicePort: fxPortName, Source: fxIP("198.51.100.7"), From: "external client"}
	}
	local := []trace.PathEndpoint{fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", "node-1", 1)}
	dropLB := fxRule("filter", "KUBE-EXTERNAL-SERVICES", 12,
		`-d 203.0.113.10/32 -p tcp -m comment --comment "shop/web:http has no local endpoints" -m tcp --dport 80 -j DROP`)
	dropNP := fxRule("filter", "KUBE-EXTERNAL-SERVICES", 13,
		`-p tcp -m comment --comment "shop/web:http has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DROP`)
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "LoadBalancer",
			ClusterIPs:            []netip.Addr{fxIP("10.96.45.12")},
			LoadBalancerIngress:   []trace.LBIngress{{IP: fxIP("203.0.113.10"), IPMode: "VIP"}},
			ExternalTrafficPolicy: "Local", InternalTrafficPolicy: "Cluster",
			HealthCheckNodePort: 32100,
			Ports:               fxPorts(30080),
		},
		Nodes: []trace.NodePaths{
			{
				Name: "node-1", Addresses: []netip.Addr{fxIP("192.168.0.11")}, ProxyMode: "iptables", RulesetFormat: "iptables",
				Paths: []trace.EntryPath{
					{Entry: lb, Verdict: trace.VerdictDNAT, Endpoints: local,
						Chains: []string{"KUBE-SERVICES", fxKubeEXT, fxKubeSVL, fxSEP(a)},
						Rules: []trace.RuleRef{fxRule("nat", "KUBE-SERVICES", 33,
							`-d 203.0.113.10/32 -p tcp -m comment --comment "shop/web:http loadbalancer IP" -m tcp --dport 80 -j `+fxKubeEXT)}},
					{Entry: np("192.168.0.11"), Verdict: trace.VerdictDNAT, Endpoints: local,
						Chains: []string{"KUBE-SERVICES", "KUBE-NODEPORTS", fxKubeEXT, fxKubeSVL, fxSEP(a)},
						Rules: []trace.RuleRef{fxRule("nat", "KUBE-NODEPORTS", 20,
							`-p tcp -m comment --comment "shop/web:http" -m tcp --dport 30080 -j `+fxKubeEXT)}},
				},
			},
			{
				Name: "node-2", Addresses: []netip.Addr{fxIP("192.168.0.12")}, ProxyMode: "iptables", RulesetFormat: "iptables",
				Paths: []trace.EntryPath{
					{Entry: lb, Verdict: trace.VerdictDrop, Why: "no local endpoints",
						Chains:    []string{"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"},
						DecidedBy: &dropLB, Rules: []trace.RuleRef{dropLB}},
					{Entry: np("192.168.0.12"), Verdict: trace.VerdictDrop, Why: "no local endpoints",
						Chains:    []string{"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"},
						DecidedBy: &dropNP, Rules: []trace.RuleRef{dropNP}},
				},
			},
		},
		Findings: []trace.Finding{{
			Severity: "info", Code: "LocalPolicyNoLocalEndpoints", Node: "node-2",
			Message: "externalTrafficPolicy Local and no endpoint on node-2: it drops external traffic; " +
				"the load balancer should see its health check node port 32100 fail and send nothing there",
		}},
		Endpoints: []trace.APIEndpoint{fxAPIEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", true)},
	})
}

// pathLBSourceRanges: an nftables-mode LoadBalancer restricted by
// loadBalancerSourceRanges, traced from a client outside them.
func pathLBSourceRanges() *trace.Path {
	lb := trace.Entry{Kind: "LoadBalancer", Address: fxIP("203.0.113.10"), Port: 80, Protocol: "tcp",
		ServicePort: fxPortName, Source: fxIP("198.51.100.7"), From: "external client"}
	fw := nftables.PrefixFirewall + fxNFTBase
	drop := fxRule("ip kube-proxy", fw, 87, `ip saddr != { 192.0.2.0/24, 203.0.113.0/25 } drop`)
	node := func(name, addr string) trace.NodePaths {
		return trace.NodePaths{
			Name: name, Addresses: []netip.Addr{fxIP(addr)}, ProxyMode: "nftables", RulesetFormat: "nft",
			Paths: []trace.EntryPath{{
				Entry: lb, Verdict: trace.VerdictDrop,
				Why:       "source 198.51.100.7 is outside loadBalancerSourceRanges",
				Chains:    []string{"filter-prerouting-pre-dnat", "firewall-check", fw},
				DecidedBy: &drop,
				Rules: []trace.RuleRef{
					fxRule("ip kube-proxy", "firewall-check", 60, `ip daddr . meta l4proto . th dport vmap @firewall-ips`),
					drop,
				},
			}},
		}
	}
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "LoadBalancer",
			ClusterIPs:               []netip.Addr{fxIP("10.96.45.12")},
			LoadBalancerIngress:      []trace.LBIngress{{IP: fxIP("203.0.113.10"), IPMode: "VIP"}},
			LoadBalancerSourceRanges: []string{"192.0.2.0/24", "203.0.113.0/25"},
			ExternalTrafficPolicy:    "Cluster", InternalTrafficPolicy: "Cluster",
			Ports: fxPorts(30080),
		},
		Nodes: []trace.NodePaths{node("node-1", "192.168.0.11"), node("node-2", "192.168.0.12")},
		Findings: []trace.Finding{{
			Severity: "warning", Code: "SourceOutsideLoadBalancerSourceRanges",
			Message: "198.51.100.7 is not in loadBalancerSourceRanges (192.0.2.0/24, 203.0.113.0/25): every node drops it",
		}},
		Endpoints: []trace.APIEndpoint{
			fxAPIEndpoint("10.244.1.5:8080", "web-7d9f8c6b5-x2x4z", "node-1", true),
			fxAPIEndpoint("10.244.2.7:8080", "web-7d9f8c6b5-q8w9e", "node-2", true),
		},
	})
}

// pathDrift: node-1's rules still send half the traffic to a pod that is
// gone and lack a new one; node-2 agrees with the API.
func pathDrift() *trace.Path {
	const a, stale, missing = "10.244.1.5:8080", "10.244.2.99:8080", "10.244.2.7:8080"
	cip := fxIP("10.96.45.12")
	entry := func(src string) trace.Entry {
		return trace.Entry{Kind: "ClusterIP", Address: cip, Port: 80, Protocol: "tcp",
			ServicePort: fxPortName, Source: fxIP(src), From: "pod on this node"}
	}
	staleEP := trace.PathEndpoint{IP: fxAddrPort(stale).Addr(), Port: 8080, Probability: 0.5, InRules: true}
	missingEP := fxEndpoint(missing, "web-7d9f8c6b5-q8w9e", "node-2", "node-1", 0)
	missingEP.InRules = false
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "ClusterIP",
			ClusterIPs: []netip.Addr{cip}, InternalTrafficPolicy: "Cluster",
			Ports: fxPorts(0),
		},
		Nodes: []trace.NodePaths{
			{
				Name: "node-1", Addresses: []netip.Addr{fxIP("192.168.0.11")}, ProxyMode: "iptables", RulesetFormat: "iptables",
				Paths: []trace.EntryPath{{
					Entry: entry("10.244.1.3"), Verdict: trace.VerdictDNAT,
					Chains: []string{"KUBE-SERVICES", fxKubeSVC, fxSEP(a), fxSEP(stale)},
					Endpoints: []trace.PathEndpoint{
						fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", "node-1", 0.5),
						staleEP,
						missingEP,
					},
					Notes: []string{"kube-proxy on node-1 last synced its rules 14m ago"},
				}},
			},
			{
				Name: "node-2", Addresses: []netip.Addr{fxIP("192.168.0.12")}, ProxyMode: "iptables", RulesetFormat: "iptables",
				Paths: []trace.EntryPath{{
					Entry: entry("10.244.2.3"), Verdict: trace.VerdictDNAT,
					Chains: []string{"KUBE-SERVICES", fxKubeSVC, fxSEP(a), fxSEP(missing)},
					Endpoints: []trace.PathEndpoint{
						fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", "node-2", 0.5),
						fxEndpoint(missing, "web-7d9f8c6b5-q8w9e", "node-2", "node-2", 0.5),
					},
				}},
			},
		},
		Findings: []trace.Finding{
			{Severity: "warning", Code: "StaleEndpointInRules", Node: "node-1",
				Message: "node-1's rules send 50% of new connections to 10.244.2.99:8080, which no EndpointSlice lists"},
			{Severity: "error", Code: "EndpointMissingFromRules", Node: "node-1",
				Message: "10.244.2.7:8080 (shop/web-7d9f8c6b5-q8w9e) is ready in the API but node-1's rules never choose it"},
			{Severity: "warning", Code: "NodesDisagree",
				Message: "node-1 and node-2 send ClusterIP 10.96.45.12:80/tcp to different endpoints"},
		},
		Endpoints: []trace.APIEndpoint{
			fxAPIEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", true),
			fxAPIEndpoint(missing, "web-7d9f8c6b5-q8w9e", "node-2", true),
		},
	})
}

// pathNodeError: a NodePort Service whose only endpoint is terminating
// (kube-proxy falls back to serving-terminating endpoints); node-2's rules
// could not be collected.
func pathNodeError() *trace.Path {
	const a = "10.244.1.5:8080"
	e := fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", "node-1", 1)
	e.Ready, e.Serving, e.Terminating = false, true, true
	api := fxAPIEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", false)
	api.Serving, api.Terminating = true, true
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "NodePort",
			ClusterIPs:            []netip.Addr{fxIP("10.96.45.12")},
			ExternalTrafficPolicy: "Cluster", InternalTrafficPolicy: "Cluster",
			Ports: fxPorts(30080),
		},
		Nodes: []trace.NodePaths{
			{
				Name: "node-1", Addresses: []netip.Addr{fxIP("192.168.0.11")}, ProxyMode: "iptables", RulesetFormat: "iptables",
				Paths: []trace.EntryPath{{
					Entry: trace.Entry{Kind: "NodePort", Address: fxIP("192.168.0.11"), Port: 30080, Protocol: "tcp",
						ServicePort: fxPortName, Source: fxIP("198.51.100.7"), From: "external client"},
					Verdict: trace.VerdictDNAT, Masquerade: true,
					Chains:    []string{"KUBE-SERVICES", "KUBE-NODEPORTS", fxKubeEXT, "KUBE-MARK-MASQ", fxKubeSVC, fxSEP(a), "KUBE-POSTROUTING"},
					Endpoints: []trace.PathEndpoint{func() trace.PathEndpoint { e.Masquerade = true; return e }()},
				}},
			},
			{
				Name: "node-2", ProxyMode: "unknown",
				Error: `exec "iptables-save" in pod kube-system/trace-svc-node-2-x7k2p: container "dump" is waiting: ImagePullBackOff`,
			},
		},
		Findings: []trace.Finding{
			{Severity: "warning", Code: "NodeNotTraced", Node: "node-2", Message: "node-2's rules could not be read; its path is unknown"},
			{Severity: "warning", Code: "OnlyTerminatingEndpoints",
				Message: "no endpoint is ready; kube-proxy falls back to the serving terminating ones"},
		},
		Endpoints: []trace.APIEndpoint{api},
	})
}

// pathDualStack: a dual-stack ClusterIP Service traced over IPv6 on an
// nftables node, from the node itself (masqueraded) and from a pod.
func pathDualStack() *trace.Path {
	const a, b = "[fd00:10:244:1::5]:8080", "[fd00:10:244:2::7]:8080"
	cip6 := fxIP("fd00:10:96::c0a8")
	svcChain := nftables.PrefixService + fxNFTBase
	entry := func(src, from string) trace.Entry {
		return trace.Entry{Kind: "ClusterIP", Address: cip6, Port: 80, Protocol: "tcp",
			ServicePort: fxPortName, Source: fxIP(src), From: from}
	}
	chains := []string{"nat-output", "services", svcChain, fxNFTEndpoint(a), fxNFTEndpoint(b)}
	eps := func(masq bool) []trace.PathEndpoint {
		x := fxEndpoint(a, "web-7d9f8c6b5-x2x4z", "node-1", "node-1", 0.5)
		y := fxEndpoint(b, "web-7d9f8c6b5-q8w9e", "node-2", "node-1", 0.5)
		x.Masquerade, y.Masquerade = masq, masq
		return []trace.PathEndpoint{x, y}
	}
	api := func(addr, name, node string) trace.APIEndpoint { return fxAPIEndpoint(addr, name, node, true) }
	return fxChains(&trace.Path{
		Service: trace.ServiceInfo{
			Namespace: fxNS, Name: fxSvc, Type: "ClusterIP",
			ClusterIPs:            []netip.Addr{fxIP("10.96.45.12"), cip6},
			InternalTrafficPolicy: "Cluster",
			Ports:                 fxPorts(0),
		},
		Nodes: []trace.NodePaths{{
			Name: "node-1",
			Addresses: []netip.Addr{fxIP("192.168.0.11"), fxIP("2001:db8:1234:5678:9abc:def0:1234:5678"),
				fxIP("fd00:10:244:1::1")},
			ProxyMode: "nftables", RulesetFormat: "nft",
			Paths: []trace.EntryPath{
				{Entry: entry("2001:db8:1234:5678:9abc:def0:1234:5678", "this node"), Verdict: trace.VerdictDNAT,
					Masquerade: true, Chains: append(chains, "nat-postrouting", "masquerading"), Endpoints: eps(true)},
				{Entry: entry("fd00:10:244:1::1f", "pod on this node"), Verdict: trace.VerdictDNAT,
					Chains: []string{"nat-prerouting", "services", svcChain, fxNFTEndpoint(a), fxNFTEndpoint(b)}, Endpoints: eps(false)},
			},
		}},
		Endpoints: []trace.APIEndpoint{
			api("10.244.1.5:8080", "web-7d9f8c6b5-x2x4z", "node-1"),
			api("10.244.2.7:8080", "web-7d9f8c6b5-q8w9e", "node-2"),
			api(a, "web-7d9f8c6b5-x2x4z", "node-1"),
			api(b, "web-7d9f8c6b5-q8w9e", "node-2"),
		},
	})
}

// pathFixtures lists every fixture by golden-file name.
var pathFixtures = []struct {
	name string
	path func() *trace.Path
}{
	{"clusterip", pathClusterIP},
	{"lb-local", pathLBLocal},
	{"lb-source-ranges", pathLBSourceRanges},
	{"drift", pathDrift},
	{"node-error", pathNodeError},
	{"dualstack-ipv6", pathDualStack},
	{"last-leg", pathLastLeg},
	{"observed", pathObserved},
	{"node-notes", pathNodeNotes},
}

// pathObserved: pathClusterIP with what each node's kernel observed — on
// node-1 an uneven split with rule hits and the clients listed
// (--show-clients); on node-2 connections still going to a pod that is gone
// (stale) — and a REJECT on node-2's second entry that holds connections.
func pathObserved() *trace.Path {
	p := pathClusterIP()
	n := func(i int) *int { return &i }
	h := func(i uint64) *uint64 { return &i }
	set := func(node int, po *trace.PathObserved, obs ...*trace.Observed) {
		ep := &p.Nodes[node].Paths[0]
		ep.Observed = po
		for j := range ep.Endpoints {
			ep.Endpoints[j].Observed = obs[j]
		}
	}
	set(0, &trace.PathObserved{Connections: 20},
		&trace.Observed{Connections: n(12), RuleHits: h(14), States: map[string]int{"ESTABLISHED": 10, "TIME_WAIT": 2},
			Clients: []trace.ObservedClient{{Addr: fxIP("10.244.1.3"), Connections: 9}, {Addr: fxIP("10.244.1.4"), Connections: 3}}},
		&trace.Observed{Connections: n(5), RuleHits: h(6), Clients: []trace.ObservedClient{{Addr: fxIP("10.244.1.3"), Connections: 5}}},
		&trace.Observed{Connections: n(3), RuleHits: h(1), Clients: []trace.ObservedClient{{Addr: fxIP("10.244.1.4"), Connections: 3}}})
	set(1, &trace.PathObserved{Connections: 7, Stale: 4},
		&trace.Observed{Connections: n(1), RuleHits: h(0)},
		&trace.Observed{Connections: n(2), RuleHits: h(2)},
		&trace.Observed{Connections: n(0), RuleHits: h(1)})
	p.Nodes[1].Paths = append(p.Nodes[1].Paths, trace.EntryPath{
		Entry: trace.Entry{Kind: "ClusterIP", Address: fxIP("10.96.45.12"), Port: 443, Protocol: "tcp",
			ServicePort: "https", Source: fxIP("10.244.2.3"), From: "pod on this node"},
		Verdict: trace.VerdictReject, Why: "the Service has no endpoints; kube-proxy rejects connections to it",
		Chains: []string{"KUBE-SERVICES"}, Endpoints: []trace.PathEndpoint{}, Rules: []trace.RuleRef{},
		Observed: &trace.PathObserved{Connections: 3},
	})
	for i := range p.Nodes {
		p.Nodes[i].Observed = &trace.NodeObserved{Tables: []string{"conntrack-proc output"}, Entries: 1532, RuleCounters: true, ConntrackCount: 1532, ConntrackMax: 262144}
	}
	p.Findings = append(p.Findings,
		trace.Finding{Severity: "error", Code: trace.CodeStaleConntrackEntries, Node: "node-2",
			Message: "node node-2: 4 conntrack entries for ClusterIP 10.96.45.12:80/tcp still send to 10.244.2.4:8080, which is no longer an endpoint of shop/web (4 still open: their packets go to an address with no pod behind it); clear them on the node (host network, NET_ADMIN) with: conntrack -D -f ipv4 -p tcp --orig-dst 10.96.45.12 --orig-port-dst 80 --reply-src 10.244.2.4 --reply-port-src 8080"},
		trace.Finding{Severity: "warning", Code: trace.CodeTrafficWhereRulesDrop, Node: "node-2",
			Message: "node node-2 holds 3 connections to ClusterIP 10.96.45.12:443/tcp, which its rules reject (the Service has no endpoints; kube-proxy rejects connections to it)"})
	return p
}

// pathNodeNotes: what a node's entries share is said once for the node —
// node-1's assumption about the incoming interface (its node-level note)
// after its entries, node-2's reason (no kube-proxy rule matched any entry)
// before them; a note only one entry has stays with it.
func pathNodeNotes() *trace.Path {
	p := pathClusterIP()
	const iface = "the incoming interface is unknown: rules with -i NAME are taken not to match and ! -i NAME to match (pass the interface to change this)"
	n1 := &p.Nodes[0]
	n1.Notes = []string{iface}
	fromNode := n1.Paths[0]
	fromNode.Entry.Source, fromNode.Entry.From, fromNode.Masquerade = fxIP("192.168.0.11"), "this node", true
	n1.Paths = append(n1.Paths, fromNode)
	n1.Paths[0].Notes = []string{"line 42: the simulator does not evaluate -m foo; taken as not matching"}
	n2 := trace.NodePaths{Name: "node-2", Addresses: []netip.Addr{fxIP("192.168.0.12")}, ProxyMode: "unknown", RulesetFormat: "iptables",
		Why: "no kube-proxy rule on this node matched any entry's packet: kube-proxy may not run here, may run in another mode, or may be replaced (e.g. by an eBPF dataplane)"}
	for _, ep := range n1.Paths {
		n2.Paths = append(n2.Paths, trace.EntryPath{Entry: ep.Entry, Verdict: trace.VerdictNone})
	}
	p.Nodes = []trace.NodePaths{*n1, n2}
	return p
}

// pathLastLeg: pathClusterIP with each node's route to every endpoint
// after DNAT — node-1 runs flannel (a local bridge, a VXLAN tunnel to
// node-2), node-2 Calico with BGP (a local veth, a route via node-1's
// address, and a blackhole for a pod whose /32 route is missing) — and a
// node-3 where Cilium's kube-proxy replacement serves the Services.
func pathLastLeg() *trace.Path {
	p := pathClusterIP()
	yes, no := true, false
	hop := func(h routes.Hop) *trace.EndpointRoute { return &trace.EndpointRoute{Hop: h} }
	set := func(n int, routes ...*trace.EndpointRoute) {
		for j := range p.Nodes[n].Paths[0].Endpoints {
			p.Nodes[n].Paths[0].Endpoints[j].Route = routes[j]
		}
	}
	tunnel := hop(routes.Hop{Verdict: routes.VerdictForward, Dev: "flannel.1", Via: fxIP("10.244.2.0"), Kind: routes.KindVXLAN, Node: "node-2", Leaves: &yes,
		Route: "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"})
	set(0,
		hop(routes.Hop{Verdict: routes.VerdictForward, Dev: "cni0", Kind: routes.KindBridge, Node: "node-1", Leaves: &no, Route: "10.244.1.0/24 dev cni0 proto kernel"}),
		tunnel, tunnel)
	set(1,
		hop(routes.Hop{Verdict: routes.VerdictForward, Dev: "eth0", Via: fxIP("192.168.0.11"), Kind: routes.KindDevice, Node: "node-1", Leaves: &yes, Route: "10.244.1.0/26 via 192.168.0.11 dev eth0 proto bird"}),
		hop(routes.Hop{Verdict: routes.VerdictForward, Dev: "cali3f9c2a8d1b4", Kind: routes.KindVeth, Node: "node-2", Leaves: &no, Route: "10.244.2.7 dev cali3f9c2a8d1b4"}),
		hop(routes.Hop{Verdict: routes.VerdictBlackhole, Route: "blackhole 10.244.2.0/26 proto bird"}))
	p.Nodes[0].NetworkPlugins = []routes.Plugin{{Name: "flannel", Mode: "VXLAN", Evidence: []string{"interface flannel.1 (vxlan)"}}}
	p.Nodes[0].RoutesFrom = "ip"
	p.Nodes[1].NetworkPlugins = []routes.Plugin{{Name: "Calico", Mode: "BGP", Evidence: []string{"interface cali3f9c2a8d1b4 (veth)"}}}
	p.Nodes[1].RoutesFrom = "ip"
	p.Nodes = append(p.Nodes, trace.NodePaths{
		Name: "node-3", Addresses: []netip.Addr{fxIP("192.168.0.13")}, ProxyMode: "unknown", RulesetFormat: "iptables", Paths: []trace.EntryPath{},
		NetworkPlugins: []routes.Plugin{{Name: "Cilium", Mode: "VXLAN", Evidence: []string{"interface cilium_host (veth)"}}},
		ServiceDataplane: &routes.ServiceDataplane{Name: "Cilium kube-proxy replacement", ReplacesKubeProxy: true, Evidence: []string{"interface cilium_host (veth)"},
			Instead: "kubectl -n kube-system exec ds/cilium -- cilium-dbg service list", Note: "the node has no kube-proxy rules: Cilium's eBPF serves its Services"},
		RoutesFrom: "ip",
	})
	p.Findings = append(p.Findings,
		trace.Finding{Severity: "error", Code: trace.CodeRouteDrops, Node: "node-2",
			Message: `node node-2 sends endpoint 10.244.2.9 (pod shop/web-7d9f8c6b5-m4n7p) to route "blackhole 10.244.2.0/26 proto bird" (table main), which is blackhole: packets DNATed to it are dropped`},
		trace.Finding{Severity: "info", Code: trace.CodeKubeProxyReplaced, Node: "node-3",
			Message: "node node-3 has no kube-proxy rules; Cilium kube-proxy replacement serves Services in eBPF, which this tool cannot read: use kubectl -n kube-system exec ds/cilium -- cilium-dbg service list"})
	return p
}

func TestPathCompare(t *testing.T) {
	var buf bytes.Buffer
	for name, p := range map[string]*trace.Path{"lb-local": pathLBLocal(), "drift": pathDrift(), "node-error": pathNodeError()} {
		buf.Reset()
		if err := PathCompare(&buf, p); err != nil {
			t.Fatal(err)
		}
		golden(t, "compare-"+name+".txt", buf.String())
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "ENTRY") {
			t.Errorf("%s: table:\n%s", name, buf.String())
		}
	}
	if err := PathCompare(&buf, nil); err == nil {
		t.Error("nil path accepted")
	}
}
