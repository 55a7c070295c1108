package ipset

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// loopBack is a KUBE-LOOP-BACK set with n endpoints, as a node with n
// local endpoints holds it.
func loopBack(b *testing.B, n int) *Dump {
	var sb strings.Builder
	sb.WriteString("create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 1048576\n")
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		fmt.Fprintf(&sb, "add KUBE-LOOP-BACK %s,tcp:8080,%s\n", ip, ip)
	}
	d, err := Parse(strings.NewReader(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkContains measures the membership test the iptables engine makes
// per rule, with the first-dimension index and, as the baseline in the
// same run, with a scan of every member.
func BenchmarkContains(b *testing.B) {
	d := loopBack(b, 100_000)
	p := Packet{Src: netip.MustParseAddr("10.1.134.159"), Dst: netip.MustParseAddr("10.1.134.159"), Protocol: "tcp", DstPort: 8080}
	dirs := []Dir{Dst, Dst, Src}
	set := d.Set("KUBE-LOOP-BACK")
	ix := set.index
	for _, mode := range []string{"indexed", "scan"} {
		b.Run(mode, func(b *testing.B) {
			set.index = ix
			if mode == "scan" {
				set.index = nil
			}
			for b.Loop() {
				r, err := d.Contains("KUBE-LOOP-BACK", p, dirs)
				if err != nil || !r.Matched {
					b.Fatalf("%+v %v", r, err)
				}
			}
		})
	}
	set.index = ix
}

// BenchmarkParse measures reading a 100,000-member set.
func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 1048576\n")
	for i := 0; i < 100_000; i++ {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		fmt.Fprintf(&sb, "add KUBE-LOOP-BACK %s,tcp:8080,%s\n", ip, ip)
	}
	text := sb.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := Parse(strings.NewReader(text)); err != nil {
			b.Fatal(err)
		}
	}
}
