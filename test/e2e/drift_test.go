package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Both tests run kube-proxy in iptables mode only.
const (
	pod2IP   = "10.244.1.3"
	pod2Name = "echo-1"
	lbIP     = "203.0.113.50" // not the plugin's default --source-ip (203.0.113.10)
)

// TestDrift: two nodes, the pod on node1. Once both kube-proxies have
// settled, node2's is killed and a second endpoint (a second pod on node1)
// is added to the EndpointSlice. node1 picks it up, node2 cannot: the
// plugin must report node2 drifting (EndpointMissingFromRules on node2,
// NodesDisagree) and nothing of the kind on node1, and the packets agree —
// node2's node port only ever reaches the old pod, node1's reaches both.
func TestDrift(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	c := newClusterTagged(t, bin, "dft-")
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", "iptables")
	n2 := c.addNode("node2", node2IP, "10.244.2.0/24", "iptables")
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)

	const svc = "echo-drift"
	np := c.nodePortService(svc, "echo", "Cluster", true)
	t.Logf("node port %d", np)
	c.settle(map[*node]func(string) string{
		n1: wantInRules(fmt.Sprint(np), podIP),
		n2: wantInRules(fmt.Sprint(np), podIP),
	})

	c.stop("kube-proxy-node2")

	// The second pod, on node1, added to the same EndpointSlice.
	c.addPod(n1, e2eNS, pod2Name, pod2IP, map[string]string{"app": "echo"}, echo)
	c.putSlice(svc, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})
	rules := c.settle(map[*node]func(string) string{n1: wantInRules(fmt.Sprint(np), podIP, pod2IP)})
	rules[n2] = string(c.rules(n2))
	if strings.Contains(rules[n2], pod2IP) {
		t.Fatalf("node2's rules have %s although its kube-proxy was killed", pod2IP)
	}
	dumps := map[string]string{}
	for _, n := range []*node{n1, n2} {
		f := filepath.Join(c.dir, n.name+".drift.rules")
		if err := os.WriteFile(f, []byte(rules[n]), 0o600); err != nil {
			t.Fatal(err)
		}
		dumps[n.name] = f
	}

	tp := tracePlugin(t, c, plugin, svc, dumps)
	var missingOnNode2, disagree bool
	for _, f := range tp.findings(t) {
		switch {
		case f.Code == "EndpointMissingFromRules" && f.Node == "node2":
			missingOnNode2 = true
			if !strings.Contains(f.Message, pod2IP) {
				t.Errorf("EndpointMissingFromRules on node2 does not name %s: %s", pod2IP, f.Message)
			}
		case f.Code == "NodesDisagree":
			disagree = true
		}
		if f.Node == "node1" && (f.Code == "EndpointMissingFromRules" || f.Code == "StaleEndpointInRules" || f.Code == "NodesDisagree") {
			t.Errorf("unexpected drift finding on node1: %s %s", f.Code, f.Message)
		}
	}
	if !missingOnNode2 {
		t.Errorf("no EndpointMissingFromRules finding for node2 in:\n%s", tp.raw)
	}
	if !disagree {
		t.Errorf("no NodesDisagree finding in:\n%s", tp.raw)
	}
	p := tp.path(t, "node2", "iptables", node2IP, np)
	t.Logf("plugin: node2 %s endpoints %+v", p.Verdict, p.Endpoints)

	// The packets: node2 still only knows the old pod.
	for i := 0; i < 10; i++ {
		res := curl(t, client, node2IP, np, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl node2:%d: exit %d after %v: %s", np, res.exit, res.took, res.out)
		}
		if name := answerName(res.out); name != podName {
			t.Fatalf("curl node2:%d #%d reached %q, want only the old pod %s", np, i, name, podName)
		}
	}
	t.Logf("10 curls through node2:%d all reached %s", np, podName)
	// node1 balances over both (each missed with probability 2^-20).
	seen := map[string]int{}
	for i := 0; i < 20 && len(seen) < 2; i++ {
		res := curl(t, client, node1IP, np, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl node1:%d: exit %d after %v: %s", np, res.exit, res.took, res.out)
		}
		seen[answerName(res.out)]++
	}
	if seen[podName] == 0 || seen[pod2Name] == 0 {
		t.Errorf("curls through node1:%d reached %v, want both %s and %s", np, seen, podName, pod2Name)
	}
	t.Logf("curls through node1:%d reached %v", np, seen)
}

