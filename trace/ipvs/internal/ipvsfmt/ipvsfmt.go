// Package ipvsfmt writes an IPVS table the way a node prints it: the
// kernel's /proc/net/ip_vs (ip_vs_info_seq_show) and ipvsadm 1.31's -Ln and
// -Sn. Tests use it to turn kube-proxy's fake IPVS state into the files a
// real node would give the collector, so the parsers are exercised on the
// real formats; it is checked against published real outputs byte for byte.
package ipvsfmt

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
)

// header is the first line of /proc/net/ip_vs and ipvsadm -L, with the
// kernel's defaults when the table does not say.
func header(t *ipvs.Table) string {
	ver, size := t.Version, t.ConnTabSize
	if ver == "" {
		ver = "1.2.1"
	}
	if size == 0 {
		size = 4096
	}
	return fmt.Sprintf("IP Virtual Server version %s (size=%d)\n", ver, size)
}

// Proc writes /proc/net/ip_vs.
func Proc(w io.Writer, t *ipvs.Table) error {
	b := bufio.NewWriter(w)
	b.WriteString(header(t))
	b.WriteString("Prot LocalAddress:Port Scheduler Flags\n")
	b.WriteString("  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n")
	for _, v := range t.Services {
		ops := ""
		if v.OnePacket {
			ops = "ops "
		}
		switch {
		case v.FWMark != 0:
			fmt.Fprintf(b, "FWM  %08X %s %s", v.FWMark, v.Scheduler, ops)
		case v.Addr.Is6():
			// the kernel prints no "ops" for IPv6 services
			fmt.Fprintf(b, "%s  [%s]:%04X %s ", v.Protocol, fullIPv6(v.Addr), v.Port, v.Scheduler)
		default:
			fmt.Fprintf(b, "%s  %08X:%04X %s %s ", v.Protocol, hex4(v.Addr), v.Port, v.Scheduler, ops)
		}
		if v.Persistent {
			fmt.Fprintf(b, "persistent %d %08X\n", v.Timeout, procNetmask(v))
		} else {
			b.WriteByte('\n')
		}
		for _, r := range v.Reals {
			if r.Addr.Is6() {
				fmt.Fprintf(b, "  -> [%s]:%04X", fullIPv6(r.Addr), r.Port)
			} else {
				fmt.Fprintf(b, "  -> %08X:%04X", hex4(r.Addr), r.Port)
			}
			fmt.Fprintf(b, "      %-7s %-6d %-10d %-10d\n", forward(r), r.Weight, r.ActiveConn, r.InactConn)
		}
	}
	return b.Flush()
}

// List writes ipvsadm -Ln.
func List(w io.Writer, t *ipvs.Table) error {
	b := bufio.NewWriter(w)
	b.WriteString(header(t))
	b.WriteString("Prot LocalAddress:Port Scheduler Flags\n")
	b.WriteString("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	for _, v := range t.Services {
		var name string
		switch {
		case v.FWMark != 0 && v.IPv6:
			name = fmt.Sprintf("FWM  %d IPv6", v.FWMark)
		case v.FWMark != 0:
			name = fmt.Sprintf("FWM  %d", v.FWMark)
		default:
			name = fmt.Sprintf("%-4s %s", v.Protocol, netip.AddrPortFrom(v.Addr, v.Port))
			if !v.Addr.Is6() && len(name) > 33 {
				name = name[:33]
			}
		}
		fmt.Fprintf(b, "%s %s", name, v.Scheduler)
		if v.Persistent {
			fmt.Fprintf(b, " persistent %d", v.Timeout)
			if m := maskText(v); m != "" {
				b.WriteString(" mask " + m)
			}
			if v.PE != "" {
				b.WriteString(" pe " + v.PE)
			}
		}
		if v.OnePacket {
			b.WriteString(" ops")
		}
		b.WriteByte('\n')
		for _, r := range v.Reals {
			d := netip.AddrPortFrom(r.Addr, r.Port).String()
			if !v.IPv6 && len(d) > 28 {
				d = d[:28]
			}
			fmt.Fprintf(b, "  -> %-28s %-7s %-6d %-10d %-10d\n", d, forward(r), r.Weight, r.ActiveConn, r.InactConn)
		}
	}
	return b.Flush()
}

