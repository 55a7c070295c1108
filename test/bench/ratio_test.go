// Package bench measures the built command against a baseline on the same
// machine in the same run, so the numbers mean something on any hardware.
package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
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
// they observe), a node port on every Service with 63-character namespace
// and Service names (comments of some 140 characters, as clusters whose
// names tools generate have), and a LoadBalancer with an external IP on
// every Service (KUBE-SERVICES three times as long, KUBE-FW and
// KUBE-EXTERNAL-SERVICES rules by the thousand).
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
		{"long-names-nodeport-every-service", []string{"-dumpgen.nodeports", "-dumpgen.longnames"}},
		{"loadbalancer-every-service", []string{"-dumpgen.loadbalancers"}},
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
	versionCmd := func() *exec.Cmd { return exec.Command(bin, "version") }
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

	// Then the work alone, without the plugin's start-up: ParseReaderAt and
	// Simulate timed inside a fresh process (this test binary, run as
	// TestBenchRatioWork), alternating with grep again. A fresh process
	// pays for the memory it touches the first time (page faults) as the
	// command does; this process's own heap would not.
	workCmd := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBenchRatioWork$")
		cmd.Env = append(os.Environ(), workEnv+"="+strings.Join([]string{dump, svc.ClusterIP.String(), strconv.Itoa(int(svc.Port)), svc.Protocol, strconv.Itoa(len(svc.Endpoints))}, ","))
		return cmd
	}
	var grepAgain, inProcess []result
	for range *runs {
		g := run(t, grepCmd())
		checkGrep(g.stdout)
		w := run(t, workCmd())
		d, err := time.ParseDuration(workLine(w.stdout))
		if err != nil {
			t.Fatalf("TestBenchRatioWork printed %q: %v", w.stdout, err)
		}
		grepAgain, inProcess = append(grepAgain, g), append(inProcess, result{wall: d, maxRSS: w.maxRSS})
	}
	grepAgainTime, workTime := median(grepAgain, wall), median(inProcess, wall)

	grepTime, simTime := median(grepRuns, wall), median(simRuns, wall)
	ratio := float64(simTime) / float64(grepTime)
	simRSS := slices.MaxFunc(simRuns, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	grepRSS := slices.MaxFunc(grepRuns, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	rssShare := float64(simRSS) / float64(tgt.Bytes)
	// A child's Maxrss is never below its parent's high-water mark when it
	// was started: os/exec starts children with vfork semantics, and exec
	// records the parent's peak RSS in the child's maxrss. A child value at
	// the floor says only "at most the floor"; one above it is the child's
	// own. The commands are started by test/bench/rusage (run), whose few
	// megabytes are the floor; this test binary's own peak, some 25 MB
	// since the package links the collectors, is above simulate's.
	floor := slices.MaxFunc(append(grepRuns, simRuns...), func(a, b result) int { return int(a.parentHWM - b.parentHWM) }).parentHWM
	grepRSSText := fmt.Sprintf("%.1f MB", mb(grepRSS))
	if grepRSS <= floor {
		grepRSSText = fmt.Sprintf("<= %.1f MB, the harness's own peak", mb(floor))
	}
	if simRSS <= floor {
		t.Fatalf("simulate's peak RSS %.1f MB is not above this test's own %.1f MB, so it cannot be measured", mb(simRSS), mb(floor))
	}

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "dump\t%d Services, %d endpoints, %.1f MB (%d bytes)\t\n", *services, *endpoints, mb(tgt.Bytes), tgt.Bytes)
	fmt.Fprintf(tw, "packet\t10.0.0.2 -> %s:%d/%s (%s, %d endpoints)\t\n", svc.ClusterIP, svc.Port, svc.Protocol, spn, len(svc.Endpoints))
	fmt.Fprintf(tw, "grep -c KUBE-SEP median of %d\t%v (peak RSS %s)\t\n", *runs, grepTime.Round(100*time.Microsecond), grepRSSText)
	fmt.Fprintf(tw, "simulate median of %d\t%v\t\n", *runs, simTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "ratio simulate/grep\t%.2f (target <= %.1f)\t\n", ratio, *maxRatio)
	versionTime := median(versionRuns, wall)
	fmt.Fprintf(tw, "version median (start-up)\t%v\t\n", versionTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "ratio (simulate-version)/grep\t%.2f\t\n", float64(simTime-versionTime)/float64(grepTime))
	fmt.Fprintf(tw, "parse+simulate in a fresh process, median of %d\t%v (grep -c alternating with it: %v; ratio %.2f)\t\n", *runs,
		workTime.Round(100*time.Microsecond), grepAgainTime.Round(100*time.Microsecond), float64(workTime)/float64(grepAgainTime))
	fmt.Fprintf(tw, "simulate peak RSS\t%.1f MB\t\n", mb(simRSS))
	fmt.Fprintf(tw, "RSS / dump size\t%.2f (target <= 1)\t\n", rssShare)
	fmt.Fprintf(tw, "this test's peak RSS\t%.1f MB (children report at least this)\t\n", mb(floor))
	fmt.Fprintf(tw, "all runs grep\t%s\t\n", list(grepRuns))
	fmt.Fprintf(tw, "all runs simulate\t%s\t\n", list(simRuns))
	fmt.Fprintf(tw, "all runs parse+simulate\t%s\t\n", list(inProcess))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())

	if ratio > *maxRatio {
		t.Errorf("simulate takes %.2f times as long as grep -c (%v vs %v), target %.1f", ratio, simTime, grepTime, *maxRatio)
	}
	if simRSS > tgt.Bytes {
		t.Errorf("simulate peak RSS %.1f MB exceeds the dump's size %.1f MB", mb(simRSS), mb(tgt.Bytes))
	}
}

