// Package bench measures the built command against a baseline on the same
// machine in the same run, so the numbers mean something on any hardware.
package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

var (
	benchRatio = flag.Bool("bench-ratio", false, "run TestBenchRatio (make bench-ratio)")
	runs       = flag.Int("bench-ratio.runs", 7, "timed runs of each command")
	services   = flag.Int("bench-ratio.services", 10_000, "Services in the generated dump")
	endpoints  = flag.Int("bench-ratio.endpoints", 100_000, "endpoints in the generated dump")
	maxRatio   = flag.Float64("bench-ratio.max", 3, "largest accepted simulate/grep time ratio")
)

// target mirrors what dumpgen's TestWriteDumpFile writes next to the dump.
type target struct {
	Service struct {
		Namespace string     `json:"namespace"`
		Name      string     `json:"name"`
		PortName  string     `json:"portName"`
		Protocol  string     `json:"protocol"`
		ClusterIP netip.Addr `json:"clusterIP"`
		Port      uint16     `json:"port"`
		Endpoints []struct {
			Addr netip.AddrPort `json:"addr"`
		} `json:"endpoints"`
	} `json:"service"`
	Bytes int64 `json:"bytes"`
}

// TestBenchRatio runs "kubectl trace-svc simulate" on the dump of a node in a
// cluster of 10,000 Services and 100,000 endpoints and compares its wall time
// with "grep -c KUBE-SEP" over the same file (the least any tool reading the
// whole dump can cost), and its peak RSS with the dump's size. Target: at
// most 3 times grep's time, and no more memory than the dump's size.
//
// Shapes: dumpgen's default mix (a node port on every tenth Service), and
// a node port on every Service (10,000 KUBE-EXT chains and KUBE-NODEPORTS
// and KUBE-EXTERNAL-SERVICES rules by the thousand), and the default mix
// saved with counters (iptables-save -c, as the collectors take dumps when
// they observe).
func TestBenchRatio(t *testing.T) {
	if !*benchRatio {
		t.Skip("run with -args -bench-ratio (make bench-ratio)")
	}
	for _, shape := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"nodeport-every-service", []string{"-dumpgen.nodeports"}},
		{"counters", []string{"-dumpgen.counters"}},
	} {
		t.Run(shape.name, func(t *testing.T) { benchRatioIPTables(t, shape.args) })
	}
}

