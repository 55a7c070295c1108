package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
)

// scriptOutput is what the dump script prints on a node whose
// iptables-nft-save output is rules.
func scriptOutput(rules []byte) []byte {
	return []byte(nodedumptest.Section(nodedump.DumpIPTablesNFT, string(rules), 0) + nodedumptest.Done)
}

// spoolingCollector collects every node through the dump script, which an
// executor answers with stdout, each node's output spooled as the real
// collectors do; seen gets the spool directory and what it held once every
// node was in.
func spoolingCollector(stdout []byte, seen func(spool string, files []os.DirEntry)) func(context.Context, *cluster.Facts, []string, string) []nodedump.NodeResult {
	ex := nodedumptest.ExecFunc(func(_ context.Context, _, _, _ string, _ []string, out, _ io.Writer) error {
		_, err := out.Write(stdout)
		return err
	})
	return func(ctx context.Context, _ *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
		res := nodedump.CollectNodes(ctx, nodes, 4, nil, func(ctx context.Context, node string, _ func(string)) (*nodedump.Result, error) {
			return nodedump.Run(ctx, ex, node, nodedump.Target{}, nodedump.RunOptions{SpoolDir: spool})
		})
		if seen != nil {
			files, _ := os.ReadDir(spool)
			seen(spool, files)
		}
		return res
	}
}

// TestTraceSpoolsLiveNodes: live nodes' output goes to one private file per
// node in a private directory while they are collected, the Path is the one
// the output held in memory gives, --save-dumps still keeps every dump, and
// the directory is gone when Trace returns: after a trace, after an error,
// after Ctrl-C.
func TestTraceSpoolsLiveNodes(t *testing.T) {
	rules, err := os.ReadFile(iptLB)
	if err != nil {
		t.Fatal(err)
	}
	stdout := scriptOutput(rules)
	nodes := []string{"node-a", "node-b"}
	traceJSON := func(cfg Config) string {
		t.Helper()
		p, err := Trace(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(js)
	}
	var spools []string
	check := func(spool string, files []os.DirEntry) {
		spools = append(spools, spool)
		if st, err := os.Stat(spool); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("spool dir %s: %v, %v; want mode 0700", spool, st.Mode(), err)
		}
		if len(files) != len(nodes) {
			t.Errorf("the spool dir held %d files once every node was collected, want one per node (%d)", len(files), len(nodes))
		}
	}
	gone := func(when string) {
		t.Helper()
		if len(spools) == 0 {
			t.Fatalf("%s: the collector got no spool directory", when)
		}
		for _, s := range spools {
			if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: spool dir %s is still there (%v)", when, s, err)
			}
		}
		spools = nil
	}

	held := traceJSON(Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: nodes,
		CollectLive: func(_ context.Context, _ *cluster.Facts, nodes []string, _ string) []nodedump.NodeResult {
			var out []nodedump.NodeResult
			for _, n := range nodes {
				out = append(out, nodedump.NodeResult{Node: n, Result: nodedump.ParseOutput(n, stdout, nil)})
			}
			return out
		}})
	saved := t.TempDir()
	spooled := traceJSON(Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: nodes, SaveDumps: saved,
		CollectLive: spoolingCollector(stdout, check)})
	gone("after a trace")
	if spooled != held {
		t.Errorf("the Path from spooled output differs from the one from output held in memory:\nspooled %s\nheld    %s", spooled, held)
	}
	for _, n := range nodes {
		got, err := os.ReadFile(filepath.Join(saved, n+"."+nodedump.DumpIPTablesNFT))
		if err != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(string(rules)) {
			t.Errorf("--save-dumps kept %d bytes for %s (%v), want the %d collected", len(got), n, err, len(rules))
		}
	}

	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Trace(context.Background(), Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: nodes,
		SaveDumps: filepath.Join(notADir, "dumps"), CollectLive: spoolingCollector(stdout, check)})
	if err == nil || !strings.Contains(err.Error(), "--save-dumps") {
		t.Errorf("Trace with an unwritable --save-dumps = %v, want its error", err)
	}
	gone("after an error")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = Trace(ctx, Config{Namespace: "ns1", Service: "svc1", Objects: lbObjects(), Nodes: nodes,
		CollectLive: spoolingCollector(stdout, func(spool string, files []os.DirEntry) {
			check(spool, files)
			cancel() // Ctrl-C once the nodes are in
		})})
	if !errors.Is(err, ErrInterrupted) {
		t.Errorf("Trace after Ctrl-C = %v, want ErrInterrupted", err)
	}
	gone("after Ctrl-C")
}