// workEnv carries TestBenchRatioWork's arguments: the dump file, the
// packet's destination address, port and protocol, and how many endpoints
// the answer must have, comma-separated.
const workEnv = "BENCH_RATIO_WORK"

// TestBenchRatioWork is TestBenchRatio's helper process: it times
// iptables.ParseReaderAt and iptables.Simulate on the dump, as the command
// runs them for --ruleset FILE, checks the answer and prints the time as
// "work <duration>".
func TestBenchRatioWork(t *testing.T) {
	args := strings.Split(os.Getenv(workEnv), ",")
	if len(args) != 5 {
		t.Skip("TestBenchRatio's helper process")
	}
	port, err := strconv.Atoi(args[2])
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := strconv.Atoi(args[4])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f, err := os.Open(args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	d, err := iptables.ParseReaderAt(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := iptables.Simulate(d, trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: netip.MustParseAddr(args[1]), DestinationPort: uint16(port), Protocol: args[3]},
		iptables.Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if sim.Verdict != trace.VerdictDNAT || len(sim.Endpoints) != endpoints {
		t.Fatalf("verdict %s to %d endpoints, want DNAT to %d", sim.Verdict, len(sim.Endpoints), endpoints)
	}
	fmt.Printf("work %v\n", elapsed)
}

// workLine returns the duration TestBenchRatioWork printed.
func workLine(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(line, "work "); ok {
			return d
		}
	}
	return ""
}

// releaseBuild builds the plugin the way releases are built
// (.goreleaser.yaml: CGO_ENABLED=0, -trimpath, -s -w), so the numbers are
// those of the binaries users run: bin (kubectl-trace_svc, which runs
// simulate and version) and trace-svc-cluster beside it (everything else).
// The same build makes test/bench/rusage beside them, and run starts every
// measured command through it from then on.
func releaseBuild(bin string) []string {
	rusageLauncher = filepath.Join(filepath.Dir(bin), "rusage")
	return []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Dir(bin) + string(filepath.Separator), "./cmd/kubectl-trace_svc", "./cmd/trace-svc-cluster", "./test/bench/rusage"}
}

// rusageLauncher is test/bench/rusage once releaseBuild has built it: run
// starts commands through it, so that their peak RSS is measured above its
// few megabytes rather than above this test binary's peak.
var rusageLauncher string

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
	cpu       time.Duration // user and system time
	maxRSS    int64         // bytes
	parentHWM int64         // this process's peak RSS when the child started, bytes
	stdout    []byte
}

