// Package e2e runs the built kubectl-trace_svc against a real control plane
// (etcd, kube-apiserver) and real kube-proxy, each in its own network
// namespace on this machine, and checks the plugin's predictions against the
// packets that actually flow.
//
// Every test runs once per kube-proxy mode (iptables, nftables, and iptables
// with the legacy binaries). The plugin runs as a user runs it: with a
// kubeconfig and no saved dumps, so it collects each node's rules through a
// node debug pod — a real container, started by each node's real kubelet
// and containerd and exec'd through them; -o json
// gives the prediction the packets are checked against, and -o tree and
// -o dot must show the same paths.
//
// Opt-in: needs root and either -e2e or E2E=1, and the binaries from
// build.sh (make e2e does both).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	e2eFlag    = flag.Bool("e2e", false, "run the end-to-end suite (needs root and the binaries from build.sh)")
	k8sVersion = flag.String("k8s-version", "v1.37.2", "version of the kube-apiserver, kube-proxy and kubelet binaries to use")
)

// netnsPrefix starts every network namespace the suite creates, followed by
// the test process's PID: tsvc-e2e-<pid>-<tag>...
const netnsPrefix = "tsvc-e2e-"

func TestMain(m *testing.M) {
	flag.Parse()
	runDir := ""
	if enabled() && os.Geteuid() == 0 {
		// Processes first (in cgroups), then namespaces and directories.
		sweepStaleCgroups()
		sweepStale()
		// Every file of this run (tools, certificates, etcd's data, logs,
		// dumps) goes under one directory named for this process, so a
		// later run can sweep it if this one is killed.
		runDir = filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", netnsPrefix, os.Getpid()))
		if err := os.MkdirAll(runDir, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		os.Setenv("TMPDIR", runDir)
	}
	code := m.Run()
	if runDir != "" {
		os.RemoveAll(runDir)
	}
	os.Exit(code)
}

func enabled() bool { return *e2eFlag || os.Getenv("E2E") == "1" }

// sweepStale deletes what earlier runs left when their test process was
// killed (SIGKILL: no cleanup ran): their network namespaces, after
// killing by PID what still runs inside them, and their directory. The
// names are the suite's own (netnsPrefix + a PID no longer running), so
// nothing else is touched.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), netnsPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), netnsPrefix))
		if err == nil && !processAlive(pid) {
			os.RemoveAll(d)
			fmt.Fprintf(os.Stderr, "e2e: deleted stale directory %s (its test run, pid %d, is gone)\n", d, pid)
		}
	}
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	re := regexp.MustCompile("^" + regexp.QuoteMeta(netnsPrefix) + `(\d+)-`)
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || processAlive(pid) {
			continue
		}
		out, _ := exec.Command("ip", "netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: could not delete stale namespace %s: %v: %s\n", e.Name(), err, out)
			continue
		}
		fmt.Fprintf(os.Stderr, "e2e: deleted stale namespace %s (its test run, pid %s, is gone)\n", e.Name(), m[1])
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// cacheDir is the suite's cache: build.sh's binaries under bin/, the debug
// images under images/.
func cacheDir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "kubectl-trace-svc", "e2e")
}

// binDir is where build.sh puts etcd, kube-apiserver, kube-proxy and
// kubelet.
func binDir() string { return filepath.Join(cacheDir(), "bin", *k8sVersion) }

// suite is what every test needs: the cluster binaries and the tools built
// from this checkout.
type suite struct {
	bin    string // etcd, kube-apiserver, kube-proxy, kubelet
	plugin string // kubectl-trace_svc, built from the working tree
	echo   string // the pods' HTTP server
	pause  string // the pods' sandbox process
	images images // the nodes' images (images_test.go)
}

var (
	toolsDir  string // under the run's directory, removed with it
	toolsOnce sync.Once
	toolsErr  error
	tools     suite
)

