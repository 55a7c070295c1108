package iptables

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPortExcludes: the port prefilter skips a rule only when its parsed
// form has a plain, positive destination-port match that the port misses,
// so skipping it decides what evaluating it would.
func TestPortExcludes(t *testing.T) {
	for _, tc := range []struct {
		text  string
		dport uint16
		want  bool
	}{
		// kube-proxy's shapes, as iptables-save prints them and as its own
		// tests write them.
		{`-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "ns/svc:p has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30001 -j DROP`, 80, true},
		{`-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "ns/svc:p has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30001 -j DROP`, 30001, false},
		{`-A KUBE-NODEPORTS -m comment --comment "ns6/svc6:p80 health check node port" -m tcp -p tcp --dport 30006 -j ACCEPT`, 80, true},
		{`-A KUBE-NODEPORTS -p udp -m comment --comment ns/svc:dns -m udp --dport 30053 -j KUBE-EXT-ABCDEFGHIJKLMNOP`, 30053, false},
		{`-A KUBE-NODEPORTS -p sctp -m sctp --dport 30007 -j KUBE-EXT-ABCDEFGHIJKLMNOP`, 7, true},
		{`-A X -p tcp --dport 22 -j ACCEPT`, 80, true},
		// Left to the full parse.
		{`-A X -p tcp -m tcp ! --dport 22 -j ACCEPT`, 80, false},
		{`-A X -p tcp -m tcp --dport 1000:2000 -j ACCEPT`, 80, false},
		{`-A X -p tcp -m multiport --dports 22,80 -j ACCEPT`, 443, false},
		{`-A X -p tcp -m comment --comment "-m tcp --dport 22 " -j ACCEPT`, 80, false},
		{`-A X -p tcp -m tcp --dport 22 -m comment --comment "x" -j ACCEPT`, 80, false},
		{`-A X -p tcp -m tcp --dport 99999 -j ACCEPT`, 80, false},
		{`-A X -p tcp -m tcp --dport ssh -j ACCEPT`, 80, false},
		{`-A X -p tcp -m dccp --dport 22 -j ACCEPT`, 80, false},
		{`-A X -j DNAT --to-destination 10.0.0.1:22`, 80, false},
	} {
		got := portExcludes(tc.text, tc.dport)
		if got != tc.want {
			t.Errorf("portExcludes(%q, %d) = %v, want %v", tc.text, tc.dport, got, tc.want)
		}
		if !got {
			continue
		}
		// The store keeps a rule's text without "-A CHAIN ".
		_, body, _ := strings.Cut(tc.text[len("-A "):], " ")
		r, err := parseRule(body)
		if err != nil {
			t.Errorf("%q: skipped by the prefilter, but does not parse: %v", tc.text, err)
			continue
		}
		excluded := false
		for _, m := range r.Matches {
			if pm, ok := m.(*PortMatch); ok && pm.DPorts != nil && !pm.DNegated && !portsContain(pm.DPorts, tc.dport) {
				excluded = true
			}
		}
		if !excluded {
			t.Errorf("%q: skipped by the prefilter for port %d, but its parsed matches %#v could match", tc.text, tc.dport, r.Matches)
		}
	}
}

// TestWithoutCounters: the prefilters see a rule saved with counters
// (iptables-save -c) as the same rule without them.
func TestWithoutCounters(t *testing.T) {
	for text, want := range map[string]string{
		"[12:3456] -d 10.96.0.1/32 -p tcp -j KUBE-SVC-X": "-d 10.96.0.1/32 -p tcp -j KUBE-SVC-X",
		"[0:0] -j ACCEPT":                 "-j ACCEPT",
		"-d 10.96.0.1/32 -j ACCEPT":       "-d 10.96.0.1/32 -j ACCEPT",
		"[x:y] -d 10.96.0.1/32 -j ACCEPT": "[x:y] -d 10.96.0.1/32 -j ACCEPT",
		"[12:34 -j ACCEPT":                "[12:34 -j ACCEPT",
	} {
		if got := withoutCounters(text); got != want {
			t.Errorf("withoutCounters(%q) = %q, want %q", text, got, want)
		}
	}
	dst := netip.MustParseAddr("10.96.0.2")
	if !destinationExcludes(withoutCounters("[5:300] -d 10.96.0.1/32 -p tcp -m comment --comment \"a/b:c cluster IP\" -m tcp --dport 80 -j KUBE-SVC-X"), dst) {
		t.Error("a KUBE-SERVICES rule for another cluster IP, saved with counters, is not skipped")
	}
	if !portExcludes(withoutCounters("[5:300] -p tcp -m comment --comment \"a/b:c\" -m tcp --dport 30001 -j KUBE-EXT-X"), 80) {
		t.Error("a KUBE-NODEPORTS rule for another port, saved with counters, is not skipped")
	}
}

