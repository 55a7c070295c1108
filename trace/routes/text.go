package routes

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on what a node's text can make a parser keep. A node with 110
// pods and a full BGP mesh of a 5,000-node cluster has some ten thousand
// routes; these are two orders of magnitude above that.
const (
	maxLineLen = 64 << 10
	maxLines   = 4 << 20
	maxItems   = 1 << 20
	// maxWarnings bounds the warnings one section adds; the rest are
	// counted in one last warning.
	maxWarnings = 50
	// maxIfName is IFNAMSIZ-1: the kernel refuses longer interface names.
	maxIfName = 15
	// maxTokenEcho is how much of a bad token an error repeats.
	maxTokenEcho = 40
)

// ErrTooLarge is returned for a section beyond the bounds above.
var ErrTooLarge = errors.New("too large")

// quote repeats at most maxTokenEcho bytes of an untrusted token, quoted
// so control characters cannot reach a terminal.
func quote(s string) string {
	if len(s) > maxTokenEcho {
		cut := maxTokenEcho
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// eachLine calls fn with every line of data (without its newline) and its
// 1-based number, within the line and count bounds.
func eachLine(data []byte, fn func(no int, line string) error) error {
	no := 0
	for len(data) > 0 {
		no++
		if no > maxLines {
			return fmt.Errorf("more than %d lines: %w", maxLines, ErrTooLarge)
		}
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		data = rest
		if len(line) > maxLineLen {
			return fmt.Errorf("line %d is longer than %d bytes: %w", no, maxLineLen, ErrTooLarge)
		}
		if err := fn(no, strings.TrimRight(string(line), "\r")); err != nil {
			return err
		}
	}
	return nil
}

// warnings collects a section's warnings up to maxWarnings.
type warnings struct {
	section string
	list    []string
	dropped int
}

func (w *warnings) add(format string, args ...any) {
	if len(w.list) >= maxWarnings {
		w.dropped++
		return
	}
	w.list = append(w.list, w.section+": "+fmt.Sprintf(format, args...))
}

func (w *warnings) done() []string {
	if w.dropped > 0 {
		w.list = append(w.list, fmt.Sprintf("%s: %d more lines could not be read", w.section, w.dropped))
	}
	return w.list
}

// validIfName checks an interface name as the kernel does
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func validIfName(s string) bool {
	if s == "" || len(s) > maxIfName || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == ':' || c <= ' ' || c == 0x7f:
			return false
		}
	}
	return true
}

// parseAddr parses an IP address, refusing zones (they never appear in
// these dumps) so a prefix cannot carry one.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("bad address %s", quote(s))
	}
	return a.Unmap(), nil
}

// parsePrefix parses ADDR or ADDR/LEN ("default" and "all" being the whole
// family); a bare address is a host prefix. family is 4, 6 or 0 (either).
func parsePrefix(s string, family int) (netip.Prefix, error) {
	switch s {
	case "default", "all", "any":
		if family == 6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
	}
	if addr, bits, ok := strings.Cut(s, "/"); ok {
		a, err := parseAddr(addr)
		if err != nil {
			return netip.Prefix{}, err
		}
		n, err := strconv.Atoi(bits)
		if err != nil || n < 0 || n > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("bad prefix length in %s", quote(s))
		}
		return netip.PrefixFrom(a, n).Masked(), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// parseUint parses decimal or 0x-hex.
func parseUint(s string, bits int) (uint64, error) {
	base := 10
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s, base = s[2:], 16
	}
	n, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("bad number %s", quote(s))
	}
	return n, nil
}

// protocols are iproute2's rt_protos names; a node's ip may print either
// the name or the number (an image without /etc/iproute2 prints numbers),
// so both compare equal after canonicalProto.
var protocols = map[string]string{
	"0": "unspec", "1": "redirect", "2": "kernel", "3": "boot", "4": "static",
	"8": "gated", "9": "ra", "10": "mrt", "11": "zebra", "12": "bird", "13": "dnrouted",
	"14": "xorp", "15": "ntk", "16": "dhcp", "18": "keepalived", "42": "babel",
	"99": "openr", "186": "bgp", "187": "isis", "188": "ospf", "189": "rip", "192": "eigrp",
}

func canonicalProto(s string) string {
	if name, ok := protocols[s]; ok {
		return name
	}
	return s
}

var scopes = map[string]string{
	"0": "global", "universe": "global", "global": "global",
	"200": "site", "site": "site",
	"253": "link", "link": "link",
	"254": "host", "host": "host",
	"255": "nowhere", "nowhere": "nowhere",
}

func canonicalScope(s string) string {
	if name, ok := scopes[s]; ok {
		return name
	}
	return s
}

// parseIfAddr parses an interface address ADDR[/LEN], keeping the host
// bits (10.244.0.1/24).
func parseIfAddr(s string) (netip.Prefix, error) {
	p, err := parsePrefix(s, 0)
	if err != nil {
		return p, err
	}
	a, _, _ := strings.Cut(s, "/")
	addr, err := parseAddr(a)
	if err != nil {
		return p, err
	}
	return netip.PrefixFrom(addr, p.Bits()), nil
}
