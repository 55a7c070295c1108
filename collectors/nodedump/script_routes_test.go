package nodedump

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// The node layouts and what they recorded live with the package that reads
// them.
const routesTestdata = "../../trace/routes/testdata"

func TestRoutesScriptNames(t *testing.T) {
	if diff := cmp.Diff(routes.SectionNames, RouteDumps); diff != "" {
		t.Errorf("RouteDumps and trace/routes.SectionNames differ (-routes +debugpod):\n%s", diff)
	}
	for _, name := range RouteDumps {
		if strings.Count(RoutesScript, " "+name+" ") == 0 && !strings.Contains(RoutesScript, " "+name+"\n") {
			t.Errorf("RoutesScript never prints section %s", name)
		}
	}
	if _, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command("sh", "-n", "-c", RoutesScript).CombinedOutput(); err != nil {
			t.Fatalf("sh -n: %v\n%s", err, out)
		}
	}
}

// routeGetCase is one packet asked of the kernel, and its answers.
type routeGetCase struct {
	Dst  string `json:"dst"`
	Src  string `json:"src,omitempty"`
	IIF  string `json:"iif,omitempty"`
	Mark uint32 `json:"mark,omitempty"`
	// Get is `ip route get …`'s output, FibMatch `ip -d route get
	// fibmatch …`'s (each stdout and stderr together).
	Get      string `json:"get"`
	FibMatch string `json:"fibmatch"`
}

func (c routeGetCase) args() []string {
	a := []string{c.Dst}
	if c.Src != "" {
		a = append(a, "from", c.Src)
	}
	if c.IIF != "" {
		a = append(a, "iif", c.IIF)
	}
	if c.Mark != 0 {
		a = append(a, "mark", fmt.Sprintf("0x%x", c.Mark))
	}
	return a
}

// layouts are the node layouts under trace/routes/testdata/layouts.
func layouts(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(routesTestdata, "layouts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".sh"); name != "lib" {
			out = append(out, name)
		}
	}
	return out
}

// buildLayout runs a layout script with a namespace prefix unique to this
// test and returns the node's namespace; every namespace it made is
// deleted when the test ends.
func buildLayout(t *testing.T, name string) string {
	t.Helper()
	prefix := fmt.Sprintf("h13-%d-%s-", os.Getpid()%100000, name)
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if ns, _, _ := strings.Cut(line, " "); strings.HasPrefix(ns, prefix) {
				if o, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
					t.Errorf("ip netns delete %s: %v\n%s", ns, err, o)
				}
			}
		}
	})
	script := filepath.Join(routesTestdata, "layouts", name+".sh")
	if out, err := exec.Command("sh", script, prefix).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return prefix + "node"
}

// runRoutesScript runs RoutesScript in ns with PATH set to path ("" keeps
// the test's), as the debug pod runs it.
func runRoutesScript(t *testing.T, ns, path string) (stdout, stderr []byte) {
	t.Helper()
	args := []string{"netns", "exec", ns}
	if path != "" {
		args = append(args, "env", "-i", "PATH="+path)
	}
	args = append(args, "sh", "-c", RoutesScript)
	cmd := exec.Command("ip", args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("routes script: %v\n%s", err, e.Bytes())
	}
	return o.Bytes(), e.Bytes()
}

// sectionsOf splits the script's output into trace/routes sections,
// checking that each section ended with rc=0 and printed no stderr.
func sectionsOf(t *testing.T, stdout, stderr []byte) ([]routes.Section, []string) {
	t.Helper()
	secs, order, _, _ := splitStdout(stdout)
	errs := splitStderr(stderr)
	var out []routes.Section
	for _, name := range order {
		s := secs[name]
		if s.cut || s.exitCode != 0 || errs[name] != "" {
			t.Errorf("section %s: cut=%v rc=%d stderr=%q", name, s.cut, s.exitCode, errs[name])
		}
		out = append(out, routes.Section{Name: name, Data: s.data})
	}
	var absent []string
	for _, line := range strings.Split(string(stdout), "\n") {
		if name, ok := strings.CutPrefix(line, Marker+" absent "); ok {
			absent = append(absent, name)
		}
	}
	return out, absent
}