// run runs cmd with its output in pipes (GNU grep cuts its work short when
// its output is /dev/null) and returns its wall time and peak RSS.
func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	if rusageLauncher != "" {
		return runThroughLauncher(t, cmd)
	}
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
	return result{wall: wall, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), maxRSS: ru.Maxrss * 1024, parentHWM: hwm, stdout: stdout.Bytes()} // Maxrss is in KiB on Linux
}

// runThroughLauncher is run with cmd started by test/bench/rusage: the
// times and peak RSS are those rusage measured, and the floor its own peak.
func runThroughLauncher(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	l := exec.Command(rusageLauncher, append([]string{cmd.Path}, cmd.Args[1:]...)...)
	l.Env, l.Dir, l.Stdin = cmd.Env, cmd.Dir, cmd.Stdin
	var stdout, stderr bytes.Buffer
	l.Stdout, l.Stderr = &stdout, &stderr
	l.ExtraFiles = []*os.File{pw}
	err = l.Run()
	pw.Close()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	report, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	var wallNS, cpuNS, maxKiB, floorKiB int64
	if _, err := fmt.Sscanf(string(report), "%d %d %d %d", &wallNS, &cpuNS, &maxKiB, &floorKiB); err != nil {
		t.Fatalf("rusage reported %q: %v", report, err)
	}
	return result{wall: time.Duration(wallNS), cpu: time.Duration(cpuNS), maxRSS: maxKiB * 1024, parentHWM: floorKiB * 1024, stdout: stdout.Bytes()}
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
// endpoints (nftgen, its layout checked against real nft), "simulate"
// against "grep -c dnat" over the same file, on each shape:
//
//   - default: nftgen's mix (a node port on every fourth Service);
//   - external-ips: a LoadBalancer IP on every Service as well (service-ips
//     holds 20,000 elements, cluster-ips 10,000), kube-proxy 1.37's layout
//     (each Service chain one `dnat ip to numgen random mod 10 map { … }`
//     rule);
//   - long-names: and 63-character namespaces and Service names (chain
//     names of ~150 bytes, a 14 MB ruleset);
//   - one-line: and every set and map on one line (very large verdict maps
//     and sets on few lines: service-ips is a 3.7 MB line).
//
// The binary's fixed start-up cost (measured as "version": Go package
// initialisation of client-go and the rest) weighs a lot next to grep on a
// ruleset this size, so the table also shows the work alone: parsing and
// simulating the same file in this process, timed like the commands.
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
	gen := filepath.Join(dir, "nftgen.test")
	goRun(t, root, goTool, releaseBuild(bin)...)
	goRun(t, root, goTool, "test", "-c", "-o", gen, "./trace/nftables/internal/nftgen")
	for _, shape := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"external-ips", []string{"-nftgen.external-ip-every=1"}},
		{"long-names", []string{"-nftgen.external-ip-every=1", "-nftgen.long-names"}},
		{"one-line", []string{"-nftgen.external-ip-every=1", "-nftgen.long-names", "-nftgen.layout=one-line"}},
	} {
		t.Run(shape.name, func(t *testing.T) {
			ruleset := filepath.Join(dir, shape.name+".nft")
			cmd := exec.Command(gen, append([]string{"-test.run=^TestWriteRulesetFile$", "-nftgen.out=" + ruleset}, shape.args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nftgen: %v\n%s", err, out)
			}
			benchRatioNFT(t, grep, bin, ruleset)
		})
	}
}

