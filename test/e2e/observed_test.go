package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
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

// The observed view (--observe): real connections through a node, then the
// plugin's per-endpoint connections and DNAT rule hits must equal what the
// node's kernel says, read here on its own (conntrack -L with filters;
// iptables-save -c for the DNAT rules' counters), and a stale UDP entry
// made for real must be reported with a command that clears it.

const (
	dnsPod   = "dns-0" // a UDP server pod on node1
	dnsPodIP = "10.244.1.7"
	dnsPort  = 5353
	// webFromPod and webFromClient are the connections made to obs-web
	// through its cluster IP (from client-1) and its node port (from the
	// outside client).
	webFromPod    = 10
	webFromClient = 6
)

var (
	netpeerOnce sync.Once
	netpeerBin  string
	netpeerErr  error
)

// netpeer builds hack/conntrack/netpeer (a UDP server and a client that
// keeps one UDP socket sending) once per run.
func netpeer(t *testing.T) string {
	t.Helper()
	netpeerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "netpeer-")
		if err != nil {
			netpeerErr = err
			return
		}
		netpeerBin = filepath.Join(dir, "netpeer")
		netpeerErr = goBuild("../..", netpeerBin, "./hack/conntrack/netpeer")
	})
	if netpeerErr != nil {
		t.Fatal(netpeerErr)
	}
	return netpeerBin
}

// observedDoc is the plugin's JSON, with what it observed.
type observedDoc struct {
	Nodes []struct {
		Name     string `json:"name"`
		Observed *struct {
			Tables       []string `json:"tables"`
			Entries      int      `json:"entries"`
			RuleCounters bool     `json:"ruleCounters"`
		} `json:"observed"`
		Paths []struct {
			Entry struct {
				Kind     string     `json:"kind"`
				Address  netip.Addr `json:"address"`
				Port     uint16     `json:"port"`
				Protocol string     `json:"protocol"`
				From     string     `json:"from"`
			} `json:"entry"`
			Verdict  string `json:"verdict"`
			Observed *struct {
				Connections int `json:"connections"`
				Stale       int `json:"stale"`
			} `json:"observed"`
			Endpoints []struct {
				IP       netip.Addr `json:"ip"`
				Port     uint16     `json:"port"`
				InRules  bool       `json:"inRules"`
				Observed *struct {
					Connections *int    `json:"connections"`
					RuleHits    *uint64 `json:"ruleHits"`
					Clients     []struct {
						Addr        netip.Addr `json:"addr"`
						Connections int        `json:"connections"`
					} `json:"clients"`
				} `json:"observed"`
			} `json:"endpoints"`
		} `json:"paths"`
	} `json:"nodes"`
}

// kernelConntrack counts the node's conntrack entries matching the
// filters, as conntrack itself selects them.
func kernelConntrack(t *testing.T, n *node, filters ...string) int {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.ns, "conntrack", "-L"}, filters...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("conntrack -L %s on %s: %v", strings.Join(filters, " "), n.name, err)
	}
	count := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			count++
		}
	}
	return count
}

