package ipset

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits bound what an input can make the parser allocate.
type Limits struct {
	// MaxSets is the most sets accepted (the kernel allows 65534).
	MaxSets int
	// MaxMembers is the most members accepted over all sets.
	MaxMembers int
	// MaxLineBytes is the longest line accepted.
	MaxLineBytes int
}

// DefaultLimits fit the largest real nodes (kube-proxy keeps one KUBE-LOOP-BACK
// entry per local endpoint and one KUBE-CLUSTER-IP entry per Service port)
// with room to spare, while keeping a hostile input's cost bounded.
var DefaultLimits = Limits{MaxSets: 65536, MaxMembers: 2_000_000, MaxLineBytes: 64 << 10}

// maxNameLen is the kernel's IPSET_MAXNAMELEN less the terminating NUL.
const maxNameLen = 31

// maxCommentLen is the kernel's IPSET_MAX_COMMENT_SIZE.
const maxCommentLen = 255

// Parse reads `ipset save` or `ipset list` output with DefaultLimits. Which
// one it is comes from the content: "create"/"add" lines or "Name:" blocks.
// Empty input is a node without sets.
func Parse(r io.Reader) (*Dump, error) { return ParseWithLimits(r, DefaultLimits) }

// ParseWithLimits is Parse with explicit bounds.
func ParseWithLimits(r io.Reader, lim Limits) (*Dump, error) {
	p := &parser{lim: lim, d: &Dump{byName: map[string]*Set{}}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(4096, lim.MaxLineBytes)), lim.MaxLineBytes)
	for sc.Scan() {
		p.line++
		if err := p.feed(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ParseError{Line: p.line + 1, Msg: fmt.Sprintf("line longer than %d bytes", lim.MaxLineBytes), err: ErrTooLarge}
		}
		return nil, fmt.Errorf("read ipset output: %w", err)
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	for _, s := range p.d.Sets {
		s.buildIndex()
	}
	return p.d, nil
}

// Detect tells which format a prefix of the input is in, from its first
// non-blank line; ok is false when it is neither.
func Detect(prefix []byte) (f Format, ok bool) {
	for len(prefix) > 0 {
		line := prefix
		if i := bytes.IndexByte(prefix, '\n'); i >= 0 {
			line, prefix = prefix[:i], prefix[i+1:]
		} else {
			prefix = nil
		}
		line = bytes.TrimSpace(line)
		switch {
		case len(line) == 0:
			continue
		case bytes.HasPrefix(line, []byte("Name: ")):
			return FormatList, true
		case bytes.HasPrefix(line, []byte("create ")), bytes.HasPrefix(line, []byte("add ")):
			return FormatSave, true
		}
		return "", false
	}
	return "", false
}

type parser struct {
	lim  Limits
	d    *Dump
	line int
	// list format state: the set being read and whether its Members:
	// section has started.
	cur       *Set
	inMembers bool
	members   int
}

func (p *parser) errf(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) feed(line string) error {
	if p.d.Format == "" {
		switch {
		case strings.TrimSpace(line) == "":
			return nil
		case strings.HasPrefix(line, "Name: "):
			p.d.Format = FormatList
		case strings.HasPrefix(line, "create "), strings.HasPrefix(line, "add "):
			p.d.Format = FormatSave
		default:
			return p.errf("not ipset save or ipset list output: starts with %s", short(line))
		}
	}
	if p.d.Format == FormatSave {
		return p.saveLine(line)
	}
	return p.listLine(line)
}

func (p *parser) saveLine(line string) error {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	toks, err := tokenize(line)
	if err != nil {
		return p.errf("%v", err)
	}
	switch toks[0] {
	case "create":
		if len(toks) < 3 {
			return p.errf("create wants a set name and a type")
		}
		s, err := p.newSet(toks[1], toks[2])
		if err != nil {
			return err
		}
		return p.setOptions(s, toks[3:])
	case "add":
		if len(toks) < 3 {
			return p.errf("add wants a set name and an element")
		}
		s := p.d.byName[toks[1]]
		if s == nil {
			return p.errf("add to set %s before its create line", short(toks[1]))
		}
		return p.addMember(s, toks[2], toks[3:])
	}
	return p.errf("unexpected line in ipset save output: %s", short(line))
}

