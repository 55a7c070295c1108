package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The suite's topology: node1 and node2 on the control plane's bridge, the
// echo pods on node1, client pods on both nodes, and an outside client on
// the bridge. All addresses are private and only exist inside the
// namespaces a cluster creates.
const (
	e2eNS = "e2e"

	node1IP   = "10.250.0.11"
	node2IP   = "10.250.0.12"
	node1Pods = "10.244.1.0/24" // node1's pod CIDR
	node2Pods = "10.244.2.0/24"

	podName  = "echo-0" // on node1
	podIP    = "10.244.1.2"
	pod2Name = "echo-1" // on node1
	pod2IP   = "10.244.1.3"

	clientPod1   = "client-1" // a client pod on node1
	clientPod1IP = "10.244.1.5"
	clientPod2   = "client-2" // a client pod on node2
	clientPod2IP = "10.244.2.5"

	lbIP  = "203.0.113.50" // a load balancer address the client routes to a node (not the plugin's default --source-ip)
	extIP = "198.51.100.7" // a Service externalIP the client routes to node1
)

// twoNodes adds node1 and node2, each routing the other's pod CIDR to it as
// a CNI would.
func (c *cluster) twoNodes() (n1, n2 *node) {
	c.t.Helper()
	n1 = c.addNode("node1", node1IP, node1Pods)
	n2 = c.addNode("node2", node2IP, node2Pods)
	c.routePodCIDR(n2, n1)
	c.routePodCIDR(n1, n2)
	return n1, n2
}

// nodePodCIDRs are the nodes' pod CIDRs by node address.
var nodePodCIDRs = map[string]string{node1IP: node1Pods, node2IP: node2Pods}

var echoLabels = map[string]string{"app": "echo"}
var clientLabels = map[string]string{"app": "client"}

