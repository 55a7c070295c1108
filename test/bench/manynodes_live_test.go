package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	tracerun "github.com/trace-svc/kubectl-trace-svc/cmd/run"
	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
	"github.com/trace-svc/kubectl-trace-svc/collectors/objects"
)

var (
	benchManyNodesLive = flag.Bool("bench-many-nodes-live", false, "run TestBenchManyNodesLive (make bench-many-nodes)")
	liveNodes          = flag.Int("bench-many-nodes-live.nodes", 200, "nodes collected live, each answering with the generated dump")
	liveMaxRSS         = flag.Int64("bench-many-nodes-live.max-rss", 1<<30, "largest accepted peak RSS of the trace, bytes")
)

// liveChildEnv carries a liveChild (JSON) to the process that traces.
const liveChildEnv = "TRACE_SVC_BENCH_LIVE_CHILD"

// liveChild is one traced run: through Nodes, every one collected live by
// the dump script an executor answers with Output, spooled as the real
// collectors do. The child writes a liveTimes to Result.
type liveChild struct {
	Objects, Output, Result string
	Namespace, Service      string
	Nodes                   []string
}

// liveTimes is what a child measured: the collection (every node's dump
// script run and spooled) and the whole trace.
type liveTimes struct {
	Collect, Trace time.Duration
	Nodes          int
}

// TestBenchManyNodesLive traces one Service through many nodes collected
// live — the dump script run through a fake executor that answers every
// node with dumpgen's 35 MB iptables-save output (10,000 Services) — in a
// child process whose peak RSS is read from getrusage. It checks that the
// peak stays under 1 GiB whatever the number of nodes (each node's output
// spooled to disk, each node reduced to its part of the Path before the
// next), and compares the wall time with what collection and parsing on
// every core allow: collection time + one node's parse time × nodes /
// cores, one node's parse time measured by a trace through one node in
// the same run.
func TestBenchManyNodesLive(t *testing.T) {
	if !*benchManyNodesLive {
		t.Skip("run with -args -bench-many-nodes-live (make bench-many-nodes)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not found")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dump := filepath.Join(dir, "node.iptables")
	goRun(t, root, goTool, "test", "-count=1", "-run", "^TestWriteDumpFile$", "./trace/iptables/internal/dumpgen", "-args",
		"-dumpgen.out="+dump, "-dumpgen.services="+strconv.Itoa(*services), "-dumpgen.endpoints="+strconv.Itoa(*endpoints))
	var tgt target
	js, err := os.ReadFile(dump + ".target.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tgt); err != nil {
		t.Fatal(err)
	}
	output := filepath.Join(dir, "script.out")
	writeScriptOutput(t, output, dump)
	nodes := make([]string, *liveNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%03d", i)
	}
	objects := filepath.Join(dir, "objects.json")
	if err := os.WriteFile(objects, objectsFor(t, tgt, nodes), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	trace := func(nodes []string) (result, liveTimes) {
		t.Helper()
		spec := liveChild{Objects: objects, Output: output, Result: filepath.Join(dir, "times.json"),
			Namespace: tgt.Service.Namespace, Service: tgt.Service.Name, Nodes: nodes}
		js, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(self, "-test.run=^TestBenchManyNodesLiveChild$", "-test.count=1", "-test.timeout=30m")
		c.Env = append(os.Environ(), liveChildEnv+"="+string(js))
		r := run(t, c)
		var times liveTimes
		js, err = os.ReadFile(spec.Result)
		if err != nil {
			t.Fatalf("the child wrote no times: %v\n%s", err, r.stdout)
		}
		if err := json.Unmarshal(js, &times); err != nil {
			t.Fatal(err)
		}
		if times.Nodes != len(nodes) {
			t.Fatalf("the child traced %d nodes, want %d", times.Nodes, len(nodes))
		}
		return r, times
	}

	trace(nodes[:1]) // warm the page cache
	oneR, one := trace(nodes[:1])
	allR, all := trace(nodes)
	cores := runtime.GOMAXPROCS(0)
	parseOne := one.Trace - one.Collect
	want := all.Collect + parseOne*time.Duration(len(nodes))/time.Duration(cores)
	load, _ := os.ReadFile("/proc/loadavg")
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "nodes\t%d collected live, each answering with %.1f MB (%d Services, %d endpoints)\t\n", len(nodes), mb(tgt.Bytes), *services, *endpoints)
	fmt.Fprintf(tw, "cores\t%d (load average before: %s)\t\n", cores, strings.TrimSpace(string(load)))
	fmt.Fprintf(tw, "one node\ttrace %v (collection %v, parse %v), process %v, peak RSS %.1f MB\t\n",
		one.Trace.Round(time.Millisecond), one.Collect.Round(time.Millisecond), parseOne.Round(time.Millisecond), oneR.wall.Round(time.Millisecond), mb(oneR.maxRSS))
	fmt.Fprintf(tw, "%d nodes\ttrace %v (collection %v, parse %v), process %v, peak RSS %.1f MB\t\n", len(nodes),
		all.Trace.Round(time.Millisecond), all.Collect.Round(time.Millisecond), (all.Trace - all.Collect).Round(time.Millisecond), allR.wall.Round(time.Millisecond), mb(allR.maxRSS))
	fmt.Fprintf(tw, "collection + parse one × nodes / cores\t%v; trace / that: %.2f\t\n", want.Round(time.Millisecond), float64(all.Trace)/float64(want))
	fmt.Fprintf(tw, "peak RSS %d nodes / one node\t%.2f (this process's own peak when it started them: %.1f MB)\t\n", len(nodes), float64(allR.maxRSS)/float64(oneR.maxRSS), mb(allR.parentHWM))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())
	if allR.maxRSS >= *liveMaxRSS {
		t.Errorf("tracing through %d nodes peaked at %.1f MB of RSS, want under %.1f MB", len(nodes), mb(allR.maxRSS), mb(*liveMaxRSS))
	}
}

