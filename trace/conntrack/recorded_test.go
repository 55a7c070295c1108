package conntrack

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The files under testdata/recorded were written by hack/conntrack/gen.sh
// from a real kernel: real connections through kube-proxy-shaped rules in
// network namespaces, then the node namespace's /proc/net/nf_conntrack,
// conntrack -L in both layouts and families, iptables-save -c, and the
// kernel's own per-frontend and per-reply-source counts (kernel-counts,
// from conntrack's filters) taken in the same run.

const recorded = "testdata/recorded"

// kernelCounts is kernel-counts: per frontend, the total and the count per
// reply source.
type kernelCounts struct {
	family   map[Frontend]Family
	total    map[Frontend]int
	backends map[Frontend]map[netip.AddrPort]int
	order    []Frontend
}

func readKernelCounts(t *testing.T, path string) kernelCounts {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kc := kernelCounts{family: map[Frontend]Family{}, total: map[Frontend]int{}, backends: map[Frontend]map[netip.AddrPort]int{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("%s: bad line %q", path, line)
		}
		proto, ok := ParseProto(f[1])
		if !ok {
			t.Fatalf("%s: bad protocol in %q", path, line)
		}
		port, _ := strconv.Atoi(f[3])
		fe := Frontend{Addr: netip.MustParseAddr(f[2]), Port: uint16(port), Proto: proto}
		n, err := strconv.Atoi(f[5])
		if err != nil {
			t.Fatalf("%s: bad count in %q", path, line)
		}
		if f[4] == "-" {
			kc.total[fe] = n
			kc.order = append(kc.order, fe)
			kc.family[fe] = IPv4
			if f[0] == "ipv6" {
				kc.family[fe] = IPv6
			}
			kc.backends[fe] = map[netip.AddrPort]int{}
			continue
		}
		kc.backends[fe][netip.MustParseAddrPort(f[4])] = n
	}
	return kc
}

// shown reads conntrack's "N flow entries have been shown." from a saved
// stderr.
func shown(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := summaryCount(bytes.TrimSpace(data))
	if !ok {
		t.Fatalf("%s: no summary line in %q", path, data)
	}
	return n
}

// TestRecordedTablesMatchKernelCounts parses every recorded table and
// checks that the counts per frontend and per reply source are exactly what
// the kernel's own filters counted in the same run.
func TestRecordedTablesMatchKernelCounts(t *testing.T) {
	kc := readKernelCounts(t, filepath.Join(recorded, "kernel-counts"))
	tests := []struct {
		file     string
		format   Format
		families []Family // which frontends the file holds
		stderr   string   // conntrack's stderr with its entry count
		other    int      // entries of unnamed protocols (the generator's protocol 253)
	}{
		{file: "nf_conntrack", format: FormatExtended, families: []Family{IPv4, IPv6}, other: 1},
		{file: "conntrack-L", format: FormatDefault, families: []Family{IPv4, IPv6}, stderr: "conntrack-L.stderr", other: 1},
		{file: "conntrack-L-extended", format: FormatExtended, families: []Family{IPv4, IPv6}, stderr: "conntrack-L-extended.stderr", other: 1},
		{file: "conntrack-L6", format: FormatDefault, families: []Family{IPv6}, stderr: "conntrack-L6.stderr"},
		{file: "conntrack-L6-extended", format: FormatExtended, families: []Family{IPv6}, stderr: "conntrack-L6-extended.stderr"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(recorded, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var fronts []Frontend
			for _, fe := range kc.order {
				for _, fam := range tt.families {
					if kc.family[fe] == fam {
						fronts = append(fronts, fe)
					}
				}
			}
			obs, err := Observe(f, fronts, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if obs.Stats.Format != tt.format {
				t.Errorf("format %v, want %v", obs.Stats.Format, tt.format)
			}
			if obs.Stats.OtherProtocols != tt.other {
				t.Errorf("%d entries of other protocols, want %d", obs.Stats.OtherProtocols, tt.other)
			}
			if obs.Stats.Skipped != 0 || obs.Stats.Cut {
				t.Errorf("skipped %d lines (%v), cut %v", obs.Stats.Skipped, obs.Stats.Examples, obs.Stats.Cut)
			}
			if tt.stderr != "" {
				if want := shown(t, filepath.Join(recorded, tt.stderr)); obs.Stats.Entries != want {
					t.Errorf("read %d entries, conntrack showed %d", obs.Stats.Entries, want)
				}
			}
			for _, fc := range obs.Frontends {
				if fc.Connections != kc.total[fc.Frontend] {
					t.Errorf("%s: %d connections, kernel counted %d", fc.Frontend, fc.Connections, kc.total[fc.Frontend])
				}
				got := map[netip.AddrPort]int{}
				for _, b := range fc.Backends {
					got[b.Backend] = b.Connections
				}
				if diff := cmp.Diff(kc.backends[fc.Frontend], got, addrs); diff != "" {
					t.Errorf("%s: per reply source (-kernel +parsed):\n%s", fc.Frontend, diff)
				}
			}
		})
	}
}

// TestRecordedStaleUDP checks the stale entry the generator made for real:
// h14/dns's pod C was replaced by B and C's namespace deleted, but the
// client's long-lived UDP socket still has an assured entry to C.
func TestRecordedStaleUDP(t *testing.T) {
	f, err := os.Open(filepath.Join(recorded, "nf_conntrack"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dns := Frontend{Addr: netip.MustParseAddr("10.96.14.53"), Port: 53, Proto: ProtoUDP}
	obs, err := Observe(f, []Frontend{dns}, Options{Clients: true})
	if err != nil {
		t.Fatal(err)
	}
	fc := obs.Frontends[0]
	podB := netip.MustParseAddrPort("10.14.2.2:5353")
	podC := netip.MustParseAddrPort("10.14.3.2:5353")
	stale := fc.Stale([]netip.AddrPort{podB})
	if len(stale) != 1 || stale[0].Backend != podC {
		t.Fatalf("stale backends %+v, want only %s", stale, podC)
	}
	kc := readKernelCounts(t, filepath.Join(recorded, "kernel-counts"))
	if got, want := stale[0].Connections, kc.backends[dns][podC]; got != want {
		t.Errorf("stale connections %d, kernel counted %d", got, want)
	}
	// The resolver's socket (source port 40053) is the assured one that
	// keeps the entry alive.
	if stale[0].Assured != 1 || stale[0].States[StateAssured] != 1 {
		t.Errorf("assured %d, states %v: want the resolver's one assured entry", stale[0].Assured, stale[0].States)
	}
	inCluster := netip.MustParseAddr("10.14.9.2")
	if diff := cmp.Diff([]ClientCount{{Addr: inCluster, Connections: stale[0].Connections}}, stale[0].Clients, addrs); diff != "" {
		t.Errorf("clients of the stale backend (-want +got):\n%s", diff)
	}
	if len(fc.Stale([]netip.AddrPort{podB, podC})) != 0 {
		t.Error("no backend is stale when both are endpoints")
	}
}

// addrs lets cmp compare netip values.
var addrs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})
