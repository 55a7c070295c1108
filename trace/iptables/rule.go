package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Rule is one tokenized "-A CHAIN ..." line. Matches the simulator
// understands get typed fields; everything else is kept verbatim in Matches
// as an UnknownMatch, so no part of a rule is lost.
type Rule struct {
	Table string
	Chain string
	// Index is the rule's position in its chain (0-based); Line its line in
	// the dump (1-based).
	Index int
	Line  int
	// Text is the rule as in the dump after "-A CHAIN " (counters excluded).
	Text string
	// Packets and Bytes are the counters from "iptables-save -c" (zero
	// without -c); Counted tells whether the rule line had them.
	Packets, Bytes uint64
	Counted        bool
	// Comment is the -m comment text (kube-proxy names the Service there).
	Comment string

	Source, Destination *AddrMatch
	InInterface         *IfaceMatch
	OutInterface        *IfaceMatch
	// Protocol is the -p value, lower-case ("tcp", "udp", "sctp", "icmp", ...).
	Protocol        string
	ProtocolNegated bool
	// Fragment is -f (true) or ! -f (negated); nil when absent.
	Fragment *bool
	// Matches are the -m modules in the order they appear.
	Matches []Match
	Target  Target
}

// AddrMatch is -s/-d: an address or prefix, possibly negated.
type AddrMatch struct {
	Prefix  netip.Prefix
	Negated bool
}

// Contains reports whether the match accepts addr.
func (m *AddrMatch) Contains(addr netip.Addr) bool {
	return m.Prefix.Contains(addr) != m.Negated
}

// IfaceMatch is -i/-o: an interface name, "+" suffix meaning a prefix.
type IfaceMatch struct {
	Name    string
	Negated bool
}

// Matches reports whether the match accepts the interface name.
func (m *IfaceMatch) Matches(name string) bool {
	var ok bool
	if prefix, wild := strings.CutSuffix(m.Name, "+"); wild {
		ok = strings.HasPrefix(name, prefix)
	} else {
		ok = name == m.Name
	}
	return ok != m.Negated
}

// Match is one "-m module ..." clause.
type Match interface {
	// Module is the match's module name as written after -m.
	Module() string
	// option reads one of the module's options into the match (options.go).
	option(o option, r *Rule) error
}

// PortRange is an inclusive port range; a single port has First == Last.
type PortRange struct{ First, Last uint16 }

func (r PortRange) contains(p uint16) bool { return p >= r.First && p <= r.Last }

// PortMatch is the tcp/udp/sctp module (--dport/--sport) or multiport
// (--dports/--sports/--ports).
type PortMatch struct {
	Name                    string
	DPorts, SPorts, APorts  []PortRange // APorts: multiport --ports (either side)
	DNegated, SNegated, ANe bool
	// Other keeps options the simulator does not evaluate (--tcp-flags, ...).
	Other []string
}

func (m *PortMatch) Module() string { return m.Name }

// AddrTypeMatch is -m addrtype.
type AddrTypeMatch struct {
	SrcType, DstType       []string // e.g. ["LOCAL"]
	SrcNegated, DstNegated bool
	LimitIfaceIn           bool
	LimitIfaceOut          bool
}

func (m *AddrTypeMatch) Module() string { return "addrtype" }

// StatisticMatch is -m statistic.
type StatisticMatch struct {
	Mode        string // "random" or "nth"
	Probability float64
	Every       int
	Packet      int
	Negated     bool
}

func (m *StatisticMatch) Module() string { return "statistic" }

// Chance is the share of new connections the match accepts: the probability
// for random mode, 1/every for nth mode (round robin over connections).
func (m *StatisticMatch) Chance() float64 {
	p := m.Probability
	if m.Mode == "nth" {
		if m.Every <= 0 {
			return 0
		}
		p = 1 / float64(m.Every)
	}
	if m.Negated {
		p = 1 - p
	}
	return p
}

// RecentMatch is -m recent (kube-proxy's session affinity).
type RecentMatch struct {
	// Op is "set", "rcheck", "update" or "remove".
	Op       string
	Name     string
	Seconds  int
	HitCount int
	Reap     bool
	// Side is "rsource" (default) or "rdest".
	Side    string
	Mask    string
	Negated bool
}

func (m *RecentMatch) Module() string { return "recent" }

