package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses, all private and only inside the namespaces a cluster creates.
const (
	bridgeIP    = "10.250.0.1" // kube-apiserver, on a bridge in the control-plane namespace
	bridgeCIDR  = "10.250.0.1/24"
	clientIP    = "10.250.0.100"
	clusterCIDR = "10.244.0.0/16"
	serviceCIDR = "10.96.0.0/16"
	firstSvcIP  = "10.96.0.1"
)

// cluster is one control plane (etcd + kube-apiserver) in its own network
// namespace, reachable from the root namespace through an in-process relay on
// 127.0.0.1, plus whatever nodes, pods and clients a test adds.
type cluster struct {
	t      *testing.T
	prefix string // netns names start with this: tsvc-e2e-<pid>-
	dir    string
	bin    string // etcd, kube-apiserver, kube-proxy
	cp     string // control-plane netns name

	adminKubeconfig string
	api             *http.Client
	apiURL          string
	nextVeth        int

	// images are the suite's image archives by name, imported into
	// every node's containerd.
	images images

	// procs holds each process start launched, by name, so a test can
	// stop one early (stop).
	procs map[string]*exec.Cmd

	plugin string  // kubectl-trace_svc
	mode   string  // kube-proxy's mode on every node
	nodes  []*node // in the order added
}

