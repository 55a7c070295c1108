package nftables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// StmtKind says what a statement does.
type StmtKind int

const (
	// StmtMatch compares a selector (or a concatenation of them) with a
	// value, an anonymous set or a named set: "ip daddr @cluster-ips".
	StmtMatch StmtKind = iota + 1
	// StmtVerdict is jump, goto, return, accept, drop or reject.
	StmtVerdict
	// StmtVMap looks a key up in a verdict map and applies the verdict:
	// "ip daddr . meta l4proto . th dport vmap @service-ips",
	// "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }".
	StmtVMap
	// StmtSetMark is "meta mark set meta mark | 0x4000" (also ^, &, plain).
	StmtSetMark
	// StmtDNAT is "dnat to ADDR[:PORT]" or
	// "dnat ip to numgen random mod N map { 0 : ADDR . PORT, ... }".
	StmtDNAT
	// StmtMasquerade is "masquerade [fully-random]".
	StmtMasquerade
	// StmtUpdateSet is "update @set { ip saddr }" (session affinity).
	StmtUpdateSet
	// StmtNop is counter, log, comment and other statements without effect
	// on the verdict.
	StmtNop
)

// Selector is one packet field: "ip daddr", "meta l4proto", "th dport",
// "ct state", "fib daddr type", "meta mark", "numgen random mod N".
type Selector struct {
	Proto, Field string
	// Mod is numgen's modulus.
	Mod int
}

func (s Selector) String() string {
	if s.Proto == "numgen" {
		return fmt.Sprintf("numgen random mod %d", s.Mod)
	}
	return s.Proto + " " + s.Field
}

// Stmt is one statement of a rule.
type Stmt struct {
	Kind StmtKind
	// Left is the key: one selector, or a concatenation.
	Left []Selector
	// Mask is "& MASK" applied to Left before comparing (meta mark & 0x4000).
	Mask    uint32
	HasMask bool
	// Negate is "!=" (a match fails when the value is among Right).
	Negate bool
	// Right is what Left is compared with or looked up in: a named set
	// (SetRef) or literal elements (one for a plain value, several for
	// "{ a, b }").
	SetRef string
	Values []Element
	// Verdict holds jump/goto targets and terminal verdicts.
	Verdict Verdict
	// MarkOp and MarkValue: the new mark is "mark MarkOp MarkValue" ("|",
	// "^", "&") or MarkValue when MarkOp is "=".
	MarkOp    string
	MarkValue uint32
	// DNAT targets: one fixed, or one per numgen value.
	To    netip.AddrPort
	ToMap []netip.AddrPort
}

// Verdict is a terminal or jump verdict.
type Verdict struct {
	Kind   string // jump goto return accept drop reject continue
	Target string
}

func (v Verdict) String() string {
	if v.Target != "" {
		return v.Kind + " " + v.Target
	}
	return v.Kind
}

// parseVerdict reads a verdict as printed in a verdict map element.
func parseVerdict(s string) Verdict {
	f := strings.Fields(s)
	switch {
	case len(f) == 2 && (f[0] == "jump" || f[0] == "goto"):
		return Verdict{Kind: f[0], Target: f[1]}
	case len(f) >= 1:
		return Verdict{Kind: f[0]}
	}
	return Verdict{}
}

func (s Stmt) targets() []string {
	var out []string
	if s.Verdict.Target != "" {
		out = append(out, s.Verdict.Target)
	}
	if s.Kind == StmtVMap {
		for _, e := range s.Values {
			if v := parseVerdict(e.Data); v.Target != "" {
				out = append(out, v.Target)
			}
		}
	}
	return out
}

func (s Stmt) setRefs() []string {
	if s.SetRef != "" {
		return []string{s.SetRef}
	}
	return nil
}

// parseRule fills r.Stmts from r.Text; what it cannot read goes to r.Unknown.
func parseRule(r *Rule) {
	p := &stmtParser{toks: tokenize(r.Text)}
	for !p.done() {
		st, err := p.statement(r)
		if err != nil {
			r.Unknown = err.Error()
			return
		}
		if st.Kind != 0 {
			r.Stmts = append(r.Stmts, st)
		}
	}
}