// MarkMatch is -m mark --mark value[/mask].
type MarkMatch struct {
	Value, Mask uint32
	Negated     bool
}

func (m *MarkMatch) Module() string { return "mark" }

// ConntrackMatch is -m conntrack (--ctstate) or -m state (--state).
type ConntrackMatch struct {
	Name    string
	States  []string
	Negated bool
	// Other keeps options the simulator does not evaluate (--ctstatus, ...).
	Other []string
}

func (m *ConntrackMatch) Module() string { return m.Name }

// SetMatch is -m set --match-set NAME FLAGS (ipsets, used by IPVS mode).
type SetMatch struct {
	Set     string
	Flags   string // e.g. "dst,dst"
	Negated bool
}

func (m *SetMatch) Module() string { return "set" }

// CommentMatch is -m comment; the text is also in Rule.Comment.
type CommentMatch struct{ Text string }

func (m *CommentMatch) Module() string { return "comment" }

// NFAcctMatch is -m nfacct --nfacct-name NAME: a counter that always matches.
type NFAcctMatch struct{ Name string }

func (m *NFAcctMatch) Module() string { return "nfacct" }

// UnknownMatch keeps a module the simulator does not understand, verbatim.
type UnknownMatch struct {
	Name string
	Args []string
}

func (m *UnknownMatch) Module() string { return m.Name }

// Target is the -j or -g part of a rule.
type Target struct {
	// Name is the target or chain ("DNAT", "KUBE-SVC-...", "ACCEPT"); empty
	// for a rule without a target (it only counts packets).
	Name string
	// Goto is true for -g (return goes to the caller's caller).
	Goto bool
	// DNAT / SNAT --to-destination / --to-source.
	NAT *NATTarget
	// MARK: the new mark is (mark & ^Mask) ^ Value for --set-xmark, and
	// the --or/--and/--xor/--set-mark forms are converted to that.
	Mark *MarkTarget
	// MASQUERADE options.
	RandomFully bool
	// RejectWith is REJECT's --reject-with, if given.
	RejectWith string
	// Args keeps the target's options verbatim.
	Args []string
}

// NATTarget is DNAT --to-destination or SNAT --to-source.
type NATTarget struct {
	Addr netip.Addr
	// Port is 0 when the target keeps the original port.
	Port uint16
	// Raw is the option's value as written.
	Raw string
}

// MarkTarget is a MARK target normalised to xor/mask form.
type MarkTarget struct {
	Value, Mask uint32
}

// Apply returns the packet mark after the target.
func (m MarkTarget) Apply(mark uint32) uint32 { return (mark &^ m.Mask) ^ m.Value }

// IsChainJump reports whether the target is a jump or goto to a user chain
// (rather than a built-in target such as DNAT or ACCEPT).
func (t Target) IsChainJump() bool {
	if t.Goto {
		return true
	}
	return t.Name != "" && !builtinTargets[t.Name]
}

var builtinTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "QUEUE": true, "NFQUEUE": true,
	"DNAT": true, "SNAT": true, "MASQUERADE": true, "REDIRECT": true, "NETMAP": true,
	"MARK": true, "CONNMARK": true, "LOG": true, "NFLOG": true, "TRACE": true, "CT": true, "NOTRACK": true,
	"TPROXY": true, "TCPMSS": true, "CHECKSUM": true, "DSCP": true, "TOS": true, "TTL": true, "HL": true,
	"CLASSIFY": true, "SET": true, "AUDIT": true, "CONNSECMARK": true, "SECMARK": true, "ULOG": true,
}

// tokenize splits a rule body the way iptables-save quotes it: words split by
// spaces; a word may be double-quoted, with \" and \\ escapes inside quotes.
// quoted[i] tells whether word i was quoted (and so is always a value).
func tokenize(s string) (out []string, quoted []bool, err error) {
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			break
		}
		if s[i] != '"' {
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' {
				j++
			}
			out = append(out, s[i:j])
			quoted = append(quoted, false)
			i = j
			continue
		}
		// Quoted word.
		var b strings.Builder
		j := i + 1
		closed := false
		for j < len(s) {
			c := s[j]
			if c == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
				b.WriteByte(s[j+1])
				j += 2
				continue
			}
			if c == '"' {
				closed = true
				j++
				break
			}
			b.WriteByte(c)
			j++
		}
		if !closed {
			return nil, nil, fmt.Errorf("unterminated quote in %s", excerpt.Quote(s[i:]))
		}
		out = append(out, b.String())
		quoted = append(quoted, true)
		i = j
	}
	return out, quoted, nil
}

