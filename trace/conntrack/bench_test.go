package conntrack

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var (
	benchRatio   = flag.Bool("bench-ratio", false, "run TestBenchRatio: parse a generated table against wc -l and grep -c")
	ratioEntries = flag.Int("bench-ratio.entries", 1_000_000, "entries in the generated table")
	ratioRuns    = flag.Int("bench-ratio.runs", 5, "timed runs of each command")
)

// benchServices is how many Services (ClusterIP:port) the generated table's
// connections go to; the tracer asks about one Service's addresses.
const benchServices = 2000

// writeTable writes n entries in /proc/net/nf_conntrack's layout, as a busy
// node has them: 70% TCP (most ESTABLISHED, some TIME_WAIT), 25% UDP, 5%
// IPv6, to benchServices ClusterIPs with three endpoints each, from many
// clients.
func writeTable(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	seed := uint32(14)
	rnd := func() uint32 { seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5; return seed }
	for i := 0; i < n; i++ {
		r := rnd()
		svc := int(r % benchServices)
		ep := int(r/benchServices) % 3
		client := fmt.Sprintf("10.%d.%d.%d", 1+r%200, (r>>8)%250, 1+(r>>16)%250)
		sport := 1024 + int(rnd()%60000)
		vip := fmt.Sprintf("10.96.%d.%d", svc/250, 1+svc%250)
		pod := fmt.Sprintf("10.244.%d.%d", (svc*3+ep)/250, 1+(svc*3+ep)%250)
		switch k := i % 20; {
		case k == 0: // IPv6
			fmt.Fprintf(bw, "ipv6     10 tcp      6 431999 ESTABLISHED src=fd00:0000:0000:0000:0000:0000:%04x:%04x dst=fd00:0096:0000:0000:0000:0000:0000:%04x sport=%d dport=443 src=fd00:0244:0000:0000:0000:0000:0000:%04x dst=fd00:0000:0000:0000:0000:0000:%04x:%04x sport=8443 dport=%d [ASSURED] mark=0 zone=0 use=2\n",
				r>>16, r&0xffff, svc, sport, svc*3+ep, r>>16, r&0xffff, sport)
		case k < 6: // UDP
			fmt.Fprintf(bw, "ipv4     2 udp      17 %d src=%s dst=%s sport=%d dport=53 src=%s dst=%s sport=5353 dport=%d mark=0 zone=0 use=2\n",
				r%30, client, vip, sport, pod, client, sport)
		case k < 9:
			fmt.Fprintf(bw, "ipv4     2 tcp      6 %d TIME_WAIT src=%s dst=%s sport=%d dport=443 src=%s dst=%s sport=8443 dport=%d [ASSURED] mark=0 zone=0 use=2\n",
				r%120, client, vip, sport, pod, client, sport)
		default:
			fmt.Fprintf(bw, "ipv4     2 tcp      6 %d ESTABLISHED src=%s dst=%s sport=%d dport=443 src=%s dst=%s sport=8443 dport=%d [ASSURED] mark=0 zone=0 use=2\n",
				431000+r%999, client, vip, sport, pod, client, sport)
		}
	}
	return bw.Flush()
}

// benchFrontends are one Service's addresses, as the tracer asks: its
// ClusterIP on both ports.
func benchFrontends() []Frontend {
	vip := netip.MustParseAddr("10.96.0.8")
	return []Frontend{{Addr: vip, Port: 443, Proto: ProtoTCP}, {Addr: vip, Port: 53, Proto: ProtoUDP}}
}

