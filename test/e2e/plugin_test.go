package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debugPodSelector is the label every node debug pod of the plugin has.
const debugPodSelector = "trace-svc.io/debug-pod=true"

// pathDoc is the plugin's JSON (-o json), the fields the suite checks.
type pathDoc struct {
	Nodes    []nodeDoc `json:"nodes"`
	Findings []finding `json:"findings"`
}

type nodeDoc struct {
	Name      string      `json:"name"`
	ProxyMode string      `json:"proxyMode"`
	Error     string      `json:"error"`
	Paths     []entryPath `json:"paths"`
}

type entryPath struct {
	Entry struct {
		Kind        string     `json:"kind"`
		Address     netip.Addr `json:"address"`
		Port        uint16     `json:"port"`
		Protocol    string     `json:"protocol"`
		ServicePort string     `json:"servicePort"`
		Source      netip.Addr `json:"source"`
		From        string     `json:"from"`
	} `json:"entry"`
	Verdict    string            `json:"verdict"`
	Masquerade bool              `json:"masquerade"`
	Why        string            `json:"why"`
	Affinity   []json.RawMessage `json:"affinity"`
	Endpoints  []struct {
		IP         netip.Addr `json:"ip"`
		Port       uint16     `json:"port"`
		Masquerade bool       `json:"masquerade"`
		InRules    bool       `json:"inRules"`
		Pod        *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"pod"`
	} `json:"endpoints"`
}

type finding struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Node     string `json:"node"`
}

// traced is one trace of a Service in the three output formats.
type traced struct {
	pathDoc
	raw  []byte // -o json
	tree string // -o tree
	dot  string // -o dot
}

// debugPodFlags bound how long the plugin waits. Its debug pods use its
// default image (registry.k8s.io/kube-proxy at the server's version), which
// every node has under that name (kubeProxyImage).
var debugPodFlags = []string{"--timeout", "60s"}

// trace runs the built plugin as a user would — kubeconfig, no saved
// dumps, so each node's rules come through a node debug pod — with -o json
// and --save-dumps, then with -o tree and -o dot on the dumps it saved
// (--dump: the same rules, no second collection), and checks that no debug
// pod is left behind, in the API or in any node's container runtime. Paths
// looked up with find are checked in all three formats.
func (c *cluster) trace(t *testing.T, svc string, extra ...string) *traced {
	t.Helper()
	c.waitNodesReady()
	args := append(append([]string{svc, "-n", e2eNS, "--kubeconfig", c.adminKubeconfig}, debugPodFlags...), extra...)
	begin := time.Now()
	saved := ""
	for i, a := range args {
		if a == "--save-dumps" && i+1 < len(args) {
			saved = args[i+1] // the test keeps them
		}
	}
	jsonArgs := append(args, "-o", "json")
	if saved == "" {
		var err error
		if saved, err = os.MkdirTemp(c.dir, "dumps-"); err != nil {
			t.Fatal(err)
		}
		jsonArgs = append(jsonArgs, "--save-dumps", saved)
	}
	tp := &traced{raw: c.runPlugin(t, jsonArgs...)}
	live := time.Since(begin)
	// The tree and the diagram from the very rules the debug pods
	// collected: what they show must be what the JSON says.
	var replay []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--save-dumps" {
			i++ // nothing is collected the second time
			continue
		}
		replay = append(replay, args[i])
	}
	replay = append(replay, replayArgs(t, saved, c.mode)...)
	tp.tree = string(c.runPlugin(t, append(replay, "-o", "tree")...))
	tp.dot = string(c.runPlugin(t, append(replay, "-o", "dot")...))
	t.Logf("plugin %s: json through debug pods in %v, tree and dot from the dumps they saved in %v", svc, live.Round(time.Millisecond), (time.Since(begin) - live).Round(time.Millisecond))
	if err := json.Unmarshal(tp.raw, &tp.pathDoc); err != nil {
		t.Fatalf("decode plugin output: %v\n%s", err, tp.raw)
	}
	for _, f := range tp.Findings {
		t.Logf("finding %s %s %s: %s", f.Severity, f.Node, f.Code, f.Message)
	}
	c.wantDebugPodsGone(t, debugNamespaceOf(args))
	c.checkRoutes(t, tp.raw)
	if dot, err := exec.LookPath("dot"); err == nil {
		cmd := exec.Command(dot, "-Tsvg", "-o", "/dev/null")
		cmd.Stdin = strings.NewReader(tp.dot)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("dot -Tsvg rejects the plugin's diagram: %v\n%s", err, out)
		}
	}
	return tp
}

// replayArgs are the --dump flags a user writes to replay what
// --save-dumps wrote into dir: every NODE.SECTION file, for its node. The
// plugin must find kube-proxy's backend among them (mode is for the
// message).
func replayArgs(t *testing.T, dir, mode string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var args []string
	for _, f := range files {
		args = append(args, "--dump", strings.SplitN(filepath.Base(f), ".", 2)[0]+"="+f)
	}
	if len(args) == 0 {
		t.Fatalf("--save-dumps saved nothing in %s for kube-proxy's %s mode", dir, mode)
	}
	return args
}

// traceDumps runs the plugin -o json on saved dumps (node=file).
func (c *cluster) traceDumps(t *testing.T, svc string, dumps map[string]string, extra ...string) *traced {
	t.Helper()
	args := []string{svc, "-n", e2eNS, "--kubeconfig", c.adminKubeconfig, "-o", "json"}
	for n, f := range dumps {
		args = append(args, "--dump", n+"="+f)
	}
	tp := &traced{raw: c.runPlugin(t, append(args, extra...)...)}
	if err := json.Unmarshal(tp.raw, &tp.pathDoc); err != nil {
		t.Fatalf("decode plugin output: %v\n%s", err, tp.raw)
	}
	return tp
}

func (c *cluster) runPlugin(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(c.plugin, args...)
	// Dies with the test process, like everything else the suite starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl-trace_svc %s: %v\nstderr: %s\nstdout: %s", strings.Join(args, " "), err, stderr.String(), out)
	}
	if stderr.Len() > 0 {
		t.Logf("kubectl-trace_svc stderr:\n%s", stderr.String())
	}
	return out
}

// find returns the first path on node that match accepts, and the node's
// proxy mode; the node must have been traced without error. The path must
// show the same in the tree and the diagram.
func (tp *traced) find(t *testing.T, nodeName, what string, match func(entryPath) bool) (entryPath, string) {
	t.Helper()
	for _, n := range tp.Nodes {
		if n.Name != nodeName {
			continue
		}
		if n.Error != "" {
			t.Fatalf("plugin: %s: %s", nodeName, n.Error)
		}
		for _, p := range n.Paths {
			if match(p) {
				if tp.tree != "" {
					checkTree(t, tp.tree, nodeName, p)
				}
				if tp.dot != "" {
					checkDOT(t, tp.dot, nodeName, p)
				}
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

// portPath returns the plugin's path of kind from "from" to addr:port on
// node.
func (tp *traced) portPath(t *testing.T, nodeName, kind, from, addr string, port int) entryPath {
	t.Helper()
	p, _ := tp.find(t, nodeName, fmt.Sprintf("%s path from %q to %s:%d", kind, from, addr, port), func(p entryPath) bool {
		return p.Entry.Kind == kind && p.Entry.From == from && p.Entry.Address == netip.MustParseAddr(addr) && int(p.Entry.Port) == port
	})
	return p
}

// lbPath returns the plugin's LoadBalancer path to ip on node.
func (tp *traced) lbPath(t *testing.T, nodeName, ip string) entryPath {
	t.Helper()
	p, _ := tp.find(t, nodeName, "LoadBalancer path to "+ip, func(p entryPath) bool {
		return p.Entry.Kind == "LoadBalancer" && p.Entry.Address == netip.MustParseAddr(ip)
	})
	return p
}

// entryHead is how the tree's entry line and the diagram's entry node name
// an entry: "NodePort 10.250.0.12:30080/tcp (http) from external client
// 203.0.113.10".
func entryHead(p entryPath) (addr, from string) {
	e := p.Entry
	addr = netip.AddrPortFrom(e.Address, e.Port).String() + "/" + e.Protocol
	from = strings.TrimSpace(e.From)
	if e.Source.IsValid() {
		from = strings.TrimSpace(from + " " + e.Source.String())
	}
	return addr, from
}

var treeBranch = regexp.MustCompile(`^[│ ]*[├└]── `)

// reporter is the part of *testing.T the output checks use (so their own
// test can watch them fail).
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// checkTree finds p's entry in node's section of the tree (-o tree) and
// checks its verdict line and that every endpoint the JSON names is listed.
func checkTree(t reporter, tree, nodeName string, p entryPath) {
	t.Helper()
	lines := strings.Split(tree, "\n")
	// The node's section: from "node1 · <mode> mode · ..." to the next line
	// that is not part of a tree.
	i := 0
	for i < len(lines) && !strings.HasPrefix(lines[i], nodeName+" · ") {
		i++
	}
	if i == len(lines) {
		t.Errorf("tree: no section for node %s:\n%s", nodeName, tree)
		return
	}
	end := i + 1
	for end < len(lines) && (strings.HasPrefix(lines[end], "│") || strings.HasPrefix(lines[end], "├") ||
		strings.HasPrefix(lines[end], "└") || strings.HasPrefix(lines[end], " ")) {
		end++
	}
	section := lines[i+1 : end]

	// Entries are the depth-1 branches; an entry's header may wrap.
	addr, from := entryHead(p)
	var block []string
	for j := 0; j < len(section); j++ {
		if !strings.HasPrefix(section[j], "├── ") && !strings.HasPrefix(section[j], "└── ") {
			continue
		}
		head := strings.TrimSpace(section[j][len("├── "):])
		k := j + 1
		for k < len(section) && !treeBranch.MatchString(section[k]) {
			head += " " + strings.TrimSpace(strings.TrimLeft(section[k], "│ "))
			k++
		}
		if !strings.HasPrefix(head, p.Entry.Kind+" "+addr) || !strings.Contains(head, "from "+from) {
			continue
		}
		block = []string{head}
		for k < len(section) && !strings.HasPrefix(section[k], "├── ") && !strings.HasPrefix(section[k], "└── ") {
			block = append(block, section[k])
			k++
		}
		break
	}
	if block == nil {
		t.Errorf("tree: no entry %q from %q under node %s:\n%s", p.Entry.Kind+" "+addr, from, nodeName, strings.Join(section, "\n"))
		return
	}
	// The verdict is the entry's first child, possibly wrapped.
	verdict := ""
	for j, l := range block[1:] {
		if j > 0 && treeBranch.MatchString(l) {
			break
		}
		verdict += " " + strings.TrimSpace(treeBranch.ReplaceAllString(strings.TrimLeft(l, "│ "), ""))
	}
	verdict = strings.TrimSpace(verdict)
	text := strings.Join(block, "\n")
	switch p.Verdict {
	case "DNAT":
		n := 0
		for _, e := range p.Endpoints {
			if e.InRules {
				n++
			}
		}
		want := fmt.Sprintf("DNAT to %d endpoint", n)
		masq := strings.Contains(verdict, "masquerade (source NAT") && !strings.Contains(verdict, "no masquerade")
		if !strings.HasPrefix(verdict, want) || masq != p.Masquerade {
			t.Errorf("tree: %s %s on %s says %q; JSON says %s to %d endpoints, masquerade %v", p.Entry.Kind, addr, nodeName, verdict, p.Verdict, n, p.Masquerade)
		}
	default:
		if !strings.HasPrefix(verdict, p.Verdict) {
			t.Errorf("tree: %s %s on %s says %q; JSON says %s", p.Entry.Kind, addr, nodeName, verdict, p.Verdict)
		}
	}
	for _, e := range p.Endpoints {
		ep := netip.AddrPortFrom(e.IP, e.Port).String()
		if !strings.Contains(text, ep) {
			t.Errorf("tree: endpoint %s of %s %s on %s not listed:\n%s", ep, p.Entry.Kind, addr, nodeName, text)
		}
		if e.Pod != nil && !strings.Contains(text, e.Pod.Namespace+"/"+e.Pod.Name) {
			t.Errorf("tree: pod %s/%s of endpoint %s not named:\n%s", e.Pod.Namespace, e.Pod.Name, ep, text)
		}
	}
}

var dotEdge = regexp.MustCompile(`(?m)^\s*"((?:[^"\\]|\\.)*)"->"((?:[^"\\]|\\.)*)"`)

// checkDOT checks the diagram (-o dot) draws p: its entry, and from it a
// way to every endpoint the rules send to or, for DROP and REJECT, to the
// verdict.
func checkDOT(t reporter, dot, nodeName string, p entryPath) {
	t.Helper()
	unq := strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\n`, "\n").Replace
	next := map[string][]string{}
	for _, m := range dotEdge.FindAllStringSubmatch(dot, -1) {
		from, to := unq(m[1]), unq(m[2])
		next[from] = append(next[from], to)
	}
	addr, from := entryHead(p)
	entry := "node " + nodeName + " entry " + p.Entry.Kind + " " + addr + " from " + from
	if p.Entry.Kind == "LoadBalancer" || p.Entry.Kind == "ExternalIP" {
		entry = "entry " + p.Entry.Kind + " " + addr + " from " + from
	}
	if next[entry] == nil {
		t.Errorf("dot: no edges from entry %q", entry)
		return
	}
	// Everything reachable from the entry through node's chains.
	seen := map[string]bool{entry: true}
	queue := []string{entry}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, n := range next[cur] {
			if strings.HasPrefix(n, "node ") && !strings.HasPrefix(n, "node "+nodeName+" ") {
				continue // another node's chains (an LB entry reaches every node)
			}
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	switch p.Verdict {
	case "DNAT":
		for _, e := range p.Endpoints {
			if !e.InRules {
				continue
			}
			ep := netip.AddrPortFrom(e.IP, e.Port).String()
			id := "endpoint " + ep
			if e.Pod != nil {
				id = "pod " + e.Pod.Namespace + "/" + e.Pod.Name + " " + ep
			}
			if !seen[id] {
				t.Errorf("dot: %q does not lead to %q", entry, id)
			}
		}
	default:
		want := "node " + nodeName + " verdict " + p.Verdict + " " + p.Why
		if !seen[want] {
			t.Errorf("dot: %q does not lead to %q", entry, want)
		}
	}
}

// debugNamespaceOf returns the namespace plugin arguments put debug pods
// in.
func debugNamespaceOf(args []string) string {
	ns := "default"
	for i, a := range args {
		switch {
		case a == "--debug-namespace" && i+1 < len(args):
			ns = args[i+1]
		case strings.HasPrefix(a, "--debug-namespace="):
			ns = strings.TrimPrefix(a, "--debug-namespace=")
		}
	}
	return ns
}

// wantDebugPodsGone checks, once the plugin has exited, that none of its
// debug pods in namespace ns is left: in the API at once (the plugin
// deletes them before it exits), and running in any node's containerd —
// no task (process) of their sandboxes or containers — within
// runtimeStopWait: the kubelet stops them once it sees the pod deleted.
// It removes the stopped containers later, at its next garbage collection
// (every minute): wantDebugPodsRemoved checks that.
func (c *cluster) wantDebugPodsGone(t *testing.T, ns string) {
	t.Helper()
	if left := c.debugPodsIn(ns); len(left) > 0 {
		t.Errorf("debug pods left in the API after the plugin exited: %v", left)
	}
	begin := time.Now()
	for {
		left := c.runtimeDebugContainers(ns, true)
		if len(left) == 0 {
			break
		}
		if time.Since(begin) > runtimeStopWait {
			t.Errorf("debug pods of namespace %s still running in the container runtime %v after the plugin exited: %v", ns, runtimeStopWait, left)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Logf("debug pods stopped in the container runtimes %v after the plugin exited", took.Round(time.Millisecond))
	}
}

// wantDebugPodsRemoved waits until no node's containerd holds any sandbox
// or container of a debug pod of namespace ns, running or not (the
// kubelet's garbage collection removes them within a minute of the pod's
// deletion).
func (c *cluster) wantDebugPodsRemoved(t *testing.T, ns string) {
	t.Helper()
	begin := time.Now()
	for {
		left := c.runtimeDebugContainers(ns, false)
		if len(left) == 0 {
			t.Logf("no debug pod of namespace %s left in the container runtimes (waited %v)", ns, time.Since(begin).Round(time.Millisecond))
			return
		}
		if time.Since(begin) > runtimeRemoveWait {
			t.Errorf("debug pods of namespace %s still in the container runtime after %v: %v", ns, runtimeRemoveWait, left)
			return
		}
		time.Sleep(time.Second)
	}
}

const (
	// runtimeStopWait bounds how long a kubelet may take to stop a deleted
	// debug pod (it gives it at least 2 s after SIGTERM, which sleep as
	// PID 1 ignores).
	runtimeStopWait = 30 * time.Second
	// runtimeRemoveWait bounds how long a kubelet may take to remove a
	// deleted debug pod's stopped containers and sandbox: its container
	// garbage collection runs every minute.
	runtimeRemoveWait = 90 * time.Second
)

// runtimeDebugContainers lists, as "node: container ID", the containers
// and sandboxes of debug pods (named trace-svc-...) in namespace ns that
// the nodes' containerd hold — only those with a running task when
// running is set.
func (c *cluster) runtimeDebugContainers(ns string, running bool) []string {
	c.t.Helper()
	var out []string
	for _, n := range c.nodes {
		var tasks map[string]int
		if running {
			tasks = c.runtimeTasks(n)
		}
		for _, id := range c.runtimeContainers(n, ns, "^trace-svc-") {
			if !running {
				out = append(out, n.name+": "+id)
			} else if pid, ok := tasks[id]; ok {
				out = append(out, fmt.Sprintf("%s: %s (pid %d)", n.name, id, pid))
			}
		}
	}
	return out
}

// debugPods lists the plugin's debug pods in every namespace as
// namespace/name.
func (c *cluster) debugPods() []string { return c.debugPodsIn("") }

// debugPodsIn lists the plugin's debug pods in namespace ns ("": all) as
// namespace/name.
func (c *cluster) debugPodsIn(ns string) []string {
	c.t.Helper()
	path := "/api/v1/pods"
	if ns != "" {
		path = "/api/v1/namespaces/" + ns + "/pods"
	}
	code, body, err := c.do("GET", path+"?labelSelector="+debugPodSelector, nil)
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