func (p *parser) listLine(line string) error {
	if p.inMembers {
		if line == "" {
			p.inMembers = false
			return nil
		}
		if p.cur == nil {
			return p.errf("member outside a set")
		}
		toks, err := tokenize(line)
		if err != nil {
			return p.errf("%v", err)
		}
		return p.addMember(p.cur, toks[0], toks[1:])
	}
	if strings.TrimSpace(line) == "" {
		return nil
	}
	key, val, ok := strings.Cut(line, ":")
	if !ok {
		return p.errf("unexpected line in ipset list output: %s", short(line))
	}
	val = strings.TrimSpace(val)
	if key == "Name" {
		if err := p.closeListSet(); err != nil {
			return err
		}
		p.cur = &Set{Name: val, Line: p.line, DeclaredEntries: -1}
		return nil
	}
	if p.cur == nil {
		return p.errf("%s before the first Name: line", short(key))
	}
	switch key {
	case "Type":
		if p.cur.Type != "" {
			return p.errf("set %s has two Type lines", short(p.cur.Name))
		}
		s, err := p.newSet(p.cur.Name, val)
		if err != nil {
			return err
		}
		s.Line, s.DeclaredEntries = p.cur.Line, -1
		p.cur = s
	case "Revision":
		p.cur.Revision, _ = strconv.Atoi(val)
	case "Header":
		if p.cur.Type == "" {
			return p.errf("set %s: Header before Type", short(p.cur.Name))
		}
		toks, err := tokenize(val)
		if err != nil {
			return p.errf("%v", err)
		}
		return p.setOptions(p.cur, toks)
	case "Size in memory":
	case "References":
		p.cur.References, _ = strconv.Atoi(val)
	case "Number of entries":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return p.errf("set %s: bad number of entries %s", short(p.cur.Name), short(val))
		}
		p.cur.DeclaredEntries = n
	case "Members":
		if p.cur.Type == "" {
			return p.errf("set %s has no Type line", short(p.cur.Name))
		}
		p.inMembers = true
	default:
		p.d.Warnings = append(p.d.Warnings, fmt.Sprintf("line %d: set %s: unknown field %s ignored", p.line, short(p.cur.Name), short(key)))
	}
	return nil
}

func (p *parser) closeListSet() error {
	p.inMembers = false
	s := p.cur
	if s == nil {
		return nil
	}
	if s.Type == "" {
		return &ParseError{Line: s.Line, Msg: fmt.Sprintf("set %s has no Type line", short(s.Name))}
	}
	// `ipset list -t` (terse) prints no members: the count is then all we know.
	if s.DeclaredEntries >= 0 && s.DeclaredEntries != len(s.Members) && len(s.Members) > 0 {
		p.d.Warnings = append(p.d.Warnings, fmt.Sprintf("set %s declares %d entries but lists %d", short(s.Name), s.DeclaredEntries, len(s.Members)))
	}
	return nil
}

func (p *parser) finish() error {
	if p.d.Format == FormatList {
		return p.closeListSet()
	}
	return nil
}

func (p *parser) newSet(name, typ string) (*Set, error) {
	if err := checkName(name); err != nil {
		return nil, p.errf("%v", err)
	}
	if p.d.byName[name] != nil {
		return nil, p.errf("set %s declared twice", short(name))
	}
	if len(p.d.Sets) >= p.lim.MaxSets {
		return nil, &ParseError{Line: p.line, Msg: fmt.Sprintf("more than %d sets", p.lim.MaxSets), err: ErrTooLarge}
	}
	t := Type(typ)
	if !knownTypes[t] {
		return nil, p.errf("set %s: unknown type %s", short(name), short(typ))
	}
	s := &Set{Name: name, Type: t, Line: p.line, dims: t.Dims()}
	switch {
	case t.Method() == "hash" && t != HashMAC:
		s.Family = FamilyInet // the kernel's default; a family option overrides it
	case t == BitmapIP || t == BitmapIPMAC:
		s.Family = FamilyInet // bitmap:ip is IPv4 only and prints no family
	}
	p.d.Sets = append(p.d.Sets, s)
	p.d.byName[name] = s
	return s, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty set name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("set name %s is longer than %d characters", short(name), maxNameLen)
	}
	return nil
}

