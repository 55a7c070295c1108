package nftables

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestChainNamesInRealRulesets recomputes every service-, external-,
// firewall- and endpoint- chain name in the kube-proxy fixtures from the
// namespace/name/protocol/port (and endpoint) the name spells out: the hash
// must be kube-proxy's, so later code can find a Service's chains.
func TestChainNamesInRealRulesets(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/nftables/kube-proxy/*/*/ruleset.nft")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	checked := 0
	for _, path := range files {
		rs := parseFile(t, path)
		for _, tb := range rs.Tables {
			for name := range tb.Chains {
				var prefix string
				for _, p := range []string{PrefixService, PrefixExternal, PrefixFirewall, PrefixEndpoint} {
					if strings.HasPrefix(name, p) {
						prefix = p
					}
				}
				if prefix == "" || !strings.Contains(name, "/") {
					continue // fixed chains: service-endpoints-check, firewall-check, ...
				}
				base := strings.TrimPrefix(name, prefix)
				_, rest, _ := strings.Cut(base, "-")
				svc, ep, isEndpoint := strings.Cut(rest, "__")
				parts := strings.Split(svc, "/")
				if len(parts) != 4 {
					t.Errorf("%s: cannot read chain name %s", path, name)
					continue
				}
				var want string
				if isEndpoint {
					ip, port, _ := strings.Cut(ep, "/")
					if strings.Count(ip, ".") > 3 {
						ip = strings.ReplaceAll(ip, ".", ":") // IPv6, colons spelled as dots
					}
					addr, err1 := netip.ParseAddr(ip)
					n, err2 := strconv.ParseUint(port, 10, 16)
					if err1 != nil || err2 != nil {
						t.Errorf("%s: cannot read the endpoint in %s", path, name)
						continue
					}
					ap := netip.AddrPortFrom(addr, uint16(n))
					want = EndpointChainBase(parts[0], parts[1], parts[2], parts[3], ap)
				} else {
					want = ServiceChainBase(parts[0], parts[1], parts[2], parts[3])
				}
				if base != want {
					t.Errorf("%s: chain %s, but the hash gives %s%s", path, name, prefix, want)
				}
				checked++
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d chain names checked", checked)
	}
	t.Logf("%d chain names recomputed", checked)
}