// parseRule tokenizes one rule body (the text after "-A CHAIN ", optionally
// preceded by "[packets:bytes] ").
func parseRule(body string) (*Rule, error) {
	r := &Rule{Text: body}
	if strings.HasPrefix(body, "[") {
		end := strings.IndexByte(body, ']')
		if end < 0 {
			return nil, fmt.Errorf("bad counters in %s", excerpt.Quote(body))
		}
		pk, by, _ := strings.Cut(body[1:end], ":")
		r.Packets, _ = strconv.ParseUint(pk, 10, 64)
		r.Bytes, _ = strconv.ParseUint(by, 10, 64)
		r.Counted = true
		r.Text = strings.TrimLeft(body[end+1:], " ")
	}
	toks, quoted, err := tokenize(r.Text)
	if err != nil {
		return nil, err
	}
	rp := ruleParser{toks: toks, quoted: quoted, r: r}
	if err := rp.parse(); err != nil {
		return nil, err
	}
	return r, nil
}

type ruleParser struct {
	toks   []string
	quoted []bool
	i      int
	r      *Rule
	// cur is the module whose options follow (the last -m, or the implicit
	// protocol module after -p).
	cur Match
}

func (p *ruleParser) more() bool   { return p.i < len(p.toks) }
func (p *ruleParser) peek() string { return p.toks[p.i] }
func (p *ruleParser) next() string { t := p.toks[p.i]; p.i++; return t }

// value returns the option argument after tok, or an error.
func (p *ruleParser) value(opt string) (string, error) {
	if !p.more() {
		return "", fmt.Errorf("option %s needs a value", excerpt.Clip(opt))
	}
	return p.next(), nil
}