// cluster starts a control plane whose nodes run kube-proxy in mode and a
// kubelet with containerd, with the namespace e2e created.
func (s suite) cluster(t *testing.T, tag, mode string) *cluster {
	t.Helper()
	c := newClusterTagged(t, s.bin, tag)
	c.plugin, c.images, c.mode = s.plugin, s.images, mode
	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"e2e"}}`)
	return c
}

// newClusterTagged starts etcd and kube-apiserver in a namespace named
// with tag (tsvc-e2e-<pid>-<tag>cp), so several clusters of one run never
// share a name even if one's teardown is slow.
func newClusterTagged(t *testing.T, bin, tag string) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		prefix: fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), tag),
		dir:    t.TempDir(),
		bin:    bin,
	}
	c.cp = c.netns("cp")
	c.sh(c.cp, "ip link set lo up")
	c.sh(c.cp, "ip link add br0 type bridge")
	// A bridge without an address of its own takes the lowest of its
	// ports' and changes it as ports are added: nodes that had resolved
	// the apiserver's IP then sent to a MAC nobody answers until their ARP
	// entry went stale — kube-proxy's first LIST hung for 13 to 53 s.
	c.sh(c.cp, "ip link set br0 address 02:00:0a:fa:00:01")
	c.sh(c.cp, "ip addr add "+bridgeCIDR+" dev br0")
	c.sh(c.cp, "ip link set br0 up")
	c.pki()

	etcdDir := filepath.Join(c.dir, "etcd")
	c.start("etcd", c.cp, filepath.Join(bin, "etcd"),
		"--data-dir="+etcdDir,
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=default=http://127.0.0.1:2380",
		"--listen-metrics-urls=http://127.0.0.1:2381",
	)
	p := func(name string) string { return filepath.Join(c.dir, name) }
	c.start("kube-apiserver", c.cp, filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0",
		"--secure-port=6443",
		"--advertise-address="+bridgeIP,
		"--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--client-ca-file="+p("ca.crt"),
		"--tls-cert-file="+p("apiserver.crt"),
		"--tls-private-key-file="+p("apiserver.key"),
		"--service-account-key-file="+p("sa.pub"),
		"--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
	)

	// The relay: a listener on the root namespace's loopback whose
	// connections are dialled from inside the control-plane namespace.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go relay(ln, "/run/netns/"+c.cp, "127.0.0.1:6443")
	c.apiURL = "https://" + ln.Addr().String()
	c.adminKubeconfig = c.kubeconfig("admin", c.apiURL)
	c.api = c.httpClient("admin")

	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body, err := c.do("GET", "/readyz", nil)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready: %d %s %v", code, body, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return c
}

// netns creates a network namespace named prefix+suffix, deleted at cleanup.
// Cleanups run last-in first-out, so processes started in it later are
// killed before it goes.
func (c *cluster) netns(suffix string) string {
	c.t.Helper()
	name := c.prefix + suffix
	c.run("ip", "netns", "add", name)
	c.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			c.t.Logf("delete netns %s: %v: %s", name, err, out)
		}
	})
	return name
}

func (c *cluster) run(name string, args ...string) string {
	c.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sh runs a command line (split on spaces) inside a namespace.
func (c *cluster) sh(ns, line string) string {
	c.t.Helper()
	return c.run("ip", append([]string{"netns", "exec", ns}, strings.Fields(line)...)...)
}

// start runs a long-lived process inside a namespace, logging to a file;
// it is killed by PID at cleanup and its log tail shown if the test failed.
func (c *cluster) start(name, ns, path string, args ...string) {
	c.t.Helper()
	c.startEnv(name, ns, nil, path, args...)
}

// startEnv is start with extra environment variables (KEY=value), which
// override the test's own.
func (c *cluster) startEnv(name, ns string, env []string, path string, args ...string) {
	c.t.Helper()
	c.launch(name, env, append([]string{"ip", "netns", "exec", ns, path}, args...))
}

// startShell runs a long-lived shell script (which ends by exec'ing the
// daemon) in a namespace with its own mount namespace, like start. Unlike
// ip netns exec, which mounts a fresh /sys without the cgroup hierarchies,
// it keeps the host's /sys: the kubelet and containerd need the cgroups.
// Mounts the script makes stay in its mount namespace (a slave of the
// host's) and go away with the processes in it.
func (c *cluster) startShell(name, ns string, env []string, script string) {
	c.t.Helper()
	c.launch(name, env, []string{"nsenter", "--net=/run/netns/" + ns, "unshare", "--mount", "--propagation", "slave", "/bin/sh", "-ec", script})
}

// launch starts argv (which execs the daemon, keeping its PID), logging to
// name.log; it is killed by PID at cleanup.
func (c *cluster) launch(name string, env, argv []string) {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	if c.procs == nil {
		c.procs = map[string]*exec.Cmd{}
	}
	c.procs[name] = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	c.t.Cleanup(func() {
		// "ip netns exec", nsenter and unshare exec the command, so this
		// PID is the process itself.
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			c.t.Logf("%s (pid %d) did not exit", name, cmd.Process.Pid)
		}
		if c.t.Failed() {
			c.t.Logf("--- %s log tail ---\n%s", name, tail(logPath, 30))
		}
	})
}

// stop kills, by the PID start recorded, the process started under name
// (e.g. "kube-proxy-node2") before cleanup would.
func (c *cluster) stop(name string) {
	c.t.Helper()
	cmd := c.procs[name]
	if cmd == nil {
		c.t.Fatalf("stop %s: no such process started", name)
	}
	if err := cmd.Process.Kill(); err != nil {
		c.t.Fatalf("kill %s (pid %d): %v", name, cmd.Process.Pid, err)
	}
	// Wait until it is gone (reaped by start's goroutine), so nothing it
	// would still do can race with what the test changes next.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(cmd.Process.Pid, 0) == nil {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s (pid %d) still alive after SIGKILL", name, cmd.Process.Pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Logf("killed %s (pid %d)", name, cmd.Process.Pid)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// veth creates a veth pair directly between two namespaces (nothing appears
// in the root namespace, so names never clash between runs).
func (c *cluster) veth(nsA, nameA, nsB, nameB string) {
	c.t.Helper()
	c.run("ip", "-n", nsA, "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", nsB)
	c.run("ip", "-n", nsA, "link", "set", nameA, "up")
	c.run("ip", "-n", nsB, "link", "set", nameB, "up")
}

// bridgePort creates a namespace with eth0 on the control plane's bridge.
func (c *cluster) bridgePort(suffix, cidr string) string {
	c.t.Helper()
	ns := c.netns(suffix)
	c.nextVeth++
	port := fmt.Sprintf("vb%d", c.nextVeth)
	c.veth(c.cp, port, ns, "eth0")
	c.run("ip", "-n", c.cp, "link", "set", port, "master", "br0")
	c.run("ip", "-n", ns, "link", "set", "lo", "up")
	c.run("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0")
	return ns
}

type node struct {
	name, ns, ip, podCIDR string
	mode                  string // iptables, nftables or iptables-legacy

	dir    string // containerd's and the kubelet's files
	sock   string // containerd's socket
	cgroup string // the node's cgroup (the kubelet's cgroupRoot), e.g. /tsvc-e2e-1-sc-ipt-node1
	ready  bool   // waitNodeReady saw it Ready
}

// addNode creates a node namespace on the bridge and its Node object (with
// InternalIP and podCIDR: no controller-manager assigns one), starts
// kube-proxy in the cluster's mode — iptables, nftables, or
// iptables-legacy (kube-proxy's iptables mode with the legacy binaries
// first on its PATH) — and the node's containerd and kubelet (startNode),
// which registers with the apiserver and runs the node's pods.
func (c *cluster) addNode(name, ip, podCIDR string) *node {
	c.t.Helper()
	n := &node{name: name, ns: c.bridgePort(name, ip+"/24"), ip: ip, podCIDR: podCIDR, mode: c.mode}
	c.nodes = append(c.nodes, n)
	proxyMode, env := n.mode, []string(nil)
	if n.mode == "iptables-legacy" {
		proxyMode = "iptables"
		env = []string{"PATH=" + c.legacyBin() + string(os.PathListSeparator) + os.Getenv("PATH")}
	}
	c.run("ip", "-n", n.ns, "route", "add", "default", "via", bridgeIP)
	c.sh(n.ns, "sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 net.ipv4.icmp_ratelimit=0")
	c.create("/api/v1/nodes", fmt.Sprintf(`{"apiVersion":"v1","kind":"Node",
		"metadata":{"name":%q,"labels":{"kubernetes.io/hostname":%q}},
		"spec":{"podCIDR":%q,"podCIDRs":[%q]},
		"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}]}}`,
		name, name, podCIDR, podCIDR, ip, name))
	kc := c.kubeconfig("kube-proxy", "https://"+bridgeIP+":6443")
	c.startEnv("kube-proxy-"+name, n.ns, env, filepath.Join(c.bin, "kube-proxy"),
		"--kubeconfig="+kc,
		"--hostname-override="+name,
		"--proxy-mode="+proxyMode,
		"--cluster-cidr="+clusterCIDR,
		"--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:10249",
		"--healthz-bind-address=127.0.0.1:10256",
		"-v=2",
	)
	c.startNode(n)
	return n
}

