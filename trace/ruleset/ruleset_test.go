package ruleset

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// bytesSource is a Source over memory, with or without random access.
type bytesSource struct {
	data     []byte
	seekable bool
}

func (b bytesSource) Head() ([]byte, error) { return b.data[:min(len(b.data), 64<<10)], nil }
func (b bytesSource) Reader() io.Reader     { return bytes.NewReader(b.data) }
func (b bytesSource) ReaderAt() (io.ReaderAt, int64, bool) {
	return bytes.NewReader(b.data), int64(len(b.data)), b.seekable
}

func fileInput(t *testing.T, path string) Input {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Input{Name: filepath.Base(path), Source: bytesSource{data, true}}
}

func load(t *testing.T, paths ...string) *Dataplane {
	t.Helper()
	var in []Input
	for _, p := range paths {
		in = append(in, fileInput(t, p))
	}
	d, err := Load(in...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	iptLB     = "../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save"
	iptLB122  = "../../testdata/iptables/kube-proxy/v1.22.17/TestKPFixtures122/iptables-nft.save"
	nftLB     = "../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft"
	nftLBJSON = "../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.json"
	nftV6     = "../../testdata/nftables/kube-proxy/v1.37.2/TestNodePorts_ipv6/ruleset.nft"
)

// TestParseEveryFormat: one Service's NodePort, saved by iptables-save and
// by nft (text and JSON) from kube-proxy's TestLoadBalancer, in place and
// as a stream, gives the same answer through one door.
func TestParseEveryFormat(t *testing.T) {
	pkt := trace.Packet{Source: netip.MustParseAddr("203.0.113.2"), Destination: netip.MustParseAddr("192.168.0.2"), DestinationPort: 3001, Protocol: "tcp"}
	opts := Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}
	for _, tc := range []struct{ path, format, mode string }{
		{iptLB, trace.FormatIPTables, trace.ModeIPTables},
		{"../../testdata/iptables/variants/counters-legacy.save", trace.FormatIPTables, trace.ModeIPTables},
		{nftLB, trace.FormatNFT, trace.ModeNFTables},
		{nftLBJSON, trace.FormatNFTJSON, trace.ModeNFTables},
	} {
		data, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, seekable := range []bool{true, false} {
			for _, format := range []string{"auto", "", tc.format} {
				d, err := Load(Input{Name: tc.path, Source: bytesSource{data, seekable}, Format: format})
				if err != nil {
					t.Fatalf("%s (%s): %v", tc.path, format, err)
				}
				if diff := cmp.Diff([]string{tc.format}, d.Formats()); diff != "" {
					t.Errorf("%s: formats (-want +got):\n%s", tc.path, diff)
				}
				if d.ProxyMode() != tc.mode || !d.Covers(false) || d.Covers(true) {
					t.Errorf("%s: mode %q, covers v4 %v v6 %v", tc.path, d.ProxyMode(), d.Covers(false), d.Covers(true))
				}
				sim, err := d.Simulate(pkt, opts)
				if err != nil {
					t.Fatal(err)
				}
				if sim.EndpointList() != "10.180.0.1:80" || !sim.Masquerade {
					t.Errorf("%s (seekable %v): %s masq=%v", tc.path, seekable, sim.EndpointList(), sim.Masquerade)
				}
			}
		}
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct{ in, format, want string }{
		{"", "auto", "read ruleset node1.dump: the file is empty"},
		{"hello\n", "auto", "neither iptables-save nor nft list ruleset output"},
		{"add table ip kube-proxy\n", "auto", "this is an nft script"},
		{"table ip t {\n}\n", "pf", `format "pf" is not one of auto, iptables, nft, nft-json, ipvs, ipset`},
		{"table ip t {\n}\n", trace.FormatIPTables, "line 1"},
	} {
		_, err := Load(Input{Name: "node1.dump", Source: bytesSource{[]byte(tc.in), true}, Format: tc.format})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %s) = %v, want %q", tc.in, tc.format, err, tc.want)
		}
	}
}

