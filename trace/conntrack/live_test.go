package conntrack

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLiveTableMatchesKernel builds the generator's namespaces afresh
// (hack/conntrack/gen.sh: real connections through kube-proxy-shaped
// rules, a real stale UDP entry), then reads the node's table now — as
// /proc/net/nf_conntrack and as conntrack -L — and checks that the counts
// per frontend and per reply source equal what the kernel's own filters
// (conntrack -L -f FAMILY -p PROTO -d ADDR --dport PORT [--reply-src ADDR
// --reply-port-src PORT]) count at the same moment. Needs root.
func TestLiveTableMatchesKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if testing.Short() {
		t.Skip("makes real connections in network namespaces (about 10s)")
	}
	for _, tool := range []string{"ip", "conntrack", "iptables-nft-restore", "ip6tables-nft-restore", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	gen, err := filepath.Abs("../../hack/conntrack/gen.sh")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("h14-t%d-", os.Getpid())
	out := t.TempDir()
	t.Cleanup(func() {
		if b, err := exec.Command(gen, "--prefix", prefix, "--teardown").CombinedOutput(); err != nil {
			t.Errorf("teardown: %v\n%s", err, b)
		}
	})
	if b, err := exec.Command(gen, "--prefix", prefix, "--keep", "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	node := prefix + "node"
	kc := readKernelCounts(t, filepath.Join(out, "kernel-counts"))

	// Entries can come and go between reading the table and asking the
	// kernel (none should here: the clients are done and the timeouts are
	// long), so a mismatch is retried before it fails the test.
	var lastDiff string
	for attempt := 0; attempt < 3; attempt++ {
		proc := nsOutput(t, node, "cat", "/proc/net/nf_conntrack")
		list := nsOutput(t, node, "conntrack", "-L")
		kernel := liveKernelCounts(t, node, kc)
		if stale := kernel["10.96.14.53:53/udp 10.14.3.2:5353"]; stale == 0 || len(kernel) < 15 {
			t.Fatalf("the generator's traffic is missing (stale entries %d, %d counts): %v", stale, len(kernel), kernel)
		}
		lastDiff = ""
		for _, src := range []struct {
			name string
			data []byte
		}{{"/proc/net/nf_conntrack", proc}, {"conntrack -L", list}} {
			obs, err := Observe(bytes.NewReader(src.data), kc.order, Options{})
			if err != nil {
				t.Fatalf("%s: %v", src.name, err)
			}
			got := map[string]int{}
			for _, fc := range obs.Frontends {
				got[fc.Frontend.String()] = fc.Connections
				for _, b := range fc.Backends {
					got[fc.Frontend.String()+" "+b.Backend.String()] = b.Connections
				}
			}
			if d := cmp.Diff(kernel, got); d != "" {
				lastDiff += fmt.Sprintf("%s (-kernel +parsed):\n%s", src.name, d)
			}
		}
		if lastDiff == "" {
			break
		}
	}
	if lastDiff != "" {
		t.Fatal(lastDiff)
	}

	// The stale entries' ClearCommand, run in the node, removes them; the
	// resolver's next datagram makes a new entry, to pod B.
	dns := Frontend{Addr: netip.MustParseAddr("10.96.14.53"), Port: 53, Proto: ProtoUDP}
	podC := netip.MustParseAddrPort("10.14.3.2:5353")
	before := liveKernelCounts(t, node, kc)
	cmd := ClearCommand(dns, podC)
	if b, err := exec.Command("ip", append([]string{"netns", "exec", node}, cmd...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, b)
	}
	after := liveKernelCounts(t, node, kc)
	stale := dns.String() + " " + podC.String()
	toB := dns.String() + " 10.14.2.2:5353"
	if after[stale] != 0 || after[dns.String()] != after[toB] || after[toB] < before[toB] || after[toB] > before[toB]+1 {
		t.Errorf("after %s: %d stale entries left; %d entries to the Service, %d to B (before: %d)",
			strings.Join(cmd, " "), after[stale], after[dns.String()], after[toB], before[toB])
	}
}

func nsOutput(t *testing.T, ns string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// liveKernelCounts asks conntrack's own filters, per frontend and per
// reply source (every endpoint the generator used), how many entries match.
func liveKernelCounts(t *testing.T, ns string, kc kernelCounts) map[string]int {
	t.Helper()
	pods := map[Family][]string{IPv4: {"10.14.1.2", "10.14.2.2", "10.14.3.2"}, IPv6: {"fd14:1::2", "fd14:2::2", "fd14:3::2"}}
	count := func(args ...string) int {
		var stderr bytes.Buffer
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "conntrack", "-L"}, args...)...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("conntrack -L %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		n, ok := summaryCount(bytes.TrimSpace(stderr.Bytes()))
		if !ok {
			t.Fatalf("conntrack -L %s: no summary in %q", strings.Join(args, " "), stderr.Bytes())
		}
		return n
	}
	out := map[string]int{}
	for _, fe := range kc.order {
		filter := []string{"-f", kc.family[fe].String(), "-p", fe.Proto.String(), "-d", fe.Addr.String(), "--dport", fmt.Sprint(fe.Port)}
		out[fe.String()] = count(filter...)
		// the endpoint port is the one the generator's rules DNAT to
		port := map[uint16]uint16{80: 8080, 30080: 8080, 53: 5353, 9: 9}[fe.Port]
		for _, pod := range pods[kc.family[fe]] {
			n := count(append(filter, "--reply-src", pod, "--reply-port-src", fmt.Sprint(port))...)
			if n > 0 {
				out[fe.String()+" "+netip.AddrPortFrom(netip.MustParseAddr(pod), port).String()] = n
			}
		}
	}
	return out
}
