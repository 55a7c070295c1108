package cli

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// ipvsRealDir is a real node in kube-proxy's IPVS mode and what real
// packets did there (test/e2e TestIPVS recorded it).
const ipvsRealDir = "../../testdata/ipvs/real"

// TestIPVSRecordingTrace runs kubectl trace-svc as a user would, offline
// (--objects, --dump with the node's iptables dump, /proc/net/ip_vs and
// ipset save), for every case of the real recording whose client is
// outside the node's pods (an external client, or a pod through --from
// pod/NS/NAME), and checks the traced path against what the real packets
// did: connected → DNAT with an IPVS hop whose endpoints hold every pod
// that answered, masqueraded as the pod saw it; refused → REJECT or no
// virtual server; timeout → DROP, or DNAT unmasqueraded to a pod on
// another node (its reply bypasses the node).
func TestIPVSRecordingTrace(t *testing.T) {
	var tr struct {
		Pods []struct {
			Name, Node, IP string
		} `json:"pods"`
		Cases []struct {
			Name    string `json:"name"`
			Service string `json:"service"`
			Via     string `json:"via"`
			Client  struct {
				Name, Kind, IP string
			} `json:"client"`
			Dst struct {
				IP   string `json:"ip"`
				Port uint16 `json:"port"`
			} `json:"dst"`
			Outcomes map[string]int `json:"outcomes"`
			Answers  []struct {
				PodIP   string `json:"podIP"`
				PodPort uint16 `json:"podPort"`
				SNAT    bool   `json:"snat"`
			} `json:"answers"`
		} `json:"cases"`
	}
	data, err := os.ReadFile(filepath.Join(ipvsRealDir, "traffic.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatal(err)
	}
	podNode := map[string]string{}
	for _, p := range tr.Pods {
		podNode[p.IP] = p.Node
	}
	base := []string{"--objects", filepath.Join(ipvsRealDir, "objects.json"), "--node", "node1", "-o", "json"}
	for _, f := range []string{"node1.iptables-legacy-save", "node1.proc-net-ip_vs", "node1.ipset-save"} {
		base = append(base, "--dump", "node1="+filepath.Join(ipvsRealDir, f))
	}
	checked, agree := 0, 0
	for _, c := range tr.Cases {
		ns, name, _ := strings.Cut(c.Service, "/")
		args := append(slices.Clone(base), name, "-n", ns)
		switch {
		case c.Client.Kind == "pod" && c.Via == "clusterIP":
			args = append(args, "--from", "pod/"+ns+"/"+c.Client.Name)
		case c.Client.Kind == "outside":
			from := map[string]string{"nodePort": "nodeport", "loadBalancer": "lb", "externalIP": "external-ip"}[c.Via]
			if from == "" {
				continue
			}
			args = append(args, "--from", from, "--source-ip", c.Client.IP)
		default:
			// The node's own connections: the trace shows them among
			// the cluster IP's paths "from this node"; simulate covers
			// them (test/ipvsreplay TestRecording).
			continue
		}
		checked++
		out, stderr, err := runCLI(t, args...)
		if err != nil {
			t.Errorf("%s: %v\n%s", c.Name, err, stderr)
			continue
		}
		var p trace.Path
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		why := ipvsCaseDisagrees(p, c.Dst.IP, c.Dst.Port, c.Outcomes, c.Answers, podNode)
		if why == noPath {
			// A port the Service does not have (clusterip-unknown-port):
			// no trace entry asks for it; simulate does.
			t.Logf("%s: no traced path goes to %s:%d; left to simulate", c.Name, c.Dst.IP, c.Dst.Port)
			checked--
			continue
		}
		if why != "" {
			t.Errorf("%s (%s): %s", c.Name, strings.Join(args[len(base):], " "), why)
			continue
		}
		agree++
	}
	t.Logf("%d/%d real traffic cases traced by kubectl trace-svc agree", agree, checked)
	if checked < 10 {
		t.Errorf("only %d cases could be traced", checked)
	}
}

func ipvsCaseDisagrees(p trace.Path, dst string, port uint16, outcomes map[string]int, answers []struct {
	PodIP   string `json:"podIP"`
	PodPort uint16 `json:"podPort"`
	SNAT    bool   `json:"snat"`
}, podNode map[string]string) string {
	var paths []trace.EntryPath
	for _, n := range p.Nodes {
		for _, ep := range n.Paths {
			if ep.Entry.Address == netip.MustParseAddr(dst) && ep.Entry.Port == port {
				paths = append(paths, ep)
			}
		}
	}
	if len(paths) == 0 {
		return noPath
	}
	if len(paths) != 1 {
		return "more than one path to the address"
	}
	ep := paths[0]
	inRules := map[string]trace.PathEndpoint{}
	for _, pe := range ep.EndpointsInRules() {
		inRules[netip.AddrPortFrom(pe.IP, pe.Port).String()] = pe
	}
	switch {
	case outcomes["connected"] > 0:
		if ep.Verdict != trace.VerdictDNAT || ep.IPVS == nil {
			return "connected, but the path says " + string(ep.Verdict) + " (ipvs hop " + boolText(ep.IPVS != nil) + ")"
		}
		for _, a := range answers {
			k := netip.AddrPortFrom(netip.MustParseAddr(a.PodIP), a.PodPort).String()
			pe, ok := inRules[k]
			if !ok {
				return k + " answered, not on the path"
			}
			if pe.Masquerade != a.SNAT {
				return k + ": masquerade on the path " + boolText(pe.Masquerade) + ", the pod saw " + boolText(a.SNAT)
			}
		}
	case outcomes["refused"] > 0:
		if ep.Verdict != trace.VerdictReject && !(ep.Verdict == trace.VerdictNone && ep.IPVS == nil) {
			return "refused, but the path says " + string(ep.Verdict)
		}
	case outcomes["timeout"] > 0:
		remote := len(inRules) > 0
		for k, pe := range inRules {
			remote = remote && !pe.Masquerade && podNode[strings.Split(k, ":")[0]] != "node1"
		}
		if ep.Verdict != trace.VerdictDrop && !(ep.Verdict == trace.VerdictDNAT && remote) {
			return "timed out, but the path says " + string(ep.Verdict)
		}
	}
	return ""
}

const noPath = "no path"

func boolText(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TestIPVSDrift: each way an IPVS node can disagree with the API is named
// by its finding — the real recording's dumps, edited as a node that fell
// behind would have them.
func TestIPVSDrift(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(ipvsRealDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	drop := func(text string, lines ...string) string {
		for _, l := range lines {
			if !strings.Contains(text, l+"\n") {
				t.Fatalf("the recording no longer has %q", l)
			}
			text = strings.Replace(text, l+"\n", "", 1)
		}
		return text
	}
	ipvsadm, sets, addrs := read("node1.ipvsadm-Sn"), read("node1.ipset-save"), read("node1.ip-addr")
	for _, tc := range []struct {
		name                 string
		ipvsadm, sets, addrs string
		service              string
		want                 trace.Code
	}{
		{"virtual server gone", drop(ipvsadm, "-A -t 10.96.100.11:80 -s rr", "-a -t 10.96.100.11:80 -r 10.244.1.2:8080 -m -w 1", "-a -t 10.96.100.11:80 -r 10.244.1.3:8080 -m -w 1"), sets, addrs, "ipvs-cip", trace.CodeVirtualServerMissing},
		{"real server of a pod that is gone", strings.Replace(ipvsadm, "-a -t 10.96.100.11:80 -r 10.244.1.3:8080", "-a -t 10.96.100.11:80 -r 10.244.1.99:8080", 1), sets, addrs, "ipvs-cip", trace.CodeRealServerNotEndpoint},
		{"ready endpoint not a real server", drop(ipvsadm, "-a -t 10.96.100.11:80 -r 10.244.1.3:8080 -m -w 1"), sets, addrs, "ipvs-cip", trace.CodeRealServerMissing},
		{"ready endpoint at weight 0", strings.Replace(ipvsadm, "-a -t 10.96.100.11:80 -r 10.244.1.3:8080 -m -w 1", "-a -t 10.96.100.11:80 -r 10.244.1.3:8080 -m -w 0", 1), sets, addrs, "ipvs-cip", trace.CodeRealServerMissing},
		{"cluster IP not in KUBE-CLUSTER-IP", ipvsadm, drop(sets, "add KUBE-CLUSTER-IP 10.96.100.11,tcp:80"), addrs, "ipvs-cip", trace.CodeIPSetEntryMissing},
		{"cluster IP not on kube-ipvs0", ipvsadm, sets, drop(addrs, "    inet 10.96.100.11/32 scope global kube-ipvs0"), "ipvs-cip", trace.CodeServiceAddressUnbound},
		{"load balancer IP's virtual server gone", drop(ipvsadm, "-A -t 203.0.113.50:80 -s rr", "-a -t 203.0.113.50:80 -r 10.244.1.2:8080 -m -w 1"), sets, addrs, "ipvs-lb", trace.CodeVirtualServerMissing},
		{"external IP's virtual server gone", drop(ipvsadm, "-A -t 198.51.100.7:80 -s rr", "-a -t 198.51.100.7:80 -r 10.244.1.3:8080 -m -w 1"), sets, addrs, "ipvs-extip", trace.CodeVirtualServerMissing},
		{"load balancer IP not in KUBE-LOAD-BALANCER", ipvsadm, drop(sets, "add KUBE-LOAD-BALANCER 203.0.113.50,tcp:80"), addrs, "ipvs-lb", trace.CodeIPSetEntryMissing},
		{"external IP not in KUBE-EXTERNAL-IP", ipvsadm, drop(sets, "add KUBE-EXTERNAL-IP 198.51.100.7,tcp:80"), addrs, "ipvs-extip", trace.CodeIPSetEntryMissing},
		{"load balancer IP not on kube-ipvs0", ipvsadm, sets, drop(addrs, "    inet 203.0.113.50/32 scope global kube-ipvs0"), "ipvs-lb", trace.CodeServiceAddressUnbound},
		{"external IP not on kube-ipvs0", ipvsadm, sets, drop(addrs, "    inet 198.51.100.7/32 scope global kube-ipvs0"), "ipvs-extip", trace.CodeServiceAddressUnbound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"node1.ipvsadm-Sn": tc.ipvsadm, "node1.ipset-save": tc.sets, "node1.ip-addr": tc.addrs,
				"node1.iptables-legacy-save": read("node1.iptables-legacy-save"), "node1.ip-route-table-all": read("node1.ip-route-table-all")}
			var dumps []string
			for name, data := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
				dumps = append(dumps, filepath.Join(dir, name))
			}
			p := traceIPVSNode(t, tc.service, dumps)
			var codes []trace.Code
			for _, f := range p.Findings {
				codes = append(codes, f.Code)
				if f.Code == tc.want {
					t.Logf("%s: %s", f.Code, f.Message)
				}
			}
			if !slices.Contains(codes, tc.want) {
				t.Errorf("findings %v, want %s", codes, tc.want)
			}
		})
	}
}

