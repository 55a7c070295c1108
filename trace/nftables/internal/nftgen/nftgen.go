// Package nftgen writes large kube-proxy nftables rulesets for benchmarks,
// in `nft list ruleset` text: the shapes kube-proxy 1.37 writes (see the
// fixtures in testdata/nftables/kube-proxy/v1.37.2), scaled to many
// Services. nftgen_test.go checks the output against what real nft prints
// for it.
package nftgen

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
)

// Config sizes the ruleset.
type Config struct {
	Services            int
	EndpointsPerService int
	// NodePortEvery makes every n-th Service a NodePort (with an external
	// chain); 0 means none.
	NodePortEvery int
	// NodeIP is the node's address (nodeport-ips); LocalEvery marks every
	// n-th endpoint as on this node (hairpin-connections).
	NodeIP     string
	LocalEvery int
	// ExternalIPEvery gives every n-th Service a LoadBalancer IP: a second
	// service-ips element, to the Service's external chain (1 makes
	// service-ips twice the size of cluster-ips); 0 means none.
	ExternalIPEvery int
	// LongNames gives every Service a 63-character namespace and name, the
	// longest Kubernetes allows: chain names of about 150 bytes, in
	// service-ips, service-nodeports and every chain header.
	LongNames bool
	// Layout is how set and map elements are laid out on lines.
	Layout Layout
}

// Layout is how a set's elements are printed.
type Layout int

const (
	// LayoutNFT is how nft 1.0 lists a named set: five elements a line
	// for keys of up to 16 bits, two for up to 32 bits (an IPv4 address),
	// one a line for wider keys (concatenations, maps with them). Checked
	// against real nft by TestRealNftReadsItTheSame.
	LayoutNFT Layout = iota
	// LayoutOneLine prints every set's and map's elements on one line:
	// very large sets and verdict maps on few lines (as a tool rewriting
	// the listing, or nft with a wide output, may leave them).
	LayoutOneLine
	// LayoutOnePerLine prints one element a line, whatever the key.
	LayoutOnePerLine
)

// ParseLayout reads a Layout's name: nft, one-line, one-per-line.
func ParseLayout(s string) (Layout, error) {
	for l, name := range layoutNames {
		if name == s {
			return Layout(l), nil
		}
	}
	return 0, fmt.Errorf("layout %q is not one of %s", s, strings.Join(layoutNames, ", "))
}

var layoutNames = []string{"nft", "one-line", "one-per-line"}

func (l Layout) String() string { return layoutNames[l] }

// DefaultConfig is the benchmark's cluster: 10,000 Services, 100,000 endpoints.
func DefaultConfig() Config {
	return Config{Services: 10000, EndpointsPerService: 10, NodePortEvery: 4, NodeIP: "192.168.0.2", LocalEvery: 10}
}

// Service is one generated Service port.
type Service struct {
	Namespace, Name, Port string
	ClusterIP             netip.Addr
	LoadBalancerIP        netip.Addr // invalid if none
	ServicePort           uint16
	NodePort              uint16 // 0 if not a NodePort
	Endpoints             []netip.AddrPort
}

// Chain returns the Service port's service- chain name.
func (s Service) Chain() string {
	return nftables.PrefixService + nftables.ServiceChainBase(s.Namespace, s.Name, "tcp", s.Port)
}

// ExternalChain returns the Service port's external- chain name (which
// exists when it has a node port or a LoadBalancer IP).
func (s Service) ExternalChain() string {
	return nftables.PrefixExternal + nftables.ServiceChainBase(s.Namespace, s.Name, "tcp", s.Port)
}

// longName pads prefix to 63 characters, the longest namespace or Service
// name Kubernetes accepts (a DNS label).
func longName(prefix string) string {
	return prefix + strings.Repeat("x", 63-len(prefix))
}

// Services returns the Services cfg describes, in generation order.
func Services(cfg Config) []Service {
	out := make([]Service, cfg.Services)
	ep := 0
	for i := range out {
		s := Service{
			Namespace:   fmt.Sprintf("ns%d", i%100),
			Name:        fmt.Sprintf("svc%d", i),
			Port:        "http",
			ClusterIP:   netip.AddrFrom4([4]byte{172, 30, byte(i >> 8), byte(i)}),
			ServicePort: 80,
		}
		if cfg.LongNames {
			s.Namespace, s.Name = longName(s.Namespace+"-"), longName(s.Name+"-")
		}
		if cfg.ExternalIPEvery > 0 && i%cfg.ExternalIPEvery == 0 {
			s.LoadBalancerIP = netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		}
		if cfg.NodePortEvery > 0 && i%cfg.NodePortEvery == 0 {
			s.NodePort = uint16(30000 + i%2768)
		}
		for j := 0; j < cfg.EndpointsPerService; j++ {
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(180 + ep>>16), byte(ep >> 8), byte(ep)}), 8080))
			ep++
		}
		out[i] = s
	}
	return out
}

