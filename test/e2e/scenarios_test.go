package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScenarios runs, once per kube-proxy mode, a two-node cluster (node1
// with the only pod, node2 without) and checks, for each scenario, that the
// plugin's prediction from the node's real rules matches what the packets do:
//
//	(a) NodePort on node2, externalTrafficPolicy Cluster: reaches the pod on
//	    node1, masqueraded (the pod sees node2's address);
//	(b) a Service without endpoints: its node port is refused (REJECT);
//	(c) externalTrafficPolicy Local: node2 has no local endpoint and drops
//	    (DROP); node1 DNATs without masquerade (the pod sees the client).
func TestScenarios(t *testing.T) {
	bin := requireE2E(t)
	start := time.Now()
	tools := t.TempDir()
	plugin := filepath.Join(tools, "kubectl-trace_svc")
	echo := filepath.Join(tools, "echoserver")
	goBuild(t, "../..", plugin, "./cmd/kubectl-trace_svc")
	goBuild(t, ".", echo, "./cmd/echoserver")
	t.Logf("built plugin and echo server in %v", time.Since(start).Round(time.Millisecond))

	for _, mode := range []struct{ name, tag string }{
		{"iptables", "ipt-"},
		{"nftables", "nft-"},
		{"iptables-legacy", "leg-"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.name == "nftables" {
				if _, err := exec.LookPath("nft"); err != nil {
					t.Skip("nft not on PATH")
				}
			}
			runScenarios(t, bin, plugin, echo, mode.name, mode.tag)
		})
	}
}

const (
	node1IP  = "10.250.0.11"
	node2IP  = "10.250.0.12"
	podIP    = "10.244.1.2"
	podName  = "echo-0"
	e2eNS    = "e2e"
	dropWait = 2 * time.Second // how long a connection must hang to count as dropped
)

