package ipset

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var prefixEqual = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func mustParseFile(t *testing.T, name string) *Dump {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// The same kernel state printed by `ipset save` and `ipset list` (real
// output, hack/ipset-testdata.sh) must give the same sets and members.
func TestSaveAndListAgree(t *testing.T) {
	save := mustParseFile(t, "testdata/save.txt")
	list := mustParseFile(t, "testdata/list.txt")
	if save.Format != FormatSave || list.Format != FormatList {
		t.Fatalf("formats: %q %q", save.Format, list.Format)
	}
	if len(save.Sets) < 15 {
		t.Fatalf("only %d sets in save.txt", len(save.Sets))
	}
	ignore := cmpopts.IgnoreFields(Set{}, "Line", "Revision", "References", "DeclaredEntries")
	opts := cmp.Options{ignore, cmpopts.IgnoreFields(Member{}, "Line"), cmpopts.IgnoreUnexported(Set{}), prefixEqual}
	if diff := cmp.Diff(save.Sets, list.Sets, opts); diff != "" {
		t.Errorf("save and list differ (-save +list):\n%s", diff)
	}
	for _, s := range list.Sets {
		if s.DeclaredEntries != len(s.Members) {
			t.Errorf("%s: declared %d entries, parsed %d", s.Name, s.DeclaredEntries, len(s.Members))
		}
	}
	if len(list.Warnings) != 0 || len(save.Warnings) != 0 {
		t.Errorf("warnings: %q %q", save.Warnings, list.Warnings)
	}
	terse := mustParseFile(t, "testdata/terse.txt")
	if len(terse.Sets) != len(list.Sets) || terse.Len() != 0 {
		t.Errorf("terse list: %d sets, %d members", len(terse.Sets), terse.Len())
	}
	for i, s := range terse.Sets {
		if s.DeclaredEntries != len(list.Sets[i].Members) {
			t.Errorf("terse %s: declared %d entries, list has %d", s.Name, s.DeclaredEntries, len(list.Sets[i].Members))
		}
	}
}

func TestParseModel(t *testing.T) {
	d := mustParseFile(t, "testdata/save.txt")
	src := d.Set("KUBE-LOAD-BALANCER-SOURCE-CIDR")
	if src == nil {
		t.Fatal("no KUBE-LOAD-BALANCER-SOURCE-CIDR")
	}
	wantDims := []Kind{KindIP, KindPort, KindNet}
	if diff := cmp.Diff(wantDims, src.Type.Dims()); diff != "" {
		t.Error(diff)
	}
	if src.Family != FamilyInet || src.HashSize != 1024 || src.MaxElem != 65536 || src.BucketSize != 12 || src.InitVal == "" {
		t.Errorf("options: %+v", src.Options)
	}
	var got []Part
	for _, m := range src.Members {
		if m.Text == "203.0.113.10,tcp:80,198.51.100.0/24" {
			got = m.Elem
		}
	}
	want := []Part{
		{Kind: KindIP, Prefix: netip.MustParsePrefix("203.0.113.10/32")},
		{Kind: KindPort, Proto: ProtoTCP, Port: 80},
		{Kind: KindNet, Prefix: netip.MustParsePrefix("198.51.100.0/24")},
	}
	if diff := cmp.Diff(want, got, prefixEqual); diff != "" {
		t.Errorf("element (-want +got):\n%s", diff)
	}

	kr := d.Set("KUBE-ROUTER-SRC")
	if !kr.HasTimeout || kr.Timeout != 3600 || !kr.Counters || !kr.Comment {
		t.Errorf("KUBE-ROUTER-SRC options: %+v", kr.Options)
	}
	var nomatch, commented int
	for _, m := range kr.Members {
		if m.NoMatch {
			nomatch++
		}
		if m.Comment != "" {
			commented++
		}
		if !m.HasTimeout {
			t.Errorf("%s: no timeout", m.Text)
		}
	}
	if nomatch != 1 || commented != 2 {
		t.Errorf("KUBE-ROUTER-SRC: %d nomatch, %d comments", nomatch, commented)
	}
	weave := d.Set("weave-k?Z;25^M}|1s7P3|H9i;*;MhG")
	if weave == nil || len(weave.Members) != 2 || !strings.HasPrefix(weave.Members[0].Comment, "namespace: default, pod: ") {
		t.Errorf("weave set: %+v", weave)
	}
	if hc := d.Set("KUBE-HEALTH-CHECK-NODE-PORT"); hc.Range != "0-65535" || hc.Family != "" {
		t.Errorf("bitmap:port: %+v", hc)
	}
	if l := d.Set("ANY-NODEPORT"); l.Size != 8 || len(l.Members) != 2 || l.Members[0].Elem[0].Name != "KUBE-NODE-PORT-TCP" {
		t.Errorf("list:set: %+v", l)
	}
	if m := d.Set("MASKED"); m.Netmask != 24 || m.Members[0].Text != "10.20.30.0" {
		t.Errorf("netmask set: %+v", m)
	}
	if e := d.Set("EMPTY"); e == nil || len(e.Members) != 0 {
		t.Errorf("empty set: %+v", e)
	}
}

// TestContainsMatchesKernel replays every probe hack/ipset-testdata.sh sent
// through a real `-m set --match-set` rule: the package must answer what the
// kernel did.
func TestContainsMatchesKernel(t *testing.T) {
	for _, file := range []string{"testdata/save.txt", "testdata/list.txt"} {
		d := mustParseFile(t, file)
		f, err := os.Open("testdata/probes-kernel.tsv")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			c := strings.Split(line, "\t")
			if len(c) != 8 {
				t.Fatalf("bad probe line %q", line)
			}
			n++
			sport, _ := strconv.Atoi(c[4])
			dport, _ := strconv.Atoi(c[6])
			p := Packet{
				Src: netip.MustParseAddr(c[3]), Dst: netip.MustParseAddr(c[5]), Protocol: c[2],
				SrcPort: uint16(sport), DstPort: uint16(dport), OutIface: "probe0",
			}
			if c[2] == "icmp" {
				p.ICMPType = 8 // the probe is an echo request
			}
			dirs, err := ParseDirs(c[1])
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Contains(c[0], p, dirs)
			if err != nil {
				t.Errorf("%s: %v", line, err)
				continue
			}
			// "rejected": iptables refused the rule (an inet set in an
			// ip6tables rule); such a packet is in no set.
			if want := c[7] == "match"; got.Matched != want {
				t.Errorf("%s %s: kernel said %s, Contains matched=%v (%+v)", file, strings.Join(c[:7], " "), c[7], got.Matched, got)
			}
		}
		f.Close()
		if n < 50 {
			t.Fatalf("only %d probes", n)
		}
	}
}

