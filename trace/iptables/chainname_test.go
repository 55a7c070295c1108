package iptables

import (
	"net/netip"
	"testing"
)

// Pairs taken from kube-proxy's own expected rules (pkg/proxy/iptables
// TestTracePacket, v1.37.2): the hash must reproduce them exactly.
func TestChainNamesMatchKubeProxy(t *testing.T) {
	cases := []struct {
		got, want string
	}{
		{ServiceChain(PrefixService, ServicePortName("ns1", "svc1", "p80"), "TCP"), "KUBE-SVC-XPGD46QRK7WJZT7O"},
		{ServiceChain(PrefixService, "ns2/svc2:p80", "tcp"), "KUBE-SVC-GNZBNJ2PO5MGZ6GT"},
		{ServiceChain(PrefixExternal, "ns2/svc2:p80", "tcp"), "KUBE-EXT-GNZBNJ2PO5MGZ6GT"},
		{ServiceChain(PrefixFirewall, "ns5/svc5:p80", "tcp"), "KUBE-FW-NUKIZ6OKUXPJNT4C"},
		{ServiceChain(PrefixService, "ns4/svc4:p80", "tcp"), "KUBE-SVC-4SW47YFZTEDKD3PK"},
		{EndpointChain("ns1/svc1:p80", "TCP", netip.MustParseAddrPort("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ"},
		{EndpointChain("ns4/svc4:p80", "tcp", netip.MustParseAddrPort("10.180.0.4:80")), "KUBE-SEP-UKSFD7AGPMPPLUHC"},
		{EndpointChain("ns4/svc4:p80", "tcp", netip.MustParseAddrPort("10.180.0.5:80")), "KUBE-SEP-C6EBXVWJJZMIWKLZ"},
		{ServicePortName("ns", "svc", ""), "ns/svc"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
