package ruleset

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

var updateForeign = flag.Bool("update-foreign", false, "rebuild testdata/foreign/<scenario> from real packets in network namespaces (needs root, ip, nft, iptables-nft-restore)")

// A node with tables kube-proxy did not write: the scenarios below are
// built for real in network namespaces (a client, a node, a pod), real
// packets are sent from the client to Service addresses through the node,
// and where each went is recorded: at the pod, DNATed to which endpoint, or
// not at all. TestForeignTablesRealPackets does that live (root only) and
// checks the simulator against the packets; with -update-foreign it writes
// the node's dumps and the packets' fates under testdata/foreign, which
// TestForeignTablesRecorded checks everywhere.

// foreignScenario is one node: kube-proxy's rules of one mode (a fixture
// recorded from kube-proxy's own tests) plus a foreign table.
type foreignScenario struct {
	name string
	// kubeProxy is the fixture and how it is loaded: "nft" (nft -f) or
	// "iptables-nft" (iptables-nft-restore).
	kubeProxy, kubeProxyLoader string
	// foreign is the foreign table and its loader.
	foreign, foreignLoader string
}

const clusterIPFixture = "../../testdata/nftables/kube-proxy/v1.37.2/TestClusterIPGeneral/fake.nft"

var foreignScenarios = []foreignScenario{
	{name: "docker-forward-drop-nftables-mode", kubeProxy: clusterIPFixture, kubeProxyLoader: "nft",
		foreign: "../../testdata/foreign/docker.iptables", foreignLoader: "iptables-nft"},
	{name: "firewalld-reject-iptables-mode", kubeProxy: "../../testdata/iptables/kube-proxy/v1.37.2/TestClusterIPGeneral/iptables-nft.save", kubeProxyLoader: "iptables-nft",
		foreign: "../../testdata/foreign/firewalld.nft", foreignLoader: "nft"},
}

// foreignProbe is one connection the client opens, and what the packets
// did: Arrived are the endpoints (address:port) the pod saw its SYNs on,
// none when none arrived. A SYN retransmitted after the pod's reset was
// lost on the way back is a new connection to conntrack, so it may be
// DNATed to another endpoint.
type foreignProbe struct {
	Dest    string   `json:"dest"`
	Arrived []string `json:"arrived"`
}

// Addresses of the namespaces: the client and the pod are kube-proxy's
// test addresses (the fixture's pod network), the node has the fixture's
// first node IP.
var (
	foreignClient = netip.MustParseAddr("10.180.0.2")
	foreignNodeIP = netip.MustParseAddr("192.168.0.2")
	foreignPodIPs = []string{"10.180.0.1", "10.180.2.1"}
	// foreignDests: one Service port the foreign table stops, one it
	// allows (TCP 8443 after DNAT).
	foreignDests = []string{"172.30.0.41:80", "172.30.0.42:443"}
)

const foreignNodeInIf = "to-client"

