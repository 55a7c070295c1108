package conntrack

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// realIPVS is the IPVS node recorded by the end-to-end suite's TestIPVS
// (kube-proxy v1.37.2 in IPVS mode on a Debian kernel in qemu): its
// /proc/net/ip_vs_conn and, read in the same run, ipvsadm -Lnc's listing
// of the same kernel table.
const realIPVS = "../../testdata/ipvs/real/"

// TestRealIPVSConnAgreesWithIPVSAdm reads the real table as the plugin does
// and checks every entry, and every count Observe makes of it, against
// ipvsadm's independent listing: the same 65 entries (connections and the
// affinity Service's persistence template), per Service address and real
// server.
func TestRealIPVSConnAgreesWithIPVSAdm(t *testing.T) {
	proc, err := os.ReadFile(realIPVS + "node1.proc-net-ip_vs_conn")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := ScanIPVS(bytes.NewReader(proc), func(c *IPVSConn) error {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", c.Proto, c.State, c.Client, c.Virtual, c.Dest))
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// ipvsadm -Lnc: "pro expire state source virtual destination".
	listing, err := os.ReadFile(realIPVS + "node1.ipvsadm-Lnc")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	perBackend := map[Frontend]map[netip.AddrPort]int{}
	sc := bufio.NewScanner(bytes.NewReader(listing))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] == "pro" {
			continue
		}
		proto, ok := ParseProto(strings.ToLower(f[0]))
		if !ok {
			t.Fatalf("ipvsadm -Lnc: protocol in %q", sc.Text())
		}
		client, virtual, dest := netip.MustParseAddrPort(f[3]), netip.MustParseAddrPort(f[4]), netip.MustParseAddrPort(f[5])
		want = append(want, fmt.Sprintf("%s %s %s %s %s", proto, f[2], client, virtual, dest))
		if client.Port() == 0 { // a persistence template, not a connection
			continue
		}
		fe := Frontend{Addr: virtual.Addr(), Port: virtual.Port(), Proto: proto}
		if perBackend[fe] == nil {
			perBackend[fe] = map[netip.AddrPort]int{}
		}
		perBackend[fe][dest]++
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) != 65 {
		t.Fatalf("ipvsadm -Lnc lists %d entries, want the recording's 65", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries read from /proc/net/ip_vs_conn differ from ipvsadm -Lnc (-ipvsadm +plugin):\n%s", diff)
	}

	var frontends []Frontend
	for fe := range perBackend {
		frontends = append(frontends, fe)
	}
	obs, err := Observe(bytes.NewReader(proc), frontends, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Frontends) != len(frontends) {
		t.Fatalf("Observe counted %d Service addresses, ipvsadm lists %d", len(obs.Frontends), len(frontends))
	}
	for _, fc := range obs.Frontends {
		total := 0
		for _, b := range fc.Backends {
			if n := perBackend[fc.Frontend][b.Backend]; b.Connections != n {
				t.Errorf("%v -> %v: Observe counts %d connections, ipvsadm lists %d", fc.Frontend, b.Backend, b.Connections, n)
			}
			total += b.Connections
		}
		want := 0
		for _, n := range perBackend[fc.Frontend] {
			want += n
		}
		if fc.Connections != want || total != want {
			t.Errorf("%v: Observe counts %d connections (%d over its real servers), ipvsadm lists %d", fc.Frontend, fc.Connections, total, want)
		}
	}
}