func TestContainsResult(t *testing.T) {
	d := mustParseFile(t, "testdata/save.txt")
	dst := []Dir{Dst}
	r, err := d.Contains("cali40masq-ipam-pools", Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.244.7.4"), Protocol: "tcp"}, dst)
	if err != nil || r.Matched || r.Member == nil || !r.Member.NoMatch || r.Member.Text != "10.244.7.0/24" {
		t.Errorf("nomatch result: %+v %v", r, err)
	}
	r, err = d.Contains("ANY-NODEPORT", Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Protocol: "udp", DstPort: 30053}, dst)
	if err != nil || !r.Matched || r.Set != "KUBE-NODE-PORT-LOCAL-UDP" {
		t.Errorf("list:set result: %+v %v", r, err)
	}
	if _, err := d.Contains("NOPE", Packet{}, dst); !errors.Is(err, ErrUnknownSet) {
		t.Errorf("unknown set: %v", err)
	}
	r, err = d.Contains("KUBE-CLUSTER-IP", Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.96.0.1"), Protocol: "tcp", DstPort: 443}, dst)
	if err != nil || r.Matched || !strings.Contains(r.Why, "1 direction flags for a 2-dimension") {
		t.Errorf("too few flags: %+v %v", r, err)
	}
	if _, err := d.Contains("NET-IFACE", Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Protocol: "tcp"}, []Dir{Dst, Src}); err == nil {
		t.Error("hash:net,iface without an input interface: want an error")
	}
}