type stmtParser struct {
	toks []string
	i    int
}

func (p *stmtParser) done() bool   { return p.i >= len(p.toks) }
func (p *stmtParser) peek() string { return p.at(0) }
func (p *stmtParser) at(k int) string {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return ""
}
func (p *stmtParser) next() string { t := p.peek(); p.i++; return t }

// selectorFields lists, per protocol word, the fields the evaluator knows.
var selectorFields = map[string]map[string]bool{
	"ip":   {"saddr": true, "daddr": true, "protocol": true},
	"ip6":  {"saddr": true, "daddr": true, "nexthdr": true},
	"meta": {"l4proto": true, "mark": true, "iifname": true, "oifname": true, "nfproto": true, "iif": true, "oif": true},
	"th":   {"dport": true, "sport": true},
	"tcp":  {"dport": true, "sport": true},
	"udp":  {"dport": true, "sport": true},
	"sctp": {"dport": true, "sport": true},
	"ct":   {"state": true, "status": true},
}

func (p *stmtParser) statement(r *Rule) (Stmt, error) {
	t := p.peek()
	switch t {
	case "comment":
		p.next()
		r.Comment = unquote(p.next())
		return Stmt{}, nil
	case "counter":
		p.next()
		if p.peek() == "packets" {
			p.i += 4 // packets N bytes M
		}
		return Stmt{Kind: StmtNop}, nil
	case "jump", "goto":
		p.next()
		target := p.next()
		if target == "" {
			return Stmt{}, fmt.Errorf("%s without a chain", excerpt.Clip(t))
		}
		return Stmt{Kind: StmtVerdict, Verdict: Verdict{Kind: t, Target: target}}, nil
	case "return", "accept", "drop", "continue":
		p.next()
		return Stmt{Kind: StmtVerdict, Verdict: Verdict{Kind: t}}, nil
	case "reject":
		p.next()
		if p.peek() == "with" {
			p.next()
			p.next() // tcp | icmp | icmpv6 | icmpx
			if p.peek() == "type" {
				p.next()
			}
			p.next() // reset | port-unreachable | admin-prohibited | ...
		}
		return Stmt{Kind: StmtVerdict, Verdict: Verdict{Kind: "reject"}}, nil
	case "masquerade":
		p.next()
		for p.peek() == "fully-random" || p.peek() == "random" || p.peek() == "persistent" || p.peek() == "," {
			p.next()
		}
		return Stmt{Kind: StmtMasquerade}, nil
	case "dnat":
		return p.dnat()
	case "update", "add":
		if strings.HasPrefix(p.at(1), "@") {
			p.next()
			set := strings.TrimPrefix(p.next(), "@")
			if p.peek() != "{" {
				return Stmt{}, fmt.Errorf("update @%s without { key }", excerpt.Clip(set))
			}
			for !p.done() && p.next() != "}" {
			}
			return Stmt{Kind: StmtUpdateSet, SetRef: set}, nil
		}
	case "numgen":
		sel, err := p.selector()
		if err != nil {
			return Stmt{}, err
		}
		if p.next() != "vmap" {
			return Stmt{}, fmt.Errorf("numgen is only understood with vmap")
		}
		return p.vmap([]Selector{sel})
	case "log", "notrack", "snat", "redirect", "queue", "limit", "quota", "meter", "tproxy", "fwd", "dup", "synproxy", "set", "flow":
		return Stmt{}, fmt.Errorf("statement %s is not evaluated", excerpt.Quote(t))
	}
	if (t == "meta" && p.at(1) == "mark" && p.at(2) == "set") || (t == "mark" && p.at(1) == "set") {
		return p.setMark()
	}
	return p.match()
}