func runScenarios(t *testing.T, bin, plugin, echo, mode, tag string) {
	start := time.Now()
	c := newClusterTagged(t, bin, tag)
	t.Logf("control plane ready in %v (netns prefix %s)", time.Since(start).Round(time.Millisecond), c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", mode)
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", mode)
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)

	npCluster := c.nodePortService("echo-cluster", "echo", "Cluster", true)
	npEmpty := c.nodePortService("empty", "nothing", "Cluster", false)
	npLocal := c.nodePortService("echo-local", "echo", "Local", true)
	t.Logf("node ports: echo-cluster %d, empty %d, echo-local %d", npCluster, npEmpty, npLocal)

	// Wait until both kube-proxies have written rules for all three node
	// ports and the rules have stopped changing (a Service can be synced
	// before its EndpointSlice; kube-proxy batches changes for up to 1 s):
	// before that, a refused or hanging connection would prove nothing.
	deadline := time.Now().Add(60 * time.Second)
	prev, stable := map[string]string{}, 0
	for {
		missing, changed := "", false
		cur := map[string]string{}
		for _, n := range []*node{n1, n2} {
			r := string(c.rules(n))
			cur[n.name] = r
			changed = changed || withoutComments(r) != withoutComments(prev[n.name])
			for _, np := range []int{npCluster, npEmpty, npLocal} {
				if !strings.Contains(r, strconv.Itoa(np)) {
					missing += fmt.Sprintf(" %s:%d", n.name, np)
				}
			}
		}
		prev = cur
		if missing != "" || changed {
			stable = 0
		} else if stable++; stable == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-proxy rules not settled (node ports missing:%s)", missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("rules for all node ports settled on both nodes after %v", time.Since(start).Round(time.Millisecond))

	// The prediction comes from those settled rules, on both nodes.
	dumps := map[string]string{}
	for _, n := range []*node{n1, n2} {
		f := filepath.Join(c.dir, n.name+".rules")
		if err := os.WriteFile(f, []byte(prev[n.name]), 0o600); err != nil {
			t.Fatal(err)
		}
		dumps[n.name] = f
	}

	t.Run("a-nodeport-node2-cluster-masquerade", func(t *testing.T) {
		res := curl(t, client, node2IP, npCluster, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl node2:%d: exit %d after %v: %s", npCluster, res.exit, res.took, res.out)
		}
		saw := podAnswer(t, res.out)
		p := tracePlugin(t, c, plugin, "echo-cluster", dumps).path(t, "node2", mode, node2IP, npCluster)
		if p.Verdict != "DNAT" || !p.Masquerade {
			t.Errorf("plugin: node2 verdict %s masquerade %v, want DNAT with masquerade", p.Verdict, p.Masquerade)
		}
		if len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Port != 8080 {
			t.Errorf("plugin: node2 endpoints %+v, want only %s:8080", p.Endpoints, podIP)
		}
		// The packets: masquerade means the pod saw node2.
		if want := netip.MustParseAddr(node2IP); saw != want {
			t.Errorf("pod saw %s, want node2's %s (masquerade)", saw, want)
		}
		t.Logf("curl node2:%d -> %s in %v; plugin %s masquerade=%v", npCluster, strings.TrimSpace(res.out), res.took, p.Verdict, p.Masquerade)
	})

	t.Run("b-no-endpoints-reject", func(t *testing.T) {
		tp := tracePlugin(t, c, plugin, "empty", dumps)
		for _, n := range []*node{n1, n2} {
			res := curl(t, client, n.ip, npEmpty, dropWait)
			// curl exit 7: could not connect (refused), fast.
			if res.exit != 7 || res.took >= dropWait/2 {
				t.Errorf("curl %s:%d: exit %d after %v, want a quick refusal (exit 7): %s", n.name, npEmpty, res.exit, res.took, res.out)
			}
			p := tp.path(t, n.name, mode, n.ip, npEmpty)
			if p.Verdict != "REJECT" {
				t.Errorf("plugin: %s verdict %s, want REJECT (why: %s)", n.name, p.Verdict, p.Why)
			}
			t.Logf("curl %s:%d refused in %v (exit %d); plugin %s (%s)", n.name, npEmpty, res.took, res.exit, p.Verdict, p.Why)
		}
	})

	t.Run("c-local-policy", func(t *testing.T) {
		tp := tracePlugin(t, c, plugin, "echo-local", dumps)

		// node2 has no local endpoint: dropped, so the connection hangs.
		res := curl(t, client, node2IP, npLocal, dropWait)
		if res.exit != 28 {
			t.Errorf("curl node2:%d: exit %d after %v, want a timeout (exit 28): %s", npLocal, res.exit, res.took, res.out)
		}
		p := tp.path(t, "node2", mode, node2IP, npLocal)
		if p.Verdict != "DROP" {
			t.Errorf("plugin: node2 verdict %s, want DROP (why: %s)", p.Verdict, p.Why)
		}
		t.Logf("curl node2:%d timed out after %v (exit %d); plugin %s (%s)", npLocal, res.took, res.exit, p.Verdict, p.Why)

		// node1 has the pod: DNAT, no masquerade, the pod sees the client.
		res = curl(t, client, node1IP, npLocal, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl node1:%d: exit %d after %v: %s", npLocal, res.exit, res.took, res.out)
		}
		saw := podAnswer(t, res.out)
		p = tp.path(t, "node1", mode, node1IP, npLocal)
		if p.Verdict != "DNAT" || p.Masquerade {
			t.Errorf("plugin: node1 verdict %s masquerade %v, want DNAT without masquerade", p.Verdict, p.Masquerade)
		}
		if len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Masquerade {
			t.Errorf("plugin: node1 endpoints %+v, want only %s without masquerade", p.Endpoints, podIP)
		}
		if want := netip.MustParseAddr(clientIP); saw != want {
			t.Errorf("pod saw %s, want the client's %s (no masquerade)", saw, want)
		}
		t.Logf("curl node1:%d -> %s in %v; plugin %s masquerade=%v", npLocal, strings.TrimSpace(res.out), res.took, p.Verdict, p.Masquerade)
	})
	t.Logf("%s done in %v", mode, time.Since(start).Round(time.Millisecond))
}

// nodePortService creates a NodePort Service port 80 -> 8080 with the given
// selector and external traffic policy and, if withPod, the EndpointSlice
// naming the pod on node1 (no controller-manager writes it). It returns the
// allocated node port.
func (c *cluster) nodePortService(name, app, policy string, withPod bool) int {
	c.t.Helper()
	svc := c.create("/api/v1/namespaces/"+e2eNS+"/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":%q},
		"spec":{"type":"NodePort","selector":{"app":%q},"externalTrafficPolicy":%q,
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, name, app, policy))
	nodePort := int(svc["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["nodePort"].(float64))
	if withPod {
		c.create("/apis/discovery.k8s.io/v1/namespaces/"+e2eNS+"/endpointslices", fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
		"metadata":{"name":"%s-1","labels":{"kubernetes.io/service-name":%q,"endpointslice.kubernetes.io/managed-by":"e2e.local"}},
		"addressType":"IPv4",
		"endpoints":[{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}],
		"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}`, name, name, podIP, e2eNS, podName))
	}
	return nodePort
}

// withoutComments drops the lines starting with # (iptables-save's
// "Generated ... on <date>" header and footer change every second).
func withoutComments(rules string) string {
	var b strings.Builder
	for _, l := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

type curlResult struct {
	out  string
	exit int
	took time.Duration
}

// curl fetches http://ip:port/ from the client namespace, giving up after
// timeout.
func curl(t *testing.T, clientNS, ip string, port int, timeout time.Duration) curlResult {
	t.Helper()
	secs := strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)
	begin := time.Now()
	out, err := exec.Command("ip", "netns", "exec", clientNS, "curl", "-sS",
		"--connect-timeout", secs, "--max-time", secs, fmt.Sprintf("http://%s:%d/", ip, port)).CombinedOutput()
	res := curlResult{out: string(out), took: time.Since(begin).Round(time.Millisecond)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.exit = ee.ExitCode()
	default:
		t.Fatalf("curl: %v", err)
	}
	return res
}

// podAnswer checks that the echo pod answered and returns the remote
// address it saw.
func podAnswer(t *testing.T, answer string) netip.Addr {
	t.Helper()
	answer = strings.TrimSpace(answer)
	if !strings.HasPrefix(answer, "name="+podName+" ") {
		t.Errorf("answer %q does not come from pod %s", answer, podName)
	}
	i := strings.Index(answer, "remote=")
	if i < 0 {
		t.Fatalf("pod's answer %q has no remote address", answer)
	}
	ap, err := netip.ParseAddrPort(answer[i+len("remote="):])
	if err != nil {
		t.Fatalf("pod's answer %q: %v", answer, err)
	}
	return ap.Addr()
}

type traced struct {
	tracePath
	raw []byte
}

// tracePlugin runs the built plugin on a Service with a saved dump per node
// (none: it collects the rules through node debug pods) and extra flags.
func tracePlugin(t *testing.T, c *cluster, plugin, svc string, dumps map[string]string, extra ...string) *traced {
	t.Helper()
	args := []string{svc, "-n", e2eNS, "--kubeconfig", c.adminKubeconfig, "-o", "json"}
	for n, f := range dumps {
		args = append(args, "--dump", n+"="+f)
	}
	args = append(args, extra...)
	cmd := exec.Command(plugin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl-trace_svc %s: %v\nstderr: %s\nstdout: %s", svc, err, stderr.String(), out)
	}
	if stderr.Len() > 0 {
		t.Logf("kubectl-trace_svc stderr:\n%s", stderr.String())
	}
	tp := &traced{raw: out}
	if err := json.Unmarshal(out, &tp.tracePath); err != nil {
		t.Fatalf("decode plugin output: %v\n%s", err, out)
	}
	for _, f := range tp.Findings {
		t.Logf("finding %s %s: %s", f.Severity, f.Code, f.Message)
	}
	return tp
}

type entryPath = struct {
	Entry struct {
		Kind    string     `json:"kind"`
		Address netip.Addr `json:"address"`
		Port    uint16     `json:"port"`
		From    string     `json:"from"`
	} `json:"entry"`
	Verdict    string            `json:"verdict"`
	Masquerade bool              `json:"masquerade"`
	Why        string            `json:"why"`
	Affinity   []json.RawMessage `json:"affinity"`
	Endpoints  []struct {
		IP         netip.Addr `json:"ip"`
		Port       uint16     `json:"port"`
		Masquerade bool       `json:"masquerade"`
		Pod        *struct {
			Name string `json:"name"`
		} `json:"pod"`
	} `json:"endpoints"`
}

// find returns the first path on node that match accepts, and the node's
// proxy mode; the node must have been traced without error.
func (tp *traced) find(t *testing.T, nodeName, what string, match func(entryPath) bool) (entryPath, string) {
	t.Helper()
	var raw struct {
		Nodes []struct {
			Name      string      `json:"name"`
			ProxyMode string      `json:"proxyMode"`
			Error     string      `json:"error"`
			Paths     []entryPath `json:"paths"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(tp.raw, &raw); err != nil {
		t.Fatal(err)
	}
	for _, n := range raw.Nodes {
		if n.Name != nodeName {
			continue
		}
		if n.Error != "" {
			t.Fatalf("plugin: %s: %s", nodeName, n.Error)
		}
		for _, p := range n.Paths {
			if match(p) {
				return p, n.ProxyMode
			}
		}
	}
	t.Fatalf("plugin: no %s on %s in:\n%s", what, nodeName, tp.raw)
	return entryPath{}, ""
}

// path returns the plugin's path for an external client reaching node's
// address ip on nodePort, checking the node's proxy mode on the way.
func (tp *traced) path(t *testing.T, nodeName, mode, ip string, nodePort int) entryPath {
	t.Helper()
	p, got := tp.find(t, nodeName, fmt.Sprintf("NodePort path from an external client to %s:%d", ip, nodePort), func(p entryPath) bool {
		return p.Entry.Kind == "NodePort" && p.Entry.From == "external client" &&
			p.Entry.Address == netip.MustParseAddr(ip) && int(p.Entry.Port) == nodePort
	})
	if want := strings.TrimSuffix(mode, "-legacy"); got != want {
		t.Errorf("plugin: %s proxyMode %q, want %q", nodeName, got, want)
	}
	return p
}