// TestFamilies: the dataplane picks the source of the packet's family and
// says when none was given.
func TestFamilies(t *testing.T) {
	d := load(t, nftV6)
	if d.Covers(false) || !d.Covers(true) {
		t.Errorf("v6 ruleset: covers v4 %v v6 %v", d.Covers(false), d.Covers(true))
	}
	_, err := d.Simulate(trace.Packet{Source: netip.MustParseAddr("10.0.0.1"), Destination: netip.MustParseAddr("10.0.0.2"), DestinationPort: 80, Protocol: "tcp"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "the ruleset has no ip kube-proxy table") {
		t.Errorf("IPv4 packet on an IPv6-only dataplane: %v", err)
	}
	if _, err := (&Dataplane{}).Simulate(trace.Packet{Source: netip.MustParseAddr("10.0.0.1"), Destination: netip.MustParseAddr("10.0.0.2"), DestinationPort: 80, Protocol: "tcp"}, Options{}); !errors.Is(err, ErrNoRules) {
		t.Errorf("empty dataplane: %v", err)
	}
	// An iptables dump of each family, and an nft ruleset: each family
	// goes to the first source that covers it.
	both := load(t, iptLB, nftV6)
	if both.Engine(false).Name() != "iptables" || both.Engine(true).Name() != "nftables" {
		t.Errorf("engines: v4 %s, v6 %s", both.Engine(false).Name(), both.Engine(true).Name())
	}
	if both.ProxyMode() != trace.ModeIPTables {
		t.Errorf("mode %q, want the first engine's", both.ProxyMode())
	}
}

// TestKubeProxyBackendDecides: a node's every dump replayed together —
// iptables-nft's leftover tables first, then the nft ruleset that holds
// kube-proxy's — decides with kube-proxy's backend, whatever the order.
func TestKubeProxyBackendDecides(t *testing.T) {
	leftover := Input{Name: "iptables-nft-save", Source: bytesSource{[]byte("*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n"), true}}
	for _, inputs := range [][]Input{{leftover, fileInput(t, nftLB)}, {fileInput(t, nftLB), leftover}} {
		d, err := Load(inputs...)
		if err != nil {
			t.Fatal(err)
		}
		if e := d.Engine(false); e == nil || e.Name() != "nftables" || d.ProxyMode() != trace.ModeNFTables {
			t.Errorf("inputs %s, %s: engine %v, mode %q", inputs[0].Name, inputs[1].Name, e, d.ProxyMode())
		}
	}
}

// TestProxyModeFromContent: a dump without kube-proxy's rules says so
// rather than naming a mode from its format.
func TestProxyModeFromContent(t *testing.T) {
	for _, tc := range []struct{ dump, want string }{
		{"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n", ""},
		{"*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n", trace.ModeIPTables},
		{"table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n", ""},
		{"table ip kube-proxy {\n\tchain services {\n\t}\n}\n", trace.ModeNFTables},
	} {
		d, err := Load(Input{Source: bytesSource{[]byte(tc.dump), true}})
		if err != nil {
			t.Fatal(err)
		}
		if d.ProxyMode() != tc.want {
			t.Errorf("mode of %q = %q, want %q", tc.dump, d.ProxyMode(), tc.want)
		}
	}
}

// TestProgrammed: kube-proxy's per-port objects of TestLoadBalancer (svc1
// port p80, with source ranges) are found by hash in both modes; another
// port's are not; 1.22's layout answers only for the service chain.
func TestProgrammed(t *testing.T) {
	svc := trace.ServiceInfo{Namespace: "ns1", Name: "svc1"}
	p80 := trace.ServicePort{Name: "p80", Protocol: "tcp", Port: 80}
	other := trace.ServicePort{Name: "p81", Protocol: "tcp", Port: 81}
	for _, path := range []string{iptLB, nftLB, nftLBJSON} {
		d := load(t, path)
		for _, kind := range []ObjectKind{ObjectService, ObjectExternal, ObjectFirewall} {
			if c := d.Programmed(kind, svc, p80, false); !c.Applicable || !c.Found || c.Name == "" {
				t.Errorf("%s: %s of p80 = %+v, want found", path, kind, c)
			}
			if c := d.Programmed(kind, svc, other, false); !c.Applicable || c.Found {
				t.Errorf("%s: %s of p81 = %+v, want applicable, not found", path, kind, c)
			}
			if c := d.Programmed(kind, svc, p80, true); c.Applicable {
				t.Errorf("%s: IPv6 %s = %+v, want not applicable (no IPv6 rules)", path, kind, c)
			}
		}
	}
	old := load(t, iptLB122)
	if c := old.Programmed(ObjectExternal, svc, p80, false); c.Applicable {
		t.Errorf("1.22 layout: external chain check %+v, want not applicable", c)
	}
	if c := old.Programmed(ObjectService, svc, p80, false); !c.Applicable {
		t.Errorf("1.22 layout: service chain check %+v, want applicable", c)
	}
	if c := load(t, iptLB).Programmed(ObjectService, svc, p80, false); c.Name != "KUBE-SVC-XPGD46QRK7WJZT7O" {
		t.Errorf("service chain name %q", c.Name)
	}
}

// TestChainInfo: kube-proxy's chains are classified by their engine, the
// hashed ones with a short name; names an engine does not know are "other".
func TestChainInfo(t *testing.T) {
	for _, tc := range []struct {
		path, chain string
		want        trace.ChainInfo
	}{
		{iptLB, "KUBE-SVC-XPGD46QRK7WJZT7O", trace.ChainInfo{Kind: trace.ChainService, Short: "KUBE-SVC-XPGD46QR…"}},
		{iptLB, "KUBE-SEP-SXIVWICOYRO3J4NJ", trace.ChainInfo{Kind: trace.ChainEndpoint, Short: "KUBE-SEP-SXIVWICO…"}},
		{iptLB, "KUBE-FW-XPGD46QRK7WJZT7O", trace.ChainInfo{Kind: trace.ChainFirewall, Short: "KUBE-FW-XPGD46QR…"}},
		{iptLB, "KUBE-SERVICES", trace.ChainInfo{Kind: trace.ChainDispatch}},
		{iptLB, "KUBE-MARK-MASQ", trace.ChainInfo{Kind: trace.ChainMark}},
		{iptLB, "POSTROUTING", trace.ChainInfo{Kind: trace.ChainPostrouting}},
		{iptLB, "PREROUTING", trace.ChainInfo{Kind: trace.ChainHook}},
		{iptLB, "KUBE-SVC-lower", trace.ChainInfo{Kind: trace.ChainOther}},
		{iptLB, "CNI-FORWARD", trace.ChainInfo{Kind: trace.ChainOther}},
		{nftLB, "service-ULMVA6XW-ns1/svc1/tcp/p80", trace.ChainInfo{Kind: trace.ChainService, Short: "service-ULMVA6XW…"}},
		{nftLB, "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80", trace.ChainInfo{Kind: trace.ChainEndpoint, Short: "endpoint-5OJB2KTY…"}},
		{nftLB, "services", trace.ChainInfo{Kind: trace.ChainDispatch}},
		{nftLB, "nat-prerouting", trace.ChainInfo{Kind: trace.ChainHook}},
		{nftLB, "nat-postrouting", trace.ChainInfo{Kind: trace.ChainPostrouting}},
		{nftLB, "masquerading", trace.ChainInfo{Kind: trace.ChainPostrouting}},
		{nftLB, "mark-for-masquerade", trace.ChainInfo{Kind: trace.ChainMark}},
		{nftLB, "firewall-check", trace.ChainInfo{Kind: trace.ChainFilter}},
		{nftLB, "service-endpoints-check", trace.ChainInfo{Kind: trace.ChainFilter}},
	} {
		if got := load(t, tc.path).ChainInfo(tc.chain); got != tc.want {
			t.Errorf("%s: ChainInfo(%q) = %+v, want %+v", filepath.Base(tc.path), tc.chain, got, tc.want)
		}
	}
}

// TestWarningsTyped: the tools' own warnings and skipped objects come back
// with stable codes.
func TestWarningsTyped(t *testing.T) {
	d := load(t, "../../testdata/iptables/variants/legacy-warning.save")
	if w := d.Warnings(); len(w) != 1 || w[0].Code != trace.CodeLegacyTablesPresent {
		t.Errorf("legacy warning: %+v", w)
	}
	nft := "table ip t {\n\tflowtable f {\n\t\thook ingress priority filter\n\t}\n}\n"
	d, err := Load(Input{Source: bytesSource{[]byte(nft), true}})
	if err != nil {
		t.Fatal(err)
	}
	if w := d.Warnings(); len(w) != 1 || w[0].Code != trace.CodeObjectSkipped || !strings.Contains(w[0].Message, "flowtable f") {
		t.Errorf("skipped flowtable: %+v", w)
	}
}

// TestEveryKubeProxyChainClassified: every chain of every kube-proxy fixture
// (iptables 1.22–1.37, nftables 1.33–1.37) has a kind other than "other".
func TestEveryKubeProxyChainClassified(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/iptables/kube-proxy/*/*/*.save")
	nft, _ := filepath.Glob("../../testdata/nftables/kube-proxy/*/*/ruleset.nft")
	files = append(files, nft...)
	if len(files) < 100 {
		t.Fatalf("only %d fixtures found", len(files))
	}
	decl := regexp.MustCompile(`(?m)^:(\S+)|^\s*chain (\S+) \{`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := load(t, f)
		for _, m := range decl.FindAllStringSubmatch(string(data), -1) {
			if name := m[1] + m[2]; d.ChainInfo(name).Kind == trace.ChainOther {
				t.Errorf("%s: chain %s is not classified", f, name)
			}
		}
	}
}

// TestBrokenForeignDumpIsNoted: a dump of another tool's that cannot be
// walked (a jump to a chain it lacks: truncated or edited) does not stop the
// node's trace; its chain is taken to pass the packet and a note names it.
// The same break in kube-proxy's own dump stays an error.
func TestBrokenForeignDumpIsNoted(t *testing.T) {
	broken := "# Generated by iptables-save v1.8.9 (legacy) on x\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n"
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/docker.save", []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	kp := "../../testdata/iptables/kube-proxy/v1.37.2/TestClusterIPGeneral/iptables-nft.save"
	d := load(t, kp, dir+"/docker.save")
	pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.5"), Destination: netip.MustParseAddr("172.30.0.42"), DestinationPort: 443, Protocol: "tcp"}
	sim, err := d.Simulate(pkt, Options{})
	if err != nil {
		t.Fatalf("a broken foreign dump failed the simulation: %v", err)
	}
	if sim.Verdict != trace.VerdictDNAT || len(sim.Endpoints) != 2 {
		t.Errorf("verdict %s endpoints %v, want DNAT to svc2's two endpoints", sim.Verdict, sim.Endpoints)
	}
	if !strings.Contains(strings.Join(sim.Notes, "\n"), "iptables-legacy table filter chain FORWARD could not be walked") {
		t.Errorf("notes %q do not name the chain that could not be walked", sim.Notes)
	}

	// The broken dump alone is the subject, not context: an error.
	d = load(t, dir+"/docker.save")
	if _, err := d.Simulate(pkt, Options{}); err == nil || !strings.Contains(err.Error(), "DOCKER-USER") {
		t.Errorf("the broken dump alone: err %v, want the missing chain named", err)
	}

	// kube-proxy's own dump with the same break: an error, not a guess.
	own := strings.Replace(broken, ":FORWARD DROP [0:0]\n", ":FORWARD DROP [0:0]\n:KUBE-FORWARD - [0:0]\n", 1)
	if err := os.WriteFile(dir+"/own.save", []byte(own), 0o600); err != nil {
		t.Fatal(err)
	}
	d = load(t, dir+"/own.save")
	if _, err := d.Simulate(pkt, Options{}); err == nil || !strings.Contains(err.Error(), "DOCKER-USER") {
		t.Errorf("kube-proxy's broken dump: err %v, want the missing chain named", err)
	}
}
