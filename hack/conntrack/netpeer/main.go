// Command netpeer makes the real connections behind trace/conntrack's
// fixtures (hack/conntrack/gen.sh). It runs inside network namespaces the
// script creates: as a pod's server, or as the client that opens TCP
// connections, sends UDP queries, pings and sends raw SCTP INIT, GRE and
// unknown-protocol packets. It never talks to anything outside those
// namespaces: every address comes from the script.
//
//	netpeer serve -name A -tcp 8080 -udp 5353,7777
//	netpeer tcp -addr 10.96.14.10:80 -n 8 [-hold 5m]
//	netpeer udp -addr 10.96.14.10:53 -n 10
//	netpeer udp-stream -addr 10.96.14.53:53 -sport 40053 -every 200ms
//	netpeer ping -addr 10.14.1.2
//	netpeer raw -addr 10.96.14.10 -proto sctp -dport 9
//	netpeer chain SVC|EXT|SEP NAMESPACE/NAME:PORT PROTO [IP:PORT]
//
// tcp and udp print one "BACKEND COUNT" line per backend that answered (and
// "noreply N"), so the script can compare with what conntrack recorded.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: netpeer serve|tcp|udp|udp-stream|ping|raw [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	name := fs.String("name", "", "serve: the name each reply carries")
	tcpPorts := fs.String("tcp", "", "serve: TCP ports, comma-separated")
	udpPorts := fs.String("udp", "", "serve: UDP ports, comma-separated")
	addr := fs.String("addr", "", "the address to reach (ip:port, or ip for ping and raw)")
	n := fs.Int("n", 1, "tcp, udp, raw: how many connections or packets")
	hold := fs.Duration("hold", 0, "tcp: keep the connections open this long after the replies (until SIGTERM)")
	sport := fs.Int("sport", 0, "udp-stream: the local port to send from")
	every := fs.Duration("every", 200*time.Millisecond, "udp-stream: interval between datagrams")
	proto := fs.String("proto", "", "raw: sctp, gre or a protocol number")
	dport := fs.Int("dport", 0, "raw sctp: destination port")
	laddr := fs.String("laddr", "", "udp, udp-stream: the local address to send from")
	_ = fs.Parse(args)

	switch cmd {
	case "serve":
		serve(*name, ports(*tcpPorts), ports(*udpPorts))
	case "tcp":
		tcpClient(*addr, *n, *hold)
	case "udp":
		udpClient(*addr, *laddr, *n)
	case "udp-stream":
		udpStream(*addr, *laddr, *sport, *every)
	case "ping":
		ping(*addr)
	case "raw":
		raw(*addr, *proto, *dport, *n)
	case "chain":
		chain(fs.Args())
	default:
		fail("unknown command " + cmd)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "netpeer:", msg)
	os.Exit(1)
}

func ports(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			fail("bad port " + f)
		}
		out = append(out, p)
	}
	return out
}

// serve answers every TCP connection and UDP datagram with its name. A TCP
// connection is answered once and then left for the client to close, so
// the client's side ends in TIME_WAIT and held connections stay
// ESTABLISHED.
func serve(name string, tcp, udp []int) {
	reply := []byte(name + "\n")
	for _, p := range tcp {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fail(err.Error())
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := c.Write(reply); err != nil {
						return
					}
					_, _ = r.ReadString('\n') // until the client closes
				}()
			}
		}()
	}
	for _, p := range udp {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			fail(err.Error())
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(reply, from)
			}
		}()
	}
	fmt.Println("ready")
	waitSignal()
}

func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
}

func (t *tally) print() {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s %d\n", k, t.m[k])
	}
}

// tcpClient opens n connections one after the other, each asking once for
// the backend's name. Without -hold each is closed at once; with it all stay
// open until the time is up or SIGTERM.
func tcpClient(addr string, n int, hold time.Duration) {
	var t tally
	var open []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.add("noreply")
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write([]byte("hi\n"))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.add("noreply")
		} else {
			t.add(strings.TrimSpace(line))
		}
		if hold > 0 {
			_ = c.SetDeadline(time.Time{})
			open = append(open, c)
		} else {
			c.Close()
		}
	}
	t.print()
	if hold > 0 {
		os.Stdout.Close() // the script reads the tally before the hold ends
		done := make(chan struct{})
		go func() { waitSignal(); close(done) }()
		select {
		case <-done:
		case <-time.After(hold):
		}
		for _, c := range open {
			c.Close()
		}
	}
}

// udpClient sends n queries, each from its own socket (its own source
// port), so each is one conntrack entry.
func udpClient(addr, laddr string, n int) {
	var t tally
	buf := make([]byte, 1500)
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		fail(err.Error())
	}
	for i := 0; i < n; i++ {
		c, err := net.DialUDP("udp", localUDP(laddr, 0), raddr)
		if err != nil {
			fail(err.Error())
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write([]byte("query\n"))
		m, err := c.Read(buf)
		if err != nil {
			t.add("noreply")
		} else {
			t.add(strings.TrimSpace(string(buf[:m])))
		}
		c.Close()
	}
	t.print()
}