// kernelDNATCounters reads the packet counters of the node's DNAT rules
// for a Service port from iptables-save -c (kube-proxy's iptables mode),
// by endpoint.
func kernelDNATCounters(t *testing.T, n *node, svcPort string) map[string]uint64 {
	t.Helper()
	save := "iptables-nft-save"
	if n.mode == "iptables-legacy" {
		save = "iptables-legacy-save"
	}
	out, err := exec.Command("ip", "netns", "exec", n.ns, save, "-c", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("%s -c on %s: %v", save, n.name, err)
	}
	re := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A KUBE-SEP-\S+ .*--comment "?` + regexp.QuoteMeta(svcPort) + `"? .*-j DNAT --to-destination (\S+)$`)
	got := map[string]uint64{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		got[m[2]] = v
	}
	return got
}

func TestObserved(t *testing.T) {
	s := setup(t)
	peer := netpeer(t)
	s.eachMode(t, "obs", func(t *testing.T, c *cluster, mode string) {
		n1 := c.addNode("node1", node1IP, "10.244.1.0/24")
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.addPod(n1, e2eNS, pod2Name, pod2IP, echoLabels)
		fromPod := c.addPod(n1, e2eNS, clientPod1, clientPod1IP, clientLabels)
		client := c.addClient("client", clientIP)
		dnsNS := c.addPod(n1, e2eNS, dnsPod, dnsPodIP, map[string]string{"app": "dns"})
		c.start("udp-"+dnsPod, dnsNS, peer, "serve", "-name", dnsPod, "-udp", strconv.Itoa(dnsPort))

		const web, dns = "obs-web", "obs-dns"
		webSpec := c.service(web, `{"type":"NodePort","selector":{"app":"echo"},"externalTrafficPolicy":"Cluster",
		  "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}`)
		c.putSlice(web, []slicePod{{podIP, podName}, {pod2IP, pod2Name}})
		// obs-dns: UDP behind a node port with the Local policy, so an
		// outside client's datagrams reach the pod unmasqueraded.
		dnsSpec := c.service(dns, `{"type":"NodePort","selector":{"app":"dns"},"externalTrafficPolicy":"Local",
		  "ports":[{"name":"dns","port":53,"targetPort":5353,"protocol":"UDP"}]}`)
		dnsPorts := `[{"name":"dns","port":5353,"protocol":"UDP"}]`
		c.putSliceRaw(dns, fmt.Sprintf(`[{"addresses":[%q],"conditions":{"ready":true,"serving":true,"terminating":false},
		  "nodeName":"node1","targetRef":{"kind":"Pod","namespace":%q,"name":%q}}]`, dnsPodIP, e2eNS, dnsPod), dnsPorts)
		webIP, webNP, dnsNP := webSpec.ClusterIP, webSpec.Ports[0].NodePort, dnsSpec.Ports[0].NodePort
		c.settle(map[*node]func(string) string{n1: wantInRules(webIP, fmt.Sprint(webNP), podIP, pod2IP, fmt.Sprint(dnsNP), dnsPodIP)})

		// Real connections: closed ones stay in conntrack (TIME_WAIT) for
		// two minutes, long enough for the plugin and the kernel's counts.
		for i := 0; i < webFromPod; i++ {
			mustReach(t, fromPod, webIP, 80)
		}
		for i := 0; i < webFromClient; i++ {
			mustReach(t, client, node1IP, webNP)
		}

		// The stale UDP entry: a client keeps one socket sending to the
		// node port; the Service loses its only endpoint (kube-proxy
		// rewrites its rules, and its conntrack clean-up leaves node-port
		// flows of a Service without endpoints alone), and the pod goes.
		c.start("udp-stream", client, peer, "udp-stream", "-addr", fmt.Sprintf("%s:%d", node1IP, dnsNP), "-sport", "40053", "-every", "200ms")
		waitLog(t, filepath.Join(c.dir, "udp-stream.log"), dnsPod)
		time.Sleep(2500 * time.Millisecond) // replies for over 2 s: ASSURED
		c.putSliceRaw(dns, `[]`, dnsPorts)
		c.settle(map[*node]func(string) string{n1: func(r string) string {
			if strings.Contains(r, dnsPodIP) {
				return " " + dnsPodIP + " still in the rules"
			}
			return ""
		}})
		c.stop("udp-" + dnsPod)
		if code, body, err := c.do("DELETE", "/api/v1/namespaces/"+e2eNS+"/pods/"+dnsPod+"?gracePeriodSeconds=0", nil); err != nil || code != 200 {
			t.Fatalf("delete pod %s: %d %v %s", dnsPod, code, err, body)
		}
		// The pod goes for real: the kubelet stops its containers and its
		// sandbox (and with it the veth and the route).
		running := func() bool {
			tasks := c.runtimeTasks(n1)
			for _, id := range c.runtimeContainers(n1, e2eNS, "^"+dnsPod+"$") {
				if tasks[id] > 0 {
					return true
				}
			}
			return false
		}
		for deadline := time.Now().Add(time.Minute); running(); {
			if time.Now().After(deadline) {
				t.Fatalf("pod %s still runs on node1 a minute after its deletion", dnsPod)
			}
			time.Sleep(time.Second)
		}
		c.run("ip", "netns", "del", dnsNS) // the suite's name for the pod's network namespace
		time.Sleep(time.Second)            // the stream sends on, to the gone pod's address
		staleFilter := []string{"-p", "udp", "--orig-dst", node1IP, "--orig-port-dst", fmt.Sprint(dnsNP), "--reply-src", dnsPodIP}
		if n := kernelConntrack(t, n1, staleFilter...); n != 1 {
			t.Fatalf("conntrack on node1: %d entries to the gone pod %s, want the stream's 1", n, dnsPodIP)
		}

		t.Run("connections-and-rule-hits", func(t *testing.T) {
			tp := c.trace(t, web)
			var doc observedDoc
			if err := json.Unmarshal(tp.raw, &doc); err != nil {
				t.Fatal(err)
			}
			dnat := map[string]uint64{}
			if mode != "nftables" {
				dnat = kernelDNATCounters(t, n1, e2eNS+"/"+web+":http")
				if len(dnat) != 2 {
					t.Fatalf("iptables-save -c: DNAT rules of %s: %v, want two", web, dnat)
				}
			}
			entries := map[string]string{"ClusterIP": webIP, "NodePort": node1IP}
			checked := 0
			for _, n := range doc.Nodes {
				if n.Name != "node1" {
					continue
				}
				if n.Observed == nil || len(n.Observed.Tables) == 0 || n.Observed.RuleCounters != (mode != "nftables") {
					t.Errorf("node1 observed %+v", n.Observed)
				}
				for _, p := range n.Paths {
					addr, ok := entries[p.Entry.Kind]
					if !ok || p.Entry.Address.String() != addr {
						continue
					}
					total := kernelConntrack(t, n1, "-p", "tcp", "--orig-dst", addr, "--orig-port-dst", fmt.Sprint(p.Entry.Port))
					if p.Observed == nil || p.Observed.Connections != total {
						t.Errorf("%s %s:%d: plugin observed %+v, the kernel %d connections", p.Entry.Kind, addr, p.Entry.Port, p.Observed, total)
					}
					for _, e := range p.Endpoints {
						ep := netip.AddrPortFrom(e.IP, e.Port).String()
						kernel := kernelConntrack(t, n1, "-p", "tcp", "--orig-dst", addr, "--orig-port-dst", fmt.Sprint(p.Entry.Port),
							"--reply-src", e.IP.String(), "--reply-port-src", fmt.Sprint(e.Port))
						o := e.Observed
						if o == nil || o.Connections == nil || *o.Connections != kernel {
							t.Errorf("%s %s:%d → %s: plugin connections %v, kernel %d", p.Entry.Kind, addr, p.Entry.Port, ep, o, kernel)
							continue
						}
						hits := "absent"
						switch {
						case mode == "nftables" && o.RuleHits != nil:
							t.Errorf("%s → %s: nftables mode has no DNAT rule counters, the plugin says %d", p.Entry.Kind, ep, *o.RuleHits)
						case mode != "nftables" && (o.RuleHits == nil || *o.RuleHits != dnat[ep]):
							t.Errorf("%s → %s: plugin rule hits %s, iptables-save -c %d", p.Entry.Kind, ep, deref(o.RuleHits), dnat[ep])
						case o.RuleHits != nil:
							hits = fmt.Sprint(*o.RuleHits)
						}
						t.Logf("%s %s:%d (%s) → %s: connections plugin %d, kernel %d; rule hits plugin %s, kernel %d",
							p.Entry.Kind, addr, p.Entry.Port, p.Entry.From, ep, *o.Connections, kernel, hits, dnat[ep])
						if !strings.Contains(tp.tree, fmt.Sprintf("· %d %s", kernel, plural(kernel, "connection", "connections"))) {
							t.Errorf("tree: no %d connection(s) for %s", kernel, ep)
						}
						if !strings.Contains(tp.dot, fmt.Sprintf(`\n%d %s, `, kernel, plural(kernel, "connection", "connections"))) {
							t.Errorf("dot: no edge label with %d connection(s) for %s", kernel, ep)
						}
						if mode != "nftables" && !strings.Contains(tp.tree, fmt.Sprintf("%d rule hit", dnat[ep])) {
							t.Errorf("tree: no %d rule hits for %s", dnat[ep], ep)
						}
						checked++
					}
				}
			}
			if checked < 4 {
				t.Errorf("checked %d endpoints of the cluster IP and node port paths, want at least 4", checked)
			}
			// Every connection took one endpoint's DNAT rule once, through
			// either entry: the counters add up to the connections made.
			if mode != "nftables" {
				var sum uint64
				for _, v := range dnat {
					sum += v
				}
				if sum != webFromPod+webFromClient {
					t.Errorf("DNAT rule counters add up to %d, %d connections were made", sum, webFromPod+webFromClient)
				}
			}
		})

		t.Run("show-clients", func(t *testing.T) {
			raw := c.runPlugin(t, web, "-n", e2eNS, "--kubeconfig", c.adminKubeconfig, "--image", "e2e.local/no-pull", "--timeout", "60s",
				"-o", "json", "--show-clients", "--node", "node1")
			var doc observedDoc
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"ClusterIP": clientPod1IP, "NodePort": clientIP}
			for _, p := range doc.Nodes[0].Paths {
				who, ok := want[p.Entry.Kind]
				if !ok || p.Entry.From == "this node" {
					continue
				}
				for _, e := range p.Endpoints {
					if e.Observed == nil || e.Observed.Connections == nil {
						t.Errorf("%s → %s: nothing observed", p.Entry.Kind, e.IP)
						continue
					}
					sum := 0
					for _, cl := range e.Observed.Clients {
						sum += cl.Connections
						if cl.Addr.String() != who {
							t.Errorf("%s → %s: client %s, only %s connected", p.Entry.Kind, e.IP, cl.Addr, who)
						}
					}
					kernel := kernelConntrack(t, n1, "-p", "tcp", "--orig-src", who, "--orig-dst", p.Entry.Address.String(), "--reply-src", e.IP.String())
					if sum != *e.Observed.Connections || sum != kernel {
						t.Errorf("%s → %s: clients' connections %d, endpoint's %d, kernel's from %s %d", p.Entry.Kind, e.IP, sum, *e.Observed.Connections, who, kernel)
					}
				}
			}
		})

		t.Run("stale-udp", func(t *testing.T) {
			tp := c.trace(t, dns)
			var doc observedDoc
			if err := json.Unmarshal(tp.raw, &doc); err != nil {
				t.Fatal(err)
			}
			kernel := kernelConntrack(t, n1, staleFilter...)
			found := false
			for _, p := range doc.Nodes[0].Paths {
				if p.Entry.Kind != "NodePort" || p.Entry.Address.String() != node1IP {
					continue
				}
				found = true
				if p.Verdict != "DROP" && p.Verdict != "REJECT" {
					t.Errorf("node port of a Service without endpoints: %s", p.Verdict)
				}
				if p.Observed == nil || p.Observed.Stale != kernel || p.Observed.Connections != kernel {
					t.Errorf("node port: plugin observed %+v, the kernel %d entries to the gone pod", p.Observed, kernel)
				}
				t.Logf("node port %s:%d/udp: %s; plugin %+v; kernel %d entry to %s", node1IP, dnsNP, p.Verdict, *p.Observed, kernel, dnsPodIP)
			}
			if !found {
				t.Fatalf("no node port path on node1: %s", tp.raw)
			}
			clear := fmt.Sprintf("conntrack -D -f ipv4 -p udp --orig-dst %s --orig-port-dst %d --reply-src %s --reply-port-src %d", node1IP, dnsNP, dnsPodIP, dnsPort)
			var stale *finding
			for i, f := range tp.Findings {
				if f.Code == "StaleConntrackEntries" && f.Node == "node1" {
					stale = &tp.Findings[i]
				}
			}
			switch {
			case stale == nil:
				t.Fatalf("no StaleConntrackEntries finding: %+v", tp.Findings)
			case stale.Severity != "error" || !strings.Contains(stale.Message, clear) || !strings.Contains(stale.Message, fmt.Sprintf("%s:%d", dnsPodIP, dnsPort)):
				t.Errorf("finding %+v, want an error naming %s:%d and %q", stale, dnsPodIP, dnsPort, clear)
			}
			if _, ok := tp.findingsOn("node1")["TrafficWhereRulesDrop"]; !ok {
				t.Errorf("no TrafficWhereRulesDrop finding: %+v", tp.Findings)
			}
			if !strings.Contains(tp.tree, "StaleConntrackEntries") || !strings.Contains(tp.tree, "no longer endpoints (stale)") {
				t.Errorf("tree does not show the stale entry:\n%s", tp.tree)
			}
			if !strings.Contains(tp.dot, "connection observed") {
				t.Errorf("dot does not show the observed connection on the refused path")
			}
			// The command the finding gives clears the entry.
			out, err := exec.Command("ip", append([]string{"netns", "exec", n1.ns}, strings.Fields(clear)...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", clear, err, out)
			}
			if n := kernelConntrack(t, n1, staleFilter...); n != 0 {
				t.Errorf("after %s: %d entries to %s remain", clear, n, dnsPodIP)
			}
			t.Logf("%s: %s", clear, strings.TrimSpace(string(out)))
		})
	})
}

// waitLog waits until a process's log contains s.
func waitLog(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after 15 s:\n%s", path, s, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// deref formats a counter the plugin may leave out.
func deref(p *uint64) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
