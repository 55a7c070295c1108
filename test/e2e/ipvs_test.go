package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trace-svc/kubectl-trace-svc/test/ipvsreplay"
)

var (
	ipvsFlag = flag.Bool("ipvs", false, "also run TestIPVS: real kube-proxy in IPVS mode in a qemu VM (make e2e-ipvs)")
	ipvsHold = flag.Duration("ipvs-hold", 0, "keep TestIPVS's VM running this long after the traffic, logging how to reach its agent (for looking around)")
	ipvsOut  = flag.String("ipvs-out", "", "directory TestIPVS writes the node's dumps, the API objects and the traffic results to (files of the same names are replaced); empty: a temporary directory, for the replay through the plugin only")
)

// The IPVS node's topology, all inside the VM: node1 is the VM's root
// network namespace running kube-proxy --proxy-mode=ipvs, with a bridge the
// clients and node2 sit on; node2 is a namespace on that bridge that only
// routes to its pod (no kube-proxy: node1's rules are what is recorded);
// every pod and client is a namespace of its own.
const (
	ipvsNode1     = "node1"
	ipvsNode1IP   = "10.250.0.11"
	ipvsNode1CIDR = "10.244.1.0/24"
	ipvsNode2     = "node2"
	ipvsNode2IP   = "10.250.0.12"
	ipvsNode2CIDR = "10.244.2.0/24"

	ipvsClientIP    = "10.250.0.100" // inside the load balancer's source ranges
	ipvsClientOutIP = "10.250.0.200" // outside them

	ipvsLBIP      = "203.0.113.50" // Cluster policy, source ranges
	ipvsLBLocalIP = "203.0.113.51" // Local policy
	ipvsExtIP     = "198.51.100.7"
)

// ipvsPod is a pod namespace in the VM running the echo server.
type ipvsPod struct{ name, node, ip string }

var ipvsPods = []ipvsPod{
	{"echo-0", ipvsNode1, "10.244.1.2"},
	{"echo-1", ipvsNode1, "10.244.1.3"},
	{"echo-2", ipvsNode2, "10.244.2.2"},
	{"client-1", ipvsNode1, "10.244.1.5"},
}

func ipvsPodIP(name string) string {
	for _, p := range ipvsPods {
		if p.name == name {
			return p.ip
		}
	}
	return ""
}

// ipvsClient is where a case's traffic starts: a namespace in the VM, or
// node1 itself (netns "").
type ipvsClient struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // pod, node, outside
	IP    string `json:"ip"`   // for the node: the address the kernel chose, from the first try
	Netns string `json:"netns,omitempty"`
}

var (
	fromClientPod = ipvsClient{Name: "client-1", Kind: "pod", IP: "10.244.1.5", Netns: "client-1"}
	fromEcho0     = ipvsClient{Name: "echo-0", Kind: "pod", IP: "10.244.1.2", Netns: "echo-0"}
	fromNode1     = ipvsClient{Name: ipvsNode1, Kind: "node"}
	fromClient    = ipvsClient{Name: "client", Kind: "outside", IP: ipvsClientIP, Netns: "client"}
	fromClientOut = ipvsClient{Name: "client-out", Kind: "outside", IP: ipvsClientOutIP, Netns: "client-out"}
)

// ipvsResults is traffic.json: what the packets did, case by case, for the
// plugin's predictions on the same node's dumps to be checked against.
type ipvsResults struct {
	About     string        `json:"about"`
	KubeProxy string        `json:"kubeProxyVersion"`
	Kernel    string        `json:"kernel"`
	ProxyMode string        `json:"proxyMode"` // what kube-proxy's /proxyMode said
	Node      string        `json:"node"`      // whose dumps are node1.*
	NodeIP    string        `json:"nodeIP"`
	Pods      []ipvsPodJSON `json:"pods"`
	Cases     []*ipvsCase   `json:"cases"`
}

type ipvsPodJSON struct {
	Name string `json:"name"`
	Node string `json:"node"`
	IP   string `json:"ip"`
}

// ipvsCase is one kind of packet sent tries times.
type ipvsCase struct {
	Name    string     `json:"name"`
	About   string     `json:"about"`
	Service string     `json:"service"` // namespace/name
	Port    string     `json:"port"`    // the Service port's name
	Via     string     `json:"via"`     // clusterIP, nodePort, loadBalancer, externalIP
	Client  ipvsClient `json:"client"`
	Dst     ipvsDst    `json:"dst"`
	Tries   int        `json:"tries"`
	// Outcomes counts the tries by outcome: connected, refused, timeout,
	// unreachable, reset, error.
	Outcomes map[string]int `json:"outcomes"`
	// Answers are the pods that answered, with the address each saw.
	Answers []ipvsAnswer `json:"answers,omitempty"`
	// Attempts are the tries in order, as the probe reported them.
	Attempts []ipvsAttempt `json:"attempts"`
}

type ipvsDst struct {
	IP    string `json:"ip"`
	Port  int    `json:"port"`
	Proto string `json:"proto"`
}

type ipvsAnswer struct {
	Pod     string `json:"pod"`
	PodIP   string `json:"podIP"`
	PodPort int    `json:"podPort"`
	// SawSource is the source address the pod saw; SNAT is whether it
	// differs from the client's (masquerade, or the node's own address).
	SawSource string `json:"sawSource"`
	SNAT      bool   `json:"snat"`
	Count     int    `json:"count"`
}

// ipvsAttempt is one try as cmd/vmagent's probe prints it, and the IPVS
// connection entry that try made, if any.
type ipvsAttempt struct {
	Outcome   string `json:"outcome"`
	LocalPort int    `json:"localPort,omitempty"`
	Local     string `json:"local,omitempty"`
	Reply     string `json:"reply,omitempty"`
	Error     string `json:"error,omitempty"`
	Millis    int64  `json:"ms"`
	// IPVSConn is the try's entry in node1's IPVS connection table
	// (ipvsadm -Lnc) right after the case: which real server IPVS
	// scheduled it to, also when no answer came back. Absent when IPVS
	// never saw the connection (dropped or refused before it, or no real
	// server to schedule).
	IPVSConn *ipvsConn `json:"ipvsConn,omitempty"`
}

// ipvsConn is one line of ipvsadm -Lnc.
type ipvsConn struct {
	State      string `json:"state"`
	Source     string `json:"source"`
	Virtual    string `json:"virtual"`
	RealServer string `json:"realServer"`
}

