package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dropWait is how long a connection must hang to count as dropped.
const dropWait = 2 * time.Second

type curlResult struct {
	out  string
	exit int
	took time.Duration
}

// curl fetches http://ip:port/ from inside a namespace (the client, a pod
// or a node), giving up after timeout.
func curl(t *testing.T, fromNS, ip string, port int, timeout time.Duration) curlResult {
	t.Helper()
	secs := strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)
	begin := time.Now()
	out, err := exec.Command("ip", "netns", "exec", fromNS, "curl", "-sS",
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

// mustReach curls ip:port from fromNS and returns the pod's answer; the
// connection must succeed.
func mustReach(t *testing.T, fromNS, ip string, port int) answer {
	t.Helper()
	res := curl(t, fromNS, ip, port, 5*time.Second)
	if res.exit != 0 {
		t.Fatalf("curl %s:%d from %s: exit %d after %v: %s", ip, port, fromNS, res.exit, res.took, res.out)
	}
	return parseAnswer(t, res.out)
}

// mustHang curls ip:port from fromNS and fails unless the connection hangs
// until dropWait (curl exit 28: the packets were dropped).
func mustHang(t *testing.T, fromNS, ip string, port int) curlResult {
	t.Helper()
	res := curl(t, fromNS, ip, port, dropWait)
	if res.exit != 28 {
		t.Errorf("curl %s:%d from %s: exit %d after %v, want a timeout (exit 28, dropped): %s", ip, port, fromNS, res.exit, res.took, res.out)
	}
	return res
}

// mustRefuse curls ip:port from fromNS and fails unless the connection is
// refused at once (curl exit 7: rejected).
func mustRefuse(t *testing.T, fromNS, ip string, port int) curlResult {
	t.Helper()
	res := curl(t, fromNS, ip, port, dropWait)
	if res.exit != 7 || res.took >= dropWait/2 {
		t.Errorf("curl %s:%d from %s: exit %d after %v, want a quick refusal (exit 7, rejected): %s", ip, port, fromNS, res.exit, res.took, res.out)
	}
	return res
}

// answer is what the echo pod said: its name, the port it was reached on
// and the remote address it saw (the node's when masqueraded).
type answer struct {
	name   string
	port   int
	remote netip.Addr
}

func (a answer) String() string { return fmt.Sprintf("%s:%d saw %s", a.name, a.port, a.remote) }

func parseAnswer(t *testing.T, out string) answer {
	t.Helper()
	var a answer
	for _, f := range strings.Fields(out) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "name":
			a.name = v
		case "port":
			a.port, _ = strconv.Atoi(v)
		case "remote":
			if ap, err := netip.ParseAddrPort(v); err == nil {
				a.remote = ap.Addr()
			}
		}
	}
	if a.name == "" || a.port == 0 || !a.remote.IsValid() {
		t.Fatalf("not an echo pod's answer: %q", out)
	}
	return a
}

// wantReached checks that the pod's answer agrees with the prediction p:
// it came from one of p's endpoints (pod and port), and it saw an address
// of the node (nodeAddr) that handled the connection exactly when p
// masquerades, the client's otherwise.
func wantReached(t *testing.T, a answer, p entryPath, clientAddr, nodeAddr string) {
	t.Helper()
	var reached netip.Addr
	for _, e := range p.Endpoints {
		if e.InRules && int(e.Port) == a.port && e.Pod != nil && e.Pod.Name == a.name {
			reached = e.IP
			if e.Masquerade != p.Masquerade {
				t.Errorf("plugin: endpoint %s masquerade %v but the path's %v", e.IP, e.Masquerade, p.Masquerade)
			}
		}
	}
	if !reached.IsValid() {
		t.Errorf("the packets reached %s port %d; the plugin predicts %s %+v", a.name, a.port, p.Verdict, p.Endpoints)
	}
	want := netip.MustParseAddr(clientAddr)
	if p.Masquerade {
		want = masqueradeSource(nodeAddr, reached)
	}
	if a.remote != want {
		t.Errorf("the pod saw %s; the plugin predicts masquerade=%v, so it should see %s", a.remote, p.Masquerade, want)
	}
}

