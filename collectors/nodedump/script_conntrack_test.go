package nodedump

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
)

// newConntrackNetns creates a network namespace (h14- prefix) holding
// nIPv4 UDP entries DNATed from 10.96.0.10:53 to 10.244.0.5:53 and nIPv6
// TCP entries, inserted with conntrack -I so their number is exact.
func newConntrackNetns(t *testing.T, nIPv4, nIPv6 int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "sh", "conntrack", "head", "grep", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	ns := fmt.Sprintf("h14-ct-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run(t, nil, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	var script strings.Builder
	for i := 0; i < nIPv4; i++ {
		fmt.Fprintf(&script, "conntrack -I -s 10.0.%d.%d -d 10.96.0.10 -p udp --sport 1000 --dport 53 -r 10.244.0.5 -q 10.0.%d.%d --reply-port-src 53 --reply-port-dst 1000 -t 300 -u SEEN_REPLY 2>/dev/null || exit 1\n", i/200, i%200+1, i/200, i%200+1)
	}
	for i := 0; i < nIPv6; i++ {
		fmt.Fprintf(&script, "conntrack -I -s fd00::%x -d fd00:96::1 -p tcp --sport 40000 --dport 443 -r fd00:244::5 -q fd00::%x --reply-port-src 6443 --reply-port-dst 40000 -t 300 --state ESTABLISHED -u SEEN_REPLY,ASSURED 2>/dev/null || exit 1\n", i+1, i+1)
	}
	run(t, nil, "ip", "netns", "exec", ns, "sh", "-c", script.String())
	return ns
}

// runSnippet runs the snippet in ns as the debug pod would, with env
// added (PATH, ct_proc, ...).
func runSnippet(t *testing.T, ns string, o ConntrackOptions, env ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	args := append([]string{"netns", "exec", ns, "env"}, env...)
	args = append(args, "sh", "-c", ConntrackScript(o))
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("conntrack snippet: %v\n%s", err, errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes()
}

// minimalPath is a directory holding only what kube-proxy's image has
// (dash, cat, grep, wc; no head), plus conntrack when withConntrack.
func minimalPath(t *testing.T, withConntrack bool) string {
	tools := []string{"sh", "cat", "grep", "wc"}
	if withConntrack {
		tools = append(tools, "conntrack")
	}
	return pathOf(t, tools...)
}

// pathOf is a directory holding only the tools named.
func pathOf(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s is not installed", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// someLines in a wanted section: any number of whole lines, each an entry.
const someLines = -1

type snippetSection struct {
	Present bool
	Entries int
	Bytes   int
	Lines   int
	Exit    int
	Cut     bool // trace/conntrack saw the data end inside a line
}

func sections(t *testing.T, stdout, stderr []byte) (map[string]snippetSection, *Result) {
	t.Helper()
	res := ParseOutput("node-1", stdout, stderr)
	got := map[string]snippetSection{}
	for _, name := range []string{DumpConntrackProc, DumpConntrackList, DumpConntrackList6, DumpIPVSConn} {
		d, ok := res.Dump(name)
		if !ok {
			continue
		}
		s := snippetSection{Present: true, Bytes: len(d.Data), Lines: bytes.Count(d.Data, []byte("\n")), Exit: d.ExitCode}
		var st conntrack.Stats
		var err error
		if name == DumpIPVSConn {
			st, err = conntrack.ScanIPVS(bytes.NewReader(d.Data), func(*conntrack.IPVSConn) error { return nil })
		} else {
			st, err = conntrack.Scan(bytes.NewReader(d.Data), func(*conntrack.Entry) error { return nil })
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Skipped != 0 {
			t.Errorf("%s: skipped lines: %v", name, st.Examples)
		}
		s.Entries, s.Cut = st.Entries, st.Cut
		got[name] = s
	}
	return got, res
}

// TestConntrackScriptInNetns runs the real snippet against a real
// conntrack table in a scratch network namespace, with and without head
// (kube-proxy's image has none), capped and not.
func TestConntrackScriptInNetns(t *testing.T) {
	ns := newConntrackNetns(t, 300, 5)
	full := func(n int) snippetSection { return snippetSection{Present: true, Entries: n, Lines: n} }
	tests := []struct {
		name   string
		opts   ConntrackOptions
		env    []string
		noHead bool
		path   []string                  // only these tools on PATH, when set
		want   map[string]snippetSection // Bytes is checked only when set
		capped []string
		absent []string
		limits string
		// anyCapped: whether the capped line shows depends on timing
		anyCapped bool
	}{
		{
			name:   "defaults: /proc/net/nf_conntrack only",
			want:   map[string]snippetSection{DumpConntrackProc: full(305)},
			absent: []string{DumpIPVSConn},
			limits: "count 305\n",
		},
		{
			name: "conntrack -L as well, both families",
			opts: ConntrackOptions{AlwaysList: true},
			want: map[string]snippetSection{DumpConntrackProc: full(305), DumpConntrackList: full(300), DumpConntrackList6: full(5)},
		},
		{
			name:   "no /proc/net/nf_conntrack: conntrack -L instead",
			env:    []string{"ct_proc=/nonexistent/nf_conntrack"},
			want:   map[string]snippetSection{DumpConntrackList: full(300), DumpConntrackList6: full(5)},
			absent: []string{DumpConntrackProc},
		},
		{
			name:   "capped with head: exactly MaxBytes, cut inside a line",
			opts:   ConntrackOptions{MaxBytes: 10000, AlwaysList: true},
			capped: []string{DumpConntrackProc, DumpConntrackList},
			want: map[string]snippetSection{
				DumpConntrackProc: {Present: true, Entries: someLines, Lines: someLines, Bytes: 10000, Cut: true},
				DumpConntrackList: {Present: true, Entries: someLines, Lines: someLines, Bytes: 10000, Cut: true},
				// 5 IPv6 lines fit
				DumpConntrackList6: full(5),
			},
		},
		{
			name:   "capped without head (kube-proxy's image): grep -m lines",
			opts:   ConntrackOptions{MaxBytes: 20 * conntrackLineBytes},
			noHead: true,
			capped: []string{DumpConntrackProc},
			want:   map[string]snippetSection{DumpConntrackProc: full(20)},
		},
		{
			name:   "without head, conntrack -L through a pipe: the cap holds",
			opts:   ConntrackOptions{MaxBytes: 20 * conntrackLineBytes},
			env:    []string{"ct_proc=/nonexistent/nf_conntrack"},
			noHead: true,
			// What grep read past its last line is lost: whether the
			// capped line shows depends on how much conntrack had written
			// when grep stopped. The section has exactly the cap.
			anyCapped: true,
			want:      map[string]snippetSection{DumpConntrackList: full(20), DumpConntrackList6: full(5)},
			absent:    []string{DumpConntrackProc},
		},
		{
			name:   "only a shell: the shell's read, capped the same way",
			opts:   ConntrackOptions{MaxBytes: 20 * conntrackLineBytes},
			path:   []string{"sh"},
			capped: []string{DumpConntrackProc},
			want:   map[string]snippetSection{DumpConntrackProc: full(20)},
			// a /proc/sys file cannot be read with the shell alone
			absent: []string{DumpConntrackLimits, DumpIPVSConn},
		},
		{
			name: "IPVS table",
			env:  []string{"ct_ipvs=" + mustAbs(t, "../../trace/conntrack/testdata/ipvs/ip_vs_conn")},
			want: map[string]snippetSection{DumpConntrackProc: full(305), DumpIPVSConn: {Present: true, Entries: 13, Lines: 14}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if tt.noHead {
				env = append(env, "PATH="+minimalPath(t, true))
			}
			if tt.path != nil {
				env = append(env, "PATH="+pathOf(t, tt.path...))
			}
			stdout, stderr := runSnippet(t, ns, tt.opts, env...)
			got, res := sections(t, stdout, stderr)
			for name, s := range got {
				w := tt.want[name]
				if w.Bytes == 0 {
					s.Bytes = 0
				}
				// a cut section holds as many entries as whole lines
				if w.Lines == someLines && s.Lines > 0 && s.Entries == s.Lines {
					s.Entries, s.Lines = someLines, someLines
				}
				got[name] = s
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sections (-want +got):\n%s\nstdout markers:\n%s", diff, markers(stdout))
			}
			if diff := cmp.Diff(tt.capped, ConntrackCapped(stdout)); diff != "" && !tt.anyCapped {
				t.Errorf("capped sections (-want +got):\n%s", diff)
			}
			for _, name := range tt.absent {
				if !bytes.Contains(stdout, []byte(Marker+" absent "+name+"\n")) {
					t.Errorf("%s not reported absent", name)
				}
			}
			if tt.limits != "" {
				d, ok := res.Dump(DumpConntrackLimits)
				if !ok || !strings.HasPrefix(string(d.Data), tt.limits) || !strings.Contains(string(d.Data), "\nmax ") {
					t.Errorf("limits %q, want %q and a max", d.Data, tt.limits)
				}
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func markers(stdout []byte) string {
	var b strings.Builder
	for _, l := range strings.Split(string(stdout), "\n") {
		if strings.HasPrefix(l, Marker) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestConntrackCapped(t *testing.T) {
	out := sec(DumpConntrackProc, "a\n"+Marker+" capped "+DumpConntrackProc+"\n", 0) + Marker + " capped " + DumpConntrackProc + "\n" +
		sec(DumpConntrackList, "b", 0) + absent(DumpIPVSConn) + Marker + " capped " + DumpIPVSConn + "\n" +
		sec(DumpConntrackList6, "c", 0) + Marker + " capped " + DumpConntrackList6 + "\n"
	if diff := cmp.Diff([]string{DumpConntrackProc, DumpConntrackList6}, ConntrackCapped([]byte(out))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := ConntrackLineCap(0); got != DefaultConntrackMaxBytes/conntrackLineBytes {
		t.Errorf("ConntrackLineCap(0) = %d", got)
	}
	if got := ConntrackLineCap(1); got != 1 {
		t.Errorf("ConntrackLineCap(1) = %d", got)
	}
	if !IsConntrackSection(DumpConntrackList6) || IsConntrackSection(DumpIPTablesNFT) || IsConntrackSection("proxyMode") {
		t.Error("IsConntrackSection")
	}
}

// TestConntrackSnippetInsideScript runs the dump script as the debug pod
// does: the snippet's sections come out next to the rule dumps, stay out
// of the backend choice, and the iptables dumps carry rule counters.
func TestConntrackSnippetInsideScript(t *testing.T) {
	requireNetnsTools(t, "iptables-nft-restore", "iptables-nft-save")
	ns := newConntrackNetns(t, 3, 1)
	// kube-proxy's rules use its nfacct counters (as newNetns sets up)
	for _, c := range []string{"ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts", "localhost_nps_total_pkts"} {
		run(t, nil, "ip", "netns", "exec", ns, "nfacct", "add", c)
	}
	load(t, ns, iptNFTFixture, "iptables-nft-restore")
	var out, errOut bytes.Buffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, ScriptCommand...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, errOut.Bytes())
	}
	res := ParseOutput("node-1", out.Bytes(), errOut.Bytes())
	if res.Backend != BackendIPTablesNFT || !slices.Equal(res.Chosen, []string{DumpIPTablesNFT}) {
		t.Errorf("backend %s, chosen %v", res.Backend, res.Chosen)
	}
	for _, w := range res.Warnings {
		if strings.Contains(w.Message, "ended early") || strings.Contains(w.Message, "conntrack") {
			t.Errorf("warning %q", w)
		}
	}
	if d, _ := res.Dump(DumpIPTablesNFT); !bytes.Contains(d.Data, []byte("\n[0:0] -A KUBE-SERVICES ")) {
		t.Errorf("iptables-nft-save has no rule counters (-c):\n%.300s", d.Data)
	}
	for _, name := range ConntrackDumps {
		if d, ok := res.Dump(name); ok && d.Family != "" {
			t.Errorf("%s has family %q", name, d.Family)
		}
	}
	// Observing off: no counters, no connection tables. (New buffers: res's
	// sections point into the old ones.)
	out, errOut = bytes.Buffer{}, bytes.Buffer{}
	cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, CommandFor(ScriptOptions{})...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, errOut.Bytes())
	}
	off := ParseOutput("node-1", out.Bytes(), errOut.Bytes())
	if d, _ := off.Dump(DumpIPTablesNFT); bytes.Contains(d.Data, []byte("[0:0] -A")) || slices.ContainsFunc(off.Dumps, func(d Dump) bool { return IsConntrackSection(d.Name) }) {
		t.Errorf("--observe=false collected counters or connection tables: %v", summarize(off).Dumps)
	}
	// A cap below the table's size: the section is cut and a warning says so.
	out, errOut = bytes.Buffer{}, bytes.Buffer{}
	cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, CommandFor(ScriptOptions{Observe: true, Conntrack: ConntrackOptions{MaxBytes: 100}})...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, errOut.Bytes())
	}
	capped := ParseOutput("node-1", out.Bytes(), errOut.Bytes())
	if !slices.ContainsFunc(capped.Warnings, func(w trace.Warning) bool {
		return w.Code == trace.CodeConntrackCapped && strings.Contains(w.Message, DumpConntrackProc)
	}) {
		t.Errorf("capped: warnings %q", capped.Warnings)
	}
	d, ok := res.Dump(DumpConntrackProc)
	if !ok {
		t.Fatalf("no %s section; markers:\n%s", DumpConntrackProc, markers(out.Bytes()))
	}
	n := 0
	if _, err := conntrack.Scan(bytes.NewReader(d.Data), func(*conntrack.Entry) error { n++; return nil }); err != nil || n != 4 {
		t.Errorf("%d entries (%v), want 4", n, err)
	}
}
