package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debugPodSelector is the label every node debug pod of the plugin has.
const debugPodSelector = "trace-svc.io/debug-pod=true"

// TestDebugPod runs the plugin without --dump on a two-node cluster in
// iptables mode, so it collects each node's rules through a node debug pod:
// the stand-in kubelet (cmd/kubelet) marks the pod Running and serves the
// exec, running the dump script in the node's namespace. The prediction
// must equal the one from the --dump path, and no debug pod may remain —
// also when the plugin is interrupted while it waits for its pods.
func TestDebugPod(t *testing.T) {
	bin := requireE2E(t)
	start := time.Now()
	tools := t.TempDir()
	plugin := filepath.Join(tools, "kubectl-trace_svc")
	echo := filepath.Join(tools, "echoserver")
	kubelet := filepath.Join(tools, "kubelet")
	goBuild(t, "../..", plugin, "./cmd/kubectl-trace_svc")
	goBuild(t, ".", echo, "./cmd/echoserver")
	goBuild(t, ".", kubelet, "./cmd/kubelet")
	t.Logf("built plugin, echo server and kubelet in %v", time.Since(start).Round(time.Millisecond))

	c := newClusterTagged(t, bin, "dbg-")
	c.kubeletBin = kubelet
	t.Logf("control plane ready in %v (netns prefix %s)", time.Since(start).Round(time.Millisecond), c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", "iptables")
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", "iptables")
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	np := c.nodePortService("echo-cluster", "echo", "Cluster", true)

	// Wait until both kube-proxies wrote the node port's rules and the rules
	// stopped changing, and both kubelets announced their port.
	deadline := time.Now().Add(60 * time.Second)
	prev, stable := map[string]string{}, 0
	for {
		missing, changed := "", false
		cur := map[string]string{}
		for _, n := range []*node{n1, n2} {
			r := string(c.rules(n))
			cur[n.name] = r
			changed = changed || withoutComments(r) != withoutComments(prev[n.name])
			if !strings.Contains(r, strconv.Itoa(np)) {
				missing += " rules:" + n.name
			}
			if c.kubeletPort(n) != 10250 {
				missing += " kubelet:" + n.name
			}
		}
		prev = cur
		if missing != "" || changed {
			stable = 0
		} else if stable++; stable == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled:%s", missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("rules settled and kubelets up after %v", time.Since(start).Round(time.Millisecond))

	dumps := map[string]string{}
	for _, n := range []*node{n1, n2} {
		f := filepath.Join(c.dir, n.name+".rules")
		if err := os.WriteFile(f, []byte(prev[n.name]), 0o600); err != nil {
			t.Fatal(err)
		}
		dumps[n.name] = f
	}

	t.Run("same-prediction-as-dump", func(t *testing.T) {
		fromDump := tracePlugin(t, c, plugin, "echo-cluster", dumps)
		begin := time.Now()
		saved := filepath.Join(c.dir, "saved-dumps")
		live := tracePlugin(t, c, plugin, "echo-cluster", nil,
			"--image", "e2e.local/no-pull", "--timeout", "60s", "--save-dumps", saved)
		t.Logf("plugin through debug pods took %v", time.Since(begin).Round(time.Millisecond))
		for _, n := range []*node{n1, n2} {
			want := fromDump.path(t, n.name, "iptables", n.ip, np)
			got := live.path(t, n.name, "iptables", n.ip, np)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: debug pod path\n  %+v\nwant (from --dump)\n  %+v", n.name, got, want)
			}
			if got.Verdict != "DNAT" || !got.Masquerade {
				t.Errorf("%s: verdict %s masquerade %v, want DNAT with masquerade", n.name, got.Verdict, got.Masquerade)
			}
			if len(got.Endpoints) != 1 || got.Endpoints[0].IP != netip.MustParseAddr(podIP) ||
				got.Endpoints[0].Pod == nil || got.Endpoints[0].Pod.Name != podName {
				t.Errorf("%s: endpoints %+v, want only pod %s (%s)", n.name, got.Endpoints, podName, podIP)
			}
			t.Logf("%s: %s masquerade=%v -> %s", n.name, got.Verdict, got.Masquerade, podIP)
		}
		// Whole nodes too: the same paths for every entry, from both sources.
		if !reflect.DeepEqual(nodesByName(live.tracePath), nodesByName(fromDump.tracePath)) {
			t.Errorf("debug pod nodes differ from --dump nodes:\n%s\nvs\n%s", live.raw, fromDump.raw)
		}
		if left := c.debugPods(); len(left) > 0 {
			t.Errorf("debug pods left after the plugin exited: %v", left)
		}

		// Findings: the same as from --dump, but for ServiceChainMissing,
		// which the plugin raises for every ruleset of a node without the
		// Service's chain — here the IPv6 one (ip6tables-nft-save) of an
		// IPv4-only Service: a plugin bug, logged rather than failed.
		// Replaying the iptables dumps the debug pods collected
		// (--save-dumps: IPv4 and IPv6) gives exactly the live findings,
		// which shows it is not a collection problem.
		files, _ := filepath.Glob(filepath.Join(saved, "*"))
		var replayArgs []string
		for _, f := range files {
			base := filepath.Base(f)
			t.Logf("collected by a debug pod: %s (%d bytes)", base, fileSize(f))
			if strings.HasSuffix(base, "tables-nft-save") {
				replayArgs = append(replayArgs, "--dump", strings.SplitN(base, ".", 2)[0]+"="+f)
			}
		}
		replay := tracePlugin(t, c, plugin, "echo-cluster", nil, replayArgs...)
		if got, want := findingSet(live.tracePath), findingSet(replay.tracePath); !reflect.DeepEqual(got, want) {
			t.Errorf("live findings %v differ from the replay of the collected dumps %v", got, want)
		}
		liveF, dumpF := findingSet(live.tracePath), findingSet(fromDump.tracePath)
		for f := range liveF {
			if !dumpF[f] {
				t.Errorf("finding only through the debug pod: %s", f)
			}
		}
		for f := range dumpF {
			if !liveF[f] {
				t.Errorf("finding only from --dump: %s", f)
			}
		}
	})

	t.Run("sigint-deletes-debug-pods", func(t *testing.T) {
		// Hold new pods Pending so the plugin is still waiting when
		// interrupted.
		if err := os.WriteFile(c.kubeletHold, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(c.kubeletHold)
		cmd := exec.Command(plugin, "echo-cluster", "-n", e2eNS, "--kubeconfig", c.adminKubeconfig,
			"-o", "json", "--image", "e2e.local/no-pull", "--timeout", "60s")
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
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// findingSet is the set of "Code message" of a trace's findings.
func findingSet(tp tracePath) map[string]bool {
	m := map[string]bool{}
	for _, f := range tp.Findings {
		m[f.Code+" "+f.Message] = true
	}
	return m
}

// nodesByName keys the plugin's nodes by name, for comparing two runs.
func nodesByName(tp tracePath) map[string]any {
	m := map[string]any{}
	for _, n := range tp.Nodes {
		m[n.Name] = n
	}
	return m
}

// kubeletPort returns the kubelet port node's status announces (0 if none).
func (c *cluster) kubeletPort(n *node) int {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/nodes/"+n.name, nil)
	if err != nil || code != 200 {
		return 0
	}
	var obj struct {
		Status struct {
			DaemonEndpoints struct {
				KubeletEndpoint struct {
					Port int `json:"Port"`
				} `json:"kubeletEndpoint"`
			} `json:"daemonEndpoints"`
		} `json:"status"`
	}
	if json.Unmarshal(body, &obj) != nil {
		return 0
	}
	return obj.Status.DaemonEndpoints.KubeletEndpoint.Port
}

// debugPods lists the plugin's debug pods in every namespace as
// namespace/name.
func (c *cluster) debugPods() []string {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/pods?labelSelector="+debugPodSelector, nil)
	if err != nil || code != 200 {
		c.t.Fatalf("list debug pods: %d %v\n%s", code, err, body)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		out = append(out, fmt.Sprintf("%s/%s", p.Metadata.Namespace, p.Metadata.Name))
	}
	return out
}