func BenchmarkObserve(b *testing.B) {
	var buf bytes.Buffer
	if err := writeTable(&buf, 100_000); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Observe(bytes.NewReader(data), benchFrontends(), Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/entry")
}

// BenchmarkScan parses every entry to the end (what Reader hands out),
// without Observe's early exit.
func BenchmarkScan(b *testing.B) {
	var buf bytes.Buffer
	if err := writeTable(&buf, 100_000); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Scan(bytes.NewReader(data), func(*Entry) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/entry")
}

// TestObserveHelper is the measured process of TestBenchRatio: it observes
// the table named by H14_CONNTRACK_TABLE and prints what it counted.
func TestObserveHelper(t *testing.T) {
	path := os.Getenv("H14_CONNTRACK_TABLE")
	if path == "" {
		t.Skip("helper process of TestBenchRatio")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	obs, err := Observe(f, benchFrontends(), Options{Clients: os.Getenv("H14_CONNTRACK_CLIENTS") != ""})
	if err != nil {
		t.Fatal(err)
	}
	// VmHWM is this process's own peak RSS (rusage's max RSS of a child
	// starts from its parent's).
	status, _ := os.ReadFile("/proc/self/status")
	hwm := ""
	for _, l := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("VmHWM:")); ok {
			hwm = string(bytes.TrimSpace(v))
		}
	}
	fmt.Printf("entries=%d matched=%d peak RSS (VmHWM) %s\n", obs.Stats.Entries, obs.Matched, hwm)
}

type measured struct {
	median time.Duration // wall time
	cpu    time.Duration // user+system time, median: steadier on a shared machine
	maxRSS int64         // KiB
	out    string
}

func measure(t *testing.T, runs int, env []string, name string, args ...string) measured {
	t.Helper()
	var times, cpus []time.Duration
	var m measured
	for i := 0; i < runs; i++ {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout = &limitedBuffer{b: &out, n: 4096}
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		times = append(times, time.Since(start))
		cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = max(m.maxRSS, ru.Maxrss)
		}
		m.out = out.String()
	}
	slices.Sort(times)
	slices.Sort(cpus)
	m.median, m.cpu = times[len(times)/2], cpus[len(cpus)/2]
	return m
}

// limitedBuffer keeps the first n bytes written to it. The measuring
// process must stay small: a child's peak RSS as the kernel reports it
// starts from its parent's (os/exec starts children with vfork).
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// TestBenchRatio generates a table of a million entries (about 170 MB,
// /proc/net/nf_conntrack's layout) and compares the wall time and peak RSS
// of observing one Service in it (a child process running Observe) with wc
// -l and grep -c over the same file in the same run.
//
//	go test -run '^TestBenchRatio$' -v -count=1 ./trace/conntrack -args -bench-ratio
func TestBenchRatio(t *testing.T) {
	if !*benchRatio {
		t.Skip("run with -args -bench-ratio")
	}
	path := t.TempDir() + "/nf_conntrack"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeTable(f, *ratioEntries); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	// warm the page cache so every command reads from memory
	_ = measure(t, 1, nil, "cat", path)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	floor := measure(t, *ratioRuns, nil, "true")
	wc := measure(t, *ratioRuns, nil, "wc", "-l", path)
	grep := measure(t, *ratioRuns, nil, "grep", "-c", "dport=443", path)
	obs := measure(t, *ratioRuns, []string{"H14_CONNTRACK_TABLE=" + path}, self, "-test.run=^TestObserveHelper$")
	obsClients := measure(t, *ratioRuns, []string{"H14_CONNTRACK_TABLE=" + path, "H14_CONNTRACK_CLIENTS=1"}, self, "-test.run=^TestObserveHelper$")

	t.Logf("table: %d entries, %d bytes (%.0f bytes/entry)", *ratioEntries, st.Size(), float64(st.Size())/float64(*ratioEntries))
	t.Logf("%-24s %9s %9s %8s %8s %10s", "command", "wall", "cpu", "cpu/wc", "cpu/grep", "max RSS")
	for _, r := range []struct {
		name string
		m    measured
	}{{"true (RSS floor)", floor}, {"wc -l", wc}, {"grep -c dport=443", grep}, {"Observe", obs}, {"Observe, clients kept", obsClients}} {
		t.Logf("%-24s %9s %9s %7.2fx %7.2fx %6d KiB", r.name, r.m.median.Round(time.Millisecond), r.m.cpu.Round(time.Millisecond),
			float64(r.m.cpu)/float64(wc.cpu), float64(r.m.cpu)/float64(grep.cpu), r.m.maxRSS)
	}
	t.Logf("Observe: %s", obs.out)
	t.Logf("Observe, clients kept: %s", obsClients.out)
	if want := "entries=" + strconv.Itoa(*ratioEntries); !bytes.Contains([]byte(obs.out), []byte(want)) {
		t.Errorf("Observe read %q, want %s", obs.out, want)
	}
}