func benchRatioNFT(t *testing.T, grep, bin, ruleset string) {
	tgt := readNFTTarget(t, ruleset)

	grepCmd := func() *exec.Cmd { return exec.Command(grep, "-c", "dnat", ruleset) }
	versionCmd := func() *exec.Cmd { return exec.Command(bin, "version") }
	simCmd := func() *exec.Cmd {
		return exec.Command(bin, "simulate", "--ruleset", ruleset, "--node-ip", "192.168.0.2", "--src", "10.0.0.2",
			"--dst", tgt.ClusterIP.String(), "--dport", strconv.Itoa(int(tgt.Port)), "-o", "json")
	}
	// inProcess is simulate's work without the process start: read the
	// file, parse it, walk the packet, timed inside a fresh process (this
	// test binary, run as TestNFTWork) so that the heap is as cold as the
	// command's, and this process's peak RSS, which every child inherits
	// as its floor, stays low.
	inProcess := func() (wall, cpu time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNFTWork$", "-bench-ratio.nft-work="+ruleset)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("TestNFTWork: %v\n%s", err, out)
		}
		var ns, cpuNS int64
		if _, err := fmt.Sscanf(string(out), "work-ns: %d cpu-ns: %d", &ns, &cpuNS); err != nil {
			t.Fatalf("TestNFTWork printed no times (%v):\n%s", err, out)
		}
		return time.Duration(ns), time.Duration(cpuNS)
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
		if err := checkEndpoints(tgt.Endpoints, sim.Verdict, got); err != nil {
			t.Fatalf("simulate to %s:%d: %v", tgt.ClusterIP, tgt.Port, err)
		}
	}

	checkGrep(run(t, grepCmd()).stdout)
	checkSim(run(t, simCmd()).stdout)
	run(t, versionCmd())
	inProcess()
	var grepRuns, simRuns, versionRuns, workRuns []result
	for range *runs {
		g := run(t, grepCmd())
		checkGrep(g.stdout)
		s := run(t, simCmd())
		checkSim(s.stdout)
		v := run(t, versionCmd())
		w, wcpu := inProcess()
		grepRuns, simRuns, versionRuns, workRuns = append(grepRuns, g), append(simRuns, s), append(versionRuns, v), append(workRuns, result{wall: w, cpu: wcpu})
	}
	maxRSS := func(rs []result) int64 {
		return slices.MaxFunc(rs, func(a, b result) int { return int(a.maxRSS - b.maxRSS) }).maxRSS
	}
	grepTime, simTime, versionTime, workTime := median(grepRuns, wall), median(simRuns, wall), median(versionRuns, wall), median(workRuns, wall)
	ratio := float64(simTime) / float64(grepTime)
	workRatio := float64(workTime) / float64(grepTime)
	simRSS, versionRSS := maxRSS(simRuns), maxRSS(versionRuns)

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	names := "short names"
	if tgt.LongNames {
		names = "63-character namespaces and names"
	}
	fmt.Fprintf(tw, "ruleset\t%d Services, %d endpoints, %d service-ips elements, %s, %s layout, %.1f MB (%d bytes), nft list ruleset text\t\n",
		tgt.Services, tgt.TotalEndpoints, tgt.ServiceIPs, names, tgt.Layout, mb(tgt.Bytes), tgt.Bytes)
	fmt.Fprintf(tw, "packet\t10.0.0.2 -> %s:%d/tcp (%d endpoints)\t\n", tgt.ClusterIP, tgt.Port, len(tgt.Endpoints))
	fmt.Fprintf(tw, "grep -c dnat median of %d\t%v\t\n", *runs, grepTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "simulate median of %d\t%v\t\n", *runs, simTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "version median (start-up)\t%v\t\n", versionTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "read+parse+simulate in process, median\t%v\t\n", workTime.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "ratio simulate/grep (whole command)\t%.2f (target <= %.1f: %s)\t\n", ratio, *maxRatio, met(ratio <= *maxRatio))
	fmt.Fprintf(tw, "ratio in-process work/grep\t%.2f (target <= %.1f: %s)\t\n", workRatio, *maxRatio, met(workRatio <= *maxRatio))
	fmt.Fprintf(tw, "ratio (simulate-version)/grep\t%.2f\t\n", float64(simTime-versionTime)/float64(grepTime))
	// CPU time (user and system) says less about the other processes on a
	// loaded machine than wall time does.
	cpu := func(r result) time.Duration { return r.cpu }
	grepCPU, simCPU, versionCPU, workCPU := median(grepRuns, cpu), median(simRuns, cpu), median(versionRuns, cpu), median(workRuns, cpu)
	fmt.Fprintf(tw, "CPU medians grep / simulate / version / in process\t%v / %v / %v / %v\t\n", grepCPU.Round(100*time.Microsecond),
		simCPU.Round(100*time.Microsecond), versionCPU.Round(100*time.Microsecond), workCPU.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "CPU ratios simulate/grep, in process/grep\t%.2f, %.2f\t\n", float64(simCPU)/float64(grepCPU), float64(workCPU)/float64(grepCPU))
	fmt.Fprintf(tw, "simulate peak RSS\t%.1f MB (%.2f of the ruleset: %s)\t\n", mb(simRSS), float64(simRSS)/float64(tgt.Bytes), met(simRSS <= tgt.Bytes))
	fmt.Fprintf(tw, "version peak RSS (start-up)\t%.1f MB\t\n", mb(versionRSS))
	fmt.Fprintf(tw, "RSS the ruleset costs\t%.1f MB (%.2f of the ruleset)\t\n", mb(simRSS-versionRSS), float64(simRSS-versionRSS)/float64(tgt.Bytes))
	fmt.Fprintf(tw, "all runs grep\t%s\t\n", list(grepRuns))
	fmt.Fprintf(tw, "all runs simulate\t%s\t\n", list(simRuns))
	fmt.Fprintf(tw, "all runs version\t%s\t\n", list(versionRuns))
	fmt.Fprintf(tw, "all runs in process\t%s\t\n", listWall(workRuns))
	_ = tw.Flush()
	t.Logf("\n%s", table.String())
}

