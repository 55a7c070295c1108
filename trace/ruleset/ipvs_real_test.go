package ruleset

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

// realTraffic is testdata/ipvs/real/traffic.json: what real packets did on
// a node with real kube-proxy in IPVS mode (TestIPVS, test/e2e).
type realTraffic struct {
	NodeIP string `json:"nodeIP"`
	Pods   []struct {
		Name string `json:"name"`
		Node string `json:"node"`
		IP   string `json:"ip"`
	} `json:"pods"`
	Cases []realCase `json:"cases"`
}

type realCase struct {
	Name   string `json:"name"`
	Client struct {
		Kind string `json:"kind"`
		IP   string `json:"ip"`
	} `json:"client"`
	Dst struct {
		IP    string `json:"ip"`
		Port  uint16 `json:"port"`
		Proto string `json:"proto"`
	} `json:"dst"`
	Outcomes map[string]int `json:"outcomes"`
	Answers  []struct {
		PodIP   string `json:"podIP"`
		PodPort uint16 `json:"podPort"`
		SNAT    bool   `json:"snat"`
	} `json:"answers"`
	Attempts []struct {
		Outcome  string `json:"outcome"`
		IPVSConn *struct {
			RealServer string `json:"realServer"`
		} `json:"ipvsConn"`
	} `json:"attempts"`
}

// TestIPVSRealTraffic replays the recorded real IPVS node: its saved
// dumps (/proc/net/ip_vs — what kube-proxy's image can print — ipset save,
// iptables-legacy-save) are loaded as the plugin loads them, and for every
// case of traffic.json the simulator must say what the real packets did:
// connected → DNAT to a set of endpoints that holds every pod that
// answered and every real server IPVS scheduled, masqueraded exactly when
// the pod saw the node's address; refused → REJECT (or, with no virtual
// server, local delivery where nothing listens); timeout → DROP, or DNAT
// unmasqueraded to a pod on another node (its reply bypasses the node and
// the client never sees it).
func TestIPVSRealTraffic(t *testing.T) {
	dir := "../../testdata/ipvs/real"
	var tr realTraffic
	data, err := os.ReadFile(filepath.Join(dir, "traffic.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatal(err)
	}
	for _, files := range [][]string{
		{"node1.iptables-legacy-save", "node1.ip6tables-legacy-save", "node1.proc-net-ip_vs", "node1.ipset-save"},
		{"node1.ipvsadm-Sn", "node1.ipset-save", "node1.iptables-legacy-save"},
		{"node1.ipvsadm-Ln", "node1.ipset-save", "node1.iptables-legacy-save"},
	} {
		t.Run(files[0]+"+"+files[1], func(t *testing.T) {
			var paths []string
			for _, f := range files {
				paths = append(paths, filepath.Join(dir, f))
			}
			dp := load(t, paths...)
			if dp.ProxyMode() != trace.ModeIPVS {
				t.Fatalf("mode %q, want ipvs", dp.ProxyMode())
			}
			agree := 0
			for _, c := range tr.Cases {
				if why := checkRealCase(t, dp, tr, c); why != "" {
					t.Errorf("%s: %s", c.Name, why)
					continue
				}
				agree++
			}
			t.Logf("%d/%d real traffic cases agree", agree, len(tr.Cases))
		})
	}
}

func checkRealCase(t *testing.T, dp *Dataplane, tr realTraffic, c realCase) string {
	local := []netip.Addr{netip.MustParseAddr(tr.NodeIP), netip.MustParseAddr("10.0.2.15")}
	src := netip.MustParseAddr("127.0.0.1")
	if c.Client.IP != "" {
		src = netip.MustParseAddr(c.Client.IP)
	}
	dst := netip.MustParseAddr(c.Dst.IP)
	sim, err := dp.Simulate(trace.Packet{Source: src, Destination: dst, DestinationPort: c.Dst.Port, Protocol: strings.ToLower(c.Dst.Proto)}, Options{LocalAddrs: local})
	if err != nil {
		return err.Error()
	}
	if c.Client.Kind == "node" && sim.Origin != "local" {
		return "a packet the node sent is taken as forwarded"
	}
	endpoints := map[string]trace.Endpoint{}
	for _, e := range sim.Endpoints {
		endpoints[e.AddrPort().String()] = e
	}
	onNode := map[string]string{}
	for _, p := range tr.Pods {
		onNode[p.IP] = p.Node
	}
	switch {
	case c.Outcomes["connected"] > 0:
		if sim.Verdict != trace.VerdictDNAT {
			return "connected, but the simulator says " + string(sim.Verdict) + " " + strings.Join(sim.Notes, "; ")
		}
		for _, a := range c.Answers {
			ap := netip.AddrPortFrom(netip.MustParseAddr(a.PodIP), a.PodPort).String()
			e, ok := endpoints[ap]
			if !ok {
				return ap + " answered but is not among the predicted endpoints " + sim.EndpointList()
			}
			if e.Masquerade != a.SNAT {
				return ap + ": masquerade predicted " + boolWord(e.Masquerade) + ", the pod saw " + boolWord(a.SNAT)
			}
		}
		for _, at := range c.Attempts {
			if at.IPVSConn != nil {
				if _, ok := endpoints[at.IPVSConn.RealServer]; !ok {
					return "IPVS scheduled " + at.IPVSConn.RealServer + ", not among the predicted endpoints " + sim.EndpointList()
				}
			}
		}
	case c.Outcomes["refused"] > 0:
		switch {
		case sim.Verdict == trace.VerdictReject:
		case sim.Verdict == trace.VerdictNone && sim.IPVS == nil && (dst.IsLoopback() || slices.Contains(local, dst)):
			// No virtual server: delivered to the node, where nothing
			// listens on the port.
		default:
			return "refused, but the simulator says " + string(sim.Verdict)
		}
	case c.Outcomes["timeout"] > 0:
		switch {
		case sim.Verdict == trace.VerdictDrop:
		case sim.Verdict == trace.VerdictDNAT && !sim.Masquerade && allRemote(sim, onNode):
			// The pod on the other node answers the client directly;
			// the client drops a reply from an address it never asked.
		default:
			return "timed out, but the simulator says " + string(sim.Verdict) + " " + sim.EndpointList()
		}
	default:
		return "no outcome recorded"
	}
	return ""
}

func allRemote(sim *trace.Simulation, onNode map[string]string) bool {
	for _, e := range sim.Endpoints {
		if n := onNode[e.IP.String()]; n == "" || n == "node1" {
			return false
		}
	}
	return len(sim.Endpoints) > 0
}

func boolWord(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
