package ipset

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that a save dump it accepts
// keeps every add line as a member (nothing silently dropped), and that
// membership tests on what it accepted never panic either.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	// and a sample of the ipsets kube-proxy's IPVS tests left
	fixtures, _ := filepath.Glob("../../testdata/ipvs/kube-proxy/*/*/ipset.save")
	for i, name := range fixtures {
		if i%16 == 0 {
			files = append(files, name)
		}
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("create L list:set size 8\nadd L L\n"))
	f.Add([]byte("Name: X\nType: hash:net,port,net\nHeader: family inet6\nMembers:\n::/0,udp:53,2001:db8::/32 nomatch\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := ParseWithLimits(bytes.NewReader(in), Limits{MaxSets: 64, MaxMembers: 4096, MaxLineBytes: 4096})
		if err != nil {
			return
		}
		if d.Format == FormatSave {
			adds := 0
			for _, line := range strings.Split(string(in), "\n") {
				if strings.HasPrefix(strings.TrimLeft(line, " \t\r"), "add ") {
					adds++
				}
			}
			if adds != d.Len() {
				t.Fatalf("%d add lines, %d members", adds, d.Len())
			}
		}
		pkts := []Packet{
			{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.96.0.1"), Protocol: "tcp", SrcPort: 1, DstPort: 80, InIface: "eth0", OutIface: "eth1"},
			{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Protocol: "icmpv6", InIface: "eth0", OutIface: "eth1"},
		}
		for _, s := range d.Sets {
			for _, m := range s.Members {
				// a packet aimed at the member itself
				p := Packet{Protocol: "udp", InIface: "x", OutIface: "x"}
				for _, part := range m.Elem {
					if part.Kind == KindIP || part.Kind == KindNet {
						p.Src, p.Dst = part.Prefix.Addr(), part.Prefix.Addr()
					}
					if part.Kind == KindPort {
						p.SrcPort, p.DstPort = part.Port, part.Port
					}
				}
				pkts = append(pkts, p)
				break
			}
			for _, p := range pkts {
				_, _ = d.Contains(s.Name, p, []Dir{Dst, Dst, Src})
				_, _ = d.Contains(s.Name, p, []Dir{Src})
			}
		}
	})
}
