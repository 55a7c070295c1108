package nodedump

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readRecorded(t *testing.T, name string) (stdout, stderr []byte) {
	t.Helper()
	var err error
	if stdout, err = os.ReadFile(filepath.Join("testdata", "recorded", name+".stdout")); err != nil {
		t.Fatal(err)
	}
	if stderr, err = os.ReadFile(filepath.Join("testdata", "recorded", name+".stderr")); err != nil {
		t.Fatal(err)
	}
	return stdout, stderr
}

// section builds one command's output as the script prints it.
func sec(name, data string, rc int) string {
	return Marker + " begin " + name + "\n" + data + "\n" + Marker + " end " + name + " rc=" + strconv.Itoa(rc) + "\n"
}

func absent(name string) string { return Marker + " absent " + name + "\n" }

const done = Marker + " done\n"

const hintNFT = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"

const smallKubeProxy = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"

type parsed struct {
	Dumps     []string // name/family/exit
	Backend   string
	Chosen    []string
	ProxyMode string
	Warnings  []string // "Code: message" prefixes, checked in order of the result
}

func summarize(res *Result) parsed {
	p := parsed{Backend: res.Backend, Chosen: res.Chosen, ProxyMode: res.ProxyMode}
	for _, w := range res.Warnings {
		p.Warnings = append(p.Warnings, string(w.Code)+": "+w.Message)
	}
	for _, d := range res.Dumps {
		p.Dumps = append(p.Dumps, d.Name+"/"+d.Family+"/"+strconv.Itoa(d.ExitCode))
	}
	return p
}