// optArgs collects the arguments of a module option: every following token
// up to the next option ("-x", "--x") or negation.
func (p *ruleParser) optArgs() []string {
	var args []string
	for p.more() {
		t := p.peek()
		if !p.quoted[p.i] && (t == "!" || (strings.HasPrefix(t, "-") && len(t) > 1 && !isNumber(t))) {
			break
		}
		args = append(args, p.next())
	}
	return args
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (p *ruleParser) parse() error {
	for p.more() {
		neg := false
		quoted := p.quoted[p.i]
		tok := p.next()
		if tok == "!" && !quoted {
			neg = true
			if !p.more() {
				return fmt.Errorf("'!' at the end of the rule")
			}
			tok = p.next()
		}
		switch tok {
		case "-s", "--source", "-d", "--destination":
			v, err := p.value(tok)
			if err != nil {
				return err
			}
			pfx, err := parseAddrOrPrefix(v)
			if err != nil {
				return fmt.Errorf("%s %s: %v", excerpt.Clip(tok), excerpt.Quote(v), err)
			}
			m := &AddrMatch{Prefix: pfx, Negated: neg}
			if tok == "-s" || tok == "--source" {
				p.r.Source = m
			} else {
				p.r.Destination = m
			}
		case "-p", "--protocol":
			v, err := p.value(tok)
			if err != nil {
				return err
			}
			p.r.Protocol, p.r.ProtocolNegated = normalizeProto(v), neg
		case "-i", "--in-interface", "-o", "--out-interface":
			v, err := p.value(tok)
			if err != nil {
				return err
			}
			m := &IfaceMatch{Name: v, Negated: neg}
			if tok == "-i" || tok == "--in-interface" {
				p.r.InInterface = m
			} else {
				p.r.OutInterface = m
			}
		case "-f", "--fragment":
			f := !neg
			p.r.Fragment = &f
		case "-m", "--match":
			if neg {
				return fmt.Errorf("'!' before -m")
			}
			v, err := p.value(tok)
			if err != nil {
				return err
			}
			p.startModule(v)
		case "-j", "--jump", "-g", "--goto":
			if neg {
				return fmt.Errorf("'!' before %s", excerpt.Clip(tok))
			}
			v, err := p.value(tok)
			if err != nil {
				return err
			}
			p.r.Target.Name = v
			p.r.Target.Goto = tok == "-g" || tok == "--goto"
			return p.parseTarget()
		default:
			if quoted || !strings.HasPrefix(tok, "--") {
				return fmt.Errorf("unexpected %s", excerpt.Quote(tok))
			}
			if _, isPorts := p.cur.(*PortMatch); !isPorts && p.r.Protocol != "" && portOptions[tok] {
				// "-p tcp --dport 80" without "-m tcp": the protocol
				// module is implicit.
				p.startModule(p.r.Protocol)
			}
			if p.cur == nil {
				return fmt.Errorf("option %s outside of any -m module", excerpt.Clip(tok))
			}
			if err := p.moduleOption(tok, neg); err != nil {
				return err
			}
		}
	}
	return nil
}

var portOptions = map[string]bool{
	"--dport": true, "--destination-port": true, "--sport": true, "--source-port": true,
	"--tcp-flags": true, "--syn": true, "--tcp-option": true,
}

func (p *ruleParser) startModule(name string) {
	var m Match
	switch name {
	case "tcp", "udp", "sctp", "multiport", "udplite", "dccp":
		m = &PortMatch{Name: name}
	case "addrtype":
		m = &AddrTypeMatch{}
	case "statistic":
		m = &StatisticMatch{}
	case "recent":
		m = &RecentMatch{Side: "rsource"}
	case "mark":
		m = &MarkMatch{}
	case "conntrack", "state":
		m = &ConntrackMatch{Name: name}
	case "set":
		m = &SetMatch{}
	case "comment":
		m = &CommentMatch{}
	case "nfacct":
		m = &NFAcctMatch{}
	default:
		m = &UnknownMatch{Name: name}
	}
	p.r.Matches = append(p.r.Matches, m)
	p.cur = m
}

// moduleOption parses one option of the current module with that match
// kind's own option parser (options.go).
func (p *ruleParser) moduleOption(opt string, neg bool) error {
	return p.cur.option(option{module: p.cur.Module(), name: opt, neg: neg, args: p.optArgs()}, p.r)
}

// parseTarget reads the options after -j/-g; they run to the end of the rule.
func (p *ruleParser) parseTarget() error {
	t := &p.r.Target
	t.Args = append([]string(nil), p.toks[p.i:]...)
	for p.more() {
		opt := p.next()
		if opt == "!" {
			return fmt.Errorf("'!' in the options of target %s", excerpt.Clip(t.Name))
		}
		args := p.optArgs()
		switch t.Name + " " + opt {
		case "DNAT --to-destination", "SNAT --to-source":
			if len(args) != 1 {
				return fmt.Errorf("%s %s wants one value", excerpt.Clip(t.Name), excerpt.Clip(opt))
			}
			nat, err := parseNATTarget(args[0])
			if err != nil {
				return fmt.Errorf("%s %s %s: %v", excerpt.Clip(t.Name), excerpt.Clip(opt), excerpt.Quote(args[0]), err)
			}
			t.NAT = nat
		case "MARK --set-xmark", "MARK --set-mark", "MARK --or-mark", "MARK --and-mark", "MARK --xor-mark":
			if len(args) != 1 {
				return fmt.Errorf("MARK %s wants one value", excerpt.Clip(opt))
			}
			mt, err := parseMarkTarget(opt, args[0])
			if err != nil {
				return fmt.Errorf("MARK %s %s: %v", excerpt.Clip(opt), excerpt.Quote(args[0]), err)
			}
			t.Mark = &mt
		case "MASQUERADE --random-fully":
			t.RandomFully = true
		case "REJECT --reject-with":
			if len(args) == 1 {
				t.RejectWith = args[0]
			}
		}
	}
	if (t.Name == "DNAT" || t.Name == "SNAT") && t.NAT == nil {
		return fmt.Errorf("%s target without an address", excerpt.Clip(t.Name))
	}
	if t.Name == "MARK" && t.Mark == nil {
		return fmt.Errorf("MARK target without a mark operation")
	}
	return nil
}

func normalizeProto(v string) string {
	v = strings.ToLower(v)
	switch v {
	case "6":
		return "tcp"
	case "17":
		return "udp"
	case "132":
		return "sctp"
	case "1":
		return "icmp"
	case "58", "ipv6-icmp", "icmpv6":
		return "ipv6-icmp"
	}
	return v
}

// parseAddrOrPrefix accepts "1.2.3.4", "1.2.3.0/24", "1.2.3.0/255.255.255.0"
// and the IPv6 forms.
func parseAddrOrPrefix(v string) (netip.Prefix, error) {
	addrPart, maskPart, hasMask := strings.Cut(v, "/")
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an IP address")
	}
	bits := addr.BitLen()
	if hasMask {
		if n, err := strconv.Atoi(maskPart); err == nil {
			bits = n
		} else {
			mask, err := netip.ParseAddr(maskPart)
			if err != nil || mask.BitLen() != addr.BitLen() {
				return netip.Prefix{}, fmt.Errorf("bad mask %s", excerpt.Quote(maskPart))
			}
			bits = maskBits(mask)
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("non-contiguous mask %s is not supported", excerpt.Quote(maskPart))
			}
		}
	}
	pfx, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix length %d", bits)
	}
	return pfx, nil
}

