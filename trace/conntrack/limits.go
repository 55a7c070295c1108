package conntrack

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Limits are how full the node's conntrack table is: the debug pod's
// conntrack-limits section ("count N" and "max M", from
// net.netfilter.nf_conntrack_count and nf_conntrack_max). When Count
// reaches Max the kernel drops new connections ("nf_conntrack: table full,
// dropping packet").
type Limits struct {
	Count, Max int64
}

// ParseLimits reads "count N" and "max M" lines; both must be there.
func ParseLimits(data []byte) (Limits, error) {
	var l Limits
	var haveCount, haveMax bool
	for _, line := range bytes.Split(data, []byte("\n")) {
		key, val := nextToken(trimSpace(line))
		if key == nil {
			continue
		}
		val = trimSpace(val)
		n, ok := atoi(val, 1<<62)
		switch string(key) {
		case "count":
			if !ok {
				return Limits{}, fmt.Errorf("%w: conntrack count %q is not a number", ErrMalformed, clip(val))
			}
			l.Count, haveCount = int64(n), true
		case "max":
			if !ok {
				return Limits{}, fmt.Errorf("%w: conntrack max %q is not a number", ErrMalformed, clip(val))
			}
			l.Max, haveMax = int64(n), true
		}
	}
	if !haveCount || !haveMax {
		return Limits{}, fmt.Errorf("%w: the conntrack limits need a count and a max line", ErrMalformed)
	}
	return l, nil
}

// NewFrontend makes a Frontend from an address, a port and a protocol name
// as Kubernetes and the Path model write it ("TCP", "udp", "sctp").
func NewFrontend(addr netip.Addr, port uint16, protocol string) (Frontend, error) {
	p, ok := ParseProto(protocol)
	if !ok || !p.hasPorts() {
		return Frontend{}, fmt.Errorf("protocol %s of %s is not one conntrack counts by port", excerpt.Quote(protocol), netip.AddrPortFrom(addr, port))
	}
	if !addr.IsValid() {
		return Frontend{}, fmt.Errorf("frontend has no address")
	}
	return Frontend{Addr: addr.Unmap(), Port: port, Proto: p}, nil
}
