package ruleset

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
)

// Tables recorded from real traffic by hack/conntrack/gen.sh; their
// kernel-counts are the kernel's own counts, from conntrack's filters.
const recordedConntrack = "../conntrack/testdata/recorded"

func recordedTable(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recordedConntrack, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// oneShot is a stream: it can be read once.
type oneShot struct{ r io.Reader }

func (o *oneShot) Head() ([]byte, error) { return nil, nil }
func (o *oneShot) Reader() io.Reader     { return o.r }
func (o *oneShot) ReaderAt() (io.ReaderAt, int64, bool) {
	return nil, 0, false
}

var (
	feTCP  = conntrack.Frontend{Addr: netip.MustParseAddr("10.96.14.10"), Port: 80, Proto: conntrack.ProtoTCP}
	feUDP  = conntrack.Frontend{Addr: netip.MustParseAddr("10.96.14.10"), Port: 53, Proto: conntrack.ProtoUDP}
	feTCP6 = conntrack.Frontend{Addr: netip.MustParseAddr("fd14:96::10"), Port: 80, Proto: conntrack.ProtoTCP}
)

// counts flattens an observation to "frontend backend" → connections.
func counts(o *Observed) map[string]int {
	out := map[string]int{}
	for _, f := range o.Frontends {
		out[f.Frontend.String()] = f.Connections
		for _, b := range f.Backends {
			out[f.Frontend.String()+" "+b.Backend.String()] = b.Connections
		}
	}
	return out
}

// The kernel's counts for the three frontends (kernel-counts).
var wantRecorded = map[string]int{
	"10.96.14.10:80/tcp": 14, "10.96.14.10:80/tcp 10.14.1.2:8080": 2, "10.96.14.10:80/tcp 10.14.2.2:8080": 12,
	"10.96.14.10:53/udp": 12, "10.96.14.10:53/udp 10.14.1.2:5353": 6, "10.96.14.10:53/udp 10.14.2.2:5353": 6,
	"[fd14:96::10]:80/tcp": 8, "[fd14:96::10]:80/tcp [fd14:1::2]:8080": 4, "[fd14:96::10]:80/tcp [fd14:2::2]:8080": 4,
}

func TestObserve(t *testing.T) {
	proc, list, list6 := recordedTable(t, "nf_conntrack"), recordedTable(t, "conntrack-L-extended"), recordedTable(t, "conntrack-L6-extended")
	// conntrack -L without -f lists both families (conntrack-tools 1.4.7);
	// the dump script asks for each family on its own.
	plain6 := recordedTable(t, "conntrack-L6")
	var plain4 []byte
	for _, line := range bytes.SplitAfter(recordedTable(t, "conntrack-L"), []byte("\n")) {
		if !bytes.Contains(line, []byte("src=fd14:")) {
			plain4 = append(plain4, line...)
		}
	}
	rules := fileInput(t, filepath.Join(recordedConntrack, "iptables-nft-save-c"))
	for _, tc := range []struct {
		name   string
		inputs []Input
		tables []string
	}{
		{"/proc/net/nf_conntrack told by content", []Input{rules, {Name: "ct", Source: bytesSource{proc, true}}}, []string{"ct"}},
		{"conntrack -L, both families, added up", []Input{{Name: "l4", Source: bytesSource{plain4, true}}, {Name: "l6", Source: bytesSource{plain6, false}}}, []string{"l4", "l6"}},
		{"the proc table wins over conntrack -L (the same entries)", []Input{
			{Name: "list", Source: bytesSource{list, true}, Section: conntrack.SectionList},
			{Name: "list6", Source: bytesSource{list6, true}, Section: conntrack.SectionList6},
			{Name: "proc", Source: bytesSource{proc, true}, Section: conntrack.SectionProc},
		}, []string{"proc"}},
		{"a stream", []Input{{Name: "stdin", Source: &oneShot{bytes.NewReader(proc)}, Section: conntrack.SectionProc}}, []string{"stdin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Load(tc.inputs...)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Observes() {
				t.Fatal("Observes() = false")
			}
			obs, err := d.Observe([]conntrack.Frontend{feTCP, feUDP, feTCP6}, conntrack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantRecorded, counts(obs)); diff != "" {
				t.Errorf("counts (-kernel +observed):\n%s", diff)
			}
			if diff := cmp.Diff(tc.tables, obs.Tables); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}
			if len(obs.Warnings) > 0 {
				t.Errorf("warnings %v", obs.Warnings)
			}
			if len(d.Formats()) > 1 {
				t.Errorf("formats %v: a connection table is not a rule source", d.Formats())
			}
		})
	}
}