func TestParseDirs(t *testing.T) {
	got, err := ParseDirs("dst,dst,src")
	if err != nil || !cmp.Equal(got, []Dir{Dst, Dst, Src}) {
		t.Errorf("got %v %v", got, err)
	}
	for _, bad := range []string{"", "dst,", "up", "src,src,src,src,src,src,src"} {
		if _, err := ParseDirs(bad); err == nil {
			t.Errorf("ParseDirs(%q): want an error", bad)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"neither format", "hello\n", "not ipset save or ipset list output"},
		{"add before create", "add X 1.2.3.4\n", "before its create line"},
		{"unknown type", "create X hash:foo\n", "unknown type"},
		{"long name", "create " + strings.Repeat("A", 32) + " hash:ip\n", "longer than 31"},
		{"bad element", "create X hash:ip,port family inet\nadd X 1.2.3.4\n", "want 2 comma-separated parts"},
		{"family mismatch", "create X hash:ip family inet\nadd X 2001:db8::1\n", "inet6 address in a family inet set"},
		{"bad port", "create X hash:ip,port\nadd X 1.2.3.4,tcp:99999\n", "bad port"},
		{"nomatch on hash:ip", "create X hash:ip\nadd X 1.2.3.4 nomatch\n", "no net dimension"},
		{"host bits", "create X hash:net\nadd X 10.0.0.1/8\n", "host bits"},
		{"twice", "create X hash:ip\ncreate X hash:ip\n", "declared twice"},
		{"unterminated comment", "create X hash:ip comment\nadd X 1.2.3.4 comment \"abc\n", "unterminated"},
		{"list without type", "Name: X\nMembers:\n", "no Type line"},
		{"list member outside", "Name: X\nType: hash:ip\nHeader: family inet\nMembers:\n1.2.3.4\n\nbogus\n", "unexpected line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("create X hash:ip family inet\n")
	for i := 0; i < 20; i++ {
		b.WriteString("add X 10.0.0." + strconv.Itoa(i) + "\n")
	}
	lim := DefaultLimits
	lim.MaxMembers = 10
	if _, err := ParseWithLimits(strings.NewReader(b.String()), lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("members: %v", err)
	}
	lim = DefaultLimits
	lim.MaxLineBytes = 16
	if _, err := ParseWithLimits(strings.NewReader(b.String()), lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("line: %v", err)
	}
	lim = DefaultLimits
	lim.MaxSets = 1
	if _, err := ParseWithLimits(strings.NewReader("create A hash:ip\ncreate B hash:ip\n"), lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("sets: %v", err)
	}
}

func TestEmptyAndDetect(t *testing.T) {
	d, err := Parse(strings.NewReader("\n\n"))
	if err != nil || len(d.Sets) != 0 {
		t.Fatalf("empty: %v %v", d, err)
	}
	for in, want := range map[string]Format{"\ncreate X hash:ip\n": FormatSave, "Name: X\n": FormatList, "add X 1": FormatSave} {
		if f, ok := Detect([]byte(in)); !ok || f != want {
			t.Errorf("Detect(%q) = %q %v", in, f, ok)
		}
	}
	if _, ok := Detect([]byte("*nat\n")); ok {
		t.Error("Detect took an iptables dump for ipsets")
	}
}

// A set with many members goes through the index; it must answer as a scan.
func TestIndexAgreesWithScan(t *testing.T) {
	var b strings.Builder
	b.WriteString("create N hash:net family inet\n")
	for i := 0; i < 64; i++ {
		b.WriteString("add N 10." + strconv.Itoa(i) + ".0.0/16\n")
	}
	b.WriteString("add N 10.3.7.0/24 nomatch\nadd N 10.3.7.128/25\nadd N 10.0.0.0/8\n")
	d, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	s := d.Set("N")
	if s.index == nil {
		t.Fatal("no index built")
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{{"10.3.7.5", false}, {"10.3.7.200", true}, {"10.3.8.1", true}, {"10.200.0.1", true}, {"11.0.0.1", false}} {
		r, err := s.Contains(Packet{Dst: netip.MustParseAddr(tc.addr), Protocol: "tcp"}, []Dir{Dst})
		if err != nil || r.Matched != tc.want {
			t.Errorf("%s: %+v %v, want %v", tc.addr, r, err, tc.want)
		}
		ix := s.index
		s.index = nil
		r2, _ := s.Contains(Packet{Dst: netip.MustParseAddr(tc.addr), Protocol: "tcp"}, []Dir{Dst})
		s.index = ix
		if r2.Matched != r.Matched || r2.Member != r.Member {
			t.Errorf("%s: index %+v, scan %+v", tc.addr, r, r2)
		}
	}
}

func TestHas(t *testing.T) {
	d := mustParseFile(t, "testdata/save.txt")
	for _, tc := range []struct {
		set, elem string
		want      bool
	}{
		{"KUBE-CLUSTER-IP", "10.96.0.1,tcp:443", true},
		{"KUBE-CLUSTER-IP", "10.96.0.1,443", true}, // tcp is ipset's default
		{"KUBE-CLUSTER-IP", "10.96.0.1,udp:443", false},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "203.0.113.10,tcp:80,198.51.100.0/24", true},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", "203.0.113.10,tcp:80,198.51.100.7", false}, // matched by a packet, but not an element
		{"KUBE-NODE-PORT-TCP", "30080", true},
		{"cali40masq-ipam-pools", "10.244.7.0/24", true},
	} {
		got, err := d.Set(tc.set).Has(tc.elem)
		if err != nil || got != tc.want {
			t.Errorf("%s has %s: %v %v, want %v", tc.set, tc.elem, got, err, tc.want)
		}
	}
	if _, err := d.Set("KUBE-CLUSTER-IP").Has("10.96.0.1"); err == nil {
		t.Error("an element without its port: want an error")
	}
}