// setup skips the test unless the suite can run here, and builds the tools
// once per run.
func setup(t *testing.T) suite {
	t.Helper()
	if !enabled() {
		t.Skip("end-to-end suite is opt-in: make e2e, or go test ./... -args -e2e (or E2E=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end suite needs root (network namespaces, iptables)")
	}
	bin := binDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-proxy", "kubelet"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Skipf("%s missing in %s: run test/e2e/build.sh first (make e2e does)", b, bin)
		}
	}
	for _, tool := range []string{"ip", "iptables-save", "openssl", "curl", "conntrack", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "ldd", "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH (test/e2e/build.sh installs it)", tool)
		}
	}
	toolsOnce.Do(func() {
		start := time.Now()
		toolsDir, toolsErr = os.MkdirTemp("", "tools-")
		if toolsErr != nil {
			return
		}
		tools = suite{
			bin:    bin,
			plugin: filepath.Join(toolsDir, "kubectl-trace_svc"),
			echo:   filepath.Join(toolsDir, "echoserver"),
			pause:  filepath.Join(toolsDir, "pause"),
		}
		for _, b := range []struct{ dir, out, pkg string }{
			{"../..", tools.plugin, "./cmd/kubectl-trace_svc"},
			// The plugin hands every command but simulate and version
			// to the binary beside it.
			{"../..", filepath.Join(toolsDir, "trace-svc-cluster"), "./cmd/trace-svc-cluster"},
			{".", tools.echo, "./cmd/echoserver"},
			{".", tools.pause, "./cmd/pause"},
		} {
			if toolsErr = goBuild(b.dir, b.out, b.pkg); toolsErr != nil {
				return
			}
		}
		built := time.Now()
		tools.images, toolsErr = buildImages(filepath.Join(toolsDir, "images"), filepath.Join(cacheDir(), "images"), tools.pause, tools.echo)
		if toolsErr != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: built the plugin, echo server and pause in %v, the images in %v\n",
			built.Sub(start).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return tools
}

// goBuild builds a package of the module rooted at dir into out.
func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// modes are kube-proxy's modes the suite runs each test in, with the short
// tag that goes into the test's namespace names.
var modes = []struct{ name, tag string }{
	{"iptables", "ipt"},
	{"nftables", "nft"},
	{"iptables-legacy", "leg"},
}

// eachMode runs fn as a subtest per kube-proxy mode, each with its own
// cluster (tagged tag-<mode>-) whose nodes run kube-proxy in that mode.
func (s suite) eachMode(t *testing.T, tag string, fn func(t *testing.T, c *cluster, mode string)) {
	t.Helper()
	for _, m := range modes {
		s.runMode(t, tag, m.name, m.tag, fn)
	}
}

// inMode runs fn as one subtest, in kube-proxy mode only: for what does not
// depend on the mode (the debug pod's life on a kubelet).
func (s suite) inMode(t *testing.T, tag, mode string, fn func(t *testing.T, c *cluster, mode string)) {
	t.Helper()
	for _, m := range modes {
		if m.name == mode {
			s.runMode(t, tag, m.name, m.tag, fn)
			return
		}
	}
	t.Fatalf("no kube-proxy mode %q", mode)
}

func (s suite) runMode(t *testing.T, tag, mode, modeTag string, fn func(t *testing.T, c *cluster, mode string)) {
	t.Helper()
	t.Run(mode, func(t *testing.T) {
		need := map[string][]string{
			"iptables":        {"iptables-nft-save"},
			"nftables":        {"nft"},
			"iptables-legacy": {"iptables-legacy-save"},
		}[mode]
		for _, tool := range need {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not on PATH: %s mode cannot run here", tool, mode)
			}
		}
		start := time.Now()
		c := s.cluster(t, tag+"-"+modeTag+"-", mode)
		t.Logf("control plane ready in %v (netns prefix %s)", time.Since(start).Round(time.Millisecond), c.prefix)
		fn(t, c, mode)
		t.Logf("%s done in %v", mode, time.Since(start).Round(time.Millisecond))
	})
}