// TestLoadBalancerSourceRanges: a LoadBalancer Service whose address
// (203.0.113.0/24) the client routes to node1. With source ranges that
// include the client, curl reaches the pod and the plugin predicts DNAT;
// with ranges that exclude it, the connection hangs and the plugin, with
// the same --source-ip, predicts DROP.
func TestLoadBalancerSourceRanges(t *testing.T) {
	bin := requireE2E(t)
	plugin, echo := buildTools(t)
	c := newClusterTagged(t, bin, "lbr-")
	t.Logf("netns prefix %s", c.prefix)

	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	n1 := c.addNode("node1", node1IP, "10.244.1.0/24", "iptables")
	c.addPod(n1, e2eNS, podName, podIP, map[string]string{"app": "echo"}, echo)
	client := c.addClient("client", clientIP)
	c.run("ip", "-n", client, "route", "add", lbIP+"/32", "via", node1IP)

	const svc, allowed, other = "echo-lb", "10.250.0.0/24", "192.0.2.0/24"
	c.create("/api/v1/namespaces/"+e2eNS+"/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":%q},
		"spec":{"type":"LoadBalancer","selector":{"app":"echo"},"loadBalancerSourceRanges":[%q],
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}`, svc, allowed))
	c.patchStatus("/api/v1/namespaces/"+e2eNS+"/services/"+svc+"/status",
		fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, lbIP))
	c.putSlice(svc, []slicePod{{podIP, podName}})

	check := func(t *testing.T, rules string, wantVerdict string) {
		t.Helper()
		f := filepath.Join(c.dir, "node1."+wantVerdict+".rules")
		if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		tp := tracePlugin(t, c, plugin, svc, map[string]string{"node1": f}, "--source-ip", clientIP)
		p := tp.lbPath(t, "node1", lbIP)
		if p.Verdict != wantVerdict {
			t.Errorf("plugin: node1 LoadBalancer %s from %s: verdict %s, want %s (why: %s)", lbIP, clientIP, p.Verdict, wantVerdict, p.Why)
		}
		t.Logf("plugin: node1 LoadBalancer %s from %s (%s): %s (%s)", lbIP, clientIP, p.Entry.From, p.Verdict, p.Why)
	}

	t.Run("allowed", func(t *testing.T) {
		rules := c.settle(map[*node]func(string) string{n1: wantInRules(lbIP, podIP, allowed)})
		res := curl(t, client, lbIP, 80, 5*time.Second)
		if res.exit != 0 {
			t.Fatalf("curl %s:80: exit %d after %v: %s", lbIP, res.exit, res.took, res.out)
		}
		if name := answerName(res.out); name != podName {
			t.Errorf("curl %s:80 reached %q, want %s", lbIP, name, podName)
		}
		t.Logf("curl %s:80 -> %s in %v", lbIP, strings.TrimSpace(res.out), res.took)
		check(t, rules[n1], "DNAT")
	})

	t.Run("excluded", func(t *testing.T) {
		code, body, err := c.do("PATCH", "/api/v1/namespaces/"+e2eNS+"/services/"+svc,
			[]byte(fmt.Sprintf(`{"spec":{"loadBalancerSourceRanges":[%q]}}`, other)))
		if err != nil || code != 200 {
			t.Fatalf("PATCH service %s: %d %v\n%s", svc, code, err, body)
		}
		rules := c.settle(map[*node]func(string) string{n1: func(r string) string {
			if m := wantInRules(lbIP, podIP, other)(r); m != "" {
				return m
			}
			if strings.Contains(r, allowed) {
				return " (old range " + allowed + " still there)"
			}
			return ""
		}})
		res := curl(t, client, lbIP, 80, dropWait)
		if res.exit != 28 {
			t.Errorf("curl %s:80: exit %d after %v, want a timeout (exit 28): %s", lbIP, res.exit, res.took, res.out)
		}
		t.Logf("curl %s:80 from %s: exit %d after %v", lbIP, clientIP, res.exit, res.took)
		check(t, rules[n1], "DROP")
	})
}

func buildTools(t *testing.T) (plugin, echo string) {
	t.Helper()
	tools := t.TempDir()
	plugin = filepath.Join(tools, "kubectl-trace_svc")
	echo = filepath.Join(tools, "echoserver")
	goBuild(t, "../..", plugin, "./cmd/kubectl-trace_svc")
	goBuild(t, ".", echo, "./cmd/echoserver")
	return plugin, echo
}

// wantInRules returns a check that reports which of the strings the rules
// lack ("" when none).
func wantInRules(want ...string) func(string) string {
	return func(r string) string {
		missing := ""
		for _, w := range want {
			if !strings.Contains(r, w) {
				missing += " " + w
			}
		}
		return missing
	}
}

// settle waits until each node's rules pass its check and then stay the
// same (comments aside) for three polls, and returns them.
func (c *cluster) settle(checks map[*node]func(string) string) map[*node]string {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	prev, stable := map[*node]string{}, 0
	for {
		missing, changed := "", false
		cur := map[*node]string{}
		for n, check := range checks {
			r := string(c.rules(n))
			cur[n] = r
			changed = changed || withoutComments(r) != withoutComments(prev[n])
			if m := check(r); m != "" {
				missing += " " + n.name + ":" + m
			}
		}
		prev = cur
		if missing != "" || changed {
			stable = 0
		} else if stable++; stable == 3 {
			return cur
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kube-proxy rules not settled (missing:%s)", missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type slicePod struct{ ip, name string }

// putSlice creates, or replaces, the EndpointSlice <svc>-1 with the given
// ready pods on node1, port 8080.
func (c *cluster) putSlice(svc string, pods []slicePod) {
	c.t.Helper()
	var eps []sliceEP
	for _, p := range pods {
		eps = append(eps, sliceEP{ip: p.ip, name: p.name, ready: true, serving: true})
	}
	c.putSliceStates(svc, eps)
}

// answerName returns the name the echo pod gave in its answer.
func answerName(answer string) string {
	f := strings.Fields(answer)
	if len(f) == 0 || !strings.HasPrefix(f[0], "name=") {
		return ""
	}
	return strings.TrimPrefix(f[0], "name=")
}

type finding struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Node     string `json:"node"`
}

// findings decodes the plugin's findings with their node.
func (tp *traced) findings(t *testing.T) []finding {
	t.Helper()
	var raw struct {
		Findings []finding `json:"findings"`
	}
	if err := json.Unmarshal(tp.raw, &raw); err != nil {
		t.Fatal(err)
	}
	return raw.Findings
}

// lbPath returns the plugin's LoadBalancer path to ip on node.
func (tp *traced) lbPath(t *testing.T, nodeName, ip string) entryPath {
	t.Helper()
	p, _ := tp.find(t, nodeName, "LoadBalancer path to "+ip, func(p entryPath) bool {
		return p.Entry.Kind == "LoadBalancer" && p.Entry.Address == netip.MustParseAddr(ip)
	})
	return p
}