// TestIPVS runs real kube-proxy in IPVS mode on a node that is a qemu VM
// (this machine's kernel has no IPVS), against the suite's control plane,
// sends real traffic for every kind of Service path inside the VM, and
// records per case who answered and what source address they saw, then the
// node's whole dataplane (IPVS table, ipsets, iptables, routes, links,
// conntrack). With -ipvs-out the dumps, the API objects and the results are
// saved: testdata/ipvs/real holds a committed set.
//
// Its one subtest is named for the mode, as every other test's are, so
// run.sh's summary lists it.
func TestIPVS(t *testing.T) {
	if !*ipvsFlag {
		t.Skip("TestIPVS boots a VM: make e2e-ipvs, or go test -run TestIPVS -args -e2e -ipvs")
	}
	t.Run("ipvs", testIPVS)
}

func testIPVS(t *testing.T) {
	begin := time.Now()
	s := setup(t)
	image := buildVMImage(t)
	agent := filepath.Join(toolsDir, "vmagent")
	if err := goBuild(".", agent, "./cmd/vmagent"); err != nil {
		t.Fatal(err)
	}
	c := s.cluster(t, "ipvs-", "ipvs")

	// The API side: nodes, pods, Services and their EndpointSlices, all
	// before the VM boots so kube-proxy's first sync has them.
	c.ipvsNode(ipvsNode1, ipvsNode1IP, ipvsNode1CIDR)
	c.ipvsNode(ipvsNode2, ipvsNode2IP, ipvsNode2CIDR)
	for _, p := range ipvsPods {
		labels := echoLabels
		if strings.HasPrefix(p.name, "client") {
			labels = clientLabels
		}
		c.ipvsPodObject(p, labels)
	}
	svcs := ipvsServices(c)

	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://%s
    certificate-authority: /etc/kubernetes/ca.crt
    tls-server-name: kubernetes
users:
- name: kube-proxy
  user:
    client-certificate: /etc/kubernetes/kube-proxy.crt
    client-key: /etc/kubernetes/kube-proxy.key
contexts:
- name: e2e
  context: {cluster: e2e, user: kube-proxy}
current-context: e2e
`, vmAPIAddr)
	files := []vmFile{
		{path: "/bin/kube-proxy", mode: 0o755, src: filepath.Join(s.bin, "kube-proxy")},
		{path: "/bin/echoserver", mode: 0o755, src: s.echo},
		{path: "/bin/vmagent", mode: 0o755, src: agent},
		{path: "/etc/kubernetes/ca.crt", mode: 0o644, src: filepath.Join(c.dir, "ca.crt")},
		{path: "/etc/kubernetes/kube-proxy.crt", mode: 0o644, src: filepath.Join(c.dir, "kube-proxy.crt")},
		{path: "/etc/kubernetes/kube-proxy.key", mode: 0o600, src: filepath.Join(c.dir, "kube-proxy.key")},
		{path: "/etc/kubernetes/kube-proxy.kubeconfig", mode: 0o600, data: []byte(kubeconfig)},
	}
	prepared := time.Since(begin) // tools, VM image, control plane, objects
	bootStart := time.Now()
	v := bootVM(t, image, strings.TrimPrefix(c.apiURL, "https://"), files)
	booted := time.Since(bootStart)

	v.sh(ipvsTopology())
	for _, p := range ipvsPods {
		v.start("pod-"+p.name, "/bin/ip", "netns", "exec", p.name, "/bin/echoserver", "-name", p.name, "-listen", ":8080,:9090")
	}
	proxyStart := time.Now()
	v.start("kube-proxy", "/bin/kube-proxy",
		"--kubeconfig=/etc/kubernetes/kube-proxy.kubeconfig",
		"--hostname-override="+ipvsNode1,
		"--proxy-mode=ipvs",
		"--cluster-cidr="+clusterCIDR,
		"--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:10249",
		"--healthz-bind-address=127.0.0.1:10256",
		"-v=2",
	)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- kube-proxy log tail (VM) ---\n%s", lastLines(v.call(time.Minute, "cat", "/var/log/kube-proxy.log").Stdout, 40))
		}
	})
	v.settleIPVS(svcs.want)
	synced := time.Since(proxyStart)

	// The terminating case needs connections to echo-1 before echo-1
	// terminates: kube-proxy then keeps it as a weight-0 real server until
	// they expire (graceful termination) instead of deleting it.
	warm := v.probe("warm-up", "", fromClientPod, svcs.ip["ipvs-term"], 80, 4)
	if warm.Outcomes["connected"] != 4 {
		t.Fatalf("warming up ipvs-term: %+v", warm.Outcomes)
	}

	trafficStart := time.Now()
	res := &ipvsResults{
		About:     "TestIPVS (test/e2e/ipvs_test.go): real kube-proxy --proxy-mode=ipvs on node1, a qemu VM; real connections from the clients named; node1.* are node1's dumps taken right after the last case",
		KubeProxy: *k8sVersion,
		Node:      ipvsNode1,
		NodeIP:    ipvsNode1IP,
	}
	for _, p := range ipvsPods {
		res.Pods = append(res.Pods, ipvsPodJSON{p.name, p.node, p.ip})
	}
	run := func(specs []ipvsCaseSpec) {
		for _, sp := range specs {
			cs := v.probe(sp.name, sp.about, sp.from, sp.ip, sp.dport, sp.tries)
			cs.Service, cs.Port, cs.Via = e2eNS+"/"+sp.svc, sp.port, sp.via
			res.Cases = append(res.Cases, cs)
			sp.want.check(t, cs)
		}
	}
	run(ipvsCases(svcs))

	// echo-1 terminates (serving, not ready) while echo-0 stays ready:
	// its real server must turn weight 0 and get no new connection.
	c.putSliceStates("ipvs-term", []sliceEP{
		{ip: ipvsPodIP("echo-0"), name: "echo-0", ready: true, serving: true},
		{ip: ipvsPodIP("echo-1"), name: "echo-1", ready: false, serving: true, terminating: true},
	})
	weight0 := fmt.Sprintf("-a -t %s:80 -r %s:8080 -m -w 0", svcs.ip["ipvs-term"], ipvsPodIP("echo-1"))
	v.waitIPVS("echo-1 at weight 0 in ipvs-term", func(save string) bool { return strings.Contains(save, weight0) })
	run([]ipvsCaseSpec{{
		name: "terminating-weight0", about: "a terminating endpoint (kept at weight 0 while its connections last) next to a ready one",
		from: fromClientPod, svc: "ipvs-term", port: "http", via: "clusterIP", ip: svcs.ip["ipvs-term"], dport: 80, tries: 6,
		want: ipvsWant{outcome: "connected", pods: []string{"echo-0"}, port: 8080, saw: "client"},
	}})
	traffic := time.Since(trafficStart)

	dumps := v.ipvsDumps()
	res.Kernel = strings.TrimSpace(v.run("uname", "-r"))
	res.ProxyMode = strings.TrimSpace(dumps["proxyMode"])
	if !strings.Contains(dumps["ipvsadm-Sn"], weight0) {
		t.Errorf("the dump no longer shows echo-1 at weight 0 in ipvs-term (its connections expired?): dumped too late")
	}

	if *ipvsHold > 0 {
		t.Logf("holding the VM for %v (Ctrl-C ends the hold and cleans up): curl -H 'Authorization: Bearer %s' -d '{\"argv\":[\"ipvsadm\",\"-Ln\"]}' %s/run", *ipvsHold, v.token, v.url)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		select {
		case <-ctx.Done():
		case <-time.After(*ipvsHold):
		}
		stop()
	}
	saved := *ipvsOut
	if saved == "" {
		saved = t.TempDir()
	}
	ipvsSave(t, saved, res, dumps, c.ipvsObjects(), v.run("cat", "/var/log/kube-proxy.log"))
	// The plugin's predictions on the dumps just taken must say what the
	// packets did (the same check as the offline replay of
	// testdata/ipvs/real).
	results, err := ipvsreplay.Replay(saved)
	if err != nil {
		t.Errorf("replaying the recording through the plugin: %v", err)
	}
	for _, r := range results {
		t.Logf("plugin vs real packets, %v: %d/%d cases agree", r.Files, r.Agree, r.Total)
		for _, p := range r.Problems {
			t.Errorf("plugin disagrees with the real packets (%v): %s", r.Files, p)
		}
	}
	// The plugin's own dump script, run on the node as its debug pod runs
	// it (sh -c, with the node's tools: busybox, ipvsadm, ipset,
	// iptables-legacy) and saved as --save-dumps saves it, must collect a
	// node that replays the same.
	collected := filepath.Join(t.TempDir(), "collected")
	if r, err := v.collectWithPluginScript(collected, saved); err != nil {
		t.Errorf("the plugin's dump script on the IPVS node: %v", err)
	} else {
		t.Logf("plugin vs real packets, on what the plugin's own dump script collected (%v): %d/%d cases agree", r.Files, r.Agree, r.Total)
		for _, p := range r.Problems {
			t.Errorf("plugin's collection disagrees with the real packets: %s", p)
		}
		if r.Agree != r.Total || r.Total == 0 {
			t.Errorf("on the plugin's own collection %d/%d cases agree, want all", r.Agree, r.Total)
		}
	}
	t.Logf("timing: tools, VM image, control plane and objects %v, VM booted in %v, kube-proxy synced %v after start, traffic %v, whole test %v",
		prepared.Round(time.Millisecond), booted.Round(time.Millisecond), synced.Round(time.Millisecond), traffic.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	for _, cs := range res.Cases {
		t.Logf("%-42s %s", cs.Name, cs.summary())
	}
}

// ipvsTopology is the VM's network, as one busybox sh script: a bridge
// with node1's address; client, client-out and node2 on it; the pods on
// routed veths (pod /32, default via a link-local gateway answered by
// proxy_arp, as the rest of the suite does).
func ipvsTopology() string {
	var b strings.Builder
	b.WriteString(`ip=/bin/ip
sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 net.ipv4.icmp_ratelimit=0
$ip link add br0 type bridge
$ip link set br0 address 02:00:0a:fa:00:0b
$ip addr add ` + ipvsNode1IP + `/24 dev br0
$ip link set br0 up
n=0
port() { # namespace, address: a namespace with eth0 on the bridge
	n=$((n+1))
	$ip netns add $1
	$ip link add vb$n type veth peer name eth0 netns $1
	$ip link set vb$n master br0 up
	$ip -n $1 link set lo up
	$ip -n $1 addr add $2/24 dev eth0
	$ip -n $1 link set eth0 up
}
pod() { # node namespace (- for node1), pod, address
	ns=$1; [ "$ns" = - ] && ns=""
	$ip netns add $2
	$ip ${ns:+-n $ns} link add vp-$2 type veth peer name eth0 netns $2
	$ip ${ns:+-n $ns} link set vp-$2 up
	${ns:+$ip netns exec $ns} sysctl -q -w net.ipv4.conf.vp-$2.proxy_arp=1
	$ip ${ns:+-n $ns} route add $3/32 dev vp-$2
	$ip -n $2 link set lo up
	$ip -n $2 addr add $3/32 dev eth0
	$ip -n $2 link set eth0 up
	$ip -n $2 route add 169.254.1.1 dev eth0 scope link
	$ip -n $2 route add default via 169.254.1.1 dev eth0
}
`)
	fmt.Fprintf(&b, "port client %s\nport client-out %s\nport %s %s\n", ipvsClientIP, ipvsClientOutIP, ipvsNode2, ipvsNode2IP)
	for _, cl := range []string{"client", "client-out"} {
		// The "cloud load balancer" and the external IP route to node1.
		for _, ip := range []string{ipvsLBIP, ipvsLBLocalIP, ipvsExtIP} {
			fmt.Fprintf(&b, "$ip -n %s route add %s via %s\n", cl, ip, ipvsNode1IP)
		}
	}
	fmt.Fprintf(&b, "$ip netns exec %s sysctl -q -w net.ipv4.ip_forward=1\n", ipvsNode2)
	// node2 routes everything else to node1 (also what proxy_arp needs
	// to answer its pod for the link-local gateway).
	fmt.Fprintf(&b, "$ip -n %s route add default via %s\n$ip route add %s via %s\n", ipvsNode2, ipvsNode1IP, ipvsNode2CIDR, ipvsNode2IP)
	for _, p := range ipvsPods {
		ns := "-"
		if p.node == ipvsNode2 {
			ns = ipvsNode2
		}
		fmt.Fprintf(&b, "pod %s %s %s\n", ns, p.name, p.ip)
	}
	return b.String()
}

// ipvsNode creates a Node object (InternalIP, podCIDR, Ready).
func (c *cluster) ipvsNode(name, ip, podCIDR string) {
	c.t.Helper()
	c.create("/api/v1/nodes", fmt.Sprintf(`{"apiVersion":"v1","kind":"Node",
		"metadata":{"name":%q,"labels":{"kubernetes.io/hostname":%q}},
		"spec":{"podCIDR":%q,"podCIDRs":[%q]},
		"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}],
		  "conditions":[{"type":"Ready","status":"True","reason":"E2E","message":"IPVS VM"}]}}`,
		name, name, podCIDR, podCIDR, ip, name))
}

// ipvsPodObject creates a running, ready Pod bound to its node.
func (c *cluster) ipvsPodObject(p ipvsPod, labels map[string]string) {
	c.t.Helper()
	lb, _ := json.Marshal(labels)
	c.create("/api/v1/namespaces/"+e2eNS+"/pods", fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod",
		"metadata":{"name":%q,"labels":%s},
		"spec":{"nodeName":%q,"containers":[{"name":"echo","image":"e2e.local/echo","ports":[{"name":"http","containerPort":8080},{"name":"metrics","containerPort":9090}]}]}}`,
		p.name, lb, p.node))
	hostIP := ipvsNode1IP
	if p.node == ipvsNode2 {
		hostIP = ipvsNode2IP
	}
	now := time.Now().UTC().Format(time.RFC3339)
	c.patchStatus("/api/v1/namespaces/"+e2eNS+"/pods/"+p.name+"/status", fmt.Sprintf(`{"status":{
		"phase":"Running","hostIP":%q,"podIP":%q,"podIPs":[{"ip":%q}],"startTime":%q,
		"conditions":[{"type":"Ready","status":"True","lastTransitionTime":%q}]}}`, hostIP, p.ip, p.ip, now, now))
}

