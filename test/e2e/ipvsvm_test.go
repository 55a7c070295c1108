package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The VM TestIPVS boots: this machine's kernel has no IPVS, so kube-proxy's
// IPVS mode runs in a qemu VM with Debian's kernel (ipvsvm/build.sh builds
// its kernel and base initramfs from Debian packages). The test adds a
// second archive per run with kube-proxy, the echo server, the agent it
// drives the VM with (cmd/vmagent) and the certificates, boots it with
// qemu's user network, and forwards the guest's 10.0.2.100:6443 to the
// control plane's relay on the host's loopback.

// vmAPIAddr is where the guest reaches the apiserver (qemu's guestfwd).
const vmAPIAddr = "10.0.2.100:6443"

// vm is a running VM and the client of its agent.
type vm struct {
	t       *testing.T
	url     string // http://127.0.0.1:<forwarded port>
	token   string
	http    *http.Client
	console string // the serial console's log
	dir     string
}

// vmFile is one file of the per-run archive: contents from data or, when
// src is set, from that file on the host.
type vmFile struct {
	path string // absolute, in the VM
	mode os.FileMode
	data []byte
	src  string
}

// buildVMImage runs ipvsvm/build.sh (a cache hit after the first run) and
// returns its output directory (vmlinuz, base.cpio.gz, manifest.txt).
func buildVMImage(t *testing.T) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("./ipvsvm/build.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ipvsvm/build.sh: %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	t.Logf("VM image %s (%v): %s", dir, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	return dir
}

// bootVM writes the initramfs (the image's base archive followed by one
// with files and the agent's token), starts qemu with the guest's
// vmAPIAddr forwarded to apiAddr on the host's loopback, and waits until
// the agent answers. qemu is killed by its PID at cleanup.
func bootVM(t *testing.T, image, apiAddr string, files []vmFile) *vm {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH (ipvsvm/build.sh installs it as root)", tool)
		}
	}
	dir := t.TempDir()
	tok := make([]byte, 24)
	rand.Read(tok)
	v := &vm{t: t, token: hex.EncodeToString(tok), dir: dir, console: filepath.Join(dir, "console.log"),
		http: &http.Client{Timeout: 5 * time.Minute}}
	files = append(files, vmFile{path: "/etc/vmagent/token", mode: 0o600, data: []byte(v.token + "\n")})

	initrd := filepath.Join(dir, "initrd")
	if err := writeInitrd(initrd, filepath.Join(image, "base.cpio.gz"), files); err != nil {
		t.Fatal(err)
	}
	// KVM when /dev/kvm works, else software emulation: a /dev/kvm that
	// opens is not enough (nested virtualisation can fail on the first
	// MSR write), so a VM that dies while booting under KVM is retried
	// under TCG. TCG's translation cache defaults to 1 GiB; 256 MiB
	// halves qemu's memory and runs as fast.
	accels := []string{"tcg,thread=multi,tb-size=256"}
	if kvmUsable() {
		accels = append([]string{"kvm"}, accels...)
	}
	for i, accel := range accels {
		err := v.boot(image, initrd, apiAddr, accel)
		if err == nil {
			return v
		}
		if i == len(accels)-1 {
			t.Fatal(err)
		}
		t.Logf("VM under %s: %v; trying %s", accel, err, accels[i+1])
	}
	return v
}

// kvmUsable says whether qemu can use KVM here: /dev/kvm opens and the CPU
// offers hardware virtualisation (vmx or svm in /proc/cpuinfo). A machine
// that is itself a VM may have a /dev/kvm that opens while its CPU offers
// neither; a guest started there under KVM hangs without a line of output.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if name, flags, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "flags" {
			fields := strings.Fields(flags)
			return slices.Contains(fields, "vmx") || slices.Contains(fields, "svm")
		}
	}
	return false
}

// kvmBootLimit is how long a guest under KVM may take to answer: it boots
// in seconds when KVM works, so a longer silence means it does not, and
// the VM is started again under software emulation.
const kvmBootLimit = 60 * time.Second