// nftTarget is what nftgen's TestWriteRulesetFile writes next to a
// ruleset: the Service the benchmark's packet goes to, and the ruleset's
// shape.
type nftTarget struct {
	ClusterIP      netip.Addr `json:"clusterIP"`
	Port           uint16     `json:"port"`
	Endpoints      []string   `json:"endpoints"`
	Services       int        `json:"services"`
	TotalEndpoints int        `json:"totalEndpoints"`
	ServiceIPs     int        `json:"serviceIPs"`
	LongNames      bool       `json:"longNames"`
	Layout         string     `json:"layout"`
	Bytes          int64      `json:"bytes"`
}

func readNFTTarget(t *testing.T, ruleset string) nftTarget {
	t.Helper()
	var tgt nftTarget
	js, err := os.ReadFile(ruleset + ".target.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tgt); err != nil {
		t.Fatal(err)
	}
	return tgt
}

// checkEndpoints says whether a simulation DNATed to exactly the wanted
// endpoints.
func checkEndpoints(want []string, verdict string, got []string) error {
	want = slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	if verdict != "DNAT" || !slices.Equal(got, want) {
		return fmt.Errorf("verdict %s to %v, want DNAT to %v", verdict, got, want)
	}
	return nil
}

var nftWork = flag.String("bench-ratio.nft-work", "", "TestNFTWork reads, parses and simulates this ruleset once and prints how long it took (run by TestBenchRatioNFT)")

// TestNFTWork is TestBenchRatioNFT's in-process measurement, run in a
// process of its own: read the ruleset, parse it and simulate the packet,
// as simulate does, timed without the process's start-up.
func TestNFTWork(t *testing.T) {
	if *nftWork == "" {
		t.Skip("run by TestBenchRatioNFT")
	}
	tgt := readNFTTarget(t, *nftWork)
	pkt := trace.Packet{Source: netip.MustParseAddr("10.0.0.2"), Destination: tgt.ClusterIP, DestinationPort: tgt.Port, Protocol: "tcp"}
	opts := nftables.Options{WalkOptions: trace.WalkOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}}
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	data, err := os.ReadFile(*nftWork)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := nftables.ParseTextBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := nftables.Simulate(rs, pkt, opts)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		t.Fatal(err)
	}
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	var got []string
	for _, e := range sim.Endpoints {
		got = append(got, netip.AddrPortFrom(e.IP, e.Port).String())
	}
	if err := checkEndpoints(tgt.Endpoints, string(sim.Verdict), got); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("work-ns: %d cpu-ns: %d\n", took.Nanoseconds(), cpu)
}

func listWall(rs []result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.1fms", float64(r.wall.Microseconds())/1000)
	}
	return strings.Join(parts, " ")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