func TestObserveStreamOnce(t *testing.T) {
	d, err := Load(Input{Name: "stdin", Source: &oneShot{bytes.NewReader(recordedTable(t, "nf_conntrack"))}, Section: conntrack.SectionProc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Observe([]conntrack.Frontend{feTCP}, conntrack.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Observe([]conntrack.Frontend{feTCP}, conntrack.Options{}); err == nil || !strings.Contains(err.Error(), "read already") {
		t.Errorf("second Observe of a stream: %v", err)
	}
}

func TestObserveIPVSOnlyWithoutConntrack(t *testing.T) {
	ipvsConn := "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\nTCP 0AFA0064 9C4E 0A60640B 0050 0AF40102 1F90 ESTABLISHED     897\n"
	d, err := Load(Input{Name: "ipvs", Source: bytesSource{[]byte(ipvsConn), true}})
	if err != nil {
		t.Fatal(err)
	}
	fe := conntrack.Frontend{Addr: netip.MustParseAddr("10.96.100.11"), Port: 80, Proto: conntrack.ProtoTCP}
	obs, err := d.Observe([]conntrack.Frontend{fe}, conntrack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !obs.IPVS || counts(obs)["10.96.100.11:80/tcp 10.244.1.2:8080"] != 1 {
		t.Errorf("IPVS %v, counts %v", obs.IPVS, counts(obs))
	}
	// With a conntrack table too, conntrack's counts are the ones shown.
	d, err = Load(Input{Name: "ipvs", Source: bytesSource{[]byte(ipvsConn), true}, Section: conntrack.SectionIPVS},
		Input{Name: "proc", Source: bytesSource{nil, true}, Section: conntrack.SectionProc})
	if err != nil {
		t.Fatal(err)
	}
	if obs, err = d.Observe([]conntrack.Frontend{fe}, conntrack.Options{}); err != nil || obs.IPVS || obs.Frontends[0].Connections != 0 {
		t.Errorf("with a conntrack table: %+v, %v", obs, err)
	}
}

func TestConntrackLimitsAndSections(t *testing.T) {
	d, err := Load(Input{Name: "limits", Source: bytesSource{[]byte("count 12\nmax 262144\n"), true}})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := d.ConntrackLimits(); !ok || l != (conntrack.Limits{Count: 12, Max: 262144}) {
		t.Errorf("limits %+v %v", l, ok)
	}
	if d.Observes() {
		t.Error("the limits alone are no connection table")
	}
	if _, err := d.Observe(nil, conntrack.Options{}); err == nil {
		t.Error("Observe without a table: no error")
	}
	// A limits section that cannot be read (a node image whose shell got
	// an empty value, found on a real kubelet) loses only the fill: a
	// warning, and the node's rules still load.
	bad, err := Load(Input{Name: "iptables", Source: bytesSource{[]byte("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"), true}},
		Input{Name: "limits", Source: bytesSource{[]byte("count \nmax \n"), true}, Section: conntrack.SectionLimits})
	if err != nil {
		t.Fatalf("a bad limits section failed the node: %v", err)
	}
	if _, ok := bad.ConntrackLimits(); ok || bad.ProxyMode() != trace.ModeIPTables {
		t.Errorf("bad limits: mode %q", bad.ProxyMode())
	}
	if w := bad.Warnings(); len(w) != 1 || w[0].Code != trace.CodeConntrackIncomplete {
		t.Errorf("bad limits: warnings %+v", w)
	}
	if _, err := Load(Input{Name: "x", Source: bytesSource{[]byte("<?xml version=\"1.0\"?><conntrack>"), true}}); err == nil || !strings.Contains(err.Error(), "XML") {
		t.Errorf("XML: %v", err)
	}
	for file, want := range map[string]string{
		"node-1.conntrack-proc": conntrack.SectionProc, "dir.x/node-1.ipvs-conn": conntrack.SectionIPVS,
		"node-1.ip-route": "ip-route", "node-1.iptables-nft-save": "",
	} {
		if got := SectionOf(file); got != want {
			t.Errorf("SectionOf(%q) = %q, want %q", file, got, want)
		}
	}
}

// A collected table cut at the cap reads as far as it goes, with a
// warning.
func TestObserveCutTable(t *testing.T) {
	proc := recordedTable(t, "nf_conntrack")
	d, err := Load(Input{Name: "proc", Source: bytesSource{proc[:len(proc)/2], true}, Section: conntrack.SectionProc})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := d.Observe([]conntrack.Frontend{feTCP}, conntrack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Warnings) == 0 || obs.Warnings[0].Code != trace.CodeConntrackIncomplete || !strings.Contains(obs.Warnings[0].Message, "cut off") {
		t.Errorf("warnings %v", obs.Warnings)
	}
}

// FuzzConntrackSection: whatever a node prints as a connection table —
// named or told by content — loads without panicking, and a node whose
// table loads can be observed for any frontends, once or twice.
func FuzzConntrackSection(f *testing.F) {
	for _, name := range []string{"nf_conntrack", "conntrack-L", "conntrack-L6-extended"} {
		data, err := os.ReadFile(filepath.Join(recordedConntrack, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(255), data[:min(len(data), 4<<10)])
		f.Add(uint8(0), data[:min(len(data), 4<<10)])
	}
	f.Add(uint8(3), []byte("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\nTCP 0AFA0064 9C4E 0A60640B 0050 0AF40102 1F90 ESTABLISHED     897\n"))
	f.Add(uint8(4), []byte("count 12\nmax 262144\n"))
	f.Add(uint8(255), []byte("count 12\nmax 262144\n"))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		section := ""
		if int(which) < len(conntrack.SectionNames) {
			section = conntrack.SectionNames[which]
		}
		d, err := Load(Input{Name: "section", Source: bytesSource{data, true}, Section: section})
		if err != nil || !d.Observes() {
			return
		}
		for range 2 {
			if _, err := d.Observe([]conntrack.Frontend{feTCP, feUDP, feTCP6}, conntrack.Options{Clients: true}); err != nil {
				return
			}
		}
	})
}