// boot starts qemu with accel and waits for the agent. An error means qemu
// exited while booting, or under KVM did not answer within kvmBootLimit
// (qemu is then stopped); a hang under software emulation is fatal.
func (v *vm) boot(image, initrd, apiAddr, accel string) error {
	t := v.t
	t.Helper()
	port := freePort(t)
	v.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{
		"-accel", accel, "-cpu", "max", "-smp", "2", "-m", "768",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(image, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet",
		"-serial", "file:" + v.console,
		// restrict=on: the guest reaches nothing of the host but the
		// apiserver forward; the host reaches the agent on its loopback.
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:7000,guestfwd=tcp:%s-cmd:socat - TCP:%s", port, vmAPIAddr, apiAddr),
		"-device", "virtio-net-pci,netdev=n0",
		"-device", "virtio-rng-pci",
	}
	qemuLog := filepath.Join(v.dir, "qemu.log")
	logf, err := os.Create(qemuLog)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Logf("qemu (pid %d) did not exit", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("--- VM console tail ---\n%s\n--- qemu log ---\n%s", tail(v.console, 40), tail(qemuLog, 10))
		}
	})

	deadline := time.Now().Add(3 * time.Minute)
	for {
		req, _ := http.NewRequest("GET", v.url+"/ping", nil)
		req.Header.Set("Authorization", "Bearer "+v.token)
		c := http.Client{Timeout: 2 * time.Second}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("qemu exited while booting:\n%s\n%s", tail(v.console, 20), tail(qemuLog, 10))
		default:
		}
		if accel == "kvm" && time.Since(start) > kvmBootLimit {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no answer from the agent under KVM after %v (console: %q)", time.Since(start).Round(time.Second), tail(v.console, 5))
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM agent not answering after %v (accel %s)\n--- console ---\n%s", time.Since(start).Round(time.Second), accel, tail(v.console, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("VM booted in %v (accel %s, qemu pid %d)", time.Since(start).Round(time.Millisecond), accel, cmd.Process.Pid)
	return nil
}

// freePort returns a TCP port free on the host's loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeInitrd writes base (a compressed cpio archive) followed by an
// uncompressed newc archive of files: the kernel unpacks both into the
// root filesystem, the second over the first. Uncompressed because the
// guest's emulated CPU would take seconds to inflate kube-proxy.
func writeInitrd(path, base string, files []vmFile) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	b, err := os.Open(base)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, b)
	b.Close()
	if err != nil {
		return err
	}
	// The kernel reads archives at 4-byte boundaries.
	if off, _ := out.Seek(0, io.SeekCurrent); off%4 != 0 {
		out.Write(make([]byte, 4-off%4))
	}
	w := &cpioWriter{w: out}
	dirs := map[string]bool{}
	for _, f := range files {
		// Parents first: the kernel does not create them.
		var parents []string
		for d := filepath.Dir(f.path); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			w.entry(d, 0o040755, 0, nil)
		}
		data := f.data
		if f.src != "" {
			src, err := os.Open(f.src)
			if err != nil {
				return err
			}
			st, _ := src.Stat()
			w.entry(f.path, 0o100000|uint32(f.mode.Perm()), st.Size(), src)
			src.Close()
			continue
		}
		w.entry(f.path, 0o100000|uint32(f.mode.Perm()), int64(len(data)), bytes.NewReader(data))
	}
	w.entry("TRAILER!!!", 0, 0, nil)
	if w.err != nil {
		return w.err
	}
	return out.Close()
}

// cpioWriter writes the "newc" cpio format the kernel's initramfs
// unpacker reads: a 110-byte hex header, the name, the data, each padded to
// 4 bytes.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, size int64, data io.Reader) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	c.ino++
	nlink := 1
	if mode&0o040000 != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, time.Now().Unix(), size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	if data != nil {
		n, err := io.CopyN(c.w, data, size)
		if err != nil && c.err == nil {
			c.err = fmt.Errorf("cpio %s: %d of %d bytes: %w", name, n, size, err)
		}
		c.pad(int(size % 4))
	}
}

func (c *cpioWriter) pad(n int) {
	if n%4 != 0 {
		c.write(make([]byte, 4-n%4))
	}
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// vmResult is one command's result in the VM.
type vmResult struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// call runs argv in the VM (in its root network namespace: the node) and
// returns its result; only a failure to reach the agent is fatal.
func (v *vm) call(timeout time.Duration, argv ...string) vmResult {
	v.t.Helper()
	body, _ := json.Marshal(map[string]any{"argv": argv, "timeoutSec": int(timeout.Seconds())})
	var res vmResult
	v.post("/run", body, &res)
	return res
}

// run runs argv in the VM and returns its stdout; a non-zero exit fails
// the test.
func (v *vm) run(argv ...string) string {
	v.t.Helper()
	res := v.call(2*time.Minute, argv...)
	if res.Code != 0 {
		v.t.Fatalf("in the VM: %s: exit %d\n%s%s", strings.Join(argv, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// sh runs a script with the VM's sh (busybox: it runs its own applets
// before anything on PATH, so the script names iproute2's ip as /bin/ip).
func (v *vm) sh(script string) string {
	v.t.Helper()
	return v.run("sh", "-euc", script)
}

// start starts a long-running process in the VM, its output in
// /var/log/<name>.log there; it runs until the VM stops.
func (v *vm) start(name string, argv ...string) {
	v.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "argv": argv})
	var res struct{ Pid int }
	v.post("/start", body, &res)
}

func (v *vm) post(path string, body []byte, out any) {
	v.t.Helper()
	req, _ := http.NewRequest("POST", v.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+v.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := v.http.Do(req)
	if err != nil {
		v.t.Fatalf("VM agent %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		v.t.Fatalf("VM agent %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		v.t.Fatalf("VM agent %s: %v: %s", path, err, b)
	}
}