// ipvsServiceSet is what the Services got from the apiserver, and the
// ipvsadm -Sn lines kube-proxy must have written for them.
type ipvsServiceSet struct {
	ip       map[string]string // cluster IPs by Service name
	nodePort map[string]int    // the first port's node port
	want     []string
}

// ipvsEP is an endpoint of an EndpointSlice: pod, on its node, with its conditions.
func ipvsEP(pod string, ready, serving, terminating bool) string {
	node := ipvsNode1
	for _, p := range ipvsPods {
		if p.name == pod {
			node = p.node
		}
	}
	return fmt.Sprintf(`{"addresses":[%q],"conditions":{"ready":%t,"serving":%t,"terminating":%t},
		"nodeName":%q,"targetRef":{"kind":"Pod","namespace":%q,"name":%q}}`, ipvsPodIP(pod), ready, serving, terminating, node, e2eNS, pod)
}

func ipvsReady(pods ...string) string {
	var eps []string
	for _, p := range pods {
		eps = append(eps, ipvsEP(p, true, true, false))
	}
	return "[" + strings.Join(eps, ",") + "]"
}

const ipvsHTTPPort = `[{"name":"http","port":8080,"protocol":"TCP"}]`

// ipvsServices creates the Services and EndpointSlices of every case.
func ipvsServices(c *cluster) ipvsServiceSet {
	c.t.Helper()
	set := ipvsServiceSet{ip: map[string]string{}, nodePort: map[string]int{}}
	httpPort := `"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]`
	// Fixed cluster IPs and node ports, in the order the Services are
	// made, so that regenerating the committed fixtures changes only what
	// the run itself changes (source ports, timers).
	n := 0
	svc := func(name, spec, endpoints, ports string, realServers ...string) {
		var m map[string]any
		if err := json.Unmarshal([]byte("{"+spec+"}"), &m); err != nil {
			c.t.Fatalf("service %s: %v", name, err)
		}
		n++
		m["clusterIP"] = fmt.Sprintf("10.96.100.%d", 10+n)
		if m["type"] == "NodePort" || m["type"] == "LoadBalancer" {
			for i, p := range m["ports"].([]any) {
				p.(map[string]any)["nodePort"] = 30100 + 10*n + i
			}
		}
		if m["type"] == "LoadBalancer" && m["externalTrafficPolicy"] == "Local" {
			m["healthCheckNodePort"] = 30100 + 10*n + 9
		}
		b, _ := json.Marshal(m)
		s := c.service(name, string(b))
		set.ip[name] = s.ClusterIP
		set.nodePort[name] = s.Ports[0].NodePort
		if endpoints != "" {
			c.putSliceRaw(name, endpoints, ports)
		}
		set.want = append(set.want, fmt.Sprintf("-A -t %s:%d ", s.ClusterIP, s.Ports[0].Port))
		for _, rs := range realServers {
			set.want = append(set.want, fmt.Sprintf("-a -t %s:%d -r %s -m ", s.ClusterIP, s.Ports[0].Port, rs))
		}
	}
	rs := func(pod string) string { return ipvsPodIP(pod) + ":8080" }
	sel := `"selector":{"app":"echo"},`
	svc("ipvs-cip", sel+`"type":"ClusterIP",`+httpPort, ipvsReady("echo-0", "echo-1"), ipvsHTTPPort, rs("echo-0"), rs("echo-1"))
	svc("ipvs-hairpin", sel+`"type":"ClusterIP",`+httpPort, ipvsReady("echo-0"), ipvsHTTPPort, rs("echo-0"))
	svc("ipvs-np", sel+`"type":"NodePort","externalTrafficPolicy":"Cluster",`+httpPort, ipvsReady("echo-0", "echo-2"), ipvsHTTPPort, rs("echo-0"), rs("echo-2"))
	svc("ipvs-np-local", sel+`"type":"NodePort","externalTrafficPolicy":"Local",`+httpPort, ipvsReady("echo-0", "echo-2"), ipvsHTTPPort, rs("echo-0"), rs("echo-2"))
	svc("ipvs-np-remote", sel+`"type":"NodePort","externalTrafficPolicy":"Local",`+httpPort, ipvsReady("echo-2"), ipvsHTTPPort, rs("echo-2"))
	svc("ipvs-lb", sel+`"type":"LoadBalancer","externalTrafficPolicy":"Cluster","loadBalancerSourceRanges":["`+ipvsClientIP+`/32"],`+httpPort, ipvsReady("echo-0"), ipvsHTTPPort, rs("echo-0"))
	c.setLoadBalancer("ipvs-lb", ipvsLBIP)
	set.want = append(set.want, fmt.Sprintf("-A -t %s:80 ", ipvsLBIP))
	svc("ipvs-lb-local", sel+`"type":"LoadBalancer","externalTrafficPolicy":"Local",`+httpPort, ipvsReady("echo-0", "echo-2"), ipvsHTTPPort, rs("echo-0"), rs("echo-2"))
	c.setLoadBalancer("ipvs-lb-local", ipvsLBLocalIP)
	set.want = append(set.want, fmt.Sprintf("-a -t %s:80 -r %s:8080 -m ", ipvsLBLocalIP, ipvsPodIP("echo-0")))
	svc("ipvs-extip", sel+`"type":"ClusterIP","externalIPs":["`+ipvsExtIP+`"],`+httpPort, ipvsReady("echo-1"), ipvsHTTPPort, rs("echo-1"))
	set.want = append(set.want, fmt.Sprintf("-A -t %s:80 ", ipvsExtIP))
	svc("ipvs-affinity", sel+`"type":"ClusterIP","sessionAffinity":"ClientIP",`+httpPort, ipvsReady("echo-0", "echo-1", "echo-2"), ipvsHTTPPort, rs("echo-0"), rs("echo-1"), rs("echo-2"))
	svc("ipvs-noep", `"selector":{"app":"nothing"},"type":"NodePort",`+httpPort, "", "")
	svc("ipvs-term", sel+`"type":"ClusterIP",`+httpPort, ipvsReady("echo-0", "echo-1"), ipvsHTTPPort, rs("echo-0"), rs("echo-1"))
	svc("ipvs-term-only", sel+`"type":"ClusterIP",`+httpPort, "["+ipvsEP("echo-1", false, true, true)+"]", ipvsHTTPPort, rs("echo-1"))
	svc("ipvs-multi", sel+`"type":"ClusterIP","ports":[{"name":"http","port":80,"targetPort":"http","protocol":"TCP"},{"name":"metrics","port":90,"targetPort":"metrics","protocol":"TCP"}]`,
		ipvsReady("echo-0"), `[{"name":"http","port":8080,"protocol":"TCP"},{"name":"metrics","port":9090,"protocol":"TCP"}]`, rs("echo-0"))
	set.want = append(set.want, fmt.Sprintf("-a -t %s:90 -r %s:9090 -m ", set.ip["ipvs-multi"], ipvsPodIP("echo-0")))
	return set
}