// legacyBin returns a directory (made once per cluster) where iptables,
// iptables-save, iptables-restore and their ip6tables twins are symlinks to
// the -legacy binaries.
func (c *cluster) legacyBin() string {
	c.t.Helper()
	dir := filepath.Join(c.dir, "legacy-bin")
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			target, err := exec.LookPath(fam + "-legacy" + suffix)
			if err != nil {
				c.t.Skipf("%s-legacy%s not on PATH", fam, suffix)
			}
			if err := os.Symlink(target, filepath.Join(dir, fam+suffix)); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	return dir
}

// routePodCIDR routes to's pod CIDR from from's namespace via to's node IP,
// as a CNI would, so that from can forward to pods on to.
func (c *cluster) routePodCIDR(from, to *node) {
	c.t.Helper()
	c.run("ip", "-n", from.ns, "route", "add", to.podCIDR, "via", to.ip)
}

// rules returns the node's live proxy rules the way the plugin's debug pod
// would collect them: iptables-save through the backend kube-proxy uses, or
// nft list ruleset.
func (c *cluster) rules(n *node) []byte {
	c.t.Helper()
	var tool []string
	switch n.mode {
	case "iptables":
		tool = []string{"iptables-nft-save"}
	case "iptables-legacy":
		tool = []string{"iptables-legacy-save"}
	case "nftables":
		tool = []string{"nft", "list", "ruleset"}
	default:
		c.t.Fatalf("node %s: unknown mode %q", n.name, n.mode)
	}
	begin := time.Now()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.ns}, tool...)...).Output()
	if err != nil {
		c.t.Fatalf("%s in %s: %v", strings.Join(tool, " "), n.ns, err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		c.t.Logf("%s on %s took %v", strings.Join(tool, " "), n.name, took.Round(time.Millisecond))
	}
	return out
}

