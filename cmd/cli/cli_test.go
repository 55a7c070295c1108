package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/cmd/offline"
)

var update = flag.Bool("update", false, "rewrite golden files")

// tracePacketDump is kube-proxy's own TestTracePacket ruleset (v1.37.2), as
// iptables-nft-save prints it after a real restore.
const tracePacketDump = "../../testdata/iptables/kube-proxy/v1.37.2/TestTracePacket/iptables-nft.save"

// nftDir holds kube-proxy's nftables rulesets (v1.37.2) as nft lists them.
const nftDir = "../../testdata/nftables/kube-proxy/v1.37.2/"

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	cmd := NewRootCommand(streams)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/cli -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got), run with -update if intended:\n%s", path, diff)
	}
}

func TestHelpGolden(t *testing.T) {
	// kubectl's --cache-dir default is under $HOME; pin it so the goldens do
	// not depend on who runs the tests.
	t.Setenv("HOME", "/home/user")
	for _, args := range [][]string{{"--help"}, {"simulate", "--help"}, {"version", "--help"}} {
		name := "help-" + strings.Join(args[:len(args)-1], "-")
		if len(args) == 1 {
			name = "help-root"
		}
		t.Run(name, func(t *testing.T) {
			out, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".txt", out)
		})
	}
}

func TestSimulateFlagErrors(t *testing.T) {
	base := []string{"simulate", "--ruleset", tracePacketDump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "172.30.0.41", "--dport", "80"}
	with := func(flag, value string) []string {
		out := append([]string(nil), base...)
		for i := 1; i < len(out); i += 2 {
			if out[i] == flag {
				out[i+1] = value
				return out
			}
		}
		return append(out, flag, value)
	}
	without := func(flag string) []string {
		var out []string
		for i := 0; i < len(base); i++ {
			if base[i] == flag {
				i++
				continue
			}
			out = append(out, base[i])
		}
		return out
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing ruleset", without("--ruleset"), "--ruleset is required: pass a file with the node's iptables-save or nft list ruleset output"},
		{"bad format", with("--format", "pf"), `--format "pf" is not supported: use one of auto, iptables, nft, nft-json, ipvs, ipset`},
		{"nft script", with("--ruleset", nftDir+"TestLoadBalancer/fake.nft"), "this is an nft script (add/flush commands), not nft list ruleset output"},
		{"not a ruleset", with("--ruleset", "cli_test.go"), "this is neither iptables-save nor nft list ruleset output, nor a route or interface section, nor a connection table (pass --format if it is one of them)"},
		{"empty file", with("--ruleset", "testdata/empty.rules"), "the file is empty; save the rules with iptables-save or nft list ruleset"},
		{"directory", with("--ruleset", "testdata"), `ruleset "testdata" is a directory`},
		{"wrong forced format", append(with("--ruleset", nftDir+"TestLoadBalancer/ruleset.nft"), "--format", "iptables"), "line 1:"},
		{"ipv6 packet on ipv4 nft", append(with("--ruleset", nftDir+"TestLoadBalancer/ruleset.nft"), "--src", "fd00::2", "--dst", "fd00::1"), "the ruleset has no ip6 kube-proxy table"},
		{"missing src", without("--src"), "--src is required"},
		{"bad src", with("--src", "10.0.0.999"), `--src "10.0.0.999" is not an IP address`},
		{"bad node ip", with("--node-ip", "node-1"), `--node-ip "node-1" is not an IP address`},
		{"port zero", with("--dport", "0"), "--dport must be between 1 and 65535, got 0"},
		{"port too big", with("--dport", "70000"), "--dport must be between 1 and 65535, got 70000"},
		{"bad proto", with("--proto", "icmp"), `--proto "icmp" is not one of tcp, udp, sctp`},
		{"bad output", with("-o", "dot"), `--output "dot" is not supported: use one of tree, json, yaml`},
		{"bad color", with("--color", "sometimes"), `--color "sometimes" is not one of auto, always, never`},
		{"mixed families", with("--dst", "fd00::1"), "--src 10.0.0.2 and --dst fd00::1 are of different IP families"},
		{"bad affinity", with("--affinity-endpoint", "10.0.0.1"), `--affinity-endpoint "10.0.0.1" is not IP:PORT`},
		{"missing file", with("--ruleset", "does-not-exist.iptables"), `cannot open ruleset "does-not-exist.iptables": no such file or directory; pass a file saved with iptables-save or nft list ruleset, or - to read standard input`},
		{"malformed dump", with("--ruleset", "testdata/truncated.iptables"), `read ruleset "testdata/truncated.iptables": line 5: the dump ends inside table "nat" (started at line 2) without COMMIT; it was probably cut off — collect it again`},
		{"ipv6 packet on ipv4 dump", append(with("--src", "fd00::2"), "--dst", "fd00::1"), "the packet is IPv6 but the dump was written by iptables-save v1.8.9 (nf_tables); simulate IPv6 packets on ip6tables-save output"},
		{"unknown flag", append(base, "--frobnicate"), "unknown flag: --frobnicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if out != "" {
				t.Errorf("stdout should be empty on error, got %q", out)
			}
		})
	}
}