// writeScriptOutput writes what the dump script prints on a node whose
// iptables-nft-save output is the file dump, without holding it in memory
// (this process's peak RSS would otherwise be the child's, see run).
func writeScriptOutput(t *testing.T, output, dump string) {
	t.Helper()
	in, err := os.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(output)
	if err != nil {
		t.Fatal(err)
	}
	section := nodedumptest.Section(nodedump.DumpIPTablesNFT, "\x00", 0)
	head, tail, _ := strings.Cut(section, "\x00")
	if _, err := io.WriteString(out, head); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(out, tail+nodedumptest.Done); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBenchManyNodesLiveChild is the traced process of
// TestBenchManyNodesLive.
func TestBenchManyNodesLiveChild(t *testing.T) {
	env := os.Getenv(liveChildEnv)
	if env == "" {
		t.Skip("run by TestBenchManyNodesLive")
	}
	var c liveChild
	if err := json.Unmarshal([]byte(env), &c); err != nil {
		t.Fatal(err)
	}
	objs, err := objects.Read(c.Objects)
	if err != nil {
		t.Fatal(err)
	}
	// Every node's kube-proxy answers the dump script with the output,
	// streamed as an exec streams it.
	ex := nodedumptest.ExecFunc(func(_ context.Context, _, _, _ string, _ []string, stdout, _ io.Writer) error {
		f, err := os.Open(c.Output)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(stdout, f)
		return err
	})
	var times liveTimes
	cfg := tracerun.Config{Namespace: c.Namespace, Service: c.Service, Objects: objs, Nodes: c.Nodes,
		CollectLive: func(ctx context.Context, _ *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
			start := time.Now()
			defer func() { times.Collect = time.Since(start) }()
			return nodedump.CollectNodes(ctx, nodes, nodedump.DefaultParallel, nil, func(ctx context.Context, node string, _ func(string)) (*nodedump.Result, error) {
				return nodedump.Run(ctx, ex, node, nodedump.Target{Namespace: "kube-system", Pod: "kube-proxy-" + node, Container: "kube-proxy"}, nodedump.RunOptions{SpoolDir: spool})
			})
		}}
	start := time.Now()
	p, err := tracerun.Trace(context.Background(), cfg)
	times.Trace = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		if n.Error != "" || n.RulesetFormat == "" {
			t.Fatalf("node %s was not traced: %s", n.Name, n.Error)
		}
		times.Nodes++
	}
	js, err := json.Marshal(times)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Result, js, 0o600); err != nil {
		t.Fatal(err)
	}
}