// addPod creates a pod bound to node n running the echo server (ports
// 8080 "http" and 9090 "metrics"), waits until the kubelet runs it, and
// returns a network namespace name for its network (ip netns attach, so
// curl can run from inside the pod). The pod gets the address ip from
// host-local (leaseHint): the suite's EndpointSlices and checks name pods
// by address.
func (c *cluster) addPod(n *node, namespace, name, ip string, labels map[string]string) string {
	c.t.Helper()
	c.waitNodeReady(n)
	c.leaseHint(n, ip)
	lb, _ := json.Marshal(labels)
	c.create("/api/v1/namespaces/"+namespace+"/pods", fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod",
		"metadata":{"name":%q,"labels":%s},
		"spec":{"nodeName":%q,"terminationGracePeriodSeconds":1,"enableServiceLinks":false,
		  "containers":[{"name":"echo","image":%q,"imagePullPolicy":"IfNotPresent",
		    "args":["-name",%q,"-listen",":8080,:9090"],
		    "ports":[{"name":"http","containerPort":8080},{"name":"metrics","containerPort":9090}]}]}}`,
		name, lb, n.name, echoImage, name))
	p := c.waitPodRunning(n, namespace, name)
	if p.Status.PodIP != ip {
		c.t.Fatalf("pod %s/%s got address %s from host-local, the test needs %s (is another pod using it?)", namespace, name, p.Status.PodIP, ip)
	}
	ns := c.prefix + n.name + "-" + name
	c.run("ip", "netns", "attach", ns, strconv.Itoa(c.sandboxPID(n, namespace, name)))
	c.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			c.t.Logf("delete netns %s: %v: %s", ns, err, out)
		}
	})
	return ns
}

// addClient creates a client namespace on the bridge.
func (c *cluster) addClient(suffix, ip string) string {
	return c.bridgePort(suffix, ip+"/24")
}

func (c *cluster) do(method, path string, body []byte) (int, []byte, error) {
	ctype := "application/json"
	if method == "PATCH" {
		ctype = "application/merge-patch+json"
	}
	req, err := http.NewRequest(method, c.apiURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.api.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// create POSTs an object and returns the stored one.
func (c *cluster) create(path, obj string) map[string]any {
	c.t.Helper()
	code, body, err := c.do("POST", path, []byte(obj))
	if err != nil || code != http.StatusCreated {
		c.t.Fatalf("POST %s: %d %v\n%s", path, code, err, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) patchStatus(path, patch string) {
	c.t.Helper()
	code, body, err := c.do("PATCH", path, []byte(patch))
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("PATCH %s: %d %v\n%s", path, code, err, body)
	}
}

// pki issues, with openssl, the CA, the apiserver's serving cert, the
// admin and kube-proxy client certs and the service-account key pair.
func (c *cluster) pki() {
	c.t.Helper()
	d := c.dir
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	c.run("openssl", append(append([]string{"req", "-x509"}, ec...),
		"-keyout", d+"/ca.key", "-out", d+"/ca.crt", "-days", "2", "-subj", "/CN=tsvc-e2e-ca")...)
	issue := c.issue
	issue("apiserver", "/CN=kube-apiserver", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:"+bridgeIP+",IP:"+firstSvcIP+
		",DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost")
	issue("admin", "/O=system:masters/CN=tsvc-e2e-admin", "extendedKeyUsage=clientAuth")
	issue("kube-proxy", "/CN=system:kube-proxy", "extendedKeyUsage=clientAuth")
	// The client cert the apiserver presents to kubelets (exec, logs).
	issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "extendedKeyUsage=clientAuth")
	c.run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", d+"/sa.key")
	c.run("openssl", "pkey", "-in", d+"/sa.key", "-pubout", "-out", d+"/sa.pub")
}

// issue signs, with the cluster CA, a key and cert name.key, name.crt in
// the cluster's directory with subject subj and the extra v3 extension
// lines ext.
func (c *cluster) issue(name, subj, ext string) {
	c.t.Helper()
	d := c.dir
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	extFile := filepath.Join(d, name+".ext")
	os.WriteFile(extFile, []byte("[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"+ext+"\n"), 0o600)
	c.run("openssl", append(append([]string{"req"}, ec...),
		"-keyout", d+"/"+name+".key", "-out", d+"/"+name+".csr", "-subj", subj)...)
	c.run("openssl", "x509", "-req", "-in", d+"/"+name+".csr", "-CA", d+"/ca.crt", "-CAkey", d+"/ca.key",
		"-CAcreateserial", "-days", "2", "-out", d+"/"+name+".crt", "-extfile", extFile, "-extensions", "v3")
}

func (c *cluster) kubeconfig(user, server string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, user+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: %s}
current-context: e2e
`, server, filepath.Join(c.dir, "ca.crt"), user, filepath.Join(c.dir, user+".crt"), filepath.Join(c.dir, user+".key"), user)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) httpClient(user string) *http.Client {
	c.t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.dir, user+".crt"), filepath.Join(c.dir, user+".key"))
	if err != nil {
		c.t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(c.dir, "ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		},
	}
}

// relay forwards each connection accepted on ln to addr as seen from the
// network namespace at nsPath.
func relay(ln net.Listener, nsPath, addr string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			up, err := dialInNetns(nsPath, addr)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { io.Copy(up, conn); up.(*net.TCPConn).CloseWrite() }()
			io.Copy(conn, up)
		}()
	}
}

// dialInNetns creates the socket while its OS thread is in the target
// namespace; a socket keeps the namespace it was created in.
func dialInNetns(nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// If switching back fails the thread stays locked and dies with
		// this goroutine, so no other goroutine runs in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			ch <- result{nil, err}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(context.Background(), "tcp", addr)
		if setns(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.c, r.err
}

func setns(f *os.File) error {
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", f.Name(), err)
	}
	return nil
}