// TestIPVSNoDriftOnTheRecording: the real IPVS node, as recorded, has
// every object of every Service it serves — cluster, node port, load
// balancer (with source ranges, with Local policy) and external IPs: no
// drift finding.
func TestIPVSNoDriftOnTheRecording(t *testing.T) {
	drift := []trace.Code{trace.CodeVirtualServerMissing, trace.CodeRealServerMissing, trace.CodeRealServerNotEndpoint,
		trace.CodeIPSetEntryMissing, trace.CodeServiceAddressUnbound, trace.CodeEndpointMissingFromRules, trace.CodeServiceChainMissing}
	for _, svc := range []string{"ipvs-cip", "ipvs-np", "ipvs-np-local", "ipvs-lb", "ipvs-lb-local", "ipvs-extip", "ipvs-affinity", "ipvs-multi"} {
		t.Run(svc, func(t *testing.T) {
			var dumps []string
			for _, f := range []string{"node1.iptables-legacy-save", "node1.ipvsadm-Sn", "node1.ipset-save", "node1.ip-addr", "node1.ip-route-table-all"} {
				dumps = append(dumps, filepath.Join(ipvsRealDir, f))
			}
			p := traceIPVSNode(t, svc, dumps)
			for _, f := range p.Findings {
				if slices.Contains(drift, f.Code) {
					t.Errorf("%s: %s", f.Code, f.Message)
				}
			}
		})
	}
}

