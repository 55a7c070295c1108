package conntrack

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	a4 = netip.MustParseAddr
)

func readAll(t *testing.T, text string) ([]Entry, Stats, error) {
	t.Helper()
	var got []Entry
	st, err := Scan(strings.NewReader(text), func(e *Entry) error {
		got = append(got, *e)
		return nil
	})
	return got, st, err
}

// The lines are real (testdata/recorded) unless the name says otherwise.
func TestReadLine(t *testing.T) {
	client, vip, podA, podB, nodeA := a4("10.14.100.2"), a4("10.96.14.10"), a4("10.14.1.2"), a4("10.14.2.2"), a4("10.14.1.1")
	tests := []struct {
		name string
		line string
		want Entry
	}{
		{
			name: "nf_conntrack tcp ESTABLISHED with accounting and timestamp, NodePort with connmark",
			line: "ipv4     2 tcp      6 431998 ESTABLISHED src=10.14.100.2 dst=10.14.100.1 sport=58634 dport=30080 packets=4 bytes=219 src=10.14.1.2 dst=10.14.1.1 sport=8080 dport=29390 packets=3 bytes=166 [ASSURED] mark=20 zone=0 delta-time=1 use=2",
			want: Entry{Family: IPv4, Proto: ProtoTCP, Timeout: 431998, State: "ESTABLISHED",
				Original: Tuple{Src: client, Dst: a4("10.14.100.1"), SrcPort: 58634, DstPort: 30080, Packets: 4, Bytes: 219, Counted: true},
				Reply:    Tuple{Src: podA, Dst: nodeA, SrcPort: 8080, DstPort: 29390, Packets: 3, Bytes: 166, Counted: true},
				Assured:  true, Mark: 20, Use: 2, Line: 1},
		},
		{
			name: "conntrack -L udp replied, not assured",
			line: "udp      17 28 src=10.14.100.2 dst=10.96.14.10 sport=49918 dport=53 src=10.14.2.2 dst=10.14.2.1 sport=5353 dport=45958 mark=0 use=1",
			want: Entry{Family: IPv4, Proto: ProtoUDP, Timeout: 28,
				Original: Tuple{Src: client, Dst: vip, SrcPort: 49918, DstPort: 53},
				Reply:    Tuple{Src: podB, Dst: a4("10.14.2.1"), SrcPort: 5353, DstPort: 45958},
				Use:      1, Line: 1},
		},
		{
			name: "nf_conntrack unknown protocol 253: no ports",
			line: "ipv4     2 unknown  253 598 src=10.14.100.2 dst=10.14.1.2 [UNREPLIED] src=10.14.1.2 dst=10.14.100.2 mark=0 zone=0 use=2",
			want: Entry{Family: IPv4, Proto: 253, Timeout: 598,
				Original: Tuple{Src: client, Dst: podA}, Reply: Tuple{Src: podA, Dst: client},
				Unreplied: true, Use: 2, Line: 1},
		},
		{
			name: "conntrack -L unknown protocol starts with the layer-4 name",
			line: "unknown  253 598 src=10.14.100.2 dst=10.14.1.2 [UNREPLIED] src=10.14.1.2 dst=10.14.100.2 mark=0 use=1",
			want: Entry{Family: IPv4, Proto: 253, Timeout: 598,
				Original: Tuple{Src: client, Dst: podA}, Reply: Tuple{Src: podA, Dst: client},
				Unreplied: true, Use: 1, Line: 1},
		},
		{
			name: "nf_conntrack gre prints its timeouts before the tuple",
			line: "ipv4     2 gre      47 28 timeout=30, stream_timeout=180 src=10.14.100.2 dst=10.14.2.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.14.2.2 dst=10.14.100.2 srckey=0x0 dstkey=0x0 mark=0 zone=0 use=2",
			want: Entry{Family: IPv4, Proto: ProtoGRE, Timeout: 28,
				Original: Tuple{Src: client, Dst: podB}, Reply: Tuple{Src: podB, Dst: client},
				Unreplied: true, Use: 2, Line: 1},
		},
		{
			name: "nf_conntrack sctp INIT DNATed, unreplied",
			line: "ipv4     2 sctp     132 8 CLOSED src=10.14.100.2 dst=10.96.14.10 sport=40001 dport=9 [UNREPLIED] src=10.14.2.2 dst=10.14.2.1 sport=9 dport=10930 mark=0 zone=0 use=2",
			want: Entry{Family: IPv4, Proto: ProtoSCTP, Timeout: 8, State: "CLOSED",
				Original:  Tuple{Src: client, Dst: vip, SrcPort: 40001, DstPort: 9},
				Reply:     Tuple{Src: podB, Dst: a4("10.14.2.1"), SrcPort: 9, DstPort: 10930},
				Unreplied: true, Use: 2, Line: 1},
		},
		{
			name: "nf_conntrack zone for the original direction only",
			line: "ipv4     2 udp      17 28 src=10.14.100.2 dst=10.14.2.2 sport=37798 dport=7778 zone-orig=3 src=10.14.2.2 dst=10.14.100.2 sport=7778 dport=37798 mark=0 use=2",
			want: Entry{Family: IPv4, Proto: ProtoUDP, Timeout: 28,
				Original: Tuple{Src: client, Dst: podB, SrcPort: 37798, DstPort: 7778, Zone: 3, ZoneSet: true},
				Reply:    Tuple{Src: podB, Dst: client, SrcPort: 7778, DstPort: 37798},
				Use:      2, Line: 1},
		},
		{
			name: "nf_conntrack zone for both directions",
			line: "ipv4     2 udp      17 28 src=10.14.100.2 dst=10.14.2.2 sport=49761 dport=7777 [UNREPLIED] src=10.14.2.2 dst=10.14.100.2 sport=7777 dport=49761 mark=0 zone=7 use=2",
			want: Entry{Family: IPv4, Proto: ProtoUDP, Timeout: 28,
				Original:  Tuple{Src: client, Dst: podB, SrcPort: 49761, DstPort: 7777},
				Reply:     Tuple{Src: podB, Dst: client, SrcPort: 7777, DstPort: 49761},
				Unreplied: true, Zone: 7, Use: 2, Line: 1},
		},
		{
			name: "nf_conntrack icmp",
			line: "ipv4     2 icmp     1 28 src=10.14.100.2 dst=10.14.1.2 type=8 code=0 id=5140 src=10.14.1.2 dst=10.14.100.2 type=0 code=0 id=5140 mark=0 zone=0 use=2",
			want: Entry{Family: IPv4, Proto: ProtoICMP, Timeout: 28,
				Original: Tuple{Src: client, Dst: podA, ICMPType: 8, ICMPID: 5140},
				Reply:    Tuple{Src: podA, Dst: client, ICMPID: 5140},
				Use:      2, Line: 1},
		},
		{
			name: "nf_conntrack icmpv6, full-length IPv6 addresses",
			line: "ipv6     10 icmpv6   58 28 src=fd14:0100:0000:0000:0000:0000:0000:0002 dst=fd14:0002:0000:0000:0000:0000:0000:0002 type=128 code=0 id=5140 packets=1 bytes=51 src=fd14:0002:0000:0000:0000:0000:0000:0002 dst=fd14:0100:0000:0000:0000:0000:0000:0002 type=129 code=0 id=5140 packets=1 bytes=51 mark=0 zone=0 delta-time=1 use=2",
			want: Entry{Family: IPv6, Proto: ProtoICMPv6, Timeout: 28,
				Original: Tuple{Src: a4("fd14:100::2"), Dst: a4("fd14:2::2"), ICMPType: 128, ICMPID: 5140, Packets: 1, Bytes: 51, Counted: true},
				Reply:    Tuple{Src: a4("fd14:2::2"), Dst: a4("fd14:100::2"), ICMPType: 129, ICMPID: 5140, Packets: 1, Bytes: 51, Counted: true},
				Use:      2, Line: 1},
		},
		{
			name: "conntrack -L ipv6, compressed addresses",
			line: "tcp      6 118 TIME_WAIT src=fd14:100::2 dst=fd14:96::10 sport=50830 dport=80 packets=6 bytes=443 src=fd14:1::2 dst=fd14:1::1 sport=8080 dport=52398 packets=4 bytes=298 [ASSURED] mark=0 delta-time=1 use=1",
			want: Entry{Family: IPv6, Proto: ProtoTCP, Timeout: 118, State: "TIME_WAIT",
				Original: Tuple{Src: a4("fd14:100::2"), Dst: a4("fd14:96::10"), SrcPort: 50830, DstPort: 80, Packets: 6, Bytes: 443, Counted: true},
				Reply:    Tuple{Src: a4("fd14:1::2"), Dst: a4("fd14:1::1"), SrcPort: 8080, DstPort: 52398, Packets: 4, Bytes: 298, Counted: true},
				Assured:  true, Use: 1, Line: 1},
		},
		{
			name: "hand-written: offloaded (no timeout), conntrack -o timestamp,id and labels",
			line: "ipv4     2 tcp      6 ESTABLISHED src=10.14.100.2 dst=10.96.14.10 sport=1 dport=80 src=10.14.1.2 dst=10.14.1.1 sport=8080 dport=2 [OFFLOAD] mark=0 secctx=system_u:object_r:unlabeled_t:s0 zone-reply=4 delta-time=3 [start=Mon Jan  2 15:04:05 2006] [stop=Mon Jan  2 15:04:08 2006] helper=ftp use=1 id=3735928559 labels=a,b",
			want: Entry{Family: IPv4, Proto: ProtoTCP, Timeout: -1, State: "ESTABLISHED",
				Original: Tuple{Src: client, Dst: vip, SrcPort: 1, DstPort: 80},
				Reply:    Tuple{Src: podA, Dst: nodeA, SrcPort: 8080, DstPort: 2},
				Offload:  true, Use: 1, Line: 1},
		},
		{
			name: "hand-written: an old kernel without marks or zones",
			line: "tcp      6 299 ESTABLISHED src=10.14.100.2 dst=10.96.14.10 sport=1 dport=80 src=10.14.1.2 dst=10.14.1.1 sport=8080 dport=2 [ASSURED] use=1",
			want: Entry{Family: IPv4, Proto: ProtoTCP, Timeout: 299, State: "ESTABLISHED",
				Original: Tuple{Src: client, Dst: vip, SrcPort: 1, DstPort: 80},
				Reply:    Tuple{Src: podA, Dst: nodeA, SrcPort: 8080, DstPort: 2},
				Assured:  true, Use: 1, Line: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st, err := readAll(t, tt.line+"\n")
			if err != nil {
				t.Fatal(err)
			}
			if st.Skipped != 0 {
				t.Fatalf("skipped: %v", st.Examples)
			}
			if diff := cmp.Diff([]Entry{tt.want}, got, addrs); diff != "" {
				t.Errorf("entry (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSkipsAndCounts(t *testing.T) {
	good := "ipv4     2 udp      17 28 src=10.14.100.2 dst=10.96.14.10 sport=49918 dport=53 src=10.14.2.2 dst=10.14.2.1 sport=5353 dport=45958 mark=0 zone=0 use=2\n"
	tests := []struct {
		name      string
		text      string
		entries   int
		skipped   int
		cut       bool
		shown     int
		example   string // substring of the first example
		errSubstr string
		warnings  []string
	}{
		{name: "empty", text: "", shown: -1},
		{name: "blank lines only", text: "\n  \n", shown: -1},
		{name: "garbage between entries", text: good + "hello world\n" + good, entries: 2, skipped: 1, shown: -1, example: `line 2: not a conntrack entry: "hello world"`,
			warnings: []string{`table: skipped 1 line(s) that are not connection entries (first: line 2: not a conntrack entry: "hello world")`}},
		{name: "no reply tuple", text: "ipv4 2 udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 mark=0 use=1\n", skipped: 1, shown: -1, errSubstr: "no reply tuple"},
		{name: "mixed families", text: "ipv4 2 udp 17 28 src=10.0.0.1 dst=fd00::2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n", skipped: 1, shown: -1, errSubstr: "different families"},
		{name: "layer-3 number contradicts the addresses", text: "ipv6 10 udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n", skipped: 1, shown: -1, errSubstr: "does not match"},
		{name: "port out of range", text: "udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=65536 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n", skipped: 1, shown: -1, errSubstr: "bad dport"},
		{name: "bad address", text: "udp 17 28 src=10.0.0.256 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n", skipped: 1, shown: -1, errSubstr: "bad source address"},
		{name: "a repeated key", text: "tcp 6 1 src=10.0.0.1 dst=10.96.14.10 dport=0 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1 use=1\n", skipped: 1, shown: -1, errSubstr: "repeated dport"},
		{name: "three tuples", text: "udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 src=10.0.0.2 use=1\n", skipped: 1, shown: -1, errSubstr: "more than two tuples"},
		{name: "too long line", text: good + "tcp 6 " + strings.Repeat("x", MaxLineLength) + "\n" + good, entries: 2, skipped: 1, shown: -1, example: "line too long"},
		{name: "a line longer than the read buffer", text: good + strings.Repeat("y", 200<<10) + "\n" + good, entries: 2, skipped: 1, shown: -1, example: "line 2: line too long"},
		{name: "cut in the middle of the last line", text: good + good[:60], entries: 1, cut: true, shown: -1,
			warnings: []string{"table: the table was cut off after 1 entries (raise the collection cap to see all of it)"}},
		{name: "cut after the reply tuple, before use=", text: good + good[:strings.Index(good, " mark")], entries: 1, cut: true, shown: -1},
		{name: "last line complete without a newline", text: good + strings.TrimSuffix(good, "\n"), entries: 2, shown: -1},
		{name: "conntrack's summary on stderr saved with stdout", text: good + "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n", entries: 1, shown: 1},
		{name: "summary disagrees", text: good + "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n", entries: 1, shown: 3,
			warnings: []string{"table: conntrack said it showed 3 entries but 1 were read"}},
		{name: "xml", text: "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n", errSubstr: "XML output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st, err := readAll(t, tt.text)
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("error %v, want one containing %q", err, tt.errSubstr)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.entries || st.Entries != tt.entries || st.Skipped != tt.skipped || st.Cut != tt.cut || st.Shown != tt.shown {
				t.Errorf("entries %d/%d skipped %d cut %v shown %d; want %d skipped %d cut %v shown %d (%v)",
					len(got), st.Entries, st.Skipped, st.Cut, st.Shown, tt.entries, tt.skipped, tt.cut, tt.shown, st.Examples)
			}
			if tt.example != "" && (len(st.Examples) == 0 || !strings.Contains(st.Examples[0], tt.example)) {
				t.Errorf("examples %q, want one containing %q", st.Examples, tt.example)
			}
			if tt.warnings != nil {
				if diff := cmp.Diff(tt.warnings, st.Warnings("table")); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestExamplesAreBoundedAndClipped(t *testing.T) {
	text := strings.Repeat(strings.Repeat("z", 500)+"\n", 100)
	_, st, err := readAll(t, "udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n"+text)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 100 || len(st.Examples) != maxExamples {
		t.Fatalf("skipped %d, %d examples", st.Skipped, len(st.Examples))
	}
	for _, e := range st.Examples {
		if len(e) > 120 {
			t.Errorf("example not clipped: %d bytes", len(e))
		}
	}
}

func TestDetect(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name string
		text string
		want Format
	}{
		{"empty", "", FormatUnknown},
		{"nf_conntrack", read(filepath.Join(recorded, "nf_conntrack")), FormatExtended},
		{"conntrack -L", read(filepath.Join(recorded, "conntrack-L")), FormatDefault},
		{"conntrack -L -o extended", read(filepath.Join(recorded, "conntrack-L-extended")), FormatExtended},
		{"conntrack -L -f ipv6", read(filepath.Join(recorded, "conntrack-L6")), FormatDefault},
		{"ip_vs_conn", read("testdata/ipvs/ip_vs_conn"), FormatIPVS},
		{"ip_vs_conn without its header", strings.SplitN(read("testdata/ipvs/ip_vs_conn"), "\n", 2)[1], FormatIPVS},
		{"conntrack -L of an unknown protocol", "unknown  253 598 src=10.14.100.2 dst=10.14.1.2 [UNREPLIED] src=10.14.1.2 dst=10.14.100.2 mark=0 use=1\n", FormatDefault},
		{"xml", "<?xml version=\"1.0\"?>\n", FormatXML},
		{"iptables-save", "*nat\n:PREROUTING ACCEPT [0:0]\n", FormatUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.text)); got != tt.want {
				t.Errorf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReaderReusesTheEntry(t *testing.T) {
	r := NewReader(strings.NewReader(
		"udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n" +
			"tcp 6 28 CLOSE src=10.0.0.3 dst=10.0.0.4 sport=3 dport=4 src=10.0.0.4 dst=10.0.0.3 sport=4 dport=3 use=1\n"))
	e1, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	e2, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if e1 != e2 || e2.State != "CLOSE" || e2.Line != 2 {
		t.Errorf("entries %p %p, state %q line %d", e1, e2, e2.State, e2.Line)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("third Next: %v, want io.EOF", err)
	}
}