// Write writes the ruleset for cfg.
func Write(w io.Writer, cfg Config) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	svcs := Services(cfg)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	// elements prints a set's elements; perLine is how many nft puts on a
	// line (see LayoutNFT).
	elements := func(items []string, perLine int) {
		if len(items) == 0 {
			return
		}
		switch cfg.Layout {
		case LayoutOneLine:
			perLine = len(items)
		case LayoutOnePerLine:
			perLine = 1
		}
		p("\t\telements = { ")
		for i, item := range items {
			if i > 0 {
				if i%perLine == 0 {
					p(",\n\t\t\t     ")
				} else {
					p(", ")
				}
			}
			p("%s", item)
		}
		p(" }\n")
	}

	p("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n")
	var clusterIPs, hairpin, serviceIPs, nodePorts []string
	for i, s := range svcs {
		clusterIPs = append(clusterIPs, s.ClusterIP.String())
		target := "goto " + s.Chain()
		if s.NodePort != 0 {
			nodePorts = append(nodePorts, fmt.Sprintf("tcp . %d : goto %s", s.NodePort, s.ExternalChain()))
		}
		if s.LoadBalancerIP.IsValid() {
			// kube-proxy lists a LoadBalancer IP before the ClusterIP.
			serviceIPs = append(serviceIPs, fmt.Sprintf("%s . tcp . %d : goto %s", s.LoadBalancerIP, s.ServicePort, s.ExternalChain()))
		}
		serviceIPs = append(serviceIPs, fmt.Sprintf("%s . tcp . %d : %s", s.ClusterIP, s.ServicePort, target))
		for j, e := range s.Endpoints {
			if cfg.LocalEvery > 0 && (i*len(s.Endpoints)+j)%cfg.LocalEvery == 0 {
				hairpin = append(hairpin, fmt.Sprintf("%s . %s . tcp . %d", e.Addr(), e.Addr(), e.Port()))
			}
		}
	}
	p("\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\tcomment \"Active ClusterIPs\"\n")
	elements(clusterIPs, 2)
	p("\t}\n\n\tset hairpin-connections {\n\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service\n\t\tcomment \"service hairpin connections\"\n")
	elements(hairpin, 1)
	p("\t}\n\n\tset nodeport-ips {\n\t\ttype ipv4_addr\n\t\tcomment \"IPs that accept NodePort traffic\"\n")
	elements([]string{cfg.NodeIP}, 2)
	p("\t}\n\n\tmap firewall-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\tcomment \"destinations that are subject to LoadBalancerSourceRanges\"\n\t}\n\n")
	p("\tmap no-endpoint-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n\t\tcomment \"vmap to drop or reject packets to service nodeports with no endpoints\"\n\t}\n\n")
	p("\tmap no-endpoint-services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\tcomment \"vmap to drop or reject packets to services with no endpoints\"\n\t}\n\n")
	p("\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\tcomment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"\n")
	elements(serviceIPs, 1)
	p("\t}\n\n\tmap service-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n\t\tcomment \"NodePort traffic\"\n")
	elements(nodePorts, 1)
	p("\t}\n\n")

	// Chains, sorted by name as nft lists them.
	chains := map[string]string{
		"cluster-ips-check":          "\t\tip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n\t\tip daddr 172.30.0.0/16 drop comment \"Drop traffic to unallocated ClusterIPs\"\n",
		"filter-forward":             "\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state new jump service-endpoints-check\n\t\tct state new jump cluster-ips-check\n",
		"filter-input":               "\t\ttype filter hook input priority filter; policy accept;\n\t\tct state new jump nodeport-endpoints-check\n\t\tct state new jump service-endpoints-check\n",
		"filter-output":              "\t\ttype filter hook output priority filter; policy accept;\n\t\tct state new jump service-endpoints-check\n\t\tct state new jump cluster-ips-check\n",
		"filter-output-pre-dnat":     "\t\ttype filter hook output priority -110; policy accept;\n\t\tct state new jump firewall-check\n",
		"filter-prerouting-pre-dnat": "\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t\tct state new jump firewall-check\n",
		"firewall-check":             "\t\tip daddr . meta l4proto . th dport vmap @firewall-ips\n",
		"masquerading":               "\t\tmeta mark & 0x00004000 != 0x00000000 meta mark set meta mark ^ 0x00004000 masquerade fully-random\n\t\tct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random\n",
		"nat-output":                 "\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n",
		"nat-postrouting":            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n",
		"nat-prerouting":             "\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n",
		"nodeport-endpoints-check":   "\t\tip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n",
		"reject-chain":               "\t\tcomment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"\n\t\treject\n",
		"service-endpoints-check":    "\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n",
		"services":                   "\t\tip daddr @cluster-ips ip saddr != 10.0.0.0/8 meta mark set meta mark | 0x00004000 comment \"masquerade clusterIP traffic from outside cluster\"\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t\tip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n",
	}
	for _, s := range svcs {
		var m []string
		for j, e := range s.Endpoints {
			m = append(m, fmt.Sprintf("%d : %s . %d", j, e.Addr(), e.Port()))
		}
		body := fmt.Sprintf("\t\tmeta l4proto tcp dnat to %s\n", s.Endpoints[0])
		if len(s.Endpoints) > 1 {
			body = fmt.Sprintf("\t\tmeta l4proto tcp dnat ip to numgen random mod %d map { %s }\n", len(m), strings.Join(m, ", "))
		}
		chains[s.Chain()] = body
		if s.NodePort != 0 || s.LoadBalancerIP.IsValid() {
			chains[s.ExternalChain()] = "\t\tmeta mark set meta mark | 0x00004000 comment \"masquerade\"\n\t\tgoto " + s.Chain() + "\n"
		}
	}
	names := make([]string, 0, len(chains))
	for n := range chains {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 {
			p("\n")
		}
		p("\tchain %s {\n%s\t}\n", n, chains[n])
	}
	p("}\n")
	return bw.Flush()
}