// setOptions reads a create line's (or a Header's) options.
func (p *parser) setOptions(s *Set, toks []string) error {
	for i := 0; i < len(toks); i++ {
		opt := toks[i]
		val := func() (string, error) {
			if i+1 >= len(toks) {
				return "", p.errf("set %s: option %s wants a value", short(s.Name), short(opt))
			}
			i++
			return toks[i], nil
		}
		num := func() (int, error) {
			v, err := val()
			if err != nil {
				return 0, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return 0, p.errf("set %s: option %s wants a number, not %s", short(s.Name), opt, short(v))
			}
			return n, nil
		}
		var err error
		switch opt {
		case "family":
			var v string
			if v, err = val(); err == nil {
				switch Family(v) {
				case FamilyInet, FamilyInet6:
					s.Family = Family(v)
				default:
					err = p.errf("set %s: unknown family %s", short(s.Name), short(v))
				}
			}
		case "hashsize":
			s.HashSize, err = num()
		case "maxelem":
			s.MaxElem, err = num()
		case "timeout":
			s.Timeout, err = num()
			s.HasTimeout = true
		case "netmask":
			s.Netmask, err = num()
			if err == nil && (s.Netmask < 1 || s.Netmask > 128) {
				err = p.errf("set %s: netmask %d out of range", short(s.Name), s.Netmask)
			}
		case "range":
			s.Range, err = val()
		case "size":
			s.Size, err = num()
		case "bucketsize":
			s.BucketSize, err = num()
		case "initval":
			s.InitVal, err = val()
		case "markmask":
			s.MarkMask, err = val()
		case "counters":
			s.Counters = true
		case "comment":
			s.Comment = true
		case "skbinfo":
			s.SkbInfo = true
		case "forceadd":
			s.ForceAdd = true
		default:
			s.Other = append(s.Other, opt)
		}
		if err != nil {
			return err
		}
	}
	if s.Netmask > 0 && s.Family == FamilyInet && s.Netmask > 32 {
		return p.errf("set %s: netmask %d is too long for inet", short(s.Name), s.Netmask)
	}
	return nil
}

// addMember reads one element and its per-entry options.
func (p *parser) addMember(s *Set, elem string, opts []string) error {
	if p.d.Len() >= p.lim.MaxMembers {
		return &ParseError{Line: p.line, Msg: fmt.Sprintf("more than %d set members", p.lim.MaxMembers), err: ErrTooLarge}
	}
	parts, err := parseElem(s, elem)
	if err != nil {
		return p.errf("set %s: element %s: %v", short(s.Name), short(elem), err)
	}
	m := Member{Text: elem, Elem: parts, Line: p.line}
	for i := 0; i < len(opts); i++ {
		opt := opts[i]
		val := func() (string, error) {
			if i+1 >= len(opts) {
				return "", p.errf("set %s: element %s: option %s wants a value", short(s.Name), short(elem), short(opt))
			}
			i++
			return opts[i], nil
		}
		var v string
		switch opt {
		case "nomatch":
			m.NoMatch = true
			continue
		case "timeout", "packets", "bytes", "comment", "skbmark", "skbprio", "skbqueue":
			if v, err = val(); err != nil {
				return err
			}
		default:
			return p.errf("set %s: element %s: unknown option %s", short(s.Name), short(elem), short(opt))
		}
		switch opt {
		case "timeout":
			m.Timeout, err = strconv.Atoi(v)
			m.HasTimeout = true
		case "packets":
			m.Packets, err = strconv.ParseUint(v, 10, 64)
		case "bytes":
			m.Bytes, err = strconv.ParseUint(v, 10, 64)
		case "comment":
			if len(v) > maxCommentLen {
				return p.errf("set %s: element %s: comment longer than %d bytes", short(s.Name), short(elem), maxCommentLen)
			}
			m.Comment = v
		case "skbmark":
			m.SkbMark = v
		case "skbprio":
			m.SkbPrio = v
		case "skbqueue":
			m.SkbQueue = v
		}
		if err != nil {
			return p.errf("set %s: element %s: option %s wants a number, not %s", short(s.Name), short(elem), opt, short(v))
		}
	}
	if m.NoMatch && !s.hasNet() {
		return p.errf("set %s: nomatch on element %s of a %s set, which has no net dimension", short(s.Name), short(elem), s.Type)
	}
	s.Members = append(s.Members, m)
	return nil
}

func (s *Set) hasNet() bool {
	for _, k := range s.dims {
		if k == KindNet {
			return true
		}
	}
	return false
}

// tokenize splits a line on spaces; a double-quoted token (a comment) may
// hold spaces and comes back without its quotes.
func tokenize(line string) ([]string, error) {
	var out []string
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quoted text %s", short(line[i:]))
			}
			out = append(out, line[i+1:i+1+j])
			i += j + 2
		default:
			j := strings.IndexAny(line[i:], " \t\r")
			if j < 0 {
				j = len(line) - i
			}
			out = append(out, line[i:i+j])
			i += j
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty line")
	}
	return out, nil
}