// masqueradeSource is the address a pod at podIP sees when node nodeAddr
// masquerades a connection to it: MASQUERADE takes the address of the
// interface the packet leaves by — for a pod on that node its veth, which
// CNI's ptp gave the pod CIDR's first address (as a bridge CNI gives its
// bridge); for a pod on another node the node's own address.
func masqueradeSource(nodeAddr string, podIP netip.Addr) netip.Addr {
	node := netip.MustParseAddr(nodeAddr)
	cidr, ok := nodePodCIDRs[nodeAddr]
	if !ok || !podIP.IsValid() {
		return node
	}
	pfx := netip.MustParsePrefix(cidr)
	if !pfx.Contains(podIP) {
		return node
	}
	return pfx.Addr().Next()
}

// wantConntrack checks node n's conntrack table: every connection from src
// to dst:dport was DNATed to one of the endpoints p predicts.
func wantConntrack(t *testing.T, n *node, src, dst string, dport int, p entryPath) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.ns, "conntrack", "-L", "-p", "tcp", "--dport", fmt.Sprint(dport)).CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L in %s: %v\n%s", n.name, err, out)
	}
	// "... src=<src> dst=<dst> sport=X dport=<dport> ... src=<pod> dst=... sport=<pod port> ..."
	re := regexp.MustCompile(fmt.Sprintf(`src=%s dst=%s sport=\d+ dport=%d .*?src=(\S+) dst=\S+ sport=(\d+) `,
		regexp.QuoteMeta(src), regexp.QuoteMeta(dst), dport))
	ms := re.FindAllStringSubmatch(string(out), -1)
	if len(ms) == 0 {
		t.Errorf("conntrack on %s: no connection %s -> %s:%d in:\n%s", n.name, src, dst, dport, out)
		return
	}
	predicted := map[string]bool{}
	for _, e := range p.Endpoints {
		if e.InRules {
			predicted[netip.AddrPortFrom(e.IP, e.Port).String()] = true
		}
	}
	for _, m := range ms {
		if got := m[1] + ":" + m[2]; !predicted[got] {
			t.Errorf("conntrack on %s: %s -> %s:%d DNATed to %s, the plugin predicts %v", n.name, src, dst, dport, got, predicted)
		}
	}
	t.Logf("conntrack on %s: %d connection(s) %s -> %s:%d, each DNATed to a predicted endpoint", n.name, len(ms), src, dst, dport)
}

// blocked curls ip:port from fromNS, which must not connect, and says what
// the packets showed: DROP (the connection hung until dropWait) or REJECT
// (refused at once).
func blocked(t *testing.T, fromNS, ip string, port int) (string, curlResult) {
	t.Helper()
	res := curl(t, fromNS, ip, port, dropWait)
	switch {
	case res.exit == 28:
		return "DROP", res
	case res.exit == 7 && res.took < dropWait/2:
		return "REJECT", res
	}
	t.Fatalf("curl %s:%d from %s: exit %d after %v, want a drop (28) or a refusal (7): %s", ip, port, fromNS, res.exit, res.took, res.out)
	return "", res
}

// packetsAgree opens a connection from fromNS to ip:port and checks it does
// what p predicts: reaches one of p's endpoints with the predicted source
// address (DNAT), hangs (DROP), or is refused at once (REJECT). clientAddr
// is fromNS's address, nodeAddr the one masquerade would give it.
func packetsAgree(t *testing.T, fromNS, ip string, port int, p entryPath, clientAddr, nodeAddr string) string {
	t.Helper()
	switch p.Verdict {
	case "DNAT":
		got := mustReach(t, fromNS, ip, port)
		wantReached(t, got, p, clientAddr, nodeAddr)
		return "reached " + got.String()
	case "DROP":
		return fmt.Sprintf("hung for %v", mustHang(t, fromNS, ip, port).took)
	case "REJECT":
		return fmt.Sprintf("refused in %v", mustRefuse(t, fromNS, ip, port).took)
	}
	t.Errorf("plugin predicts %s for %s:%d (why: %s): not something packets can check", p.Verdict, ip, port, p.Why)
	return ""
}
