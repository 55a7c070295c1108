package ipvs_test

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs/internal/ipvsfmt"
)

var addrEqual = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// ignoreLines drops where an element was read: the same table printed in
// two forms has different line numbers.
var ignoreLines = cmp.Options{
	cmpopts.IgnoreFields(ipvs.VirtualServer{}, "Line"),
	cmpopts.IgnoreFields(ipvs.RealServer{}, "Line"),
	addrEqual,
}

func parseFile(t *testing.T, name string) *ipvs.Table {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := ipvs.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tab
}

// TestPublishedOutputs parses tables people posted from real nodes and
// prints them back with ipvsfmt: every line must come out byte for byte,
// except the trailing padding some posters' editors stripped.
func TestPublishedOutputs(t *testing.T) {
	for _, tc := range []struct {
		file     string
		format   ipvs.Format
		services int
		reals    int
		// exact is how many lines must match including trailing spaces
		exact int
	}{
		{"opsnull-251-ipvsadm-Ln.txt", ipvs.FormatList, 7, 14, 23},
		{"community-692-ipvsadm-Ln.txt", ipvs.FormatList, 1, 1, 4},
		{"website-8652-ipvsadm-Ln.txt", ipvs.FormatList, 1, 3, 3},
		{"blog-kubeproxy-ipvsadm-Ln.txt", ipvs.FormatList, 34, 47, 83},
		{"blog-lvs-fwm-proc-net-ip_vs.txt", ipvs.FormatProc, 1, 2, 3},
		{"blog-lvs-fwm-ipvsadm-L.txt", ipvs.FormatList, 1, 2, 4},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile("testdata/published/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := ipvs.Detect(raw); !ok || f != tc.format {
				t.Errorf("Detect = %q %v, want %q", f, ok, tc.format)
			}
			tab := parseFile(t, "testdata/published/"+tc.file)
			if tab.Format != tc.format {
				t.Errorf("format %q, want %q", tab.Format, tc.format)
			}
			reals := 0
			for _, v := range tab.Services {
				reals += len(v.Reals)
			}
			if len(tab.Services) != tc.services || reals != tc.reals {
				t.Errorf("%d services, %d real servers; want %d, %d", len(tab.Services), reals, tc.services, tc.reals)
			}
			if len(tab.Warnings) > 0 {
				t.Errorf("warnings: %q", tab.Warnings)
			}
			got := strings.Split(strings.TrimSuffix(ipvsfmt.String(tab.Format, tab), "\n"), "\n")
			want := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			if !strings.HasPrefix(want[0], "IP Virtual Server") {
				got = got[1:] // the poster left the version line out
			}
			if len(got) != len(want) {
				t.Fatalf("%d lines printed, %d published:\n%s", len(got), len(want), strings.Join(got, "\n"))
			}
			exact := 0
			for i := range want {
				switch {
				case got[i] == want[i]:
					exact++
				case strings.TrimRight(got[i], " ") == strings.TrimRight(want[i], " ") && len(want[i]) < len(got[i]):
					// the publication lost (some of) the trailing padding
				default:
					t.Errorf("line %d:\n got %q\nwant %q", i+1, got[i], want[i])
				}
			}
			if exact != tc.exact {
				t.Errorf("%d lines byte for byte, want %d", exact, tc.exact)
			}
		})
	}
}