// shAndCat is a PATH holding only sh and cat, the kube-proxy image's
// tools the script relies on without ip.
func shAndCat(t *testing.T) string {
	dir := t.TempDir()
	for _, tool := range []string{"sh", "cat"} {
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

// queries are the packets asked of each layout: every route's first,
// second, middle and last address and gateway in every table, every
// interface address, a few outside addresses; then from each pod (the
// /32 routes into veths, the first host of a bridge's subnet) in through
// its device, and with each fwmark a rule selects on.
func queries(s *routes.Snapshot) []routeGetCase {
	seen := map[string]bool{}
	var dsts []netip.Addr
	addDst := func(a netip.Addr) {
		if a.IsValid() && !a.IsMulticast() && !a.IsLinkLocalUnicast() && !a.IsUnspecified() && !seen[a.String()] {
			seen[a.String()] = true
			dsts = append(dsts, a)
		}
	}
	for _, r := range s.Routes {
		p := r.Dst
		addDst(p.Addr())
		addDst(p.Addr().Next())
		last := lastAddr(p)
		addDst(last)
		addDst(last.Prev())
		addDst(mid(p))
		addDst(r.Via)
	}
	for _, ifc := range s.Interfaces {
		for _, a := range ifc.Addrs {
			addDst(a.Addr())
		}
	}
	for _, a := range []string{"8.8.8.8", "203.0.113.7", "127.0.0.5", "10.250.0.1", "2001:db8::1"} {
		addDst(netip.MustParseAddr(a))
	}
	var out []routeGetCase
	for _, d := range dsts {
		out = append(out, routeGetCase{Dst: d.String()})
	}
	type src struct {
		addr netip.Addr
		dev  string
	}
	var srcs []src
	for _, r := range s.Routes {
		if r.Table != routes.TableMain || r.Type != routes.Unicast || r.Via.IsValid() || r.Dev == "" || !r.Dst.Addr().Is4() {
			continue
		}
		ifc, ok := s.Interface(r.Dev)
		if !ok {
			continue
		}
		switch {
		case r.Dst.IsSingleIP() && ifc.Kind == routes.KindVeth:
			srcs = append(srcs, src{r.Dst.Addr(), r.Dev})
		case ifc.Kind == routes.KindBridge && r.Dst.Bits() < 31:
			srcs = append(srcs, src{r.Dst.Addr().Next().Next(), r.Dev})
		}
	}
	for _, sr := range srcs {
		for _, d := range dsts {
			if d.Is4() && d != sr.addr {
				out = append(out, routeGetCase{Dst: d.String(), Src: sr.addr.String(), IIF: sr.dev})
			}
		}
	}
	for _, r := range s.Rules4 {
		if r.HasMark {
			for _, d := range dsts {
				if d.Is4() {
					out = append(out, routeGetCase{Dst: d.String(), Mark: r.FWMark})
				}
			}
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func mid(p netip.Prefix) netip.Addr {
	if p.Bits() >= p.Addr().BitLen()-1 {
		return p.Addr()
	}
	b := p.Addr().AsSlice()
	i := p.Bits()
	b[i/8] |= 0x80 >> (i % 8)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// askKernel fills each case with the kernel's answers in ns.
func askKernel(t *testing.T, ns string, cases []routeGetCase) {
	t.Helper()
	for i := range cases {
		c := &cases[i]
		fam := "-4"
		if strings.Contains(c.Dst, ":") {
			fam = "-6"
		}
		get, _ := exec.Command("ip", append([]string{"-n", ns, fam, "route", "get"}, c.args()...)...).CombinedOutput()
		fib, _ := exec.Command("ip", append([]string{"-n", ns, fam, "-d", "route", "get", "fibmatch"}, c.args()...)...).CombinedOutput()
		c.Get, c.FibMatch = string(get), string(fib)
	}
}

// TestRoutesScriptLayouts builds each node layout in network namespaces,
// runs RoutesScript in it (with ip, and with only sh and cat), checks that
// every section comes back and parses, and holds routes.Lookup on the
// parsed output to the kernel's `ip route get` for every query. With
// -update it records the outputs under trace/routes/testdata.
func TestRoutesScriptLayouts(t *testing.T) {
	requireNetnsTools(t, "iptables-save", "ipset")
	for _, name := range layouts(t) {
		t.Run(name, func(t *testing.T) {
			ns := buildLayout(t, name)
			stdout, stderr := runRoutesScript(t, ns, "")
			secs, absent := sectionsOf(t, stdout, stderr)
			if len(absent) > 0 {
				t.Errorf("sections absent with ip installed: %v", absent)
			}
			snap, err := routes.Parse(secs)
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Warnings) > 0 {
				t.Errorf("warnings: %q", snap.Warnings)
			}
			if diff := cmp.Diff(routes.SectionNames, snap.Sections); diff != "" {
				t.Errorf("sections read (-want +got):\n%s", diff)
			}
			for _, ifc := range snap.Interfaces {
				if ifc.KindFrom != routes.FromIP || ifc.Kind == routes.KindUnknown {
					t.Errorf("interface %s: kind %q from %q", ifc.Name, ifc.Kind, ifc.KindFrom)
				}
			}

			// Without ip: the proc and sysfs sections only.
			noIPOut, noIPErr := runRoutesScript(t, ns, shAndCat(t))
			noIPSecs, noIPAbsent := sectionsOf(t, noIPOut, noIPErr)
			wantAbsent := []string{routes.SectionIPRoute, routes.SectionIP6Route, routes.SectionIPLink, routes.SectionIPAddr, routes.SectionIPRule, routes.SectionIP6Rule}
			if diff := cmp.Diff(wantAbsent, noIPAbsent); diff != "" {
				t.Errorf("sections absent without ip (-want +got):\n%s", diff)
			}
			noIP, err := routes.Parse(noIPSecs)
			if err != nil {
				t.Fatal(err)
			}
			checkSysfsKinds(t, snap, noIP)

			cases := queries(snap)
			askKernel(t, ns, cases)
			n4, n6 := checkCases(t, snap, cases)
			t.Logf("%s: %d IPv4 and %d IPv6 lookups agree with ip route get", name, n4, n6)
			checkWithoutIP(t, noIP, cases)

			if *update {
				ipt, err := exec.Command("ip", "netns", "exec", ns, "iptables-save").Output()
				if err != nil {
					t.Fatal(err)
				}
				sets, err := exec.Command("ip", "netns", "exec", ns, "ipset", "list", "-n").Output()
				if err != nil {
					t.Fatal(err)
				}
				js, err := json.MarshalIndent(cases, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				for file, data := range map[string][]byte{
					name + ".txt":           stdout,
					name + "-noip.txt":      noIPOut,
					name + ".routeget.json": append(js, '\n'),
					name + ".iptables":      ipt,
					name + ".ipsets":        sets,
				} {
					if err := os.WriteFile(filepath.Join(routesTestdata, file), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// checkSysfsKinds: what sysfs alone says of each interface agrees with ip
// -d link, except where sysfs cannot tell (a veth whose peer has its own
// index number is "virtual").
func checkSysfsKinds(t *testing.T, withIP, sysOnly *routes.Snapshot) {
	t.Helper()
	for _, ifc := range withIP.Interfaces {
		s, ok := sysOnly.Interface(ifc.Name)
		if !ok {
			t.Errorf("sysfs lacks interface %s", ifc.Name)
			continue
		}
		if s.Kind != ifc.Kind && s.Kind != routes.KindVirtual {
			t.Errorf("interface %s: sysfs says %s, ip -d link %s", ifc.Name, s.Kind, ifc.Kind)
		}
		if s.Master != ifc.Master || s.Index != ifc.Index {
			t.Errorf("interface %s: sysfs master %q index %d, ip %q %d", ifc.Name, s.Master, s.Index, ifc.Master, ifc.Index)
		}
		for _, a := range s.Addrs {
			if a.Addr().Is4() {
				t.Errorf("interface %s: without ip, IPv4 address %s was placed on it", ifc.Name, a)
			} else if !slices.Contains(ifc.Addrs, a) {
				t.Errorf("interface %s: without ip, address %s; ip says %v", ifc.Name, a, ifc.Addrs)
			}
		}
	}
	for _, a := range withIP.LocalAddrs() {
		if !sysOnly.IsLocal(a) {
			t.Errorf("without ip, %s is not known as a local address", a)
		}
	}
}

// checkWithoutIP holds the lookups of a node that gave only /proc and
// /sys to the kernel where they can agree: the node must have no policy
// rules of its own (else the snapshot must say that it assumed none), and
// only the kernel's verdict is compared for local and broadcast
// destinations (fib_trie has no devices).
func checkWithoutIP(t *testing.T, noIP *routes.Snapshot, cases []routeGetCase) {
	t.Helper()
	if len(noIP.Tables) > 2 {
		if !slices.ContainsFunc(noIP.Warnings, func(w string) bool { return strings.Contains(w, "policy rules probably") }) {
			t.Errorf("without ip, tables %v but no warning about policy rules: %q", noIP.Tables, noIP.Warnings)
		}
		return
	}
	n := 0
	for _, c := range cases {
		q := routes.Query{Dst: netip.MustParseAddr(c.Dst), IIF: c.IIF, Mark: c.Mark}
		if c.Src != "" {
			q.Src = netip.MustParseAddr(c.Src)
		}
		get, err := routes.ParseRouteGet([]byte(c.Get))
		if err != nil {
			t.Fatal(err)
		}
		res := noIP.Lookup(q)
		if q.Dst.Is6() && res.Verdict == routes.VerdictUnreachable && get.Verdict().Dropped() {
			n++ // /proc/net/ipv6_route shows every reject route alike
			continue
		}
		if v := get.Verdict(); v == routes.VerdictLocal || v == routes.VerdictBroadcast || get.Err != "" {
			if v != res.Verdict && get.Err != res.Errno {
				t.Errorf("without ip, ip route get %s: kernel %s %q, lookup %s", strings.Join(c.args(), " "), v, get.Err, res.Verdict)
			}
			n++
			continue
		}
		if err := routes.CompareRouteGet(res, get, nil); err != nil {
			t.Errorf("without ip, ip route get %s: %v", strings.Join(c.args(), " "), err)
		}
		n++
	}
	t.Logf("without ip: %d lookups agree with ip route get", n)
}

// checkCases compares Lookup with each recorded kernel answer.
func checkCases(t *testing.T, snap *routes.Snapshot, cases []routeGetCase) (n4, n6 int) {
	t.Helper()
	for _, c := range cases {
		if err := compareCase(snap, c); err != nil {
			t.Errorf("ip route get %s: %v", strings.Join(c.args(), " "), err)
			continue
		}
		if strings.Contains(c.Dst, ":") {
			n6++
		} else {
			n4++
		}
	}
	return n4, n6
}

func compareCase(snap *routes.Snapshot, c routeGetCase) error {
	q := routes.Query{Dst: netip.MustParseAddr(c.Dst), IIF: c.IIF, Mark: c.Mark}
	if c.Src != "" {
		q.Src = netip.MustParseAddr(c.Src)
	}
	get, err := routes.ParseRouteGet([]byte(c.Get))
	if err != nil {
		return err
	}
	var fib *routes.Route
	if get.Err == "" && !strings.HasPrefix(c.FibMatch, "RTNETLINK answers:") && q.Dst != netip.MustParseAddr("255.255.255.255") {
		// (the kernel matches no FIB entry for a limited broadcast
		// coming in, and reports the default route for one going out.)
		rs, ws, err := routes.ParseIPRoute([]byte(c.FibMatch), 0)
		if err != nil || len(ws) > 0 || len(rs) != 1 {
			return fmt.Errorf("fibmatch %q: %v %v", c.FibMatch, err, ws)
		}
		fib = &rs[0]
	}
	return routes.CompareRouteGet(snap.Lookup(q), get, fib)
}
