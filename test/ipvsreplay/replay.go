// Package ipvsreplay checks the plugin's IPVS engine against a recording
// of real traffic through a node in kube-proxy's IPVS mode (test/e2e
// TestIPVS writes one: traffic.json, the node's dumps, objects.json;
// testdata/ipvs/real is one). It is shared by the offline test of the
// committed recording and by TestIPVS itself, which checks a fresh
// recording the same way right after taking it.
package ipvsreplay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// realTraffic is testdata/ipvs/real/traffic.json: what real packets did on
// a node with real kube-proxy in IPVS mode (TestIPVS, test/e2e).
type realTraffic struct {
	Node   string `json:"node"`
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

// FileSets are the combinations of a node's saved files a replay loads:
// what the debug pod collects from kube-proxy's image (/proc/net/ip_vs, no
// ipvsadm) and what an image with ipvsadm gives (-Sn, and -Ln).
var FileSets = [][]string{
	{"iptables-legacy-save", "ip6tables-legacy-save", "proc-net-ip_vs", "ipset-save"},
	{"ipvsadm-Sn", "ipset-save", "iptables-legacy-save"},
	{"ipvsadm-Ln", "ipset-save", "iptables-legacy-save"},
}

// memSource is a saved file in memory (the recording's files are small;
// the e2e module need not pull in the collectors' dependencies).
type memSource []byte

func (m memSource) Head() ([]byte, error) { return m[:min(len(m), 64<<10)], nil }
func (m memSource) Reader() io.Reader     { return bytes.NewReader(m) }
func (m memSource) ReaderAt() (io.ReaderAt, int64, bool) {
	return bytes.NewReader(m), int64(len(m)), true
}

// Result is one replay: how many cases agree, and why the others do not.
type Result struct {
	Files    []string
	Agree    int
	Total    int
	Problems []string
}

// Replay loads dir's node files of each FileSets entry through
// ruleset.Load and checks every case of dir/traffic.json against what the
// simulator predicts: connected → DNAT to a set of endpoints that holds
// every pod that answered and every real server IPVS scheduled,
// masqueraded exactly when the pod saw the node's address; refused →
// REJECT (or, with no virtual server, local delivery where nothing
// listens); timeout → DROP, or DNAT unmasqueraded to a pod on another node
// (its reply bypasses the node and the client never sees it).
func Replay(dir string) ([]Result, error) { return replay(dir, FileSets) }

// CollectedFiles are the files --save-dumps writes for an IPVS node from
// the plugin's own dump script (the IPVS table from ipvsadm -Sn, else
// /proc/net/ip_vs, under one name). ReplayCollected replays them.
var CollectedFiles = []string{"iptables-legacy-save", "ip6tables-legacy-save", "ipvs", "ipset-save"}

// ReplayCollected is Replay on what the plugin's dump script collected
// and saved into dir (CollectedFiles), with dir/traffic.json.
func ReplayCollected(dir string) (Result, error) {
	out, err := replay(dir, [][]string{CollectedFiles})
	if err != nil {
		return Result{}, err
	}
	return out[0], nil
}

func replay(dir string, fileSets [][]string) ([]Result, error) {
	var tr realTraffic
	data, err := os.ReadFile(filepath.Join(dir, "traffic.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		return nil, fmt.Errorf("traffic.json: %w", err)
	}
	var out []Result
	for _, set := range fileSets {
		var inputs []ruleset.Input
		var names []string
		for _, f := range set {
			path := filepath.Join(dir, tr.Node+"."+f)
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			inputs = append(inputs, ruleset.Input{Name: filepath.Base(path), Source: memSource(data)})
			names = append(names, tr.Node+"."+f)
		}
		dp, err := ruleset.Load(inputs...)
		if err != nil {
			return nil, err
		}
		r := Result{Files: names, Total: len(tr.Cases)}
		if dp.ProxyMode() != trace.ModeIPVS {
			return nil, fmt.Errorf("%v: mode %q, want ipvs", names, dp.ProxyMode())
		}
		for _, c := range tr.Cases {
			if why := checkRealCase(dp, tr, c); why != "" {
				r.Problems = append(r.Problems, c.Name+": "+why)
				continue
			}
			r.Agree++
		}
		out = append(out, r)
	}
	return out, nil
}

func checkRealCase(dp *ruleset.Dataplane, tr realTraffic, c realCase) string {
	local := []netip.Addr{netip.MustParseAddr(tr.NodeIP), netip.MustParseAddr("10.0.2.15")}
	src := netip.MustParseAddr("127.0.0.1")
	if c.Client.IP != "" {
		src = netip.MustParseAddr(c.Client.IP)
	}
	dst := netip.MustParseAddr(c.Dst.IP)
	sim, err := dp.Simulate(trace.Packet{Source: src, Destination: dst, DestinationPort: c.Dst.Port, Protocol: strings.ToLower(c.Dst.Proto)}, ruleset.Options{LocalAddrs: local})
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
