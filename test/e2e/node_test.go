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
	"syscall"
	"time"
)

// A node of the suite is a network namespace with what a real node runs in
// it: kube-proxy, and a real kubelet with its own containerd and runc. Pods
// are real containers; their network comes from Debian's CNI plugins (ptp
// with host-local): a /32 route per pod on the node, the node's end of each
// veth holding the pod CIDR's first address.
//
// Everything of a node lives under its directory (containerd's root, state
// and socket, the kubelet's root and pod logs, the CNI configuration and
// address leases) and in one cgroup, /<netns prefix><node> in every cgroup
// v1 hierarchy: the kubelet's cgroupRoot (its pods under kubepods/) and,
// under runtime/, containerd with the shims it starts. Tearing a node
// down kills by PID what those cgroups hold (after the kubelet and
// containerd themselves), then removes the cgroups; a run killed outright
// leaves cgroups the next run finds by their name (sweepStale).
//
// containerd and the kubelet each run in a mount namespace of their own
// (startShell): containerd mounts tmpfs over /run/netns and
// /run/containerd there, so pods' network namespaces and the shims'
// sockets never appear on the host; the kubelet mounts tmpfs over
// /var/log/containers (its log symlinks) and covers the six kernel
// settings it would otherwise write for the whole machine (vm.overcommit_
// memory, kernel.panic, ...) with files that already hold the values it
// wants.

// cgroupV1 is where the cgroup v1 hierarchies are mounted.
const cgroupV1 = "/sys/fs/cgroup"