// service creates a Service from its spec (JSON) and returns the stored
// object's spec.
func (c *cluster) service(name, spec string) serviceSpec {
	c.t.Helper()
	obj := c.create("/api/v1/namespaces/"+e2eNS+"/services",
		fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},"spec":%s}`, name, spec))
	b, _ := json.Marshal(obj["spec"])
	var s serviceSpec
	if err := json.Unmarshal(b, &s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

type serviceSpec struct {
	ClusterIP string `json:"clusterIP"`
	Ports     []struct {
		Name     string `json:"name"`
		Port     int    `json:"port"`
		NodePort int    `json:"nodePort"`
	} `json:"ports"`
}

// setLoadBalancer writes the Service's load balancer address into its
// status, as a cloud controller would.
func (c *cluster) setLoadBalancer(svc, ip string) {
	c.t.Helper()
	c.patchStatus("/api/v1/namespaces/"+e2eNS+"/services/"+svc+"/status",
		fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, ip))
}

// nodePortService creates a NodePort Service port 80 -> 8080 with the given
// selector and external traffic policy and, if withPod, the EndpointSlice
// naming echo-0 on node1 (no controller-manager writes it). It returns the
// allocated node port.
func (c *cluster) nodePortService(name, app, policy string, withPod bool) int {
	c.t.Helper()
	s := c.service(name, fmt.Sprintf(`{"type":"NodePort","selector":{"app":%q},"externalTrafficPolicy":%q,
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`, app, policy))
	if withPod {
		c.putSlice(name, []slicePod{{podIP, podName}})
	}
	return s.Ports[0].NodePort
}

type slicePod struct{ ip, name string }

// putSlice creates, or replaces, the EndpointSlice <svc>-1 with the given
// ready pods on node1, port http 8080.
func (c *cluster) putSlice(svc string, pods []slicePod) {
	c.t.Helper()
	var eps []sliceEP
	for _, p := range pods {
		eps = append(eps, sliceEP{ip: p.ip, name: p.name, ready: true, serving: true})
	}
	c.putSliceStates(svc, eps)
}

// sliceEP is one endpoint of putSliceStates with its conditions.
type sliceEP struct {
	ip, name                    string
	ready, serving, terminating bool
}

// putSliceStates creates, or replaces, the EndpointSlice <svc>-1 with the
// given endpoints on node1, port http 8080, each with its own conditions.
func (c *cluster) putSliceStates(svc string, eps []sliceEP) {
	c.t.Helper()
	var items []string
	for _, e := range eps {
		items = append(items, fmt.Sprintf(`{"addresses":[%q],"conditions":{"ready":%t,"serving":%t,"terminating":%t},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}`, e.ip, e.ready, e.serving, e.terminating, e2eNS, e.name))
	}
	c.putSliceRaw(svc, "["+strings.Join(items, ",")+"]", `[{"name":"http","port":8080,"protocol":"TCP"}]`)
}

// putSliceRaw creates, or replaces, the EndpointSlice <svc>-1 with the given
// endpoints and ports (JSON arrays).
func (c *cluster) putSliceRaw(svc, endpoints, ports string) {
	c.t.Helper()
	name := svc + "-1"
	path := "/apis/discovery.k8s.io/v1/namespaces/" + e2eNS + "/endpointslices"
	obj := func(rv string) string {
		meta := fmt.Sprintf(`"name":%q,"labels":{"kubernetes.io/service-name":%q,"endpointslice.kubernetes.io/managed-by":"e2e.local"}`, name, svc)
		if rv != "" {
			meta += fmt.Sprintf(`,"resourceVersion":%q`, rv)
		}
		return fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{%s},
		"addressType":"IPv4","endpoints":%s,"ports":%s}`, meta, endpoints, ports)
	}
	code, body, err := c.do("GET", path+"/"+name, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if code == 404 {
		c.create(path, obj(""))
		return
	}
	var cur struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if code != 200 || json.Unmarshal(body, &cur) != nil {
		c.t.Fatalf("GET %s/%s: %d\n%s", path, name, code, body)
	}
	code, body, err = c.do("PUT", path+"/"+name, []byte(obj(cur.Metadata.ResourceVersion)))
	if err != nil || code != 200 {
		c.t.Fatalf("PUT %s/%s: %d %v\n%s", path, name, code, err, body)
	}
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
// same (comments aside) for three polls, and returns them: before that, a
// refused or hanging connection would prove nothing (a Service can be
// synced before its EndpointSlice; kube-proxy batches changes for up to
// 1 s). When that takes long, the log says what kept it waiting.
func (c *cluster) settle(checks map[*node]func(string) string) map[*node]string {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	prev, stable := map[*node]string{}, 0
	why, polls, reading := "", 0, time.Duration(0)
	for {
		polls++
		missing, changed := "", ""
		cur := map[*node]string{}
		for n, check := range checks {
			begin := time.Now()
			r := string(c.rules(n))
			reading += time.Since(begin)
			cur[n] = r
			switch a, b := withoutComments(prev[n]), withoutComments(r); {
			case prev[n] == "":
				changed += " " + n.name + ": first look"
			case a != b:
				changed += fmt.Sprintf(" %s: %s", n.name, firstDiff(a, b))
			}
			if m := check(r); m != "" {
				missing += " " + n.name + ":" + m
			}
		}
		switch {
		case missing != "":
			why = "missing" + missing
		case changed != "":
			why = "still changing," + changed
		}
		prev = cur
		if missing != "" || changed != "" {
			stable = 0
		} else if stable++; stable == 3 {
			took := time.Since(start).Round(time.Millisecond)
			if took > 10*time.Second {
				c.t.Logf("rules settled in %v: %d polls, %v reading rules (last wait: %s)", took, polls, reading.Round(time.Millisecond), why)
				for n := range checks {
					c.t.Logf("--- kube-proxy-%s log (head, flags left out) ---\n%s", n.name, head(filepath.Join(c.dir, "kube-proxy-"+n.name+".log"), 40))
				}
				c.t.Logf("--- slow requests in the control plane's logs ---\n%s\n%s",
					grepLog(filepath.Join(c.dir, "etcd.log"), "took too long", 5),
					grepLog(filepath.Join(c.dir, "kube-apiserver.log"), "Trace[", 10))
			} else {
				c.t.Logf("rules settled in %v", took)
			}
			return cur
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kube-proxy rules not settled after %v (%s)", time.Since(start).Round(time.Second), why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firstDiff names the first line where two rulesets differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d %q -> %q", i+1, x, y)
		}
	}
	return "same"
}

// packetCounters are the counts a ruleset listing carries that traffic
// changes: iptables-save's chain headers (":INPUT ACCEPT [54:48093]", which
// iptables-legacy-save always prints) and nft's counter statements.
var packetCounters = regexp.MustCompile(`\[\d+:\d+\]|counter packets \d+ bytes \d+`)

// withoutComments drops the lines starting with # (iptables-save's
// "Generated ... on <date>" header and footer change every second) and
// zeroes the packet counters, so that only a change of rules counts.
func withoutComments(rules string) string {
	var b strings.Builder
	for _, l := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(packetCounters.ReplaceAllString(l, "[0:0]"))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// findingsOn returns the codes of the findings about node.
func (tp *traced) findingsOn(node string) map[string]finding {
	m := map[string]finding{}
	for _, f := range tp.Findings {
		if f.Node == node {
			m[f.Code] = f
		}
	}
	return m
}

// head returns the first n lines of a kube-proxy log, its flag dump left
// out.
func head(path string, n int) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "FLAG: --") {
			out = append(out, l)
		}
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, "\n")
}

// grepLog returns the lines of a log that contain s: the first n of them,
// or the last -n when n is negative (what happened just before a failure).
func grepLog(path, s string, n int) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	switch {
	case n >= 0 && len(out) > n:
		out = out[:n]
	case n < 0 && len(out) > -n:
		out = out[len(out)+n:]
	}
	return strings.Join(out, "\n")
}