// TestDestinationExcludes: the destination prefilter skips a rule only when
// its parsed form has a plain, positive destination that dst is outside of.
func TestDestinationExcludes(t *testing.T) {
	dst := netip.MustParseAddr("172.30.0.41")
	for _, tc := range []struct {
		body string
		want bool
	}{
		// kube-proxy's shapes, as iptables-save prints them.
		{`-d 172.30.0.40/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X`, true},
		{`-d 172.30.0.41/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X`, false},
		{`! -s 10.0.0.0/8 -d 172.30.0.4/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ`, true},
		{`-s 10.0.0.0/8 -i eth0 -d 172.31.0.0/16 -j ACCEPT`, true},
		{`-d 172.30.0.0/16 -j ACCEPT`, false},
		{`-d 172.30.0.41 -j ACCEPT`, false},
		{`-d 172.30.0.42 -j ACCEPT`, true},
		{`-d 172.30.0.40/255.255.255.254 -j ACCEPT`, false},
		{`-d 172.30.0.42/255.255.255.254 -j ACCEPT`, true},
		{`-d fd00::1/128 -j ACCEPT`, true},
		// Left to the full parse.
		{`! -d 172.30.0.40/32 -j ACCEPT`, false},
		{`-d 172.030.0.40/32 -j ACCEPT`, false},
		{`-d 172.30.0.256/32 -j ACCEPT`, false},
		{`-d 172.30.0/32 -j ACCEPT`, false},
		{`-d host.example/32 -j ACCEPT`, false},
		{`-p tcp -m comment --comment "-d 172.30.0.40/32" -j ACCEPT`, false},
		{`-m comment --comment x -d 172.30.0.40/32 -j ACCEPT`, false},
		{`-i "eth0 -d 172.30.0.40/32" -j ACCEPT`, false},
		{`-s  -d 172.30.0.40/32 -j ACCEPT`, false},
		{`--destination 172.30.0.40/32 -j ACCEPT`, false},
		{`-p tcp -m tcp --dport 80 -j DNAT --to-destination 172.30.0.40:80`, false},
		{`-j ACCEPT`, false},
		{``, false},
	} {
		got := destinationExcludes(tc.body, dst)
		if got != tc.want {
			t.Errorf("destinationExcludes(%q, %s) = %v, want %v", tc.body, dst, got, tc.want)
		}
		if got {
			checkDestinationExcluded(t, tc.body, dst)
		}
	}
}

func checkDestinationExcluded(t *testing.T, body string, dst netip.Addr) {
	t.Helper()
	r, err := parseRule(body)
	if err != nil {
		t.Errorf("%q: skipped by the destination prefilter, but does not parse: %v", body, err)
		return
	}
	if r.Destination == nil || r.Destination.Negated || r.Destination.Prefix.Contains(dst) {
		t.Errorf("%q: skipped by the destination prefilter for %s, but its destination %+v could match", body, dst, r.Destination)
	}
}

// FuzzDestinationExcludes checks the destination prefilter against the
// tokenizer on any text: a rule it skips that parses has a positive
// destination the packet's is outside of, and its IPv4 shortcut answers as
// the general address parser does.
func FuzzDestinationExcludes(f *testing.F) {
	for _, s := range []string{
		`-d 172.30.0.40/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X`,
		`! -s 10.0.0.0/8 -d 172.30.0.4/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ`,
		`-i "eth0 -d 172.30.0.40/32" -j ACCEPT`,
		`-d 172.030.0.40/32 -j ACCEPT`,
	} {
		f.Add(s, []byte{172, 30, 0, 41})
	}
	f.Fuzz(func(t *testing.T, body string, ip []byte) {
		dst, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		// A rule the tokenizer rejects for other reasons may be skipped
		// (as the port prefilter does): the walk would stop at it only if
		// it could match.
		if _, err := parseRule(body); err == nil && destinationExcludes(body, dst) {
			checkDestinationExcluded(t, body, dst)
		}
		v, _, _ := strings.Cut(body, " ")
		if excluded, ok := ipv4HostExcludes(v, dst); ok {
			pfx, err := parseAddrOrPrefix(v)
			if err != nil || pfx.Contains(dst) == excluded {
				t.Errorf("ipv4HostExcludes(%q, %s) = %v; the address parser says %v, %v", v, dst, excluded, pfx, err)
			}
		}
	})
}