// kubeletSysctls are the kernel settings the kubelet sets at start unless
// they already have these values (pkg/kubelet/cm setupKernelTunables).
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// startNode starts node n's containerd (with the suite's images) and
// kubelet; kube-proxy is started by addNode.
func (c *cluster) startNode(n *node) {
	c.t.Helper()
	// Unix socket paths (containerd's, the kubelet's pods-api one) must
	// stay under 108 bytes: the node's directory is a short one under the
	// run's, not under the test's (named for the test).
	dir, err := os.MkdirTemp("", n.name+"-")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(dir) })
	n.dir = dir
	n.sock = filepath.Join(n.dir, "containerd.sock")
	n.cgroup = "/" + c.prefix + n.name
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "sysctl"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	c.makeCgroup(n.cgroup)
	c.makeCgroup(n.cgroup + "/runtime")

	c.writeFile(filepath.Join(n.dir, "cni/net.d/10-e2e.conflist"), fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "e2e",
  "plugins": [{
    "type": "ptp",
    "mtu": 1500,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
`, filepath.Join(n.dir, "cni/ipam"), n.podCIDR))

	cfg := filepath.Join(n.dir, "containerd.toml")
	cd := filepath.Join(n.dir, "containerd")
	c.writeFile(cfg, fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Lowering a process's oom_score_adj is refused on some machines (this
  # kind of VM among them) and runc then fails every sandbox: keep the
  # containers' scores no lower than containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
`, cd+"/root", cd+"/state", n.sock, n.sock+".ttrpc", cd+"/opt", pauseImage, filepath.Join(n.dir, "cni/net.d")))

	// containerd joins its cgroup before it execs, so every shim it starts
	// is in it too.
	c.startShell("containerd-"+n.name, n.ns, nil, fmt.Sprintf(`echo $$ > %s/pids%s/runtime/cgroup.procs
mount -t tmpfs -o mode=755 tsvc-e2e /run/netns
mkdir -p /run/containerd
mount -t tmpfs -o mode=711 tsvc-e2e /run/containerd
exec containerd --config %s`, cgroupV1, n.cgroup, cfg))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := exec.Command("ctr", "-a", n.sock, "version").CombinedOutput(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("containerd on %s not answering on %s after 30s", n.name, n.sock)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, img := range []string{pauseImage, echoImage, debugImage} {
		c.importImage(n, img)
	}

	c.startKubelet(n)
}

// importImage imports one of the suite's images into node's containerd.
func (c *cluster) importImage(n *node, image string) {
	c.t.Helper()
	archive := c.images[image]
	if archive == "" {
		c.t.Fatalf("no image %s built", image)
	}
	c.run("ctr", "-a", n.sock, "-n", "k8s.io", "images", "import", archive)
}

// tagImage gives node's image src the name dst too (replacing what dst
// named): what a node that has its own image under a well-known name looks
// like.
func (c *cluster) tagImage(n *node, src, dst string) {
	c.t.Helper()
	c.run("ctr", "-a", n.sock, "-n", "k8s.io", "images", "tag", "--force", src, dst)
}

// startKubelet writes node's kubelet configuration, issues its certificate
// (client and serving, SAN = node IP) and starts it.
func (c *cluster) startKubelet(n *node) {
	c.t.Helper()
	name := "kubelet-" + n.name
	c.issue(name, "/O=system:nodes/CN=system:node:"+n.name, "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:"+n.ip)
	d := c.dir
	kc := c.kubeconfig(name, "https://"+bridgeIP+":6443")
	cfg := filepath.Join(n.dir, "kubelet.yaml")
	c.writeFile(cfg, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization: {mode: AlwaysAllow}
tlsCertFile: %s
tlsPrivateKeyFile: %s
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
podLogsDir: %s
resolvConf: /etc/resolv.conf
registerNode: true
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 1Mi, nodefs.available: 1%%, nodefs.inodesFree: 1%%, imagefs.available: 1%%}
serializeImagePulls: false
`, n.ip, d+"/ca.crt", d+"/"+name+".crt", d+"/"+name+".key", n.sock, n.cgroup, filepath.Join(n.dir, "pod-logs")))

	var masks strings.Builder
	for key, val := range kubeletSysctls {
		f := filepath.Join(n.dir, "sysctl", strings.ReplaceAll(key, "/", "."))
		c.writeFile(f, val+"\n")
		fmt.Fprintf(&masks, "mount --bind %s /proc/sys/%s\n", f, key)
	}
	// The kubelet finds iptables on its PATH (for its KUBE-IPTABLES-HINT
	// chain): the legacy binaries first on an iptables-legacy node, as
	// for kube-proxy.
	var env []string
	if n.mode == "iptables-legacy" {
		env = []string{"PATH=" + c.legacyBin() + string(os.PathListSeparator) + os.Getenv("PATH")}
	}
	c.startShell(name, n.ns, env, fmt.Sprintf(`mkdir -p /var/log/containers
mount -t tmpfs -o mode=755 tsvc-e2e /var/log/containers
%sexec %s --config=%s --kubeconfig=%s --root-dir=%s --cert-dir=%s --hostname-override=%s --node-ip=%s --v=2`,
		masks.String(), filepath.Join(c.bin, "kubelet"), cfg, kc, filepath.Join(n.dir, "kubelet"), filepath.Join(n.dir, "kubelet", "pki"), n.name, n.ip))
}

// waitNodesReady waits until every node's kubelet reports it Ready with its
// port announced (the apiserver needs it for exec).
func (c *cluster) waitNodesReady() {
	c.t.Helper()
	for _, n := range c.nodes {
		c.waitNodeReady(n)
	}
}

// waitNodeReady waits, once per node, until its kubelet reports it Ready
// with its port announced. Pods go to a node only then, as the scheduler
// would send them: a pod that reaches a kubelet still starting up can be
// rejected at admission.
func (c *cluster) waitNodeReady(n *node) {
	c.t.Helper()
	if n.ready {
		return
	}
	start := time.Now()
	for {
		ready, port, why := c.nodeReady(n)
		if ready && port == 10250 {
			n.ready = true
			return
		}
		if time.Since(start) > 90*time.Second {
			c.t.Fatalf("node %s not Ready after 90s (%s)\nkubelet-%s, last errors:\n%s", n.name, why, n.name,
				grepLog(filepath.Join(c.dir, "kubelet-"+n.name+".log"), "] ", -15))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeReady reads node's Ready condition and kubelet port.
func (c *cluster) nodeReady(n *node) (ready bool, port int, why string) {
	code, body, err := c.do("GET", "/api/v1/nodes/"+n.name, nil)
	if err != nil || code != 200 {
		return false, 0, fmt.Sprintf("GET node: %d %v", code, err)
	}
	var obj struct {
		Status struct {
			Conditions []struct {
				Type, Status, Reason, Message string
			} `json:"conditions"`
			DaemonEndpoints struct {
				KubeletEndpoint struct {
					Port int `json:"Port"`
				} `json:"kubeletEndpoint"`
			} `json:"daemonEndpoints"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return false, 0, err.Error()
	}
	why = "no Ready condition"
	for _, cond := range obj.Status.Conditions {
		if cond.Type == "Ready" {
			ready, why = cond.Status == "True", cond.Reason+": "+cond.Message
		}
	}
	return ready, obj.Status.DaemonEndpoints.KubeletEndpoint.Port, why
}