func TestPublishedModel(t *testing.T) {
	tab := parseFile(t, "testdata/published/opsnull-251-ipvsadm-Ln.txt")
	v := tab.Lookup("tcp", netip.MustParseAddr("10.254.0.1"), 443)
	if v == nil {
		t.Fatal("no 10.254.0.1:443")
	}
	want := &ipvs.VirtualServer{
		Protocol: ipvs.TCP, Addr: netip.MustParseAddr("10.254.0.1"), Port: 443, Scheduler: "rr",
		Persistent: true, Timeout: 10800, NetmaskBits: 32,
		Reals: []*ipvs.RealServer{
			{Addr: netip.MustParseAddr("172.16.16.81"), Port: 6443, Forward: ipvs.Masq, Weight: 1},
			{Addr: netip.MustParseAddr("172.16.16.82"), Port: 6443, Forward: ipvs.Masq, Weight: 1},
		},
	}
	if diff := cmp.Diff(want, v, ignoreLines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c := parseFile(t, "testdata/published/community-692-ipvsadm-Ln.txt")
	if r := c.Services[0].Reals[0]; c.Services[0].Scheduler != "wlc" || r.ActiveConn != 1 || c.Services[0].Timeout != 10 {
		t.Errorf("community-692: %+v %+v", c.Services[0], r)
	}
}

// The same firewall-mark service printed by the kernel and by ipvsadm
// (which sorts real servers) is one model.
func TestProcAndListAgree(t *testing.T) {
	proc := parseFile(t, "testdata/published/blog-lvs-fwm-proc-net-ip_vs.txt")
	list := parseFile(t, "testdata/published/blog-lvs-fwm-ipvsadm-L.txt")
	for _, tab := range []*ipvs.Table{proc, list} {
		slices.SortFunc(tab.Services[0].Reals, func(a, b *ipvs.RealServer) int { return a.Addr.Compare(b.Addr) })
	}
	if diff := cmp.Diff(list.Services, proc.Services, ignoreLines); diff != "" {
		t.Errorf("(-list +proc):\n%s", diff)
	}
	if proc.LookupFWMark(1, false) == nil {
		t.Error("LookupFWMark(1) found nothing")
	}
}

// sample is a table with every feature the formats carry, for round trips.
func sample() *ipvs.Table {
	a := netip.MustParseAddr
	return &ipvs.Table{Services: []*ipvs.VirtualServer{
		{Protocol: ipvs.TCP, Addr: a("10.96.0.1"), Port: 443, Scheduler: "rr", Persistent: true, Timeout: 10800, NetmaskBits: 32,
			Reals: []*ipvs.RealServer{{Addr: a("192.168.49.2"), Port: 8443, Forward: ipvs.Masq, Weight: 1, ActiveConn: 3, InactConn: 12}}},
		{Protocol: ipvs.UDP, Addr: a("10.96.0.10"), Port: 53, Scheduler: "wrr", NetmaskBits: 32,
			Reals: []*ipvs.RealServer{
				{Addr: a("10.244.0.5"), Port: 53, Forward: ipvs.Masq, Weight: 1},
				{Addr: a("10.244.0.6"), Port: 53, Forward: ipvs.Masq, Weight: 0},
			}},
		{Protocol: ipvs.SCTP, Addr: a("192.168.49.2"), Port: 30001, Scheduler: "sh", Persistent: true, Timeout: 60, NetmaskBits: 24,
			Reals: []*ipvs.RealServer{{Addr: a("10.244.1.7"), Port: 9000, Forward: ipvs.Route, Weight: 5}}},
		{Protocol: ipvs.TCP, Addr: a("fd00:10:96::1"), Port: 443, Scheduler: "rr", IPv6: true, Persistent: true, Timeout: 10800, NetmaskBits: 128,
			Reals: []*ipvs.RealServer{{Addr: a("fd00:10:244::5"), Port: 6443, Forward: ipvs.Masq, Weight: 1}}},
		{Protocol: ipvs.UDP, Addr: a("2001:db8::1"), Port: 53, Scheduler: "lc", IPv6: true, Persistent: true, Timeout: 300, NetmaskBits: 64,
			Reals: []*ipvs.RealServer{{Addr: a("2001:db8:1::9"), Port: 53, Forward: ipvs.Tunnel, Weight: 2}}},
		{Protocol: ipvs.TCP, Addr: a("10.96.0.20"), Port: 80, Scheduler: "rr", NetmaskBits: 32},
		{FWMark: 7, Scheduler: "wlc", NetmaskBits: 32,
			Reals: []*ipvs.RealServer{{Addr: a("172.27.0.30"), Port: 80, Forward: ipvs.Masq, Weight: 1}}},
	}}
}

// Every form round-trips: print, parse, same model. The forms carry
// different facts (no connection counts in -Sn, no FWM protocol anywhere),
// so the comparison masks those.
func TestRoundTrip(t *testing.T) {
	for _, f := range []ipvs.Format{ipvs.FormatProc, ipvs.FormatList, ipvs.FormatSave} {
		t.Run(string(f), func(t *testing.T) {
			want := sample()
			text := ipvsfmt.String(f, want)
			got, err := ipvs.Parse(strings.NewReader(text))
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if got.Format != f {
				t.Errorf("format %q", got.Format)
			}
			opts := cmp.Options{ignoreLines}
			if f == ipvs.FormatSave {
				for _, v := range want.Services {
					for _, r := range v.Reals {
						r.ActiveConn, r.InactConn = 0, 0
					}
				}
			}
			if diff := cmp.Diff(want.Services, got.Services, opts); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, text)
			}
			if text2 := ipvsfmt.String(f, got); text2 != text {
				t.Errorf("second print differs:\n%s\n---\n%s", text, text2)
			}
		})
	}
}

