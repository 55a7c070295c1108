// Package e2e runs the built kubectl-trace_svc against a real control plane
// (etcd, kube-apiserver) and real kube-proxy, each in its own network
// namespace on this machine, and checks the plugin's predictions against the
// packets that actually flow.
//
// Opt-in: needs root and either -e2e or E2E=1, and the binaries from
// build.sh (make e2e does both).
package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	e2eFlag    = flag.Bool("e2e", false, "run the end-to-end suite (needs root and the binaries from build.sh)")
	k8sVersion = flag.String("k8s-version", "v1.37.2", "version of the kube-apiserver and kube-proxy binaries to use")
)

// binDir is where build.sh puts etcd, kube-apiserver and kube-proxy.
func binDir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "kubectl-trace-svc", "e2e", "bin", *k8sVersion)
}

func requireE2E(t *testing.T) string {
	t.Helper()
	if !*e2eFlag && os.Getenv("E2E") != "1" {
		t.Skip("end-to-end suite is opt-in: make e2e, or go test ./... -args -e2e (or E2E=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end suite needs root (network namespaces, iptables)")
	}
	bin := binDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Skipf("%s missing in %s: run test/e2e/build.sh first (make e2e does)", b, bin)
		}
	}
	for _, tool := range []string{"ip", "iptables-save", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH", tool)
		}
	}
	return bin
}