// settleIPVS waits until ipvsadm -Sn holds every wanted line and the
// IPVS table, ipsets and iptables rules stay the same for three polls
// (kube-proxy syncs Services and EndpointSlices separately).
func (v *vm) settleIPVS(want []string) {
	v.t.Helper()
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	prev, stable, why := "", 0, ""
	for {
		state := v.call(time.Minute, "sh", "-c", "ipvsadm -Sn; ipset save; iptables-save | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//'").Stdout
		var missing []string
		for _, w := range want {
			if !strings.Contains(state, w) {
				missing = append(missing, strings.TrimSpace(w))
			}
		}
		switch {
		case len(missing) > 0:
			stable, why = 0, fmt.Sprintf("missing %d lines, e.g. %q", len(missing), missing[0])
		case state != prev:
			stable, why = 0, "still changing"
		default:
			stable++
		}
		prev = state
		if stable == 3 {
			v.t.Logf("IPVS state settled in %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("kube-proxy's IPVS state not settled after %v: %s", time.Since(start).Round(time.Second), why)
		}
		time.Sleep(time.Second)
	}
}

// waitIPVS waits until ipvsadm -Sn satisfies ok.
func (v *vm) waitIPVS(what string, ok func(string) bool) {
	v.t.Helper()
	start := time.Now()
	for !ok(v.run("ipvsadm", "-Sn")) {
		if time.Since(start) > time.Minute {
			v.t.Fatalf("waited %v for %s", time.Since(start).Round(time.Second), what)
		}
		time.Sleep(500 * time.Millisecond)
	}
	v.t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// probe opens tries connections from cl to ip:port in the VM and records
// what happened.
func (v *vm) probe(name, about string, cl ipvsClient, ip string, port, tries int) *ipvsCase {
	v.t.Helper()
	argv := []string{"/bin/vmagent", "probe", "-addr", netipJoin(ip, port), "-tries", strconv.Itoa(tries), "-timeout", dropWait.String()}
	if cl.Netns != "" {
		argv = append([]string{"/bin/ip", "netns", "exec", cl.Netns}, argv...)
	}
	out := v.run(argv...)
	cs := &ipvsCase{Name: name, About: about, Client: cl, Dst: ipvsDst{IP: ip, Port: port, Proto: "TCP"}, Tries: tries, Outcomes: map[string]int{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var a ipvsAttempt
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			v.t.Fatalf("probe %s: %v: %q", name, err, sc.Text())
		}
		cs.Attempts = append(cs.Attempts, a)
	}
	if len(cs.Attempts) != tries {
		v.t.Fatalf("probe %s: %d results for %d tries:\n%s", name, len(cs.Attempts), tries, out)
	}
	// Which real server IPVS picked for each try, from its connection
	// table: entries live for seconds (SYN_RECV) to minutes (TIME_WAIT).
	// Matched on the source port (and address, when the client's is
	// known): the probe learns the port also for failed connections.
	conns := map[string]ipvsConn{}
	for _, l := range strings.Split(v.run("ipvsadm", "-Lnc"), "\n") {
		// pro expire state source virtual destination
		f := strings.Fields(l)
		if len(f) != 6 || f[0] == "pro" {
			continue
		}
		src, err := netip.ParseAddrPort(f[3])
		if err != nil || (cl.IP != "" && src.Addr().String() != cl.IP) {
			continue
		}
		conns[strconv.Itoa(int(src.Port()))] = ipvsConn{State: f[2], Source: f[3], Virtual: f[4], RealServer: f[5]}
	}
	for i, a := range cs.Attempts {
		if c, ok := conns[strconv.Itoa(a.LocalPort)]; ok && a.LocalPort != 0 {
			cs.Attempts[i].IPVSConn = &c
		}
	}
	// The node's source address is the kernel's choice: the first try
	// that connected, or that IPVS saw, tells it.
	for _, a := range cs.Attempts {
		if cl.Kind != "node" || cs.Client.IP != "" {
			break
		}
		local := a.Local
		if local == "" && a.IPVSConn != nil {
			local = a.IPVSConn.Source
		}
		if ap, err := netip.ParseAddrPort(local); err == nil {
			cs.Client.IP = ap.Addr().String()
		}
	}
	for _, a := range cs.Attempts {
		cs.Outcomes[a.Outcome]++
		if a.Outcome != "connected" {
			continue
		}
		pod, podPort, saw, err := parseEcho(a.Reply)
		if err != nil {
			v.t.Fatalf("probe %s: %v", name, err)
		}
		i := slices.IndexFunc(cs.Answers, func(x ipvsAnswer) bool {
			return x.Pod == pod && x.PodPort == podPort && x.SawSource == saw
		})
		if i < 0 {
			cs.Answers = append(cs.Answers, ipvsAnswer{Pod: pod, PodIP: ipvsPodIP(pod), PodPort: podPort, SawSource: saw, SNAT: saw != cs.Client.IP})
			i = len(cs.Answers) - 1
		}
		cs.Answers[i].Count++
	}
	sort.Slice(cs.Answers, func(i, j int) bool { return cs.Answers[i].Pod < cs.Answers[j].Pod })
	return cs
}

func netipJoin(ip string, port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()
}

var echoReply = regexp.MustCompile(`^name=(\S+) port=(\d+) remote=(\S+)$`)

// parseEcho reads the echo server's "name=... port=... remote=ip:port".
func parseEcho(reply string) (pod string, port int, sawIP string, err error) {
	m := echoReply.FindStringSubmatch(reply)
	if m == nil {
		return "", 0, "", fmt.Errorf("not an echo server reply: %q", reply)
	}
	ap, err := netip.ParseAddrPort(m[3])
	if err != nil {
		return "", 0, "", fmt.Errorf("echo reply %q: %v", reply, err)
	}
	port, _ = strconv.Atoi(m[2])
	return m[1], port, ap.Addr().String(), nil
}

func (cs *ipvsCase) summary() string {
	var parts []string
	for _, o := range []string{"connected", "refused", "timeout", "unreachable", "reset", "error"} {
		if n := cs.Outcomes[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", o, n, cs.Tries))
		}
	}
	for _, a := range cs.Answers {
		parts = append(parts, fmt.Sprintf("%s:%d saw %s x%d", a.Pod, a.PodPort, a.SawSource, a.Count))
	}
	return fmt.Sprintf("%s -> %s: %s", cs.Client.Name, netipJoin(cs.Dst.IP, cs.Dst.Port), strings.Join(parts, ", "))
}

// ipvsDumpCommands are node1's dumps: name (saved as node1.<name>) and the
// command, run in the VM's root namespace (the node).
var ipvsDumpCommands = []struct {
	name string
	argv []string
}{
	{"proc-net-ip_vs", []string{"cat", "/proc/net/ip_vs"}},
	{"ipvsadm-Sn", []string{"ipvsadm", "-Sn"}},
	{"ipvsadm-Ln", []string{"ipvsadm", "-Ln"}},
	{"ipvsadm-Ln-stats", []string{"ipvsadm", "-Ln", "--stats"}},
	{"ipvsadm-Lnc", []string{"ipvsadm", "-Lnc"}},
	{"proc-net-ip_vs_conn.count", []string{"sh", "-c", "wc -l </proc/net/ip_vs_conn"}},
	// The plugin collects only the count; the entries (hex) are the
	// ground truth for its connection-table reader.
	{"proc-net-ip_vs_conn", []string{"cat", "/proc/net/ip_vs_conn"}},
	{"ipset-save", []string{"ipset", "save"}},
	{"iptables-legacy-save", []string{"iptables-legacy-save"}},
	// The same with packet counters: which rules the cases' packets hit.
	{"iptables-legacy-save-counters", []string{"iptables-legacy-save", "-c"}},
	{"ip6tables-legacy-save", []string{"ip6tables-legacy-save"}},
	{"conntrack-L", []string{"conntrack", "-L"}},
	{"proc-net-route", []string{"cat", "/proc/net/route"}},
	{"ip-d-link", []string{"ip", "-d", "link"}},
	{"ip-addr", []string{"ip", "addr"}},
	{"ip-route-table-all", []string{"ip", "route", "show", "table", "all"}},
	{"sysctl", []string{"sh", "-c", "grep -H . /proc/sys/net/ipv4/vs/* /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/route_localnet /proc/sys/net/bridge/* 2>/dev/null | sed 's#^/proc/sys/##; s#/#.#g'"}},
	// busybox-static's wget crashes (static glibc); nc is enough.
	{"proxyMode", []string{"sh", "-c", "printf 'GET /proxyMode HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 10249 | tail -n 1"}},
}

// ipvsDumps takes node1's dumps; each must succeed.
//
// kube-proxy may still be rewriting the node's rules after the traffic (a
// sync an endpoint change triggered): dumps taken across such a write do
// not describe one state, and the replay then disagrees with packets sent
// before it (seen once in CI: an ipset without the load balancer's allowed
// source). So the rules are read before and after the dumps, and the dumps
// taken again until nothing changed in between.
func (v *vm) ipvsDumps() map[string]string {
	v.t.Helper()
	for try := 1; ; try++ {
		before := v.ipvsRules()
		out := map[string]string{}
		for _, d := range ipvsDumpCommands {
			res := v.call(time.Minute, d.argv...)
			if res.Code != 0 {
				v.t.Errorf("dump %s: %s: exit %d: %s", d.name, strings.Join(d.argv, " "), res.Code, res.Stderr)
			}
			out[d.name] = res.Stdout
		}
		if v.ipvsRules() == before || try == 5 {
			return out
		}
		v.t.Logf("kube-proxy changed node1's rules while they were dumped (try %d); dumping again", try)
		time.Sleep(2 * time.Second)
	}
}

// ipvsRules is node1's IPVS table, ipsets and iptables rules, without the
// dump's date lines and packet counters, which change by themselves.
func (v *vm) ipvsRules() string {
	v.t.Helper()
	return v.call(time.Minute, "sh", "-c", `ipvsadm -Sn; ipset save; iptables-legacy-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'`).Stdout
}

// ipvsObjects returns the Services, EndpointSlices, Pods and Nodes as one
// v1 List, as `kubectl get service,endpointslices,pods,nodes -o json`
// would (the plugin's --objects reads it).
func (c *cluster) ipvsObjects() []byte {
	c.t.Helper()
	var items []json.RawMessage
	for _, l := range []struct{ path, apiVersion, kind string }{
		{"/api/v1/namespaces/" + e2eNS + "/services", "v1", "Service"},
		{"/apis/discovery.k8s.io/v1/namespaces/" + e2eNS + "/endpointslices", "discovery.k8s.io/v1", "EndpointSlice"},
		{"/api/v1/namespaces/" + e2eNS + "/pods", "v1", "Pod"},
		{"/api/v1/nodes", "v1", "Node"},
	} {
		code, body, err := c.do("GET", l.path, nil)
		if err != nil || code != 200 {
			c.t.Fatalf("GET %s: %d %v", l.path, code, err)
		}
		var list struct{ Items []map[string]any }
		if err := json.Unmarshal(body, &list); err != nil {
			c.t.Fatal(err)
		}
		for _, it := range list.Items {
			it["apiVersion"], it["kind"] = l.apiVersion, l.kind
			if md, ok := it["metadata"].(map[string]any); ok {
				delete(md, "managedFields")
			}
			b, _ := json.Marshal(it)
			items = append(items, b)
		}
	}
	b, _ := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
	return append(b, '\n')
}

// ipvsSave writes the results, dumps, objects and kube-proxy's log into dir.
func ipvsSave(t *testing.T, dir string, res *ipvsResults, dumps map[string]string, objects []byte, proxyLog string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	write("traffic.json", append(b, '\n'))
	for name, data := range dumps {
		write(res.Node+"."+name, []byte(data))
	}
	write("objects.json", objects)
	write("kube-proxy.log", []byte(proxyLog))
	t.Logf("saved the dumps, objects.json, traffic.json and kube-proxy.log in %s", dir)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ipvsCaseSpec is one case: tries connections from a client to ip:dport,
// a Service's port reached via its cluster IP, node port, load balancer
// IP or external IP, and what the packets must do.
type ipvsCaseSpec struct {
	name, about    string
	from           ipvsClient
	svc, port, via string
	ip             string
	dport, tries   int
	want           ipvsWant
}

// ipvsWant is what a case's packets must do: every try's outcome; for
// connected tries, the pods that may answer (all of them must when all is
// set, a single one for every try when one is set), the port they answer
// on, and whose address they see (the client's, or node1's when
// masqueraded); for the others, the real server IPVS scheduled each try
// to ("": IPVS never saw it).
type ipvsWant struct {
	outcome   string
	pods      []string
	all, one  bool
	port      int
	saw       string // "client" or "node"
	scheduled string
}

// ipvsCases are the cases run against the Services of ipvsServices, with
// what kube-proxy's IPVS mode does. Beyond the obvious: masquerade is
// decided by iptables (KUBE-MARK-MASQ from the KUBE-CLUSTER-IP,
// KUBE-NODE-PORT-*, KUBE-LOAD-BALANCER and KUBE-EXTERNAL-IP sets,
// KUBE-LOOP-BACK for hairpin) while IPVS only DNATs; a virtual server
// without real servers lets the packet through to the node's own stack,
// which resets it (refused); a node port on 127.0.0.1 has no virtual server
// (refused); a port of a Service address that is no Service port is
// rejected by KUBE-IPVS-FILTER (refused); the node reaching a load balancer
// IP with source ranges sends from that IP, IPVS schedules it and
// KUBE-IPVS-OUT-FILTER drops it after; Local policy without a local
// endpoint schedules to the remote ones without masquerade, so the reply
// bypasses the node and the client times out.
func ipvsCases(svcs ipvsServiceSet) []ipvsCaseSpec {
	cip, np := svcs.ip, svcs.nodePort
	connected := func(port int, saw string, pods ...string) ipvsWant {
		return ipvsWant{outcome: "connected", pods: pods, port: port, saw: saw}
	}
	all := func(w ipvsWant) ipvsWant { w.all = true; return w }
	return []ipvsCaseSpec{
		{name: "clusterip-from-pod", about: "cluster IP from a pod on the node",
			from: fromClientPod, svc: "ipvs-cip", port: "http", via: "clusterIP", ip: cip["ipvs-cip"], dport: 80, tries: 6,
			want: all(connected(8080, "client", "echo-0", "echo-1"))},
		{name: "clusterip-from-node", about: "cluster IP from the node itself",
			from: fromNode1, svc: "ipvs-cip", port: "http", via: "clusterIP", ip: cip["ipvs-cip"], dport: 80, tries: 4,
			want: all(connected(8080, "node", "echo-0", "echo-1"))},
		{name: "clusterip-hairpin", about: "a pod reaching itself through its Service (the only endpoint)",
			from: fromEcho0, svc: "ipvs-hairpin", port: "http", via: "clusterIP", ip: cip["ipvs-hairpin"], dport: 80, tries: 2,
			want: connected(8080, "node", "echo-0")},
		{name: "clusterip-unknown-port", about: "a cluster IP on a port no Service has, from a pod",
			from: fromClientPod, svc: "ipvs-cip", via: "clusterIP", ip: cip["ipvs-cip"], dport: 81, tries: 2,
			want: ipvsWant{outcome: "refused"}},
		{name: "nodeport-cluster", about: "node port, externalTrafficPolicy Cluster, endpoints on node1 and node2, from outside",
			from: fromClient, svc: "ipvs-np", port: "http", via: "nodePort", ip: ipvsNode1IP, dport: np["ipvs-np"], tries: 6,
			want: all(connected(8080, "node", "echo-0", "echo-2"))},
		{name: "nodeport-cluster-from-node-localhost", about: "the same node port on 127.0.0.1 from the node itself",
			from: fromNode1, svc: "ipvs-np", port: "http", via: "nodePort", ip: "127.0.0.1", dport: np["ipvs-np"], tries: 2,
			want: ipvsWant{outcome: "refused"}},
		{name: "nodeport-local", about: "node port, externalTrafficPolicy Local, endpoints on node1 and node2, from outside",
			from: fromClient, svc: "ipvs-np-local", port: "http", via: "nodePort", ip: ipvsNode1IP, dport: np["ipvs-np-local"], tries: 4,
			want: connected(8080, "client", "echo-0")},
		{name: "nodeport-local-no-local-endpoint", about: "node port, externalTrafficPolicy Local, the only endpoint on node2, from outside",
			from: fromClient, svc: "ipvs-np-remote", port: "http", via: "nodePort", ip: ipvsNode1IP, dport: np["ipvs-np-remote"], tries: 2,
			want: ipvsWant{outcome: "timeout", scheduled: ipvsPodIP("echo-2") + ":8080"}},
		{name: "clusterip-local-policy-remote-endpoint", about: "the cluster IP of that Service from a pod (external policy does not apply)",
			from: fromClientPod, svc: "ipvs-np-remote", port: "http", via: "clusterIP", ip: cip["ipvs-np-remote"], dport: 80, tries: 2,
			want: connected(8080, "client", "echo-2")},
		{name: "loadbalancer-allowed", about: "load balancer IP from a client inside loadBalancerSourceRanges",
			from: fromClient, svc: "ipvs-lb", port: "http", via: "loadBalancer", ip: ipvsLBIP, dport: 80, tries: 3,
			want: connected(8080, "node", "echo-0")},
		{name: "loadbalancer-refused", about: "load balancer IP from a client outside loadBalancerSourceRanges",
			from: fromClientOut, svc: "ipvs-lb", port: "http", via: "loadBalancer", ip: ipvsLBIP, dport: 80, tries: 2,
			want: ipvsWant{outcome: "timeout"}},
		{name: "loadbalancer-nodeport-from-refused-client", about: "the load balancer Service's node port from the client outside the source ranges",
			from: fromClientOut, svc: "ipvs-lb", port: "http", via: "nodePort", ip: ipvsNode1IP, dport: np["ipvs-lb"], tries: 2,
			want: connected(8080, "node", "echo-0")},
		{name: "loadbalancer-from-pod", about: "load balancer IP from a pod (outside loadBalancerSourceRanges)",
			from: fromClientPod, svc: "ipvs-lb", port: "http", via: "loadBalancer", ip: ipvsLBIP, dport: 80, tries: 2,
			want: ipvsWant{outcome: "timeout"}},
		{name: "loadbalancer-from-node", about: "load balancer IP from the node itself",
			from: fromNode1, svc: "ipvs-lb", port: "http", via: "loadBalancer", ip: ipvsLBIP, dport: 80, tries: 2,
			want: ipvsWant{outcome: "timeout", scheduled: ipvsPodIP("echo-0") + ":8080"}},
		{name: "loadbalancer-local", about: "load balancer IP, externalTrafficPolicy Local, endpoints on node1 and node2, from outside",
			from: fromClient, svc: "ipvs-lb-local", port: "http", via: "loadBalancer", ip: ipvsLBLocalIP, dport: 80, tries: 3,
			want: connected(8080, "client", "echo-0")},
		{name: "externalip", about: "an externalIP from outside",
			from: fromClient, svc: "ipvs-extip", port: "http", via: "externalIP", ip: ipvsExtIP, dport: 80, tries: 3,
			want: connected(8080, "node", "echo-1")},
		{name: "affinity-clientip", about: "sessionAffinity ClientIP, three endpoints, from a pod",
			from: fromClientPod, svc: "ipvs-affinity", port: "http", via: "clusterIP", ip: cip["ipvs-affinity"], dport: 80, tries: 8,
			want: ipvsWant{outcome: "connected", pods: []string{"echo-0", "echo-1", "echo-2"}, one: true, port: 8080, saw: "client"}},
		{name: "no-endpoints-clusterip", about: "a Service without endpoints, cluster IP from a pod",
			from: fromClientPod, svc: "ipvs-noep", port: "http", via: "clusterIP", ip: cip["ipvs-noep"], dport: 80, tries: 2,
			want: ipvsWant{outcome: "refused"}},
		{name: "no-endpoints-nodeport", about: "the same Service's node port from outside",
			from: fromClient, svc: "ipvs-noep", port: "http", via: "nodePort", ip: ipvsNode1IP, dport: np["ipvs-noep"], tries: 2,
			want: ipvsWant{outcome: "refused"}},
		{name: "terminating-fallback", about: "the only endpoint is terminating but serving",
			from: fromClientPod, svc: "ipvs-term-only", port: "http", via: "clusterIP", ip: cip["ipvs-term-only"], dport: 80, tries: 3,
			want: connected(8080, "client", "echo-1")},
		{name: "multiport-http", about: "multi-port Service, port http 80 -> 8080",
			from: fromClientPod, svc: "ipvs-multi", port: "http", via: "clusterIP", ip: cip["ipvs-multi"], dport: 80, tries: 2,
			want: connected(8080, "client", "echo-0")},
		{name: "multiport-metrics", about: "multi-port Service, port metrics 90 -> 9090",
			from: fromClientPod, svc: "ipvs-multi", port: "metrics", via: "clusterIP", ip: cip["ipvs-multi"], dport: 90, tries: 2,
			want: connected(9090, "client", "echo-0")},
	}
}

// check reports where the recorded case differs from w.
func (w ipvsWant) check(t *testing.T, cs *ipvsCase) {
	t.Helper()
	if cs.Outcomes[w.outcome] != cs.Tries {
		t.Errorf("case %s: %s, want %s on every try", cs.Name, cs.summary(), w.outcome)
		return
	}
	seen := map[string]bool{}
	for _, a := range cs.Answers {
		seen[a.Pod] = true
		want := cs.Client.IP
		if w.saw == "node" {
			want = ipvsNode1IP
		}
		if !slices.Contains(w.pods, a.Pod) || a.PodPort != w.port || a.SawSource != want {
			t.Errorf("case %s: %s answered on %d and saw %s; want one of %v on %d seeing %s (the %s)", cs.Name, a.Pod, a.PodPort, a.SawSource, w.pods, w.port, want, w.saw)
		}
	}
	if w.all && len(seen) != len(w.pods) {
		t.Errorf("case %s: only %v answered, want each of %v", cs.Name, slices.Sorted(maps.Keys(seen)), w.pods)
	}
	if w.one && len(seen) != 1 {
		t.Errorf("case %s: %v answered, want a single pod for every try (session affinity)", cs.Name, slices.Sorted(maps.Keys(seen)))
	}
	if w.outcome == "connected" {
		return
	}
	for i, a := range cs.Attempts {
		got := ""
		if a.IPVSConn != nil {
			got = a.IPVSConn.RealServer
		}
		if got != w.scheduled {
			t.Errorf("case %s, try %d: IPVS scheduled it to %q, want %q", cs.Name, i+1, got, w.scheduled)
		}
	}
}

// collectWithPluginScript runs the plugin's node dump script (nodescript
// print) in the VM's root namespace, saves its output into dir the way
// --save-dumps does (nodescript save), copies the recording's traffic.json
// beside it and replays it (ipvsreplay.ReplayCollected).
func (v *vm) collectWithPluginScript(dir, recording string) (ipvsreplay.Result, error) {
	v.t.Helper()
	nodescript := filepath.Join(toolsDir, "nodescript")
	if err := goBuild("../..", nodescript, "./test/nodescript"); err != nil {
		return ipvsreplay.Result{}, err
	}
	script, err := exec.Command(nodescript, "print").Output()
	if err != nil {
		return ipvsreplay.Result{}, fmt.Errorf("nodescript print: %v", err)
	}
	res := v.call(2*time.Minute, "sh", "-c", string(script))
	if res.Code != 0 {
		return ipvsreplay.Result{}, fmt.Errorf("the dump script exited %d\nstderr: %s", res.Code, res.Stderr)
	}
	tmp := v.t.TempDir()
	stdout, stderr := filepath.Join(tmp, "stdout"), filepath.Join(tmp, "stderr")
	if err := os.WriteFile(stdout, []byte(res.Stdout), 0o600); err != nil {
		return ipvsreplay.Result{}, err
	}
	if err := os.WriteFile(stderr, []byte(res.Stderr), 0o600); err != nil {
		return ipvsreplay.Result{}, err
	}
	out, err := exec.Command(nodescript, "save", "-node", "node1", "-stdout", stdout, "-stderr", stderr, "-dir", dir).CombinedOutput()
	if err != nil {
		return ipvsreplay.Result{}, fmt.Errorf("nodescript save: %v\n%s", err, out)
	}
	if len(out) > 0 {
		v.t.Logf("the plugin's dump script on node1 warned:\n%s", out)
	}
	traffic, err := os.ReadFile(filepath.Join(recording, "traffic.json"))
	if err != nil {
		return ipvsreplay.Result{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "traffic.json"), traffic, 0o600); err != nil {
		return ipvsreplay.Result{}, err
	}
	return ipvsreplay.ReplayCollected(dir)
}
