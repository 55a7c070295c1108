package conntrack

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseLimits(t *testing.T) {
	tests := []struct {
		in      string
		want    Limits
		wantErr bool
	}{
		{in: "count 305\nmax 262144\n", want: Limits{Count: 305, Max: 262144}},
		{in: "max 262144\ncount 0", want: Limits{Max: 262144}},
		{in: "count 305\n", wantErr: true},
		{in: "count x\nmax 1\n", wantErr: true},
		{in: "count \nmax 1\n", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLimits([]byte(tt.in))
		if tt.wantErr {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%q: error %v, want ErrMalformed", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseLimits(f *testing.F) {
	f.Add([]byte("count 305\nmax 262144\n"))
	f.Add([]byte("count 99999999999999999999\nmax -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLimits(data)
		if err == nil && (l.Count < 0 || l.Max < 0) {
			t.Fatalf("negative limits %+v", l)
		}
	})
}

func TestNewFrontend(t *testing.T) {
	f, err := NewFrontend(netip.MustParseAddr("::ffff:10.96.0.10"), 53, "UDP")
	if err != nil || f != (Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Port: 53, Proto: ProtoUDP}) {
		t.Errorf("%+v, %v", f, err)
	}
	if f.String() != "10.96.0.10:53/udp" {
		t.Errorf("String() = %q", f.String())
	}
	if _, err := NewFrontend(netip.MustParseAddr("10.96.0.10"), 0, "icmp"); err == nil {
		t.Error("icmp accepted")
	}
	if _, err := NewFrontend(netip.Addr{}, 53, "udp"); err == nil {
		t.Error("no address accepted")
	}
}

func TestClearCommand(t *testing.T) {
	got := ClearCommand(Frontend{Addr: netip.MustParseAddr("fd00::10"), Port: 53, Proto: ProtoUDP}, netip.MustParseAddrPort("[fd00::5]:5353"))
	want := "conntrack -D -f ipv6 -p udp --orig-dst fd00::10 --orig-port-dst 53 --reply-src fd00::5 --reply-port-src 5353"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}
