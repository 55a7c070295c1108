package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

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
	goRun(t, root, goTool, "build", "-o", bin, "./cmd/kubectl-trace_svc")
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
