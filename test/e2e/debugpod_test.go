package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDebugPod checks the collection itself. The plugin collects each
// node's rules through a node debug pod — the stand-in kubelet marks it
// Running and serves the exec, running the dump script in the node's
// namespace — and its prediction must equal the one from the node's rules
// saved by hand (--dump); the dumps it saves (--save-dumps) give the same
// findings when replayed; no debug pod may remain, also when the plugin is
// interrupted (SIGINT) while it waits for its pods.
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
			if got, want := findingSet(live.pathDoc), findingSet(fromDump.pathDoc); !reflect.DeepEqual(got, want) {
				t.Errorf("findings through debug pods %v, from --dump %v", got, want)
			}

			// The dumps the debug pods saved, of kube-proxy's backend,
			// replayed, give the same findings.
			suffix := map[string]string{"iptables": "tables-nft-save", "iptables-legacy": "tables-legacy-save", "nftables": ".nft"}[mode]
			files, _ := filepath.Glob(filepath.Join(saved, "*"))
			var replayArgs []string
			for _, f := range files {
				base := filepath.Base(f)
				t.Logf("saved by a debug pod: %s (%d bytes)", base, fileSize(f))
				if strings.HasSuffix(base, suffix) {
					replayArgs = append(replayArgs, "--dump", strings.SplitN(base, ".", 2)[0]+"="+f)
				}
			}
			if len(replayArgs) == 0 {
				t.Fatalf("--save-dumps saved no *%s file: %v", suffix, files)
			}
			replay := c.traceDumps(t, "echo-cluster", nil, replayArgs...)
			if got, want := findingSet(live.pathDoc), findingSet(replay.pathDoc); !reflect.DeepEqual(got, want) {
				t.Errorf("live findings %v differ from the replay of the saved dumps %v", got, want)
			}
		})

		t.Run("sigint-deletes-debug-pods", func(t *testing.T) {
			// An image no node has and none can pull keeps the debug pods
			// Pending (ErrImagePull), so the plugin is still waiting when
			// interrupted.
			cmd := exec.Command(c.plugin, append([]string{"echo-cluster", "-n", e2eNS, "--kubeconfig", c.adminKubeconfig, "-o", "json", "--image", unpullable}, debugPodFlags...)...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					<-exited
				}
			}()
			var pods []string
			deadline := time.Now().Add(30 * time.Second)
			for len(pods) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no debug pod appeared in 30s; plugin stderr:\n%s", stderr.String())
				}
				select {
				case err := <-exited:
					t.Fatalf("plugin exited before a debug pod was seen: %v\nstderr:\n%s", err, stderr.String())
				case <-time.After(100 * time.Millisecond):
				}
				pods = c.debugPods()
			}
			t.Logf("debug pods while the plugin waits: %v; sending SIGINT", pods)
			sent := time.Now()
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				t.Logf("plugin exited %v after SIGINT: %v; stdout %d bytes; stderr:\n%s",
					time.Since(sent).Round(time.Millisecond), err, stdout.Len(), stderr.String())
				// An interrupted trace must not look like a finished one.
				if err == nil || stdout.Len() != 0 {
					t.Errorf("after SIGINT the plugin exited with %v and printed %d bytes; want a non-zero exit and no result", err, stdout.Len())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("plugin still running 20s after SIGINT; stderr:\n%s", stderr.String())
			}
			if left := c.debugPods(); len(left) > 0 {
				t.Errorf("debug pods left after SIGINT: %v\nplugin stderr:\n%s", left, stderr.String())
			}
		})
	})
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// findingSet is the set of "node Code message" of a trace's findings.
func findingSet(tp pathDoc) map[string]bool {
	m := map[string]bool{}
	for _, f := range tp.Findings {
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