// The kernel's IPv6 and persistent forms, which no publication showed,
// written out by hand from ip_vs_info_seq_show's format strings.
func TestProcFormatByHand(t *testing.T) {
	tab := sample()
	got := ipvsfmt.String(ipvs.FormatProc, tab)
	for _, line := range []string{
		"TCP  0A600001:01BB rr  persistent 10800 FFFFFFFF\n",
		"  -> C0A83102:20FB      Masq    1      3          12        \n",
		"UDP  0A60000A:0035 wrr  \n",
		"  -> 0AF40006:0035      Masq    0      0          0         \n",
		"SCTP  C0A83102:7531 sh  persistent 60 FFFFFF00\n",
		"  -> 0AF40107:2328      Route   5      0          0         \n",
		"TCP  [fd00:0010:0096:0000:0000:0000:0000:0001]:01BB rr persistent 10800 80000000\n",
		"  -> [fd00:0010:0244:0000:0000:0000:0000:0005]:192B      Masq    1      0          0         \n",
		"UDP  [2001:0db8:0000:0000:0000:0000:0000:0001]:0035 lc persistent 300 40000000\n",
		"TCP  0A600014:0050 rr  \n",
		"FWM  00000007 wlc \n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
	list := ipvsfmt.String(ipvs.FormatList, tab)
	for _, line := range []string{
		"TCP  10.96.0.1:443 rr persistent 10800\n",
		"SCTP 192.168.49.2:30001 sh persistent 60 mask 255.255.255.0\n",
		"UDP  [2001:db8::1]:53 lc persistent 300 mask 64\n",
		"  -> [2001:db8:1::9]:53           Tunnel  2      0          0         \n",
		"FWM  7 wlc\n",
	} {
		if !strings.Contains(list, line) {
			t.Errorf("missing %q in\n%s", line, list)
		}
	}
	save := ipvsfmt.String(ipvs.FormatSave, tab)
	for _, line := range []string{
		"-A -t 10.96.0.1:443 -s rr -p 10800\n",
		"-a -t 10.96.0.1:443 -r 192.168.49.2:8443 -m -w 1\n",
		"-a -u 10.96.0.10:53 -r 10.244.0.6:53 -m -w 0\n",
		"-A --sctp-service 192.168.49.2:30001 -s sh -p 60 -M 255.255.255.0\n",
		"-a --sctp-service 192.168.49.2:30001 -r 10.244.1.7:9000 -g -w 5\n",
		"-A -u [2001:db8::1]:53 -s lc -p 300 -M 64\n",
		"-a -u [2001:db8::1]:53 -r [2001:db8:1::9]:53 -i -w 2\n",
		"-A -f 7 -s wlc\n",
	} {
		if !strings.Contains(save, line) {
			t.Errorf("missing %q in\n%s", line, save)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		is             error
	}{
		{"names", "", "run ipvsadm with -n", ipvs.ErrNotNumeric},
		{"stats", "", "collect ipvsadm -Ln", ipvs.ErrMalformed},
		{"neither", "*nat\n", "not /proc/net/ip_vs", ipvs.ErrMalformed},
		{"scheduler", "-A -t 10.0.0.1:80 -s r$r\n", "bad scheduler name", ipvs.ErrMalformed},
		{"save with names", "-A -t kubernetes.default.svc:https -s rr\n", "run ipvsadm with -n", ipvs.ErrNotNumeric},
		{"real first", "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n  -> 0A000001:0050      Masq    1      0          0\n", "before any virtual server", ipvs.ErrMalformed},
		{"bad hex", "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  0A00001:0050 rr\n", "bad hexadecimal IPv4 address", ipvs.ErrMalformed},
		{"bad forward", "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  0A000001:0050 rr\n  -> 0A000002:0050      Magic   1      0          0\n", "unknown forwarding method", ipvs.ErrMalformed},
		{"twice", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n", "listed twice", ipvs.ErrMalformed},
		{"orphan real", "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n", "before its -A line", ipvs.ErrMalformed},
		{"save option", "-A -t 10.0.0.1:80 -s rr --frobnicate\n", "unknown option", ipvs.ErrMalformed},
		{"non-contiguous mask", "-A -t 10.0.0.1:80 -s rr -p 60 -M 255.0.255.0\n", "not contiguous", ipvs.ErrMalformed},
		{"proc netmask", "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  0A000001:0050 rr  persistent 60\n", "wants a value", ipvs.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			switch tc.name {
			case "names":
				b, _ := os.ReadFile("testdata/published/kube-router-415-ipvsadm-L-names.txt")
				in = string(b)
			case "stats":
				b, _ := os.ReadFile("testdata/published/kube-router-160-ipvsadm-Ln-stats.txt")
				in = string(b)
			}
			_, err := ipvs.Parse(strings.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	text := ipvsfmt.String(ipvs.FormatProc, sample())
	if _, err := ipvs.ParseWithLimits(strings.NewReader(text), ipvs.Limits{MaxServices: 2, MaxReals: 100, MaxLineBytes: 4096}); !errors.Is(err, ipvs.ErrTooLarge) {
		t.Errorf("services: %v", err)
	}
	if _, err := ipvs.ParseWithLimits(strings.NewReader(text), ipvs.Limits{MaxServices: 100, MaxReals: 2, MaxLineBytes: 4096}); !errors.Is(err, ipvs.ErrTooLarge) {
		t.Errorf("reals: %v", err)
	}
	if _, err := ipvs.ParseWithLimits(strings.NewReader(text), ipvs.Limits{MaxServices: 100, MaxReals: 100, MaxLineBytes: 40}); !errors.Is(err, ipvs.ErrTooLarge) {
		t.Errorf("line: %v", err)
	}
}

func TestEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"} {
		tab, err := ipvs.Parse(strings.NewReader(in))
		if err != nil || len(tab.Services) != 0 {
			t.Errorf("%q: %v %v", in, tab, err)
		}
	}
}

func TestCountConnections(t *testing.T) {
	const title = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{title, 0},
		{title + "TCP 0A000001 9C40 0A600001 01BB 0AF40005 01BB ESTABLISHED   899\n", 1},
		{title + "TCP 0A000001 9C40 0A600001 01BB 0AF40005 01BB ESTABLISHED   899\nUDP 0A000001 9C41 0A60000A 0035 0AF40006 0035 UDP           299", 2},
		{title + strings.Repeat("TCP 0A000001 9C40 0A600001 01BB 0AF40005 01BB TIME_WAIT       1\n", 100000), 100000},
	} {
		got, err := ipvs.CountConnections(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("%.40q: %d %v, want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := ipvs.CountConnections(strings.NewReader("hello\n")); err == nil {
		t.Error("not ip_vs_conn: want an error")
	}
}
