package ipvs

import (
	"strconv"
	"strings"
)

// saveLine reads one ipvsadm -Sn command: "-A -t 10.96.0.1:443 -s rr -p
// 10800" or "-a -t 10.96.0.1:443 -r 10.244.0.5:6443 -m -w 1".
func (p *parser) saveLine(line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	switch f[0] {
	case "-A", "--add-service":
		v := &VirtualServer{Scheduler: "wlc"} // ipvsadm's default
		rest, err := p.saveService(v, f[1:])
		if err != nil {
			return err
		}
		v.NetmaskBits = 32
		if v.IPv6 {
			v.NetmaskBits = 128
		}
		for i := 0; i < len(rest); i++ {
			opt := rest[i]
			val := func() (string, error) {
				if i+1 >= len(rest) {
					return "", p.errf("%s wants a value", short(opt))
				}
				i++
				return rest[i], nil
			}
			var s string
			switch opt {
			case "-s", "--scheduler":
				if s, err = val(); err == nil {
					if !schedName(s) {
						return p.errf("virtual server %s: bad scheduler name %s", v, short(s))
					}
					v.Scheduler = s
				}
			case "-p", "--persistent":
				v.Persistent, v.Timeout = true, 300 // ipvsadm's default timeout
				if i+1 < len(rest) && !strings.HasPrefix(rest[i+1], "-") {
					s, _ = val()
					t, perr := strconv.ParseUint(s, 10, 32)
					if perr != nil {
						return p.errf("virtual server %s: bad persistence timeout %s", v, short(s))
					}
					v.Timeout = uint32(t)
				}
			case "-M", "--netmask":
				if s, err = val(); err == nil {
					var b int
					if b, err = parseNetmask(s, v.IPv6); err == nil {
						v.NetmaskBits = b
					}
				}
			case "--pe":
				v.PE, err = val()
			case "-b", "--sched-flags":
				v.SchedFlags, err = val()
			case "-o", "--ops":
				v.OnePacket = true
			default:
				return p.errf("virtual server %s: unknown option %s", v, short(opt))
			}
			if err != nil {
				return p.errf("virtual server %s: %v", v, err)
			}
		}
		return p.addService(v)
	case "-a", "--add-server":
		key := &VirtualServer{}
		rest, err := p.saveService(key, f[1:])
		if err != nil {
			return err
		}
		v := p.findSaved(key)
		if v == nil {
			return p.errf("real server for virtual server %s before its -A line", key)
		}
		rs := &RealServer{Forward: Route, Weight: 1} // ipvsadm's defaults: -g, -w 1
		haveAddr := false
		for i := 0; i < len(rest); i++ {
			opt := rest[i]
			val := func() (string, error) {
				if i+1 >= len(rest) {
					return "", p.errf("%s wants a value", short(opt))
				}
				i++
				return rest[i], nil
			}
			var s string
			switch opt {
			case "-r", "--real-server":
				if s, err = val(); err == nil {
					rs.Addr, rs.Port, err = parseAddrPort(s)
					if err != nil && v.FWMark != 0 && !strings.Contains(s, ":") {
						// a firewall-mark service's server may have no port
						rs.Port, err = 0, nil
						if rs.Addr, err = parseBareAddr(s); err != nil {
							err = p.errf("real server %s: %v", short(s), err)
						}
					}
					haveAddr = err == nil
				}
			case "-m", "--masquerading":
				rs.Forward = Masq
			case "-g", "--gatewaying":
				rs.Forward = Route
			case "-i", "--ipip":
				rs.Forward = Tunnel
			case "-w", "--weight":
				if s, err = val(); err == nil {
					var w int
					if w, err = strconv.Atoi(s); err != nil || w < 0 {
						return p.errf("real server of %s: bad weight %s", v, short(s))
					}
					rs.Weight = w
				}
			case "-x", "--u-threshold", "-y", "--l-threshold":
				if s, err = val(); err == nil {
					n, perr := strconv.ParseUint(s, 10, 32)
					if perr != nil {
						return p.errf("real server of %s: bad threshold %s", v, short(s))
					}
					if opt == "-x" || opt == "--u-threshold" {
						rs.UThreshold = uint32(n)
					} else {
						rs.LThreshold = uint32(n)
					}
				}
			case "--tun-type":
				rs.TunType, err = val()
			case "--tun-port":
				_, err = val()
			case "--tun-nocsum", "--tun-csum", "--tun-remcsum":
			default:
				return p.errf("real server of %s: unknown option %s", v, short(opt))
			}
			if err != nil {
				return err
			}
		}
		if !haveAddr {
			return p.errf("real server of %s: no -r ADDRESS:PORT", v)
		}
		return p.addReal(v, rs)
	}
	return p.errf("unexpected line in ipvsadm -Sn output: %s", short(line))
}

// saveService reads the service selector at the start of an -A/-a line
// into v and returns the remaining options.
func (p *parser) saveService(v *VirtualServer, f []string) ([]string, error) {
	if len(f) < 2 {
		return nil, p.errf("want a virtual service (-t, -u, --sctp-service or -f)")
	}
	switch f[0] {
	case "-t", "--tcp-service", "-u", "--udp-service", "--sctp-service":
		v.Protocol = map[string]string{"-t": TCP, "--tcp-service": TCP, "-u": UDP, "--udp-service": UDP, "--sctp-service": SCTP}[f[0]]
		a, port, err := parseAddrPort(f[1])
		if err != nil {
			return nil, p.errf("virtual server %s: %v", short(f[1]), err)
		}
		v.Addr, v.Port, v.IPv6 = a, port, a.Is6()
		return f[2:], nil
	case "-f", "--fwmark-service":
		m, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || m == 0 {
			return nil, p.errf("bad firewall mark %s", short(f[1]))
		}
		v.FWMark = uint32(m)
		rest := f[2:]
		if len(rest) > 0 && (rest[0] == "-6" || rest[0] == "--ipv6") {
			v.IPv6, rest = true, rest[1:]
		}
		return rest, nil
	}
	return nil, p.errf("want a virtual service (-t, -u, --sctp-service or -f), not %s", short(f[0]))
}

func (p *parser) findSaved(key *VirtualServer) *VirtualServer {
	k := key.Key()
	if key.FWMark != 0 && key.IPv6 {
		k.Protocol = "IPv6"
	}
	return p.keys[k]
}