// podStatus is the part of a Pod the suite reads.
type podStatus struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase             string `json:"phase"`
		Reason            string `json:"reason"`
		Message           string `json:"message"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
			State map[string]struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// getPod reads a pod; found is false when it does not exist.
func (c *cluster) getPod(namespace, name string) (p podStatus, found bool) {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+namespace+"/pods/"+name, nil)
	if err != nil {
		c.t.Fatalf("GET pod %s/%s: %v", namespace, name, err)
	}
	if code == 404 {
		return p, false
	}
	if code != 200 {
		c.t.Fatalf("GET pod %s/%s: %d\n%s", namespace, name, code, body)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		c.t.Fatal(err)
	}
	return p, true
}

// waitPodRunning waits until n's kubelet reports the pod Running with all
// its containers ready, and returns it. A slow start is logged with what
// held it up; a pod that never starts fails the test with the pod's
// status, its events and the kubelet's and containerd's last words on it,
// so a failure in CI says why without the cluster at hand.
func (c *cluster) waitPodRunning(n *node, namespace, name string) podStatus {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for {
		p, found := c.getPod(namespace, name)
		ready := found && p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0
		for _, cs := range p.Status.ContainerStatuses {
			ready = ready && cs.Ready
		}
		if found && (p.Status.Phase == "Failed" || p.Status.Phase == "Succeeded") {
			c.t.Fatalf("pod %s/%s on %s ended (%s) instead of running: reason %q message %q containers %+v\n%s",
				namespace, name, n.name, p.Status.Phase, p.Status.Reason, p.Status.Message,
				p.Status.ContainerStatuses, c.podDiagnosis(n, namespace, name))
		}
		if ready {
			if took := time.Since(start); took > 15*time.Second {
				c.t.Logf("pod %s/%s took %v to run on %s:\n%s", namespace, name, took.Round(time.Millisecond), n.name, c.podDiagnosis(n, namespace, name))
			}
			return p
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pod %s/%s not running on %s after %v: phase %q reason %q message %q containers %+v\n%s",
				namespace, name, n.name, time.Since(start).Round(time.Second), p.Status.Phase, p.Status.Reason, p.Status.Message,
				p.Status.ContainerStatuses, c.podDiagnosis(n, namespace, name))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podDiagnosis gathers what explains a pod's slow or failed start: its
// events, and the last kubelet and containerd log lines that name it or
// report an error.
func (c *cluster) podDiagnosis(n *node, namespace, name string) string {
	var b strings.Builder
	b.WriteString("events:\n")
	code, body, err := c.do("GET", "/api/v1/namespaces/"+namespace+"/events?fieldSelector=involvedObject.name%3D"+name, nil)
	var evs struct {
		Items []struct {
			Reason, Message, Type string
			Count                 int
		} `json:"items"`
	}
	if err == nil && code == 200 && json.Unmarshal(body, &evs) == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "  %s %s (x%d): %s\n", e.Type, e.Reason, e.Count, e.Message)
		}
	} else {
		fmt.Fprintf(&b, "  (cannot list them: %d %v)\n", code, err)
	}
	fmt.Fprintf(&b, "kubelet-%s, last lines naming the pod:\n%s\n", n.name, grepLog(filepath.Join(c.dir, "kubelet-"+n.name+".log"), name, -15))
	fmt.Fprintf(&b, "containerd-%s, last errors:\n%s", n.name, grepLog(filepath.Join(c.dir, "containerd-"+n.name+".log"), "level=error", -10))
	return b.String()
}

// ctr runs containerd's ctr against node's containerd, in the namespace
// the CRI uses.
func (c *cluster) ctr(n *node, args ...string) string {
	c.t.Helper()
	return c.run("ctr", append([]string{"-a", n.sock, "-n", "k8s.io"}, args...)...)
}

// runtimeContainers lists the IDs of the containers (sandboxes included)
// node's containerd holds for pods of namespace whose name matches the
// regular expression nameRE.
func (c *cluster) runtimeContainers(n *node, namespace, nameRE string) []string {
	c.t.Helper()
	return strings.Fields(c.ctr(n, "containers", "ls", "-q",
		fmt.Sprintf(`labels."io.kubernetes.pod.namespace"==%s,labels."io.kubernetes.pod.name"~=%q`, namespace, nameRE)))
}

// runtimeTasks lists the running tasks (processes) of node's containerd
// by container ID.
func (c *cluster) runtimeTasks(n *node) map[string]int {
	c.t.Helper()
	tasks := map[string]int{}
	for _, l := range strings.Split(c.ctr(n, "tasks", "ls"), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) >= 3 && f[2] == "RUNNING" {
			pid, _ := strconv.Atoi(f[1])
			tasks[f[0]] = pid
		}
	}
	return tasks
}

// sandboxPID returns the PID of the pod's sandbox (pause) process on node,
// whose network namespace is the pod's.
func (c *cluster) sandboxPID(n *node, namespace, name string) int {
	c.t.Helper()
	out := c.ctr(n, "containers", "ls", "-q", fmt.Sprintf(`labels."io.kubernetes.pod.name"==%s,labels."io.kubernetes.pod.namespace"==%s,labels."io.cri-containerd.kind"==sandbox`, name, namespace))
	tasks := c.runtimeTasks(n)
	for _, id := range strings.Fields(out) {
		if pid := tasks[id]; pid > 0 {
			return pid
		}
	}
	c.t.Fatalf("pod %s/%s: no running sandbox in %s's containerd:\n%s", namespace, name, n.name, out)
	return 0
}

// ipBefore returns the address before ip (the host-local hint).
func ipBefore(ip string) string {
	return netip.MustParseAddr(ip).Prev().String()
}

// leaseHint makes host-local on node give the next pod the address ip: it
// allocates from the address after the last one it handed out, which it
// keeps in last_reserved_ip.0. addPod creates pods one at a time, so the
// hint is never raced.
func (c *cluster) leaseHint(n *node, ip string) {
	c.t.Helper()
	dir := filepath.Join(n.dir, "cni/ipam/e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.writeFile(filepath.Join(dir, "last_reserved_ip.0"), ipBefore(ip))
}

func (c *cluster) writeFile(path, content string) {
	c.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// makeCgroup creates cgroup path (e.g. /tsvc-e2e-1-sc-ipt-node1) in every
// cgroup v1 hierarchy, with cpuset's cpus and mems copied from the root
// (a new cpuset is empty and takes no tasks), and removes it, killing
// what is left in it, at cleanup.
func (c *cluster) makeCgroup(path string) {
	c.t.Helper()
	hs, err := cgroupHierarchies()
	if err != nil {
		c.t.Skipf("cgroup v1 hierarchies: %v (the suite's kubelets need cgroup v1)", err)
	}
	for _, h := range hs {
		dir := filepath.Join(h, path)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			c.t.Fatal(err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				if err != nil {
					c.t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					c.t.Fatalf("%s/%s: %v", dir, f, err)
				}
			}
		}
	}
	if filepath.Dir(path) != "/" {
		return // removed with its parent
	}
	c.t.Cleanup(func() {
		if err := removeCgroup(path); err != nil {
			c.t.Errorf("remove cgroup %s: %v", path, err)
		}
	})
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies, and the
// cgroup2 one a hybrid host mounts beside them (runc and the kubelet
// create their cgroups there too).
func cgroupHierarchies() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var hs []string
	v1 := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") && strings.HasPrefix(f[1], cgroupV1+"/") {
			hs = append(hs, f[1])
			v1 = v1 || f[2] == "cgroup"
		}
	}
	if !v1 {
		return nil, fmt.Errorf("none mounted under %s", cgroupV1)
	}
	return hs, nil
}

// cgroupPIDs lists the processes in cgroup path and below it (pids
// hierarchy).
func cgroupPIDs(path string) []int {
	var pids []int
	filepath.WalkDir(filepath.Join(cgroupV1, "pids", path), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup kills, by PID, every process left in cgroup path (shims,
// containers), then removes it and everything below it from every
// hierarchy, deepest first.
func removeCgroup(path string) error {
	// A killed process leaves its cgroup when it has run its exit: long
	// when the machine is starved (a CPU stuck in the kernel for minutes
	// has been seen here), so wait generously.
	deadline := time.Now().Add(60 * time.Second)
	for {
		pids := cgroupPIDs(path)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in it after 60s", pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []string
	for _, h := range hs {
		root := filepath.Join(h, path)
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirRetry(dirs[i]); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// rmdirRetry removes an empty cgroup, retrying while the kernel still
// counts a process that just died in it (EBUSY).
func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

// sweepStaleCgroups removes the cgroups of earlier runs that were killed
// outright (named netnsPrefix + a PID no longer running), killing by PID
// what still runs in them.
func sweepStaleCgroups() {
	entries, err := os.ReadDir(filepath.Join(cgroupV1, "pids"))
	if err != nil {
		return
	}
	re := regexp.MustCompile("^" + regexp.QuoteMeta(netnsPrefix) + `(\d+)-`)
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := removeCgroup("/" + e.Name()); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: could not remove stale cgroup %s: %v\n", e.Name(), err)
			continue
		}
		fmt.Fprintf(os.Stderr, "e2e: removed stale cgroup %s (its test run, pid %s, is gone)\n", e.Name(), m[1])
	}
}