func TestForeignTablesRealPackets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "nft", "nfacct", "iptables-nft-restore", "iptables-nft-save", "iptables-legacy-save", "timeout", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	for _, sc := range foreignScenarios {
		t.Run(sc.name, func(t *testing.T) {
			dir := filepath.Join("../../testdata/foreign", sc.name)
			node, client, pod := buildForeignNode(t, sc)
			dumps := map[string][]byte{
				"iptables-nft.save":    nsOutput(t, node, "iptables-nft-save"),
				"iptables-legacy.save": nsOutput(t, node, "iptables-legacy-save"),
				"ruleset.nft":          nsOutput(t, node, "nft", "list", "ruleset"),
			}
			var probes []foreignProbe
			for _, dest := range foreignDests {
				probes = append(probes, foreignProbe{Dest: dest, Arrived: sendProbe(t, client, pod, dest)})
			}
			dp := loadForeignDumps(t, dumps)
			checkForeignPredictions(t, dp, probes)
			if *updateForeign {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, data := range dumps {
					if len(data) == 0 {
						continue
					}
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				js, _ := json.MarshalIndent(probes, "", "  ")
				if err := os.WriteFile(filepath.Join(dir, "probes.json"), append(js, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestForeignTablesRecorded checks the simulator against the packets
// recorded by TestForeignTablesRealPackets -update-foreign.
func TestForeignTablesRecorded(t *testing.T) {
	for _, sc := range foreignScenarios {
		t.Run(sc.name, func(t *testing.T) {
			dir := filepath.Join("../../testdata/foreign", sc.name)
			dumps := map[string][]byte{}
			for _, name := range []string{"iptables-nft.save", "iptables-legacy.save", "ruleset.nft"} {
				if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
					dumps[name] = data
				}
			}
			data, err := os.ReadFile(filepath.Join(dir, "probes.json"))
			if err != nil {
				t.Fatal(err)
			}
			var probes []foreignProbe
			if err := json.Unmarshal(data, &probes); err != nil {
				t.Fatal(err)
			}
			if len(probes) != len(foreignDests) {
				t.Fatalf("%d recorded probes, want %d", len(probes), len(foreignDests))
			}
			var stopped, through int
			for _, p := range probes {
				if len(p.Arrived) == 0 {
					stopped++
				} else {
					through++
				}
			}
			// The scenarios are built so that real packets show both
			// fates; a recording where they did not is no ground truth.
			if stopped == 0 || through == 0 {
				t.Fatalf("recorded probes %+v: want one stopped by the foreign table and one through it", probes)
			}
			checkForeignPredictions(t, loadForeignDumps(t, dumps), probes)
		})
	}
}

// loadForeignDumps loads a node's dumps the way the collector hands them
// over: every rule dump, whatever wrote it.
func loadForeignDumps(t *testing.T, dumps map[string][]byte) *Dataplane {
	t.Helper()
	var inputs []Input
	for _, name := range []string{"iptables-legacy.save", "iptables-nft.save", "ruleset.nft"} {
		if data := dumps[name]; len(bytes.TrimSpace(data)) > 0 {
			inputs = append(inputs, Input{Name: name, Source: bytesSource{data, true}})
		}
	}
	dp, err := Load(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

// checkForeignPredictions simulates each probe's first packet and compares
// with what the real packets did: arrived at an endpoint the simulation
// DNATs to, or stopped by a foreign table the simulation names.
func checkForeignPredictions(t *testing.T, dp *Dataplane, probes []foreignProbe) {
	t.Helper()
	for _, p := range probes {
		dest := netip.MustParseAddrPort(p.Dest)
		pkt := trace.Packet{Source: foreignClient, Destination: dest.Addr(), DestinationPort: dest.Port(), Protocol: "tcp", InInterface: foreignNodeInIf}
		sim, err := dp.Simulate(pkt, Options{LocalAddrs: []netip.Addr{foreignNodeIP}})
		if err != nil {
			t.Fatalf("%s: %v", p.Dest, err)
		}
		if len(p.Arrived) > 0 {
			if sim.Verdict != trace.VerdictDNAT {
				t.Errorf("%s: real packets arrived at %s, the simulator says %s (notes %q)", p.Dest, p.Arrived, sim.Verdict, sim.Notes)
				continue
			}
			for _, o := range sim.Outcomes {
				if o.Verdict != trace.VerdictDNAT {
					t.Errorf("%s: a branch is %s by %v though real packets came through", p.Dest, o.Verdict, o.DecidedBy)
				}
			}
			for _, a := range p.Arrived {
				if !slices.ContainsFunc(sim.Endpoints, func(e trace.Endpoint) bool { return e.AddrPort().String() == a }) {
					t.Errorf("%s: real packets arrived at %s, which is not among the simulated endpoints %s", p.Dest, a, sim.EndpointList())
				}
			}
			continue
		}
		if sim.Verdict != trace.VerdictDrop && sim.Verdict != trace.VerdictReject {
			t.Errorf("%s: real packets never arrived, the simulator says %s %s", p.Dest, sim.Verdict, sim.EndpointList())
			continue
		}
		for _, o := range sim.Outcomes {
			if o.DecidedBy == nil || !o.DecidedBy.Foreign {
				t.Errorf("%s: dropped branch decided by %v, want a foreign table's rule or policy", p.Dest, o.DecidedBy)
			}
		}
		if !strings.Contains(strings.Join(sim.Notes, "\n"), "not kube-proxy's") {
			t.Errorf("%s: notes %q do not say the decision came from outside kube-proxy", p.Dest, sim.Notes)
		}
	}
}

var foreignNSSeq int

// buildForeignNode creates three namespaces joined by veth pairs — client
// ⇄ node ⇄ pod — loads kube-proxy's rules and the foreign table into the
// node, and records SYNs in the pod. All are deleted when the test ends.
func buildForeignNode(t *testing.T, sc foreignScenario) (node, client, pod string) {
	t.Helper()
	foreignNSSeq++
	base := fmt.Sprintf("tsvc-h17-%d-%d", os.Getpid(), foreignNSSeq)
	node, client, pod = base+"-n", base+"-c", base+"-p"
	for _, ns := range []string{node, client, pod} {
		nsRun(t, nil, "", "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
			}
		})
		nsRun(t, nil, ns, "ip", "link", "set", "lo", "up")
	}
	nsRun(t, nil, "", "ip", "link", "add", foreignNodeInIf, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", client)
	nsRun(t, nil, "", "ip", "link", "add", "to-pod", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", pod)
	script := func(ns string, lines ...string) {
		for _, l := range lines {
			nsRun(t, nil, ns, "sh", "-c", l)
		}
	}
	script(node,
		// kube-proxy's iptables rules count into these nfacct objects.
		"nfacct add ct_state_invalid_dropped_pkts", "nfacct add localhost_nps_accepted_pkts", "nfacct add localhost_nps_total_pkts",
		"sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
		"ip addr add "+foreignNodeIP.String()+"/32 dev lo",
		"ip link set "+foreignNodeInIf+" up", "ip link set to-pod up",
		"ip route add "+foreignClient.String()+"/32 dev "+foreignNodeInIf,
		"ip route add "+foreignPodIPs[0]+"/32 dev to-pod", "ip route add "+foreignPodIPs[1]+"/32 dev to-pod")
	script(client,
		"ip addr add "+foreignClient.String()+"/32 dev eth0", "ip link set eth0 up",
		"ip route add "+foreignNodeIP.String()+"/32 dev eth0", "ip route add default via "+foreignNodeIP.String())
	script(pod,
		"ip addr add "+foreignPodIPs[0]+"/32 dev eth0", "ip addr add "+foreignPodIPs[1]+"/32 dev eth0", "ip link set eth0 up",
		"ip route add "+foreignNodeIP.String()+"/32 dev eth0", "ip route add default via "+foreignNodeIP.String(),
		// Where SYNs arrive: one counter per endpoint address and port.
		"nft add table ip probe")
	loadRules(t, node, sc.kubeProxy, sc.kubeProxyLoader)
	loadRules(t, node, sc.foreign, sc.foreignLoader)
	return node, client, pod
}

func loadRules(t *testing.T, ns, file, loader string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	switch loader {
	case "nft":
		nsRun(t, data, ns, "nft", "-f", "-")
	case "iptables-nft":
		nsRun(t, data, ns, "iptables-nft-restore")
	default:
		t.Fatalf("unknown loader %s", loader)
	}
}

var counterRE = regexp.MustCompile(`ip daddr (\S+) tcp dport (\d+) .*counter packets (\d+)`)

// sendProbe opens a TCP connection from the client to dest and returns the
// endpoints (address:port) the pod saw its SYNs on within two seconds (the
// pod has no listener: a SYN that arrives is answered with a reset, and
// counted).
func sendProbe(t *testing.T, client, pod, dest string) []string {
	t.Helper()
	nsRun(t, nil, pod, "sh", "-c", "nft flush table ip probe; nft delete table ip probe; nft add table ip probe; nft 'add chain ip probe in { type filter hook prerouting priority -400; }'")
	ports := []string{"80", "8443"}
	for _, ip := range foreignPodIPs {
		for _, port := range ports {
			nsRun(t, nil, pod, "nft", "add", "rule", "ip", "probe", "in", "ip", "daddr", ip, "tcp", "dport", port, "tcp", "flags", "syn", "counter")
		}
	}
	ap := netip.MustParseAddrPort(dest)
	start := time.Now()
	// The connection fails either way (reset, reject, or the timeout);
	// the pod's counters say where the SYN went.
	_ = exec.Command("ip", "netns", "exec", client, "timeout", "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", ap.Addr(), ap.Port())).Run()
	t.Logf("%s: connect returned after %v", dest, time.Since(start).Round(time.Millisecond))
	out := nsOutput(t, pod, "nft", "list", "table", "ip", "probe")
	arrived := []string{}
	for _, m := range counterRE.FindAllStringSubmatch(string(out), -1) {
		if n, _ := strconv.Atoi(m[3]); n > 0 {
			arrived = append(arrived, m[1]+":"+m[2])
		}
	}
	return arrived
}

// nsRun runs a command in network namespace ns ("" for this one, for ip
// netns and ip link that name namespaces themselves).
func nsRun(t *testing.T, stdin []byte, ns string, name string, args ...string) {
	t.Helper()
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func nsOutput(t *testing.T, ns string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns, err, stderr.Bytes())
	}
	return out
}
