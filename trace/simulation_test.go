package trace

import (
	"net/netip"
	"strings"
	"testing"
)

// A packet's protocol comes from a flag or a Service spec; whatever its
// length, the error that rejects it names a short excerpt.
func TestValidateNamesALongProtocolByExcerpt(t *testing.T) {
	p := Packet{
		Source:          netip.MustParseAddr("10.0.0.1"),
		Destination:     netip.MustParseAddr("10.0.0.2"),
		DestinationPort: 80,
		Protocol:        strings.Repeat("\xff\"", 5000),
	}
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted a protocol that is not tcp, udp or sctp")
	}
	if n := len(err.Error()); n > 400 {
		t.Fatalf("error of %d bytes: %.200s", n, err)
	}
	if !strings.Contains(err.Error(), "(10000 bytes)") || !strings.Contains(err.Error(), "is not one of tcp, udp, sctp") {
		t.Fatalf("error %q does not say the protocol's size and what is allowed", err)
	}
}