// Save writes ipvsadm -Sn.
func Save(w io.Writer, t *ipvs.Table) error {
	b := bufio.NewWriter(w)
	for _, v := range t.Services {
		var name string
		switch {
		case v.FWMark != 0 && v.IPv6:
			name = fmt.Sprintf("-f %d -6", v.FWMark)
		case v.FWMark != 0:
			name = fmt.Sprintf("-f %d", v.FWMark)
		default:
			flag := map[string]string{ipvs.TCP: "-t", ipvs.UDP: "-u", ipvs.SCTP: "--sctp-service"}[v.Protocol]
			name = fmt.Sprintf("%s %s", flag, netip.AddrPortFrom(v.Addr, v.Port))
		}
		fmt.Fprintf(b, "-A %s -s %s", name, v.Scheduler)
		if v.Persistent {
			fmt.Fprintf(b, " -p %d", v.Timeout)
			if m := maskText(v); m != "" {
				b.WriteString(" -M " + m)
			}
		}
		if v.PE != "" {
			b.WriteString(" --pe " + v.PE)
		}
		if v.SchedFlags != "" {
			b.WriteString(" -b " + v.SchedFlags)
		}
		if v.OnePacket {
			b.WriteString(" -o")
		}
		b.WriteByte('\n')
		for _, r := range v.Reals {
			sw := map[string]string{ipvs.Masq: "-m", ipvs.Tunnel: "-i", ipvs.Route: "-g", ipvs.Local: "-g"}[forward(r)]
			fmt.Fprintf(b, "-a %s -r %s %s -w %d", name, netip.AddrPortFrom(r.Addr, r.Port), sw, r.Weight)
			if r.TunType != "" {
				b.WriteString(" --tun-type " + r.TunType)
			}
			b.WriteByte('\n')
		}
	}
	return b.Flush()
}

// String renders one of the formats into a string.
func String(f ipvs.Format, t *ipvs.Table) string {
	var sb strings.Builder
	switch f {
	case ipvs.FormatProc:
		_ = Proc(&sb, t)
	case ipvs.FormatList:
		_ = List(&sb, t)
	case ipvs.FormatSave:
		_ = Save(&sb, t)
	}
	return sb.String()
}

func forward(r *ipvs.RealServer) string {
	if r.Forward == "" {
		return ipvs.Masq
	}
	return r.Forward
}

func hex4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// fullIPv6 is the kernel's %pI6: eight groups of four hex digits.
func fullIPv6(a netip.Addr) string {
	b := a.As16()
	var sb strings.Builder
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x%02x", b[i], b[i+1])
	}
	return sb.String()
}

func netmaskBits(v *ipvs.VirtualServer) int {
	if v.NetmaskBits == 0 {
		if v.IPv6 {
			return 128
		}
		return 32
	}
	return v.NetmaskBits
}

// procNetmask is what the kernel prints after "persistent TIMEOUT": the
// IPv4 mask, or an IPv6 prefix length byte-swapped as a little-endian
// node shows it.
func procNetmask(v *ipvs.VirtualServer) uint32 {
	n := netmaskBits(v)
	if v.IPv6 {
		return bits.ReverseBytes32(uint32(n))
	}
	return ^uint32(0) << (32 - n)
}

// maskText is ipvsadm's mask, printed only when it is not all ones.
func maskText(v *ipvs.VirtualServer) string {
	n := netmaskBits(v)
	if v.IPv6 {
		if n == 128 {
			return ""
		}
		return fmt.Sprint(n)
	}
	if n == 32 {
		return ""
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], ^uint32(0)<<(32-n))
	return netip.AddrFrom4(b).String()
}
