package ruleset

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// bytesSource is a Source over memory, with or without random access.
type bytesSource struct {
	data     []byte
	seekable bool
}

func (b bytesSource) Head() ([]byte, error) { return b.data[:min(len(b.data), 64<<10)], nil }
func (b bytesSource) Reader() io.Reader     { return bytes.NewReader(b.data) }
func (b bytesSource) ReaderAt() (io.ReaderAt, int64, bool) {
	return bytes.NewReader(b.data), int64(len(b.data)), b.seekable
}

// TestParseEveryFormat: one Service's NodePort, saved by iptables-save and
// by nft (text and JSON) from kube-proxy's TestLoadBalancer, in place and
// as a stream, gives the same answer through one door.
func TestParseEveryFormat(t *testing.T) {
	pkt := trace.Packet{Source: netip.MustParseAddr("203.0.113.2"), Destination: netip.MustParseAddr("192.168.0.2"), DestinationPort: 3001, Protocol: "tcp"}
	opts := Options{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}
	for _, tc := range []struct{ path, format string }{
		{"../../testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/iptables-nft.save", trace.FormatIPTables},
		{"../../testdata/iptables/variants/counters-legacy.save", trace.FormatIPTables},
		{"../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.nft", trace.FormatNFT},
		{"../../testdata/nftables/kube-proxy/v1.37.2/TestLoadBalancer/ruleset.json", trace.FormatNFTJSON},
	} {
		data, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, seekable := range []bool{true, false} {
			for _, format := range []string{"auto", tc.format} {
				rs, err := Parse(bytesSource{data, seekable}, format)
				if err != nil {
					t.Fatalf("%s (%s): %v", tc.path, format, err)
				}
				if rs.Format != tc.format {
					t.Errorf("%s: format %s, want %s", tc.path, rs.Format, tc.format)
				}
				sim, err := rs.Simulate(pkt, opts)
				if err != nil {
					t.Fatal(err)
				}
				if sim.EndpointList() != "10.180.0.1:80" || !sim.Masquerade {
					t.Errorf("%s (seekable %v): %s masq=%v", tc.path, seekable, sim.EndpointList(), sim.Masquerade)
				}
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, format, want string }{
		{"", "auto", "the file is empty"},
		{"hello\n", "auto", "neither iptables-save nor nft list ruleset output"},
		{"add table ip kube-proxy\n", "auto", "this is an nft script"},
		{"table ip t {\n}\n", "ipvs", `format "ipvs" is not one of`},
		{"table ip t {\n}\n", trace.FormatIPTables, "line 1"},
	} {
		_, err := Parse(bytesSource{[]byte(tc.in), true}, tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %s) = %v, want %q", tc.in, tc.format, err, tc.want)
		}
	}
}