// goBuild builds a package of the module rooted at dir into out.
func goBuild(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// The JSON model, only the fields checked here.
type tracePath struct {
	Nodes []struct {
		Name      string `json:"name"`
		ProxyMode string `json:"proxyMode"`
		Error     string `json:"error"`
		Paths     []struct {
			Entry struct {
				Kind    string     `json:"kind"`
				Address netip.Addr `json:"address"`
				Port    uint16     `json:"port"`
				From    string     `json:"from"`
			} `json:"entry"`
			Verdict    string `json:"verdict"`
			Masquerade bool   `json:"masquerade"`
			Endpoints  []struct {
				IP         netip.Addr `json:"ip"`
				Port       uint16     `json:"port"`
				Masquerade bool       `json:"masquerade"`
				Pod        *struct {
					Name string `json:"name"`
				} `json:"pod"`
			} `json:"endpoints"`
		} `json:"paths"`
	} `json:"nodes"`
	Findings []struct {
		Severity string `json:"severity"`
		Code     string `json:"code"`
		Message  string `json:"message"`
	} `json:"findings"`
}

// TestNodePortIptables: one node with kube-proxy in iptables mode, one pod,
// a NodePort Service. A client outside the node reaches the pod through the
// node's IP and nodePort, and the plugin, reading that node's real
// iptables-save, predicts DNAT to the pod with masquerade — which the pod
// confirms by seeing the node's address as the remote address.
func TestNodePortIptables(t *testing.T) {
	bin := requireE2E(t)
	start := time.Now()

	tools := t.TempDir()
	plugin := filepath.Join(tools, "kubectl-trace_svc")
	echo := filepath.Join(tools, "echoserver")
	goBuild(t, "../..", plugin, "./cmd/kubectl-trace_svc")
	goBuild(t, ".", echo, "./cmd/echoserver")
	t.Logf("built plugin and echo server in %v", time.Since(start).Round(time.Millisecond))

	c := newCluster(t, bin)
	t.Logf("control plane ready in %v (netns prefix %s)", time.Since(start).Round(time.Millisecond), c.prefix)

	const ns, svcName, podName, podIP = "e2e", "echo", "echo-0", "10.244.1.2"
	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", "10.250.0.11", "10.244.1.0/24", "iptables")
	c.addPod(n1, ns, podName, podIP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)

	svc := c.create("/api/v1/namespaces/"+ns+"/services", `{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":"echo"},
		"spec":{"type":"NodePort","selector":{"app":"echo"},
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`)
	nodePort := int(svc["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["nodePort"].(float64))
	c.create("/apis/discovery.k8s.io/v1/namespaces/"+ns+"/endpointslices", fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
		"metadata":{"name":"echo-1","labels":{"kubernetes.io/service-name":"echo","endpointslice.kubernetes.io/managed-by":"e2e.local"}},
		"addressType":"IPv4",
		"endpoints":[{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}],
		"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}`, podIP, ns, podName))

	// (a) The packets: client -> node1:nodePort, retried until kube-proxy
	// has written its rules.
	target := fmt.Sprintf("http://%s:%d/", n1.ip, nodePort)
	var answer string
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", client, "curl", "-sS", "--max-time", "3", target).CombinedOutput()
		if err == nil {
			answer = strings.TrimSpace(string(out))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl %s from the client namespace: %v\n%s", target, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("curl %s -> %q (%v since start)", target, answer, time.Since(start).Round(time.Millisecond))
	if !strings.HasPrefix(answer, "name="+podName+" ") {
		t.Errorf("answer %q does not come from pod %s", answer, podName)
	}
	sawRemote := ""
	if i := strings.Index(answer, "remote="); i >= 0 {
		sawRemote = answer[i+len("remote="):]
	}
	remote, err := netip.ParseAddrPort(sawRemote)
	if err != nil {
		t.Fatalf("pod's answer %q has no remote address: %v", answer, err)
	}

	// (b) The prediction, from the node's real rules.
	dump := filepath.Join(c.dir, "node1.iptables-save")
	rules, err := exec.Command("ip", "netns", "exec", n1.ns, "iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v", n1.ns, err)
	}
	if err := os.WriteFile(dump, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(plugin, svcName, "-n", ns, "--kubeconfig", c.adminKubeconfig,
		"--dump", "node1="+dump, "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl-trace_svc: %v\nstderr: %s\nstdout: %s", err, stderr.String(), out)
	}
	if stderr.Len() > 0 {
		t.Logf("kubectl-trace_svc stderr:\n%s", stderr.String())
	}
	var got tracePath
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode plugin output: %v\n%s", err, out)
	}
	for _, f := range got.Findings {
		t.Logf("finding %s %s: %s", f.Severity, f.Code, f.Message)
	}

	found := false
	for _, n := range got.Nodes {
		if n.Name != "node1" {
			continue
		}
		if n.Error != "" {
			t.Fatalf("node1: %s", n.Error)
		}
		if n.ProxyMode != "iptables" {
			t.Errorf("node1 proxyMode = %q, want iptables", n.ProxyMode)
		}
		for _, p := range n.Paths {
			if p.Entry.Kind != "NodePort" || p.Entry.Address != netip.MustParseAddr(n1.ip) || int(p.Entry.Port) != nodePort {
				continue
			}
			found = true
			t.Logf("plugin: %s %s:%d from %s -> %s masquerade=%v endpoints=%d",
				p.Entry.Kind, p.Entry.Address, p.Entry.Port, p.Entry.From, p.Verdict, p.Masquerade, len(p.Endpoints))
			if p.Verdict != "DNAT" {
				t.Errorf("NodePort verdict = %q, want DNAT", p.Verdict)
			}
			if !p.Masquerade {
				t.Errorf("NodePort path masquerade = false, want true")
			}
			if len(p.Endpoints) != 1 || p.Endpoints[0].IP != netip.MustParseAddr(podIP) || p.Endpoints[0].Port != 8080 {
				t.Errorf("NodePort endpoints = %+v, want only %s:8080", p.Endpoints, podIP)
			} else if p.Endpoints[0].Pod == nil || p.Endpoints[0].Pod.Name != podName {
				t.Errorf("endpoint %s not joined with pod %s: %+v", podIP, podName, p.Endpoints[0].Pod)
			}
			// The packets agree: masquerade means the pod saw the node.
			if p.Masquerade && remote.Addr() != netip.MustParseAddr(n1.ip) {
				t.Errorf("plugin predicts masquerade but the pod saw %s, not node1's %s", remote.Addr(), n1.ip)
			}
		}
	}
	if !found {
		t.Fatalf("no NodePort path for node1 %s:%d in the plugin's output:\n%s", n1.ip, nodePort, out)
	}
	if remote.Addr() != netip.MustParseAddr(n1.ip) {
		t.Errorf("pod saw remote %s, want node1's %s (SNAT)", remote.Addr(), n1.ip)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}