// selector reads one selector.
func (p *stmtParser) selector() (Selector, error) {
	t := p.next()
	switch t {
	case "numgen":
		if p.next() != "random" || p.next() != "mod" {
			return Selector{}, fmt.Errorf("only \"numgen random mod N\" is understood")
		}
		n, err := strconv.Atoi(p.next())
		if err != nil || n <= 0 || n > 1<<16 {
			return Selector{}, fmt.Errorf("numgen modulus is not a small positive number")
		}
		if p.peek() == "offset" {
			return Selector{}, fmt.Errorf("numgen offset is not understood")
		}
		return Selector{Proto: "numgen", Mod: n}, nil
	case "fib":
		dir := p.next()
		if dir != "saddr" && dir != "daddr" {
			return Selector{}, fmt.Errorf("fib %s is not understood", excerpt.Clip(dir))
		}
		if p.next() != "type" {
			return Selector{}, fmt.Errorf("only \"fib saddr|daddr type\" is understood")
		}
		return Selector{Proto: "fib", Field: dir + " type"}, nil
	case "mark":
		return Selector{Proto: "meta", Field: "mark"}, nil
	case "l4proto", "iifname", "oifname":
		return Selector{Proto: "meta", Field: t}, nil
	}
	fields, ok := selectorFields[t]
	if !ok {
		return Selector{}, fmt.Errorf("expression %s is not understood", excerpt.Quote(t))
	}
	f := p.next()
	if !fields[f] {
		return Selector{}, fmt.Errorf("expression %s is not understood", excerpt.Quote(t+" "+f))
	}
	return Selector{Proto: t, Field: f}, nil
}

// match reads "SEL [. SEL]* [& MASK] [==|!=] VALUE" or "... vmap MAP".
func (p *stmtParser) match() (Stmt, error) {
	var st Stmt
	st.Kind = StmtMatch
	for {
		sel, err := p.selector()
		if err != nil {
			return Stmt{}, err
		}
		st.Left = append(st.Left, sel)
		if p.peek() != "." {
			break
		}
		p.next()
	}
	if p.peek() == "&" {
		p.next()
		m, err := parseMark(p.next())
		if err != nil {
			return Stmt{}, err
		}
		st.Mask, st.HasMask = m, true
	}
	switch p.peek() {
	case "vmap":
		p.next()
		return p.vmap(st.Left)
	case "!=":
		p.next()
		st.Negate = true
	case "==", "eq":
		p.next()
	case "<", ">", "<=", ">=", "lt", "gt", "le", "ge":
		return Stmt{}, fmt.Errorf("comparison %s is not understood", excerpt.Quote(p.peek()))
	}
	switch v := p.peek(); {
	case v == "":
		return Stmt{}, fmt.Errorf("%s has no value to compare with", st.Left[0])
	case strings.HasPrefix(v, "@"):
		st.SetRef = strings.TrimPrefix(p.next(), "@")
	case v == "{":
		elems, err := p.braced(false)
		if err != nil {
			return Stmt{}, err
		}
		st.Values = elems
	default:
		// One value; concatenations are "a . b"; ct state lists are "a,b".
		var key []string
		for {
			val := p.next()
			if len(st.Left) == 1 && st.Left[0].Proto == "ct" {
				// "new" / "established,related" (the tokenizer split the commas)
				key = append(key, val)
				for p.peek() == "," {
					p.next()
					key = append(key, p.next())
				}
				st.Values = []Element{{Key: key}}
				return st, nil
			}
			key = append(key, val)
			if p.peek() != "." {
				break
			}
			p.next()
		}
		st.Values = []Element{{Key: key}}
	}
	return st, nil
}