// peakHeap runs f while sampling the heap's live objects, the GC held
// tight so that what is sampled is what is kept, and returns the largest
// sample.
func peakHeap(t *testing.T, f func()) uint64 {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	return peak
}

// bigRules is kube-proxy's rules for the test's Service and a raw table of
// n rules more: a node of a large cluster, as far as memory goes.
func bigRules(t *testing.T, n int) []byte {
	t.Helper()
	rules, err := os.ReadFile(iptLB)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(rules)
	b.WriteString("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := range n {
		fmt.Fprintf(&b, "-A PREROUTING -s 10.%d.%d.%d/32 -p tcp -m tcp --dport %d -m comment --comment \"filler rule %d\" -j ACCEPT\n", i>>16&255, i>>8&255, i&255, 1024+i%60000, i)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// TestTraceMemoryIndependentOfNodes: the memory a trace takes does not grow
// with the number of nodes. Four times the nodes, each with the same large
// dump, collected live (spooled) and parsed on two workers, keep no more
// heap once collected and take about the peak heap of the few: each node's
// output waits on disk, and a worker drops a node's dump and parsed rules
// before it takes the next.
func TestTraceMemoryIndependentOfNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 30 nodes of 2 MB")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	stdout := scriptOutput(bigRules(t, 15000))
	base := lbObjects()
	var proto *corev1.Node
	for _, o := range base {
		if n, ok := o.(*corev1.Node); ok {
			proto = n
		}
	}
	// traceThrough returns the peak heap of a trace through count nodes,
	// and the heap kept once every node is collected.
	traceThrough := func(count int) (peak, kept, traced uint64) {
		objs := append([]k8sruntime.Object(nil), base...)
		var nodes []string
		for i := range count {
			n := proto.DeepCopy()
			n.Name = fmt.Sprintf("big-%02d", i)
			objs = append(objs, n)
			nodes = append(nodes, n.Name)
		}
		collect := spoolingCollector(stdout, nil)
		cfg := Config{Namespace: "ns1", Service: "svc1", Objects: objs, Nodes: nodes,
			CollectLive: func(ctx context.Context, f *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
				res := collect(ctx, f, nodes, spool)
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				kept = ms.HeapAlloc
				return res
			}}
		peak = peakHeap(t, func() {
			p, err := Trace(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range p.Nodes {
				if n.Error != "" || n.RulesetFormat == "" {
					t.Fatalf("node %s was not traced: %q", n.Name, n.Error)
				}
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			traced = ms.HeapAlloc
			runtime.KeepAlive(p)
		})
		return peak, kept, traced
	}
	const few, many = 6, 24
	peakFew, keptFew, tracedFew := traceThrough(few)
	peakMany, keptMany, tracedMany := traceThrough(many)
	out := float64(len(stdout))
	t.Logf("%d nodes: peak heap %.1f MB, %.1f MB kept once collected, %.1f MB with the Path; %d nodes: %.1f MB, %.1f MB, %.1f MB (each node's output %.1f MB)",
		few, float64(peakFew)/1e6, float64(keptFew)/1e6, float64(tracedFew)/1e6, many, float64(peakMany)/1e6, float64(keptMany)/1e6, float64(tracedMany)/1e6, out/1e6)
	// A node's part of the Path is a few kilobytes; one that aliased its
	// parsed rules (the engines' strings do) would keep them.
	if float64(tracedMany) > float64(tracedFew)+out {
		t.Errorf("with the Path, %d nodes kept %.1f MB of heap and %d nodes %.1f MB: the nodes' parts keep their parsed rules", many, float64(tracedMany)/1e6, few, float64(tracedFew)/1e6)
	}
	// Held in memory, the 18 more outputs alone would be kept.
	if float64(keptMany) > float64(keptFew)+out {
		t.Errorf("once collected, %d nodes kept %.1f MB of heap and %d nodes %.1f MB: the collected outputs are held in memory", many, float64(keptMany)/1e6, few, float64(keptFew)/1e6)
	}
	// (The peak is sampled: two workers' parses overlap more or less; held
	// in memory until the end, as before, 24 nodes peaked at about 1.9
	// times 6.)
	if float64(peakMany) > 1.5*float64(peakFew) {
		t.Errorf("%d nodes peaked at %.1f MB of heap, %d nodes at %.1f MB: memory grows with the number of nodes", many, float64(peakMany)/1e6, few, float64(peakFew)/1e6)
	}
}