func TestParseOutput(t *testing.T) {
	allFive := []string{"iptables-nft-save/ipv4/0", "ip6tables-nft-save/ipv6/0", "iptables-legacy-save/ipv4/0", "ip6tables-legacy-save/ipv6/0", "nft/all/0"}
	tests := []struct {
		name     string
		recorded string // testdata/recorded/<name>.{stdout,stderr}
		stdout   string
		stderr   string
		want     parsed
	}{
		{
			name: "recorded: iptables-nft only, kube-proxy says iptables", recorded: "iptables-nft",
			want: parsed{Dumps: allFive, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}, ProxyMode: "iptables"},
		},
		{
			name: "recorded: only legacy", recorded: "iptables-legacy",
			want: parsed{Dumps: allFive, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}},
		},
		{
			name: "recorded: nftables only", recorded: "nftables",
			want: parsed{Dumps: allFive, Backend: BackendNFTables, Chosen: []string{DumpNFT}, ProxyMode: "nftables"},
		},
		{
			name: "recorded: both iptables backends warn", recorded: "both-iptables-backends",
			want: parsed{Dumps: allFive, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}, Warnings: []string{
				"RulesInSeveralBackends: kube-proxy rules exist in more than one backend (iptables-nft, iptables-legacy); iptables-legacy is used",
			}},
		},
		{
			name: "recorded: nftables mode with stale iptables-nft rules warns", recorded: "nftables-and-stale-iptables-nft",
			want: parsed{Dumps: allFive, Backend: BackendNFTables, Chosen: []string{DumpNFT}, ProxyMode: "nftables", Warnings: []string{
				"RulesInSeveralBackends: kube-proxy rules exist in more than one backend (iptables-nft, nftables); nftables is used",
			}},
		},
		{
			name: "IPv6 absent: no ip6tables commands",
			stdout: sec(DumpIPTablesNFT, hintNFT+smallKubeProxy, 0) + absent(DumpIP6TablesNFT) +
				sec(DumpIPTablesLegacy, "", 0) + absent(DumpIP6TablesLegacy) + absent(DumpNFT) + absent("proxyMode") + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}},
		},
		{
			name: "IPv6 dual-stack: both families of the backend are chosen",
			stdout: sec(DumpIPTablesNFT, hintNFT+smallKubeProxy, 0) + sec(DumpIP6TablesNFT, smallKubeProxy, 0) +
				sec(DumpIPTablesLegacy, "", 0) + sec(DumpIP6TablesLegacy, "", 0) + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "ip6tables-nft-save/ipv6/0", "iptables-legacy-save/ipv4/0", "ip6tables-legacy-save/ipv6/0"},
				Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT, DumpIP6TablesNFT}},
		},
		{
			name:   "kubelet hint in legacy decides like iptables-wrapper",
			stdout: sec(DumpIPTablesNFT, "", 0) + sec(DumpIPTablesLegacy, hintNFT+smallKubeProxy, 0) + done,
			want:   parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}},
		},
		{
			name:   "hint in nft but kube-proxy rules only in legacy: follow the rules",
			stdout: sec(DumpIPTablesNFT, hintNFT, 0) + sec(DumpIPTablesLegacy, smallKubeProxy, 0) + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}, Warnings: []string{
				"CollectorWarning: kubelet's chains point to iptables-nft but kube-proxy's rules are in iptables-legacy",
			}},
		},
		{
			name:   "no kube-proxy rules anywhere",
			stdout: sec(DumpIPTablesNFT, hintNFT, 0) + sec(DumpNFT, "table inet filter {\n}", 0) + sec("proxyMode", "", 4) + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "nft/all/0"}, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}, Warnings: []string{
				"KubeProxyRulesMissing: no kube-proxy rules found",
			}},
		},
		{
			// A node whose image has no nft while kube-proxy runs in
			// nftables mode: nothing the image can read holds rules, and
			// the warning names what is missing.
			name:   "no kube-proxy rules where the image can look: nft absent",
			stdout: sec(DumpIPTablesNFT, hintNFT, 0) + sec(DumpIPTablesLegacy, "", 0) + absent(DumpNFT) + absent("proxyMode") + absent("../x") + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}, Warnings: []string{
				"KubeProxyRulesMissing: no kube-proxy rules found, and the debug image has no nft to read the rest with: pass --image with an image that has sh, iptables and nft (kube-proxy's own image has them)",
			}},
		},
		{
			name:   "failed command and output cut off",
			stdout: sec(DumpIPTablesNFT, "", 1) + Marker + " begin " + DumpIPTablesLegacy + "\n" + smallKubeProxy,
			stderr: "\n" + Marker + " stderr " + DumpIPTablesNFT + "\niptables-nft-save: Could not fetch rule set generation id: Invalid argument\n\n" + Marker + " stderr " + DumpIPTablesLegacy + "\n",
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/1", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}, Warnings: []string{
				"DumpIncomplete: the dump script's output ended early",
				"DumpIncomplete: iptables-legacy-save output was cut off",
				"DumpCommandFailed: iptables-nft-save failed (exit status 1): iptables-nft-save: Could not fetch rule set generation id: Invalid argument",
			}},
		},
		{
			name:   "killed for memory",
			stdout: sec(DumpIPTablesNFT, "", 137) + sec(DumpIPTablesLegacy, hintNFT+smallKubeProxy, 0) + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/137", "iptables-legacy-save/ipv4/0"}, Backend: BackendIPTablesLegacy, Chosen: []string{DumpIPTablesLegacy}, Warnings: []string{
				"DumpCommandFailed: iptables-nft-save failed (exit status 137): no message; it was killed, most likely for using more than its container's memory limit: use --collector kube-proxy on a node this big",
			}},
		},
		{
			name:   "ipvs mode",
			stdout: sec(DumpIPTablesNFT, hintNFT+smallKubeProxy, 0) + sec("proxyMode", "ipvs", 0) + done,
			want: parsed{Dumps: []string{"iptables-nft-save/ipv4/0"}, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}, ProxyMode: "ipvs", Warnings: []string{
				"IPVSIncomplete: kube-proxy reports IPVS mode but the node gave no IPVS table",
			}},
		},
		{
			name:   "ipvs mode with its table and ipsets",
			stdout: sec(DumpIPTablesNFT, hintNFT+smallKubeProxy, 0) + sec("proxyMode", "ipvs", 0) + sec(DumpIPVS, "IP Virtual Server version 1.2.1 (size=4096)\n", 0) + sec(DumpIPSet, "create KUBE-CLUSTER-IP hash:ip,port family inet\n", 0) + done,
			want:   parsed{Dumps: []string{"iptables-nft-save/ipv4/0", "ipvs//0", "ipset-save//0"}, Backend: BackendIPTablesNFT, Chosen: []string{DumpIPTablesNFT}, ProxyMode: "ipvs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr := []byte(tt.stdout), []byte(tt.stderr)
			if tt.recorded != "" {
				stdout, stderr = readRecorded(t, tt.recorded)
			}
			got := summarize(ParseOutput("node-1", stdout, stderr))
			// Warnings are compared by prefix: the tail names details.
			if len(got.Warnings) == len(tt.want.Warnings) {
				for i, w := range tt.want.Warnings {
					if strings.HasPrefix(got.Warnings[i], w) {
						got.Warnings[i] = w
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOutput (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseOutputKeepsDataExact(t *testing.T) {
	data := "no trailing newline"
	stdout := sec(DumpNFT, data, 0) + done
	stderr := "\n" + Marker + " stderr " + DumpNFT + "\n# Warning: table ip filter is managed by iptables-nft, do not touch!\n"
	res := ParseOutput("n", []byte(stdout), []byte(stderr))
	d, ok := res.Dump(DumpNFT)
	if !ok {
		t.Fatal("nft dump missing")
	}
	if string(d.Data) != data {
		t.Errorf("data %q, want %q", d.Data, data)
	}
	if d.Stderr != "# Warning: table ip filter is managed by iptables-nft, do not touch!" {
		t.Errorf("stderr %q", d.Stderr)
	}
}
