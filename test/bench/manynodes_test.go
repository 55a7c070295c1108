package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

var (
	benchManyNodes = flag.Bool("bench-many-nodes", false, "run TestBenchManyNodes (make bench-many-nodes)")
	manyNodes      = flag.Int("bench-many-nodes.nodes", 40, "nodes, each with --dump NODE=FILE of the generated dump")
	manyRuns       = flag.Int("bench-many-nodes.runs", 3, "timed runs of each way")
	manyBaseline   = flag.String("bench-many-nodes.baseline", "", "also time this binary (an older build) the same way, alternating")
)

// TestBenchManyNodes traces one Service offline through many nodes, each
// given the same large saved dump (--dump NODE=FILE, dumpgen's 10,000
// Services by default: 35 MB), and compares the command on every core with
// the same binary held to one (GOMAXPROCS=1: the nodes parsed one after the
// other, as before nodes were parsed in parallel), alternating, in the same
// run. It reports wall time, the speed-up, and peak RSS.
func TestBenchManyNodes(t *testing.T) {
	if !*benchManyNodes {
		t.Skip("run with -args -bench-many-nodes (make bench-many-nodes)")
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
	bin := filepath.Join(dir, "kubectl-trace_svc")
	dump := filepath.Join(dir, "node.iptables")
	goRun(t, root, goTool, releaseBuild(bin)...)
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
	nodes := make([]string, *manyNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%03d", i)
	}
	objects := filepath.Join(dir, "objects.json")
	if err := os.WriteFile(objects, objectsFor(t, tgt, nodes), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{tgt.Service.Name, "-n", tgt.Service.Namespace, "--objects", objects, "-o", "json"}
	for _, n := range nodes {
		args = append(args, "--dump", n+"="+dump)
	}
	cmd := func(procs int) *exec.Cmd {
		b := bin
		if procs < 0 {
			b = *manyBaseline
		}
		c := exec.Command(b, args...)
		c.Env = os.Environ()
		if procs > 0 {
			c.Env = append(c.Env, "GOMAXPROCS="+strconv.Itoa(procs))
		}
		return c
	}
	check := func(out []byte) {
		var p struct {
			Nodes []struct {
				Name          string `json:"name"`
				RulesetFormat string `json:"rulesetFormat"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("-o json: %v", err)
		}
		var got []string
		for _, n := range p.Nodes {
			if n.RulesetFormat == "" {
				t.Fatalf("node %s has no ruleset in the trace", n.Name)
			}
			got = append(got, n.Name)
		}
		if !slices.Equal(got, nodes) {
			t.Fatalf("the trace went through %v, want %v", got, nodes)
		}
	}

	check(run(t, cmd(0)).stdout) // warm the page cache
	var one, all, base []result
	for range *manyRuns {
		o := run(t, cmd(1))
		check(o.stdout)
		a := run(t, cmd(0))
		check(a.stdout)
		one, all = append(one, o), append(all, a)
		if *manyBaseline != "" {
			b := run(t, cmd(-1))
			check(b.stdout)
			base = append(base, b)
		}
	}
	maxRSS := func(rs []result) int64 {
		return slices.MaxFunc(rs, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	}
	oneTime, allTime := median(one, wall), median(all, wall)
	load, _ := os.ReadFile("/proc/loadavg")
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "nodes\t%d, each --dump of %.1f MB (%d Services, %d endpoints)\t\n", len(nodes), mb(tgt.Bytes), *services, *endpoints)
	fmt.Fprintf(tw, "cores\t%d (load average before: %s)\t\n", runtime.NumCPU(), strings.TrimSpace(string(load)))
	fmt.Fprintf(tw, "GOMAXPROCS=1 median of %d\t%v, peak RSS %.1f MB\t\n", *manyRuns, oneTime.Round(time.Millisecond), mb(maxRSS(one)))
	fmt.Fprintf(tw, "every core median of %d\t%v, peak RSS %.1f MB\t\n", *manyRuns, allTime.Round(time.Millisecond), mb(maxRSS(all)))
	fmt.Fprintf(tw, "speed-up\t%.2f\t\n", float64(oneTime)/float64(allTime))
	if len(base) > 0 {
		baseTime := median(base, wall)
		fmt.Fprintf(tw, "baseline %s median of %d\t%v, peak RSS %.1f MB (speed-up %.2f)\t\n", *manyBaseline, *manyRuns, baseTime.Round(time.Millisecond), mb(maxRSS(base)), float64(baseTime)/float64(allTime))
		fmt.Fprintf(tw, "all runs baseline\t%s\t\n", list(base))
	}
	fmt.Fprintf(tw, "all runs GOMAXPROCS=1\t%s\t\n", list(one))
	fmt.Fprintf(tw, "all runs every core\t%s\t\n", list(all))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())
}

// objectsFor is what "kubectl get service,endpointslices,nodes -o json"
// would print for the dump's target Service with its endpoints, and nodes.
func objectsFor(t *testing.T, tgt target, nodes []string) []byte {
	t.Helper()
	svc := tgt.Service
	type obj = map[string]any
	var eps []obj
	var port uint16
	for _, e := range svc.Endpoints {
		eps = append(eps, obj{"addresses": []string{e.Addr.Addr().String()}, "conditions": obj{"ready": true, "serving": true}})
		port = e.Addr.Port()
	}
	items := []obj{
		{"apiVersion": "v1", "kind": "Service", "metadata": obj{"name": svc.Name, "namespace": svc.Namespace},
			"spec": obj{"type": "ClusterIP", "clusterIP": svc.ClusterIP.String(), "clusterIPs": []string{svc.ClusterIP.String()},
				"ports": []obj{{"name": svc.PortName, "port": svc.Port, "protocol": strings.ToUpper(svc.Protocol), "targetPort": port}}}},
		{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
			"metadata":  obj{"name": svc.Name + "-abcde", "namespace": svc.Namespace, "labels": obj{"kubernetes.io/service-name": svc.Name}},
			"endpoints": eps, "ports": []obj{{"name": svc.PortName, "port": port, "protocol": strings.ToUpper(svc.Protocol)}}},
	}
	for i, n := range nodes {
		items = append(items, obj{"apiVersion": "v1", "kind": "Node", "metadata": obj{"name": n},
			"spec":   obj{"podCIDR": fmt.Sprintf("10.244.%d.0/24", i%250)},
			"status": obj{"addresses": []obj{{"type": "InternalIP", "address": fmt.Sprintf("192.168.%d.%d", i/250, i%250+2)}}}})
	}
	js, err := json.Marshal(obj{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return js
}