// udpStream keeps sending from one source port, as a resolver library
// that reuses its socket does: one conntrack entry that every datagram
// keeps alive. It prints the first reply's backend once.
func udpStream(addr, laddr string, sport int, every time.Duration) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		fail(err.Error())
	}
	c, err := net.DialUDP("udp", localUDP(laddr, sport), raddr)
	if err != nil {
		fail(err.Error())
	}
	go func() {
		buf := make([]byte, 1500)
		first := true
		for {
			m, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors after the backend is gone
			}
			if first {
				fmt.Println(strings.TrimSpace(string(buf[:m])))
				first = false
			}
		}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for {
		_, _ = c.Write([]byte("query\n"))
		select {
		case <-sig:
			c.Close()
			return
		case <-tick.C:
		}
	}
}

func localUDP(laddr string, port int) *net.UDPAddr {
	a := &net.UDPAddr{Port: port}
	if laddr != "" {
		ip, err := netip.ParseAddr(laddr)
		if err != nil {
			fail(err.Error())
		}
		a.IP = ip.AsSlice()
	}
	return a
}

// ping sends one ICMP (or ICMPv6) echo request and waits for the reply.
func ping(addr string) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		fail(err.Error())
	}
	network, typ := "ip4:icmp", byte(8)
	if ip.Is6() {
		network, typ = "ip6:ipv6-icmp", 128
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	msg := []byte{typ, 0, 0, 0, 0x14, 0x14, 0, 1, 'h', '1', '4'}
	if ip.Is4() {
		binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	} // the kernel fills in the ICMPv6 checksum
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: ip.AsSlice()}); err != nil {
		fail(err.Error())
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	if _, _, err := c.ReadFrom(buf); err != nil {
		fmt.Println("noreply 1")
		return
	}
	fmt.Println("reply 1")
}

// raw sends n packets of a protocol the client's kernel has no socket for:
// an SCTP INIT chunk (this kernel has no SCTP, but conntrack tracks it),
// a GRE header, or a few bytes of any other protocol number.
func raw(addr, proto string, dport, n int) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		fail(err.Error())
	}
	num := 0
	switch proto {
	case "sctp":
		num = 132
	case "gre":
		num = 47
	default:
		if num, err = strconv.Atoi(proto); err != nil {
			fail("bad protocol " + proto)
		}
	}
	fam := "ip4:"
	if ip.Is6() {
		fam = "ip6:"
	}
	c, err := net.ListenPacket(fam+strconv.Itoa(num), "")
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		var pkt []byte
		switch num {
		case 132:
			pkt = sctpInit(uint16(40000+i), uint16(dport), uint32(0x14140000+i))
		case 47:
			pkt = []byte{0, 0, 0x08, 0x00, 0x45, 0, 0, 20} // GRE, IPv4 payload follows (truncated)
		default:
			pkt = []byte("h14 unknown protocol")
		}
		if _, err := c.WriteTo(pkt, &net.IPAddr{IP: ip.AsSlice()}); err != nil {
			fail(err.Error())
		}
	}
	fmt.Printf("sent %d\n", n)
}

// sctpInit builds an SCTP packet with one INIT chunk (RFC 9260 3.3.2),
// checksummed with CRC32c as conntrack verifies it.
func sctpInit(sport, dport uint16, tag uint32) []byte {
	p := make([]byte, 12+20)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	// verification tag 0 for INIT; checksum at p[8:12] filled below
	c := p[12:]
	c[0] = 1                              // INIT
	binary.BigEndian.PutUint16(c[2:], 20) // chunk length
	binary.BigEndian.PutUint32(c[4:], tag)
	binary.BigEndian.PutUint32(c[8:], 65536) // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], tag)  // initial TSN
	sum := crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
	binary.LittleEndian.PutUint32(p[8:], sum)
	return p
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// chain prints kube-proxy's name for a service port's chain (SVC, EXT) or an
// endpoint's chain (SEP), so the script's rules carry the names kube-proxy
// would give them.
func chain(args []string) {
	if len(args) < 3 {
		fail("usage: netpeer chain SVC|EXT|SEP NAMESPACE/NAME:PORT PROTO [IP:PORT]")
	}
	kind, spn, proto := args[0], args[1], args[2]
	switch kind {
	case "SVC":
		fmt.Println(iptables.ServiceChain(iptables.PrefixService, spn, proto))
	case "EXT":
		fmt.Println(iptables.ServiceChain(iptables.PrefixExternal, spn, proto))
	case "SEP":
		if len(args) < 4 {
			fail("SEP needs the endpoint IP:PORT")
		}
		ep, err := netip.ParseAddrPort(args[3])
		if err != nil {
			fail(err.Error())
		}
		fmt.Println(iptables.EndpointChain(spn, proto, ep))
	default:
		fail("unknown chain kind " + kind)
	}
}
