package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDebugPod checks the collection itself. The plugin collects each
// node's rules through a node debug pod — a container the node's kubelet
// runs with containerd and runc, the dump script exec'd in it through the
// apiserver, the kubelet and containerd's streaming server — and its
// prediction must equal the one from the node's rules saved by hand
// (--dump); the dumps it saves (--save-dumps) give the same findings when
// replayed; no debug pod may remain, in the API or in the nodes' container
// runtimes, also when the plugin is interrupted (SIGINT) while it waits
// for its pods (an image no node can pull) or while the dump script runs.
func TestDebugPod(t *testing.T) {
	setup(t).eachMode(t, "dbg", func(t *testing.T, c *cluster, mode string) {
		n1, n2 := c.twoNodes()
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		np := c.nodePortService("echo-cluster", "echo", "Cluster", true)
		check := wantInRules(podIP)
		rules := c.settle(map[*node]func(string) string{n1: check, n2: check})
		dumps := map[string]string{}
		for n, r := range rules {
			f := filepath.Join(c.dir, n.name+".rules")
			if err := os.WriteFile(f, []byte(r), 0o600); err != nil {
				t.Fatal(err)
			}
			dumps[n.name] = f
		}

		t.Run("same-prediction-as-dump", func(t *testing.T) {
			fromDump := c.traceDumps(t, "echo-cluster", dumps)
			saved := filepath.Join(c.dir, "saved-dumps")
			live := c.trace(t, "echo-cluster", "--save-dumps", saved)
			for _, n := range []*node{n1, n2} {
				want := fromDump.path(t, n.name, mode, n.ip, np)
				got := live.path(t, n.name, mode, n.ip, np)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: debug pod path\n  %+v\nwant (from --dump)\n  %+v", n.name, got, want)
				}
				if got.Verdict != "DNAT" || !got.Masquerade || len(got.Endpoints) != 1 ||
					got.Endpoints[0].Pod == nil || got.Endpoints[0].Pod.Name != podName {
					t.Errorf("%s: %s masquerade=%v endpoints %+v, want DNAT to pod %s with masquerade", n.name, got.Verdict, got.Masquerade, got.Endpoints, podName)
				}
			}
			// Whole nodes and findings too: the same from both sources.
			if !reflect.DeepEqual(nodesByName(live.pathDoc), nodesByName(fromDump.pathDoc)) {
				t.Errorf("debug pod nodes differ from --dump nodes:\n%s\nvs\n%s", live.raw, fromDump.raw)
			}
			// The rules-only dump has no routes, so the findings about
			// routes come from the debug pods alone; the replay of the
			// saved sections below compares those too.
			if got, want := findingSet(live.pathDoc, "RoutesAssumed"), findingSet(fromDump.pathDoc); !reflect.DeepEqual(got, want) {
				t.Errorf("findings through debug pods %v, from --dump %v", got, want)
			}

			// The dumps the debug pods saved, of kube-proxy's backend,
			// replayed, give the same findings.
			files, _ := filepath.Glob(filepath.Join(saved, "*"))
			for _, f := range files {
				t.Logf("saved by a debug pod: %s (%d bytes)", filepath.Base(f), fileSize(f))
			}
			replay := c.traceDumps(t, "echo-cluster", nil, replayArgs(t, saved, mode)...)
			if got, want := findingSet(live.pathDoc), findingSet(replay.pathDoc); !reflect.DeepEqual(got, want) {
				t.Errorf("live findings %v differ from the replay of the saved dumps %v", got, want)
			}
		})

		t.Run("sigint-while-pending", func(t *testing.T) {
			// An image no node has and none can pull keeps the debug pods
			// Pending (ErrImagePull), so the plugin is still waiting when
			// interrupted.
			p := c.startPlugin(t, "echo-cluster", "-o", "json", "--image", unpullable)
			var pods []string
			deadline := time.Now().Add(30 * time.Second)
			for len(pods) < len(c.nodes) {
				if time.Now().After(deadline) {
					t.Fatalf("not every node's debug pod appeared in 30s (%v); plugin stderr:\n%s", pods, p.stderr.String())
				}
				p.mustRun(t, 100*time.Millisecond)
				pods = c.debugPods()
			}
			t.Logf("debug pods while the plugin waits for the image: %v; sending SIGINT", pods)
			p.interrupt(t)
			c.wantDebugPodsGone(t, "default")
		})

		t.Run("sigint-during-exec", func(t *testing.T) {
			// slowImage's iptables-nft-save sleeps first: the dump script
			// is still running in every debug pod (exec'd through the
			// kubelet and containerd) when the plugin is interrupted.
			for _, n := range c.nodes {
				c.importImage(n, slowImage)
			}
			p := c.startPlugin(t, "echo-cluster", "-o", "json", "--image", slowImage)
			deadline := time.Now().Add(60 * time.Second)
			for {
				busy := 0
				for _, n := range c.nodes {
					if len(c.slowDumps(n)) > 0 {
						busy++
					}
				}
				if busy == len(c.nodes) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the dump script is not running in every node's debug pod after 60s; plugin stderr:\n%s", p.stderr.String())
				}
				p.mustRun(t, 100*time.Millisecond)
			}
			t.Logf("dump script exec'd in every debug pod (%v); sending SIGINT", c.debugPods())
			p.interrupt(t)
			c.wantDebugPodsGone(t, "default")
			for _, n := range c.nodes {
				if left := c.slowDumps(n); len(left) > 0 {
					t.Errorf("%s: the interrupted dump still runs (pids %v) after its debug pod was stopped", n.name, left)
				}
			}
		})

		t.Run("removed-from-runtime", func(t *testing.T) {
			// Every debug pod of the subtests above, stopped at once, is
			// removed from its node's containerd by the kubelet's garbage
			// collection.
			c.wantDebugPodsRemoved(t, "default")
		})
	})
}

