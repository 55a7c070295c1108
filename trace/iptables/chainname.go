package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"strconv"
	"strings"
)

// kube-proxy names its per-Service chains with a hash so they fit iptables'
// 28-character limit: the first 16 base32 characters of SHA-256 over the
// service port name ("namespace/name:port", or "namespace/name" when the
// port has no name) and the lower-case protocol; endpoint chains also hash the
// endpoint "ip:port". The names are stable across versions 1.x, so the
// simulator and drift checks can tell which chains belong to a Service without
// trusting rule comments. (pkg/proxy/iptables/proxier.go: portProtoHash,
// servicePortEndpointChainName.)

// Chain-name prefixes kube-proxy uses, both generations.
const (
	PrefixService       = "KUBE-SVC-" // cluster policy: all endpoints
	PrefixServiceLocal  = "KUBE-SVL-" // local policy, >= 1.24
	PrefixExternal      = "KUBE-EXT-" // external traffic entry, >= 1.24
	PrefixFirewall      = "KUBE-FW-"  // load balancer source ranges (all LB traffic in <= 1.23)
	PrefixExternalLocal = "KUBE-XLB-" // external traffic with Local policy, <= 1.23
	PrefixEndpoint      = "KUBE-SEP-"
)

// ServicePortName formats kube-proxy's name for one port of a Service.
func ServicePortName(namespace, name, port string) string {
	if port == "" {
		return namespace + "/" + name
	}
	return namespace + "/" + name + ":" + port
}

// ServiceChain returns the chain name with the given prefix (PrefixService,
// PrefixExternal, ...) for a service port and protocol ("TCP", "udp", ...).
func ServiceChain(prefix, servicePortName, protocol string) string {
	return prefix + hash16(servicePortName+strings.ToLower(protocol))
}

// EndpointChain returns the KUBE-SEP-* chain for one endpoint of a service
// port.
func EndpointChain(servicePortName, protocol string, endpoint netip.AddrPort) string {
	return PrefixEndpoint + hash16(servicePortName+strings.ToLower(protocol)+endpointString(endpoint))
}

// endpointString formats an endpoint as kube-proxy does ("1.2.3.4:80",
// "[fd00::1]:80").
func endpointString(ep netip.AddrPort) string {
	host := ep.Addr().Unmap().String()
	if ep.Addr().Is6() && !ep.Addr().Is4In6() {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(ep.Port()))
}

func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}
