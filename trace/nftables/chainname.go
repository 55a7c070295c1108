package nftables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strings"
)

// Chain-name prefixes kube-proxy's nftables mode uses; each is followed by
// the base from ServiceChainBase or EndpointChainBase.
const (
	PrefixService  = "service-"
	PrefixLocal    = "local-" // the endpoints on this node, for a Local traffic policy
	PrefixExternal = "external-"
	PrefixFirewall = "firewall-"
	PrefixEndpoint = "endpoint-"
	PrefixAffinity = "affinity-" // a set, not a chain
)

// chainNameBaseLengthMax is knftables' NameLengthMax (256) minus kube-proxy's
// longest prefix allowance (16).
const chainNameBaseLengthMax = 240

// ServiceChainBase is the part after "service-", "external-" or "firewall-"
// of a Service port's chains: HASH-namespace/name/protocol/portName, where
// HASH is the first 8 base32 characters of the SHA-256 of the rest
// (servicePortChainNameBase in kube-proxy's nftables proxier).
func ServiceChainBase(namespace, name, protocol, portName string) string {
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s", namespace, name, strings.ToLower(protocol), portName))
}

// EndpointChainBase is the part after "endpoint-" (and "affinity-") for one
// endpoint of a Service port: HASH-namespace/name/protocol/portName__IP/port,
// with an IPv6 address's colons turned into dots.
func EndpointChainBase(namespace, name, protocol, portName string, endpoint netip.AddrPort) string {
	ip := strings.ReplaceAll(endpoint.Addr().String(), ":", ".")
	return hashAndTruncate(fmt.Sprintf("%s/%s/%s/%s__%s/%d", namespace, name, strings.ToLower(protocol), portName, ip, endpoint.Port()))
}

func hashAndTruncate(name string) string {
	hash := sha256.Sum256([]byte(name))
	name = base32.StdEncoding.EncodeToString(hash[:])[:8] + "-" + name
	if len(name) > chainNameBaseLengthMax {
		name = name[:chainNameBaseLengthMax-3] + "..."
	}
	return name
}