// maskBits returns the prefix length of a contiguous netmask, or -1.
func maskBits(mask netip.Addr) int {
	b := mask.AsSlice()
	n := 0
	seenZero := false
	for _, by := range b {
		for i := 7; i >= 0; i-- {
			if by&(1<<i) != 0 {
				if seenZero {
					return -1
				}
				n++
			} else {
				seenZero = true
			}
		}
	}
	return n
}

// parsePorts reads "80", "30000:32767" or a multiport list "80,443,8000:8080".
func parsePorts(v string) ([]PortRange, error) {
	var out []PortRange
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		first, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port %s", excerpt.Quote(part))
		}
		last := first
		if isRange {
			if last, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("bad port %s", excerpt.Quote(part))
			}
		}
		out = append(out, PortRange{First: uint16(first), Last: uint16(last)})
	}
	return out, nil
}

// parseMark reads "0x4000" or "0x4000/0x4000" (mask defaults to all ones).
func parseMark(v string) (val, mask uint32, err error) {
	vs, ms, hasMask := strings.Cut(v, "/")
	val64, err := strconv.ParseUint(vs, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark value")
	}
	mask64 := uint64(0xffffffff)
	if hasMask {
		if mask64, err = strconv.ParseUint(ms, 0, 32); err != nil {
			return 0, 0, fmt.Errorf("bad mark mask")
		}
	}
	return uint32(val64), uint32(mask64), nil
}

// parseMarkTarget converts the MARK forms to (value, mask) with
// new = (old &^ mask) ^ value, as the kernel's xt_MARK does.
func parseMarkTarget(opt, v string) (MarkTarget, error) {
	val, mask, err := parseMark(v)
	if err != nil {
		return MarkTarget{}, err
	}
	switch opt {
	case "--set-xmark":
		return MarkTarget{Value: val, Mask: mask}, nil
	case "--set-mark":
		// --set-mark value/mask == --set-xmark value/(mask|value) when the
		// value fits in the mask; for the plain form mask is all ones.
		return MarkTarget{Value: val, Mask: mask | val}, nil
	case "--or-mark":
		return MarkTarget{Value: val, Mask: val}, nil
	case "--and-mark":
		return MarkTarget{Value: 0, Mask: ^val}, nil
	case "--xor-mark":
		return MarkTarget{Value: val, Mask: 0}, nil
	}
	return MarkTarget{}, fmt.Errorf("unknown MARK option %s", excerpt.Clip(opt))
}

// parseNATTarget reads "10.0.0.1:80", "10.0.0.1", "[fd00::1]:80", "fd00::1".
func parseNATTarget(v string) (*NATTarget, error) {
	nt := &NATTarget{Raw: v}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		nt.Addr, nt.Port = ap.Addr(), ap.Port()
		return nt, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
		nt.Addr = a
		return nt, nil
	}
	// Ranges ("10.0.0.1-10.0.0.5:80-90") are valid iptables but never
	// written by kube-proxy; keep the first address and port.
	host, port := v, ""
	if i := strings.LastIndex(v, ":"); i >= 0 && !strings.Contains(v[:i], ":") {
		host, port = v[:i], v[i+1:]
	}
	host, _, _ = strings.Cut(strings.Trim(host, "[]"), "-")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("not an address[:port]")
	}
	nt.Addr = a
	if port != "" {
		lo, _, _ := strings.Cut(port, "-")
		n, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port")
		}
		nt.Port = uint16(n)
	}
	return nt, nil
}