// traceIPVSNode traces a Service of the IPVS recording's objects through
// node1 with the given dumps and returns the JSON Path.
func traceIPVSNode(t *testing.T, service string, dumps []string) trace.Path {
	t.Helper()
	args := []string{service, "-n", "e2e", "--objects", filepath.Join(ipvsRealDir, "objects.json"), "--node", "node1", "-o", "json"}
	for _, d := range dumps {
		args = append(args, "--dump", "node1="+d)
	}
	out, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var p trace.Path
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIPVSOutputGolden: the tree and the DOT of an IPVS Service show the
// virtual server, its scheduler and persistence, and its real servers
// with their weights.
func TestIPVSOutputGolden(t *testing.T) {
	for _, format := range []string{"tree", "dot"} {
		args := []string{"ipvs-affinity", "-n", "e2e", "--objects", filepath.Join(ipvsRealDir, "objects.json"), "--node", "node1", "-o", format, "--color", "never"}
		for _, f := range []string{"node1.iptables-legacy-save", "node1.ipvsadm-Sn", "node1.ipset-save"} {
			args = append(args, "--dump", "node1="+filepath.Join(ipvsRealDir, f))
		}
		out, stderr, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, stderr)
		}
		for _, want := range []string{"IPVS TCP 10.96.100.19:80", "scheduler rr", "persistent 10800s", "10.244.2.2:8080", "weight 1"} {
			if !strings.Contains(strings.ReplaceAll(out, "\\n", " "), want) {
				t.Errorf("%s output lacks %q", format, want)
			}
		}
		golden(t, "ipvs-affinity."+format, out)
	}
}