// braced reads "{ ... }" into elements.
func (p *stmtParser) braced(isMap bool) ([]Element, error) {
	if p.next() != "{" {
		return nil, fmt.Errorf("expected {")
	}
	start, depth := p.i, 1
	for ; p.i < len(p.toks); p.i++ {
		switch p.toks[p.i] {
		case "{":
			depth++
		case "}":
			depth--
		}
		if depth == 0 {
			break
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("{ is not closed")
	}
	inner := p.toks[start:p.i]
	p.i++
	return parseElements(inner, isMap)
}

func (p *stmtParser) vmap(left []Selector) (Stmt, error) {
	st := Stmt{Kind: StmtVMap, Left: left}
	if strings.HasPrefix(p.peek(), "@") {
		st.SetRef = strings.TrimPrefix(p.next(), "@")
		return st, nil
	}
	elems, err := p.braced(true)
	if err != nil {
		return Stmt{}, err
	}
	st.Values = elems
	return st, nil
}

// setMark reads "meta mark set VALUE" or "meta mark set meta mark OP VALUE".
func (p *stmtParser) setMark() (Stmt, error) {
	if p.next() == "meta" {
		p.next() // mark
	}
	p.next() // set
	st := Stmt{Kind: StmtSetMark, MarkOp: "="}
	if p.peek() == "meta" && p.at(1) == "mark" {
		p.i += 2
		st.MarkOp = p.next()
		if st.MarkOp != "|" && st.MarkOp != "^" && st.MarkOp != "&" {
			return Stmt{}, fmt.Errorf("mark operation %s is not understood", excerpt.Quote(st.MarkOp))
		}
	} else if p.peek() == "mark" {
		p.next()
		st.MarkOp = p.next()
	}
	v, err := parseMark(p.next())
	if err != nil {
		return Stmt{}, err
	}
	st.MarkValue = v
	return st, nil
}

func parseMark(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("mark value %s is not a number", excerpt.Quote(s))
	}
	return uint32(v), nil
}

// dnat reads "dnat [ip|ip6] to ADDR[:PORT]" and
// "dnat [ip|ip6] to numgen random mod N map { 0 : ADDR . PORT, ... }".
func (p *stmtParser) dnat() (Stmt, error) {
	p.next()
	if p.peek() == "ip" || p.peek() == "ip6" {
		p.next()
	}
	if p.next() != "to" {
		return Stmt{}, fmt.Errorf("dnat without \"to\"")
	}
	st := Stmt{Kind: StmtDNAT}
	if p.peek() == "numgen" {
		sel, err := p.selector()
		if err != nil {
			return Stmt{}, err
		}
		if p.next() != "map" {
			return Stmt{}, fmt.Errorf("dnat to numgen is only understood with an inline map")
		}
		if p.peek() != "{" {
			return Stmt{}, fmt.Errorf("dnat to numgen is only understood with an inline map")
		}
		elems, err := p.braced(true)
		if err != nil {
			return Stmt{}, err
		}
		st.ToMap = make([]netip.AddrPort, sel.Mod)
		for _, e := range elems {
			idx, err := strconv.Atoi(e.Key[0])
			if err != nil || idx < 0 || idx >= sel.Mod {
				return Stmt{}, fmt.Errorf("dnat map key %s is not below numgen's modulus %d", excerpt.Quote(e.Key[0]), sel.Mod)
			}
			ap, err := parseAddrDotPort(e.Data)
			if err != nil {
				return Stmt{}, err
			}
			st.ToMap[idx] = ap
		}
		st.Left = []Selector{sel}
		return st, nil
	}
	to := p.next()
	ap, err := parseDNATTarget(to)
	if err != nil {
		return Stmt{}, err
	}
	st.To = ap
	return st, nil
}

// parseDNATTarget reads "10.0.0.1:80", "10.0.0.1", "[fd00::1]:80", "fd00::1".
func parseDNATTarget(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dnat target %s is not an address", excerpt.Quote(s))
	}
	return netip.AddrPortFrom(a, 0), nil
}

// parseAddrDotPort reads a map value "10.180.0.1 . 80".
func parseAddrDotPort(s string) (netip.AddrPort, error) {
	addr, port, ok := strings.Cut(s, " . ")
	a, err := netip.ParseAddr(strings.TrimSpace(addr))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dnat map value %s is not an address", excerpt.Quote(s))
	}
	if !ok {
		return netip.AddrPortFrom(a, 0), nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(port), 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dnat map value %s has no valid port", excerpt.Quote(s))
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}
