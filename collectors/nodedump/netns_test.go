package nodedump

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

var update = flag.Bool("update", false, "rewrite the recorded script outputs under testdata/recorded")

const fixtureDir = "../../testdata"

var (
	iptNFTFixture    = filepath.Join(fixtureDir, "iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save")
	iptLegacyFixture = filepath.Join(fixtureDir, "iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-legacy.save")
	nftFixture       = filepath.Join(fixtureDir, "nftables/kube-proxy/v1.37.2/TestLoadBalancer/fake.nft")
)

var netnsSeq atomic.Int32

func requireNetnsTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range append([]string{"ip", "nfacct", "sh"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

func run(t *testing.T, stdin []byte, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newNetns creates an empty network namespace (loopback up, kube-proxy's
// nfacct counters present) that is deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("tsvc-dp-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run(t, nil, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	run(t, nil, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	for _, c := range []string{"ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts", "localhost_nps_total_pkts"} {
		run(t, nil, "ip", "netns", "exec", ns, "nfacct", "add", c)
	}
	return ns
}

func load(t *testing.T, ns, fixture string, restore ...string) {
	t.Helper()
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns}, restore...)
	run(t, data, "ip", args...)
}

// serveProxyMode answers /proxyMode on 127.0.0.1:10249 inside ns, as
// kube-proxy's metrics server does.
func serveProxyMode(t *testing.T, ns, mode string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	code := `import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[1].encode() if self.path == "/proxyMode" else b"404"
        self.send_response(200 if self.path == "/proxyMode" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 10249), H).serve_forever()
`
	cmd := exec.Command("ip", "netns", "exec", ns, "python3", "-c", code, mode)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for i := 0; i < 50; i++ {
		if exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "-m", "1", "http://127.0.0.1:10249/proxyMode").Run() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the fake kube-proxy metrics server did not start")
}

// runScript runs Script in ns as the debug pod would.
func runScript(t *testing.T, ns string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, ScriptCommand...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("dump script: %v\n%s", err, errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes()
}

func recordOutput(t *testing.T, name string, stdout, stderr []byte) {
	t.Helper()
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "recorded")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".stdout"), stdout, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".stderr"), stderr, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScriptInNetns runs the real dump script against real kernel rules
// loaded from kube-proxy's own output, in scratch network namespaces.
func TestScriptInNetns(t *testing.T) {
	requireNetnsTools(t, "iptables-nft-restore", "iptables-legacy-restore", "nft", "iptables-nft-save", "iptables-legacy-save")
	type check struct {
		backend   string
		chosen    []string
		proxyMode string
		multi     bool // the "more than one backend" warning
	}
	tests := []struct {
		name      string
		iptNFT    bool
		iptLegacy bool
		nft       bool
		proxyMode string
		want      check
	}{
		{name: "iptables-nft", iptNFT: true, proxyMode: "iptables",
			want: check{backend: BackendIPTablesNFT, chosen: []string{DumpIPTablesNFT}, proxyMode: "iptables"}},
		{name: "iptables-legacy", iptLegacy: true,
			want: check{backend: BackendIPTablesLegacy, chosen: []string{DumpIPTablesLegacy}}},
		{name: "nftables", nft: true, proxyMode: "nftables",
			want: check{backend: BackendNFTables, chosen: []string{DumpNFT}, proxyMode: "nftables"}},
		{name: "nftables-and-stale-iptables-nft", iptNFT: true, nft: true, proxyMode: "nftables",
			want: check{backend: BackendNFTables, chosen: []string{DumpNFT}, proxyMode: "nftables", multi: true}},
		{name: "both-iptables-backends", iptNFT: true, iptLegacy: true,
			want: check{backend: BackendIPTablesLegacy, chosen: []string{DumpIPTablesLegacy}, multi: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNetns(t)
			if tt.iptNFT {
				load(t, ns, iptNFTFixture, "iptables-nft-restore")
			}
			if tt.iptLegacy {
				load(t, ns, iptLegacyFixture, "iptables-legacy-restore")
			}
			if tt.nft {
				load(t, ns, nftFixture, "nft", "-f", "-")
			}
			if tt.proxyMode != "" {
				serveProxyMode(t, ns, tt.proxyMode)
			}
			stdout, stderr := runScript(t, ns)
			recordOutput(t, tt.name, stdout, stderr)
			res := ParseOutput("node-1", stdout, stderr)

			got := check{backend: res.Backend, chosen: res.Chosen, proxyMode: res.ProxyMode, multi: hasWarning(res, "more than one backend")}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(check{})); diff != "" {
				t.Errorf("result (-want +got):\n%s\nwarnings: %q", diff, res.Warnings)
			}
			for _, w := range res.Warnings {
				if w.Code == trace.CodeDumpCommandFailed || w.Code == trace.CodeDumpIncomplete {
					t.Errorf("unexpected warning %q", w)
				}
			}
			// Every dump with rules must parse; the chosen ones must hold
			// kube-proxy's service.
			for _, d := range res.Dumps {
				if len(bytes.TrimSpace(d.Data)) == 0 {
					continue
				}
				if _, err := ruleset.Load(ruleset.Input{Name: d.Name, Source: d}); err != nil {
					t.Errorf("parse %s: %v", d.Name, err)
				}
			}
			var inputs []ruleset.Input
			for _, name := range res.Chosen {
				d, ok := res.Dump(name)
				if !ok {
					t.Fatalf("chosen dump %s is missing", name)
				}
				if !bytes.Contains(d.Data, []byte("ns1/svc1")) {
					t.Errorf("chosen dump %s lacks ns1/svc1's rules", name)
				}
				inputs = append(inputs, ruleset.Input{Name: name, Source: d})
			}
			// The route sections come with the rules, and make the
			// node's routing part of its dataplane.
			for _, name := range RouteDumps {
				d, ok := res.Dump(name)
				if !ok {
					t.Errorf("route section %s is missing", name)
					continue
				}
				inputs = append(inputs, ruleset.Input{Name: name, Source: d, Section: name})
			}
			dp, err := ruleset.Load(inputs...)
			if err != nil {
				t.Fatal(err)
			}
			if r := dp.Routes(); r == nil || r.RoutesFrom4 != "ip" || !r.IsLocal(netip.MustParseAddr("127.0.0.1")) {
				t.Errorf("routes %+v, warnings %q", r, dp.Warnings())
			}
		})
	}
}

func hasWarning(res *Result, substr string) bool {
	for _, w := range res.Warnings {
		if strings.Contains(w.Message, substr) {
			return true
		}
	}
	return false
}