// TestSimulateJSONContract pins the fields other tools rely on.
func TestSimulateJSONContract(t *testing.T) {
	out, _, err := runCLI(t, "simulate", "--ruleset", tracePacketDump, "--node-ip", "192.168.0.2,192.168.1.2",
		"--src", "10.0.0.2", "--dst", "172.30.0.44", "--dport", "80", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SchemaVersion string `json:"schemaVersion"`
		Verdict       string `json:"verdict"`
		Endpoints     []struct {
			IP          string  `json:"ip"`
			Port        int     `json:"port"`
			Probability float64 `json:"probability"`
		} `json:"endpoints"`
		Masquerade *bool `json:"masquerade"`
		Rules      []struct {
			Table, Chain, Rule string
			Line               int
		} `json:"rules"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.SchemaVersion != "trace-svc.simulation/v1" || doc.Verdict != "DNAT" || doc.Masquerade == nil || *doc.Masquerade {
		t.Errorf("unexpected document head: %+v", doc)
	}
	type ep struct {
		IP   string
		Port int
		P    float64
	}
	var got []ep
	for _, e := range doc.Endpoints {
		got = append(got, ep{e.IP, e.Port, e.Probability})
	}
	if diff := cmp.Diff([]ep{{"10.180.0.4", 80, 0.5}, {"10.180.0.5", 80, 0.5}}, got); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if len(doc.Rules) < 4 || doc.Rules[0].Table != "nat" || doc.Rules[0].Chain != "PREROUTING" || doc.Rules[0].Line == 0 {
		t.Errorf("rules do not start with nat PREROUTING: %+v", doc.Rules)
	}
}

// TestSimulateFormats: the same packet through kube-proxy's nftables
// ruleset as text, as JSON, from standard input and with --format forced
// gives one answer, with the same JSON contract as iptables.
func TestSimulateFormats(t *testing.T) {
	args := []string{"--node-ip", "192.168.0.2", "--src", "203.0.113.2", "--dst", "192.168.0.2", "--dport", "3001", "-o", "json"}
	text, err := os.ReadFile(nftDir + "TestLoadBalancer/ruleset.nft")
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for _, tc := range []struct {
		name  string
		extra []string
		stdin string
	}{
		{"text", []string{"--ruleset", nftDir + "TestLoadBalancer/ruleset.nft"}, ""},
		{"json", []string{"--ruleset", nftDir + "TestLoadBalancer/ruleset.json"}, ""},
		{"forced", []string{"--ruleset", nftDir + "TestLoadBalancer/ruleset.nft", "--format", "nft"}, ""},
		{"stdin", []string{"--ruleset", "-"}, string(text)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(tc.stdin), Out: &out, ErrOut: &errOut})
			cmd.SetArgs(append(append([]string{"simulate"}, tc.extra...), args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Verdict    string `json:"verdict"`
				Masquerade bool   `json:"masquerade"`
				Endpoints  []struct {
					IP          string  `json:"ip"`
					Port        int     `json:"port"`
					Probability float64 `json:"probability"`
				} `json:"endpoints"`
				Rules []struct{ Table, Chain, Rule string } `json:"rules"`
			}
			if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Verdict != "DNAT" || !doc.Masquerade || len(doc.Endpoints) != 1 || doc.Endpoints[0].IP != "10.180.0.1" || doc.Endpoints[0].Port != 80 || doc.Endpoints[0].Probability != 1 {
				t.Errorf("unexpected result: %s", out.String())
			}
			var chains []string
			for _, r := range doc.Rules {
				chains = append(chains, r.Chain)
			}
			if got := strings.Join(chains, " "); first == "" {
				first = got
			} else if got != first {
				t.Errorf("rule path %q differs from the text format's %q", got, first)
			}
		})
	}
}

func TestSimulateTreeGolden(t *testing.T) {
	cases := map[string][]string{
		"tree-clusterip":   {"--src", "10.0.0.2", "--dst", "172.30.0.44", "--dport", "80"},
		"tree-reject":      {"--src", "10.0.0.2", "--dst", "172.30.0.46", "--dport", "80"},
		"tree-external-lb": {"--src", "192.168.0.2", "--dst", "192.168.99.22", "--dport", "80"},
	}
	nftCases := map[string][]string{
		"tree-nft-nodeport":      {"--src", "203.0.113.2", "--dst", "192.168.0.2", "--dport", "3001"},
		"tree-nft-firewall-drop": {"--src", "203.0.113.200", "--dst", "5.6.7.8", "--dport", "80"},
		"tree-nft-no-endpoints":  {"--src", "10.0.0.2", "--dst", "172.30.0.46", "--dport", "80"},
	}
	rulesets := map[string]string{}
	for name, args := range nftCases {
		cases[name], rulesets[name] = args, nftDir+"TestTracePacketV4/ruleset.nft"
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			ruleset := tracePacketDump
			if r, ok := rulesets[name]; ok {
				ruleset = r
			}
			full := append([]string{"simulate", "--ruleset", ruleset, "--node-ip", "192.168.0.2,192.168.1.2,192.168.99.11", "--color", "never"}, args...)
			out, _, err := runCLI(t, full...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".txt", out)
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCLI(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v offline.VersionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != "dev" {
		t.Errorf("version json = %q (%v)", out, err)
	}
	if _, _, err := runCLI(t, "version", "-o", "xml"); err == nil || !strings.Contains(err.Error(), `--output "xml" is not supported`) {
		t.Errorf("bad -o accepted: %v", err)
	}
}

func TestTooManyServices(t *testing.T) {
	_, _, err := runCLI(t, "web", "api")
	want := "trace-svc traces one Service at a time (NAME, or NAMESPACE/NAME), but got 2 arguments: web api; run it once per Service"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

// TestMissingKubeconfig: a kubeconfig path that does not exist gets a
// sentence with the ways out, not only the stat error.
func TestMissingKubeconfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, _, err := runCLI(t, "web", "--kubeconfig", missing)
	if err == nil {
		t.Fatal("no error for a missing kubeconfig")
	}
	for _, want := range []string{"cannot read the kubeconfig", missing, "--kubeconfig", "KUBECONFIG", "--objects"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// Help is normalised the kubectl way only when it is shown: building the
// command tree (which every TAB press does) leaves Long and Example as
// written, and --help prints them normalised.
func TestHelpNormalisedWhenShown(t *testing.T) {
	root := NewRootCommand(genericiooptions.NewTestIOStreamsDiscard())
	if !strings.HasPrefix(root.Long, "\n") || !strings.HasPrefix(root.Example, "\n") {
		t.Fatalf("the root command's help was normalised when the tree was built:\n%q", root.Long)
	}
	out, _, err := runCLI(t, "simulate", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Follow the first packet of a new connection through a node's saved rules and print what the kernel would do:") ||
		!strings.Contains(out, "Examples:\n  # A pod on another node connects to a ClusterIP\n  kubectl trace-svc simulate") {
		t.Errorf("simulate --help is not normalised:\n%s", out)
	}
}

// TestOfflineCommandsAcceptClusterFlags: simulate's and version's help
// leave kubectl's cluster flags out, but a script that passes them to
// every command still works, and trace's help keeps them.
func TestOfflineCommandsAcceptClusterFlags(t *testing.T) {
	if _, _, err := runCLI(t, "version", "--kubeconfig", "/nonexistent", "--context", "x"); err != nil {
		t.Errorf("version with kubectl's cluster flags: %v", err)
	}
	out, _, err := runCLI(t, "--help")
	if err != nil || !strings.Contains(out, "--kubeconfig") {
		t.Errorf("trace's help lost the cluster flags (%v):\n%s", err, out)
	}
	out, _, err = runCLI(t, "simulate", "--help")
	if err != nil || strings.Contains(out, "--kubeconfig") || !strings.Contains(out, "--ruleset") {
		t.Errorf("simulate's help should list its own flags and not kubectl's cluster flags (%v):\n%s", err, out)
	}
}