func benchRatioIPTables(t *testing.T, genArgs []string) {
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("grep not found")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not found")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubectl-trace_svc")
	dump := filepath.Join(dir, "node.iptables")

	// One build at a time: the plugin, then the generator (test/bench cannot
	// import trace/iptables/internal/dumpgen, so its test writes the dump).
	goRun(t, root, goTool, releaseBuild(bin)...)
	goRun(t, root, goTool, append([]string{"test", "-count=1", "-run", "^TestWriteDumpFile$", "./trace/iptables/internal/dumpgen", "-args",
		"-dumpgen.out=" + dump, "-dumpgen.services=" + strconv.Itoa(*services), "-dumpgen.endpoints=" + strconv.Itoa(*endpoints)}, genArgs...)...)
	var tgt target
	js, err := os.ReadFile(dump + ".target.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tgt); err != nil {
		t.Fatal(err)
	}
	svc := tgt.Service
	spn := svc.Namespace + "/" + svc.Name
	if svc.PortName != "" {
		spn += ":" + svc.PortName
	}

	grepCmd := func() *exec.Cmd { return exec.Command(grep, "-c", "KUBE-SEP", dump) }
	simCmd := func() *exec.Cmd {
		return exec.Command(bin, "simulate", "--ruleset", dump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2",
			"--dst", svc.ClusterIP.String(), "--dport", strconv.Itoa(int(svc.Port)), "--proto", svc.Protocol, "-o", "json")
	}
	checkGrep := func(out []byte) {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || n < *endpoints {
			t.Fatalf("grep -c printed %q, want a count of at least %d", out, *endpoints)
		}
	}
	checkSim := func(out []byte) {
		var sim struct {
			Verdict   string `json:"verdict"`
			Endpoints []struct {
				IP          netip.Addr `json:"ip"`
				Port        uint16     `json:"port"`
				Probability float64    `json:"probability"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(out, &sim); err != nil {
			t.Fatalf("simulate -o json: %v", err)
		}
		var got, want []string
		for _, e := range sim.Endpoints {
			got = append(got, netip.AddrPortFrom(e.IP, e.Port).String())
		}
		for _, e := range svc.Endpoints {
			want = append(want, e.Addr.String())
		}
		slices.Sort(got)
		slices.Sort(want)
		if sim.Verdict != "DNAT" || !slices.Equal(got, want) {
			t.Fatalf("simulate to %s (%s:%d): verdict %s to %v, want DNAT to %v", spn, svc.ClusterIP, svc.Port, sim.Verdict, got, want)
		}
	}

	// Warm the page cache and the binaries, and check both answers once.
	checkGrep(run(t, grepCmd()).stdout)
	checkSim(run(t, simCmd()).stdout)
	var grepRuns, simRuns []result
	for range *runs {
		g := run(t, grepCmd())
		checkGrep(g.stdout)
		s := run(t, simCmd())
		checkSim(s.stdout)
		grepRuns, simRuns = append(grepRuns, g), append(simRuns, s)
	}

	grepTime, simTime := median(grepRuns, wall), median(simRuns, wall)
	ratio := float64(simTime) / float64(grepTime)
	simRSS := slices.MaxFunc(simRuns, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	grepRSS := slices.MaxFunc(grepRuns, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	rssShare := float64(simRSS) / float64(tgt.Bytes)
	// A child's Maxrss is never below this process's high-water mark when
	// it was started: os/exec starts children with vfork semantics, and
	// exec records the parent's peak RSS in the child's maxrss. A child
	// value near the floor says only "at most the floor".
	floor := slices.MaxFunc(append(grepRuns, simRuns...), func(a, b result) int { return int(a.parentHWM - b.parentHWM) }).parentHWM
	grepRSSText := fmt.Sprintf("%.1f MB", mb(grepRSS))
	if grepRSS <= floor {
		grepRSSText = fmt.Sprintf("<= %.1f MB, the harness's own peak", mb(floor))
	}
	if simRSS < floor+floor/2 {
		t.Fatalf("simulate's peak RSS %.1f MB is too close to this test's own %.1f MB to be measured", mb(simRSS), mb(floor))
	}

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "dump\t%d Services, %d endpoints, %.1f MB (%d bytes)\t\n", *services, *endpoints, mb(tgt.Bytes), tgt.Bytes)
	fmt.Fprintf(tw, "packet\t10.0.0.2 -> %s:%d/%s (%s, %d endpoints)\t\n", svc.ClusterIP, svc.Port, svc.Protocol, spn, len(svc.Endpoints))
	fmt.Fprintf(tw, "grep -c KUBE-SEP median of %d\t%v (peak RSS %s)\t\n", *runs, grepTime.Round(100*time.Microsecond), grepRSSText)
	fmt.Fprintf(tw, "simulate median of %d\t%v\t\n", *runs, simTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "ratio simulate/grep\t%.2f (target <= %.1f)\t\n", ratio, *maxRatio)
	fmt.Fprintf(tw, "simulate peak RSS\t%.1f MB\t\n", mb(simRSS))
	fmt.Fprintf(tw, "RSS / dump size\t%.2f (target <= 1)\t\n", rssShare)
	fmt.Fprintf(tw, "this test's peak RSS\t%.1f MB (children report at least this)\t\n", mb(floor))
	fmt.Fprintf(tw, "all runs grep\t%s\t\n", list(grepRuns))
	fmt.Fprintf(tw, "all runs simulate\t%s\t\n", list(simRuns))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())

	if ratio > *maxRatio {
		t.Errorf("simulate takes %.2f times as long as grep -c (%v vs %v), target %.1f", ratio, simTime, grepTime, *maxRatio)
	}
	if simRSS > tgt.Bytes {
		t.Errorf("simulate peak RSS %.1f MB exceeds the dump's size %.1f MB", mb(simRSS), mb(tgt.Bytes))
	}
}

// releaseBuild builds the plugin the way releases are built
// (.goreleaser.yaml: CGO_ENABLED=0, -trimpath, -s -w), so the numbers are
// those of the binary users run.
func releaseBuild(bin string) []string {
	return []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/kubectl-trace_svc"}
}

func goRun(t *testing.T, dir, goTool string, args ...string) {
	t.Helper()
	cmd := exec.Command(goTool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type result struct {
	wall      time.Duration
	maxRSS    int64 // bytes
	parentHWM int64 // this process's peak RSS when the child started, bytes
	stdout    []byte
}

// run runs cmd with its output in pipes (GNU grep cuts its work short when
// its output is /dev/null) and returns its wall time and peak RSS.
func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	hwm := selfHWM(t)
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the child process")
	}
	return result{wall: wall, maxRSS: ru.Maxrss * 1024, parentHWM: hwm, stdout: stdout.Bytes()} // Maxrss is in KiB on Linux
}

// selfHWM returns this process's peak RSS (VmHWM) in bytes. getrusage's
// RUSAGE_SELF would not do: it carries over the peak of "go test" itself.
func selfHWM(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb * 1024
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

func wall(r result) time.Duration { return r.wall }

func median(rs []result, f func(result) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func list(rs []result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.1fms/%.1fMB", float64(r.wall.Microseconds())/1000, mb(r.maxRSS))
	}
	return strings.Join(parts, " ")
}

func mb(b int64) float64 { return float64(b) / 1e6 }

// TestBenchRatioNFT is TestBenchRatio for kube-proxy's nftables mode: the
// `nft list ruleset` of a node in a cluster of 10,000 Services and 100,000
// endpoints (nftgen, checked against real nft), "simulate" against
// "grep -c dnat" over the same file. The ruleset is about a sixth of the
// iptables dump's size, so the binary's fixed start-up cost (measured here as
// "version") weighs more; the table shows it separately.
func TestBenchRatioNFT(t *testing.T) {
	if !*benchRatio {
		t.Skip("run with -args -bench-ratio (make bench-ratio)")
	}
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("grep not found")
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
	ruleset := filepath.Join(dir, "node.nft")
	goRun(t, root, goTool, releaseBuild(bin)...)
	goRun(t, root, goTool, "test", "-count=1", "-run", "^TestWriteRulesetFile$", "./trace/nftables/internal/nftgen", "-args", "-nftgen.out="+ruleset)
	var tgt struct {
		ClusterIP      netip.Addr `json:"clusterIP"`
		Port           uint16     `json:"port"`
		Endpoints      []string   `json:"endpoints"`
		Services       int        `json:"services"`
		TotalEndpoints int        `json:"totalEndpoints"`
		Bytes          int64      `json:"bytes"`
	}
	js, err := os.ReadFile(ruleset + ".target.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tgt); err != nil {
		t.Fatal(err)
	}

	grepCmd := func() *exec.Cmd { return exec.Command(grep, "-c", "dnat", ruleset) }
	versionCmd := func() *exec.Cmd { return exec.Command(bin, "version") }
	simCmd := func() *exec.Cmd {
		return exec.Command(bin, "simulate", "--ruleset", ruleset, "--node-ip", "192.168.0.2", "--src", "10.0.0.2",
			"--dst", tgt.ClusterIP.String(), "--dport", strconv.Itoa(int(tgt.Port)), "-o", "json")
	}
	checkGrep := func(out []byte) {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || n < tgt.Services {
			t.Fatalf("grep -c printed %q, want at least %d", out, tgt.Services)
		}
	}
	checkSim := func(out []byte) {
		var sim struct {
			Verdict   string `json:"verdict"`
			Endpoints []struct {
				IP   netip.Addr `json:"ip"`
				Port uint16     `json:"port"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(out, &sim); err != nil {
			t.Fatalf("simulate -o json: %v", err)
		}
		var got []string
		for _, e := range sim.Endpoints {
			got = append(got, netip.AddrPortFrom(e.IP, e.Port).String())
		}
		want := slices.Clone(tgt.Endpoints)
		slices.Sort(got)
		slices.Sort(want)
		if sim.Verdict != "DNAT" || !slices.Equal(got, want) {
			t.Fatalf("simulate to %s:%d: verdict %s to %v, want DNAT to %v", tgt.ClusterIP, tgt.Port, sim.Verdict, got, want)
		}
	}

	checkGrep(run(t, grepCmd()).stdout)
	checkSim(run(t, simCmd()).stdout)
	run(t, versionCmd())
	var grepRuns, simRuns, versionRuns []result
	for range *runs {
		g := run(t, grepCmd())
		checkGrep(g.stdout)
		s := run(t, simCmd())
		checkSim(s.stdout)
		v := run(t, versionCmd())
		grepRuns, simRuns, versionRuns = append(grepRuns, g), append(simRuns, s), append(versionRuns, v)
	}
	maxRSS := func(rs []result) int64 {
		return slices.MaxFunc(rs, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	}
	grepTime, simTime, versionTime := median(grepRuns, wall), median(simRuns, wall), median(versionRuns, wall)
	ratio := float64(simTime) / float64(grepTime)
	workRatio := float64(simTime-versionTime) / float64(grepTime)
	simRSS, versionRSS := maxRSS(simRuns), maxRSS(versionRuns)

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ruleset\t%d Services, %d endpoints, %.1f MB (%d bytes), nft list ruleset text\t\n", tgt.Services, tgt.TotalEndpoints, mb(tgt.Bytes), tgt.Bytes)
	fmt.Fprintf(tw, "packet\t10.0.0.2 -> %s:%d/tcp (%d endpoints)\t\n", tgt.ClusterIP, tgt.Port, len(tgt.Endpoints))
	fmt.Fprintf(tw, "grep -c dnat median of %d\t%v\t\n", *runs, grepTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "simulate median of %d\t%v\t\n", *runs, simTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "version median (start-up)\t%v\t\n", versionTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "ratio simulate/grep\t%.2f (iptables target <= %.1f: %s)\t\n", ratio, *maxRatio, met(ratio <= *maxRatio))
	fmt.Fprintf(tw, "ratio (simulate-version)/grep\t%.2f\t\n", workRatio)
	fmt.Fprintf(tw, "simulate peak RSS\t%.1f MB (%.2f of the ruleset: %s)\t\n", mb(simRSS), float64(simRSS)/float64(tgt.Bytes), met(simRSS <= tgt.Bytes))
	fmt.Fprintf(tw, "version peak RSS (start-up)\t%.1f MB\t\n", mb(versionRSS))
	fmt.Fprintf(tw, "RSS the ruleset costs\t%.1f MB (%.2f of the ruleset)\t\n", mb(simRSS-versionRSS), float64(simRSS-versionRSS)/float64(tgt.Bytes))
	fmt.Fprintf(tw, "all runs grep\t%s\t\n", list(grepRuns))
	fmt.Fprintf(tw, "all runs simulate\t%s\t\n", list(simRuns))
	fmt.Fprintf(tw, "all runs version\t%s\t\n", list(versionRuns))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