// pluginRun is the plugin running in the background.
type pluginRun struct {
	cmd            *exec.Cmd
	stdout, stderr strings.Builder
	exited         chan error
}

// startPlugin starts the plugin on svc in the background, with the suite's
// debug-pod flags and extra; it is killed at the end of the test if still
// running.
func (c *cluster) startPlugin(t *testing.T, svc string, extra ...string) *pluginRun {
	t.Helper()
	c.waitNodesReady()
	p := &pluginRun{exited: make(chan error, 1)}
	p.cmd = exec.Command(c.plugin, append(append([]string{svc, "-n", e2eNS, "--kubeconfig", c.adminKubeconfig}, debugPodFlags...), extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// mustRun waits d and fails the test if the plugin exited meanwhile.
func (p *pluginRun) mustRun(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.exited:
		t.Fatalf("plugin exited early: %v\nstderr:\n%s", err, p.stderr.String())
	case <-time.After(d):
	}
}

// interrupt sends SIGINT and checks that the plugin exits soon, non-zero
// and without a result: an interrupted trace must not look like a finished
// one.
func (p *pluginRun) interrupt(t *testing.T) {
	t.Helper()
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		t.Logf("plugin exited %v after SIGINT: %v; stdout %d bytes; stderr:\n%s",
			time.Since(sent).Round(time.Millisecond), err, p.stdout.Len(), p.stderr.String())
		if err == nil || p.stdout.Len() != 0 {
			t.Errorf("after SIGINT the plugin exited with %v and printed %d bytes; want a non-zero exit and no result", err, p.stdout.Len())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("plugin still running 20s after SIGINT; stderr:\n%s", p.stderr.String())
	}
}

// slowDumps returns the PIDs of slowImage's sleeping iptables-nft-save on
// node: the dump script, exec'd in a debug pod, still running.
func (c *cluster) slowDumps(n *node) []int {
	var pids []int
	for _, pid := range cgroupPIDs(n.cgroup) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if string(b) == "sleep\x00"+slowDumpSleep+"\x00" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// findingSet is the set of "node Code message" of a trace's findings.
func findingSet(tp pathDoc, skipCodes ...string) map[string]bool {
	m := map[string]bool{}
	for _, f := range tp.Findings {
		if slices.Contains(skipCodes, f.Code) {
			continue
		}
		m[f.Node+" "+f.Code+" "+f.Message] = true
	}
	return m
}

// nodesByName keys the plugin's nodes by name, for comparing two runs.
func nodesByName(tp pathDoc) map[string]nodeDoc {
	m := map[string]nodeDoc{}
	for _, n := range tp.Nodes {
		m[n.Name] = n
	}
	return m
}
