package tracer

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

// builderNodes are nodes of every kind a Path joins: iptables and nftables
// rules, rules that disagree with the others, a node that was not
// collected, nodes in zones.
func builderNodes(t *testing.T) []Node {
	t.Helper()
	other := "../../testdata/iptables/kube-proxy/v1.37.2/TestNoEndpointsReject/iptables-nft.save"
	zoned := func(n *corev1.Node, zone string) *corev1.Node {
		n.Labels = map[string]string{corev1.LabelTopologyZone: zone}
		return n
	}
	return []Node{
		{Node: zoned(node("node-a", "192.168.0.2", "10.0.0.0/24"), "zone-1"), Dataplane: load(t, iptablesLB)},
		{Node: node("node-b", "192.168.0.3", "10.0.1.0/24"), Dataplane: load(t, nftLB)},
		{Node: zoned(node("node-c", "192.168.0.4", "10.0.2.0/24"), "zone-2"), Dataplane: load(t, other)},
		{Node: node("node-d", "192.168.0.5", "10.0.3.0/24"), Err: os.ErrDeadlineExceeded},
		{Node: node("node-e", "192.168.0.6", "10.0.4.0/24"), Dataplane: load(t, iptablesLB), ProxyMode: "iptables"},
	}
}

// TestBuilderIsBuild: nodes reduced one at a time, at once and in any
// order, then joined, give the Path Build gives.
func TestBuilderIsBuild(t *testing.T) {
	nodes := builderNodes(t)
	in := Input{Service: lbService(), Slices: slice("10.180.0.1", "10.180.2.1"), Nodes: nodes}
	want, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Nodes = nil
	for _, n := range nodes {
		in.AllNodes = append(in.AllNodes, n.Node)
	}
	b, err := NewBuilder(in)
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]NodePart, len(nodes))
	var wg sync.WaitGroup
	for i := len(nodes) - 1; i >= 0; i-- {
		wg.Go(func() { parts[i] = b.Node(nodes[i]) })
	}
	wg.Wait()
	got := b.Path(parts)
	if diff := cmp.Diff(pathJSON(t, want), pathJSON(t, got)); diff != "" {
		t.Errorf("Builder's Path (-Build +Builder):\n%s", diff)
	}
	codes := findingCodes(got)
	if codes["NodesDisagree"] == 0 || codes["NodeNotCollected"] != 1 || codes["NodePortOnLocalhost"] == 0 || len(got.NodeZones) != 2 {
		t.Errorf("the nodes do not give the findings that join them (%v, zones %v): the test shows nothing", codes, got.NodeZones)
	}
}

// pathJSON is p as -o json has it, indented for a readable diff.
func pathJSON(t *testing.T, p *trace.Path) string {
	t.Helper()
	js, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// TestNodePartKeepsNoDataplane: once a node is reduced to its part, its
// parsed rules can go: the part holds nothing of them.
func TestNodePartKeepsNoDataplane(t *testing.T) {
	n := builderNodes(t)[0]
	b, err := NewBuilder(Input{Service: lbService(), Slices: slice("10.180.0.1"), AllNodes: []*corev1.Node{n.Node}})
	if err != nil {
		t.Fatal(err)
	}
	freed := make(chan struct{})
	runtime.AddCleanup(n.Dataplane, func(ch chan struct{}) { close(ch) }, freed)
	part := b.Node(n)
	if len(part.paths.Paths) == 0 {
		t.Fatal("the node's part has no paths: the test shows nothing")
	}
	n.Dataplane = nil
	deadline := time.After(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-freed:
			runtime.KeepAlive(part)
			return
		case <-deadline:
			t.Fatal("the node's dataplane is still reachable while its part is: the part keeps it in memory")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// heapAfterGC is the live heap.
func heapAfterGC() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestNodePartKeepsNoParsedRules: the strings in a node's part (chain names,
// rule text) do not alias the engine's parsed rules, which would keep them
// in memory with the part. The node's nat table declares many chains before
// kube-proxy's, so that those land in the large blocks of the engine's
// name arena.
func TestNodePartKeepsNoParsedRules(t *testing.T) {
	n := node("node-a", "192.168.0.2", "10.0.0.0/24")
	b, err := NewBuilder(Input{Service: lbService(), Slices: slice("10.180.0.1"), AllNodes: []*corev1.Node{n}})
	if err != nil {
		t.Fatal(err)
	}
	before := heapAfterGC()
	dp := func() *ruleset.Dataplane {
		rules, err := os.ReadFile(iptablesLB)
		if err != nil {
			t.Fatal(err)
		}
		head, rest, ok := strings.Cut(string(rules), "*nat\n")
		if !ok {
			t.Fatal("the dump has no nat table")
		}
		var filler strings.Builder
		for i := range 60000 {
			fmt.Fprintf(&filler, ":FILLER-CHAIN-WITH-A-LONG-NAME-%06d - [0:0]\n", i)
		}
		return loadText(t, head+"*nat\n"+filler.String()+rest)
	}()
	parsed := heapAfterGC() - before
	part := b.Node(Node{Node: n, Dataplane: dp})
	if len(part.paths.Paths) == 0 || len(part.paths.ChainInfo) == 0 {
		t.Fatal("the node's part names no chain: the test shows nothing")
	}
	dp = nil
	kept := heapAfterGC() - before
	runtime.KeepAlive(part)
	t.Logf("parsed rules %.1f MB, kept with the node's part %.1f MB", float64(parsed)/1e6, float64(kept)/1e6)
	if kept > parsed/10 {
		t.Errorf("the node's part keeps %.1f MB of the %.1f MB its parsed rules took", float64(kept)/1e6, float64(parsed)/1e6)
	}
}
