// Parsing iptables-save output: one streaming pass over the lines that
// checks the structure (tables, chains, COMMIT) and stores each chain's rule
// text; rules themselves are tokenized later (rule.go).

package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Parse reads an iptables-save or ip6tables-save dump (with or without -c
// counters, from the legacy or the nf_tables backend). It reads r to the end
// once, keeping the rule text in memory, and returns an error wrapping
// ErrMalformed, with the line number, for anything iptables-restore would
// not accept in a save file.
func Parse(r io.Reader) (*Dump, error) {
	return parse(r, &parser{dump: &Dump{}})
}

// ParseReaderAt parses the size bytes of r like Parse but does not keep the
// rule text: it remembers where each chain's rules are and reads them back
// from r when a chain is first used. Memory then stays far below the dump's
// size. r must stay readable and unchanged while the Dump is in use.
func ParseReaderAt(r io.ReaderAt, size int64) (*Dump, error) {
	return parse(io.NewSectionReader(r, 0, size), &parser{dump: &Dump{src: r}})
}

// readChunk is how much of the dump parse reads at a time. A line longer
// than that grows the buffer to hold it.
const readChunk = 128 << 10

func parse(r io.Reader, p *parser) (*Dump, error) {
	buf := make([]byte, readChunk)
	var start, end int // buf[start:end] is read but not yet parsed
	eof := false
	for {
		for start < end {
			data := buf[start:end]
			if p.runOK {
				// Most lines of a big dump are one more rule of the chain
				// of the line before: take them all at once.
				if n := p.extendRun(data); n > 0 {
					start += n
					continue
				}
			}
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				if !eof {
					break // a partial line: read on
				}
				nl = len(data) - 1 // the last line has no line end
			}
			line := data[:nl+1]
			if err := p.line(line); err != nil {
				return nil, err
			}
			p.offset += int64(len(line))
			start += len(line)
			p.runOK = p.dump.src != nil && p.last >= 0 && p.lastLine == p.lineNo && p.table != nil
		}
		if eof {
			break
		}
		switch {
		case start == 0 && end == len(buf):
			// One line fills the buffer.
			buf = append(buf, make([]byte, len(buf))...)
		case start > 0:
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := r.Read(buf[end:])
		end += n
		if errors.Is(err, io.EOF) {
			eof = true
		} else if err != nil {
			return nil, fmt.Errorf("read dump after line %d: %w", p.lineNo, err)
		}
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.dump, nil
}

// maxSegment bounds a segment's length so that its int32 never overflows;
// a chain with more rule text than that continues in another segment.
const maxSegment = 1 << 30

// extendRun takes the complete lines at the start of data that are rules of
// the chain the previous line added a rule to, as rule would, and returns
// how many bytes it took. It does only what such a line needs when the
// rule text stays in the file: find its end and compare its "-A CHAIN "
// prefix ("[packets:bytes] " counters in front are checked too). Anything
// else is left to line.
func (p *parser) extendRun(data []byte) int {
	pre := p.runPrefix
	t := p.table
	c := t.chains.at(p.last)
	tail := &c.first
	if c.more {
		more := t.extra[p.last]
		tail = &more[len(more)-1]
	}
	room := maxSegment - int(tail.len)
	used, lines := 0, 0
	counters := false
	for {
		rest := data[used:]
		k := 0
		if len(rest) > 0 && rest[0] == '[' {
			if k = countersLen(rest); k == 0 || k >= len(rest) || rest[k] != ' ' {
				break
			}
			k++
			counters = true
		}
		if len(rest)-k <= len(pre) || string(rest[k:k+len(pre)]) != string(pre) {
			break
		}
		nl := bytes.IndexByte(rest[k+len(pre):], '\n')
		if nl < 0 {
			break
		}
		n := k + len(pre) + nl + 1
		if used+n > room {
			break
		}
		used += n
		lines++
	}
	if lines == 0 {
		return 0
	}
	tail.len += int32(used)
	c.count += int32(lines)
	p.lineNo += lines
	p.lastLine = p.lineNo
	p.offset += int64(used)
	p.dump.hasCounters = p.dump.hasCounters || counters
	return used
}

// countersLen returns the length of the "[digits:digits]" at the start of
// b, or 0 if there is none.
func countersLen(b []byte) int {
	i := 1
	digits := func() bool {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && n < 19 {
			i++
			n++
		}
		return n > 0 && (i >= len(b) || b[i] < '0' || b[i] > '9')
	}
	if !digits() || i >= len(b) || b[i] != ':' {
		return 0
	}
	i++
	if !digits() || i >= len(b) || b[i] != ']' {
		return 0
	}
	return i + 1
}

type parser struct {
	dump   *Dump
	lineNo int
	// offset is where the current line starts in the input; rawLen its
	// length with the line end.
	offset int64
	rawLen int
	table  *Table // open table, nil between COMMIT and the next "*table"
	// last is the chain that received the previous rule line, to extend its
	// segment without a map lookup (rules come grouped by chain).
	last     int32
	lastLine int
	lastName []byte // name of chain last
	// runOK says the previous line was a rule kept in the file (Dump.src)
	// whose segment ends where the next line starts: extendRun may go on.
	runOK bool
	// runPrefix is "-A " lastName " ".
	runPrefix []byte
	// moreWarnings counts warnings past maxWarnings.
	moreWarnings int
}

// maxWarnings bounds the warnings a dump keeps; the rest are counted.
const maxWarnings = 100

func (p *parser) warn(w trace.Warning) {
	if len(p.dump.Warnings) < maxWarnings {
		p.dump.Warnings = append(p.dump.Warnings, w)
		return
	}
	p.moreWarnings++
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{Line: p.lineNo, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) line(raw []byte) error {
	p.lineNo++
	p.rawLen = len(raw)
	n := len(raw)
	for n > 0 && (raw[n-1] == '\n' || raw[n-1] == '\r') {
		n--
	}
	line := raw[:n]
	if len(line) == 0 {
		return nil
	}
	switch line[0] {
	case '-', '[':
		return p.rule(line)
	case ':':
		return p.declareChain(line)
	case '#':
		p.comment(line)
		return nil
	case '*':
		return p.startTable(line)
	}
	if string(line) == "COMMIT" {
		if p.table == nil {
			return p.errorf("COMMIT outside of a table")
		}
		p.table = nil
		return nil
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	return p.errorf("unexpected line %s: iptables-save output has only *table, :CHAIN, -A CHAIN, COMMIT and # lines", excerpt.Quote(line))
}

func (p *parser) comment(line []byte) {
	text := strings.TrimSpace(string(line[1:]))
	switch {
	case strings.HasPrefix(text, "Generated by "):
		if p.dump.Generator == "" {
			gen := strings.TrimPrefix(text, "Generated by ")
			if i := strings.Index(gen, " on "); i >= 0 {
				gen = gen[:i]
			}
			p.dump.Generator = excerpt.Line(gen)
		}
	case strings.HasPrefix(text, "Warning"):
		code := trace.CodeToolWarning
		if strings.Contains(text, "iptables-legacy tables present") {
			code = trace.CodeLegacyTablesPresent
		}
		p.warn(trace.Warning{Code: code, Message: excerpt.Line(text)})
	}
}

func (p *parser) startTable(line []byte) error {
	name := string(bytes.TrimSpace(line[1:]))
	if p.table != nil {
		return p.errorf("table %s starts before table %s (line %d) was committed; the dump looks cut or spliced", excerpt.Quote(name), excerpt.Quote(p.table.Name), p.table.Line)
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return p.errorf("bad table name %s", excerpt.Quote(name))
	}
	if t := p.dump.Table(name); t != nil {
		return p.errorf("table %s appears a second time (first at line %d); save IPv4 and IPv6 rules, or several nodes, to separate files", excerpt.Quote(name), t.Line)
	}
	p.table = &Table{Name: name, Line: p.lineNo, dump: p.dump}
	p.dump.tables = append(p.dump.tables, p.table)
	p.last, p.lastName = -1, nil
	return nil
}

// nextField splits off the first space-separated field of b (iptables-save
// separates words with single spaces).
func nextField(b []byte) (field, rest []byte) {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	j := bytes.IndexByte(b, ' ')
	if j < 0 {
		return b, nil
	}
	return b[:j], b[j:]
}

// declareChain handles ":NAME POLICY [packets:bytes]".
func (p *parser) declareChain(line []byte) error {
	if p.table == nil {
		return p.errorf("chain declaration outside of a table (missing *table line)")
	}
	if rest, ok := bytes.CutSuffix(line[1:], userChainSuffix); ok && bytes.IndexByte(rest, ' ') < 0 && len(rest) > 0 {
		// The common ":KUBE-SEP-... - [0:0]" form.
		return p.declare(rest, 0)
	}
	name, rest := nextField(line[1:])
	policy, rest := nextField(rest)
	counters, rest := nextField(rest)
	if extra, _ := nextField(rest); len(name) == 0 || len(policy) == 0 || len(extra) > 0 {
		return p.errorf("bad chain declaration %s: want \":NAME POLICY [packets:bytes]\"", excerpt.Quote(line))
	}
	code, ok := policyCode(policy)
	if !ok {
		return p.errorf("chain %s has unknown policy %s", excerpt.Clip(name), excerpt.Quote(policy))
	}
	if len(counters) > 0 && !isCounters(counters) {
		return p.errorf("chain %s has bad counters %s", excerpt.Clip(name), excerpt.Quote(counters))
	}
	return p.declare(name, code)
}

var userChainSuffix = []byte(" - [0:0]")

func (p *parser) declare(name []byte, code uint8) error {
	ref, stored, err := p.dump.names.add(name)
	if err != nil {
		return p.errorf("%v", err)
	}
	i, added := p.table.add(chainData{name: ref, policy: code, line: int32(p.lineNo)}, stored)
	if !added {
		c := p.table.chains.at(i)
		if c.line != 0 {
			return p.errorf("chain %s is declared twice in table %s (first at line %d)", excerpt.Clip(name), excerpt.Clip(p.table.Name), c.line)
		}
		// A rule referenced it before its declaration; keep the rules.
		c.policy, c.line = code, int32(p.lineNo)
	}
	return nil
}

var newline = []byte{'\n'}

var space = []byte{' '}

// splitRuleLine splits "[packets:bytes] -A CHAIN body" (counters optional)
// into its parts; msg says what is wrong when it is not a rule line.
func splitRuleLine(line []byte) (counters, name, body []byte, msg string) {
	if len(line) > 0 && line[0] == '[' {
		end := bytes.IndexByte(line, ']')
		if end < 0 || !isCounters(line[:end+1]) {
			return nil, nil, nil, fmt.Sprintf("expected [packets:bytes] before the rule, got %s", excerpt.Quote(line))
		}
		counters = line[:end+1]
		line = bytes.TrimLeft(line[end+1:], " ")
	}
	if len(line) < 3 || line[0] != '-' || line[1] != 'A' || line[2] != ' ' {
		cmd, _, _ := bytes.Cut(line, space)
		return nil, nil, nil, fmt.Sprintf("unsupported command %s: only -A rules appear in iptables-save output", excerpt.Quote(cmd))
	}
	name, body = nextField(line[3:])
	if len(name) == 0 {
		return nil, nil, nil, "rule without a chain name"
	}
	if len(body) > 0 {
		body = body[1:] // the one space after the chain name
	}
	return counters, name, body, ""
}

// rule handles "-A CHAIN rest...", with "[p:b] " counters in front from
// iptables-save -c; the counters are stored in front of the rule text so that
// nothing is lost.
func (p *parser) rule(line []byte) error {
	var counters, name, body []byte
	if n := len(p.lastName); n > 0 && len(line) > n+3 && line[n+3] == ' ' &&
		string(line[:3]) == "-A " && string(line[3:n+3]) == string(p.lastName) {
		// The common case: one more rule of the chain of the line before,
		// split as splitRuleLine would.
		name, body = line[3:n+3], line[n+4:]
	} else {
		var msg string
		if counters, name, body, msg = splitRuleLine(line); msg != "" {
			return p.errorf("%s", msg)
		}
		p.dump.hasCounters = p.dump.hasCounters || counters != nil
	}
	if p.table == nil {
		return p.errorf("rule outside of a table (missing *table line, or a rule after COMMIT)")
	}
	t := p.table
	idx := p.last
	// Rules come grouped by chain, and iptables-save prints the groups in
	// declaration order: try the chains after the last one before searching.
	if idx < 0 || string(p.lastName) != string(name) {
		idx = -1
		for i := p.last + 1; i < t.chains.len() && i <= p.last+16; i++ {
			if p.isChain(i, name) {
				idx = i
				break
			}
		}
	}
	if idx < 0 {
		idx = t.lookup(name)
		if idx < 0 {
			p.warn(trace.Warning{Code: trace.CodeDumpIrregular, Message: fmt.Sprintf("line %d: chain %s of table %s has rules but no declaration; kept as a user chain", p.lineNo, excerpt.Clip(name), excerpt.Clip(t.Name))})
			ref, stored, err := p.dump.names.add(name)
			if err != nil {
				return p.errorf("%v", err)
			}
			idx, _ = t.add(chainData{name: ref}, stored)
		}
	}
	c := t.chains.at(idx)
	var seg segment
	var blk int32
	if p.dump.src != nil {
		// Remember where the raw line is; it is read back on demand.
		seg = segment{pos: p.offset, len: int32(p.rawLen), firstLine: int32(p.lineNo)}
	} else {
		n := len(body) + 1
		if counters != nil {
			n += len(counters) + 1
		}
		var off int32
		blk, off = p.dump.arena.reserve(n)
		seg = segment{pos: int64(blk)<<32 | int64(off), len: int32(n), firstLine: int32(p.lineNo)}
	}
	// Extend the chain's last segment when this rule is the next line and
	// its text lands right behind it; otherwise start a segment.
	switch {
	case c.count == 0:
		c.first = seg
	default:
		tail := &c.first
		if c.more {
			more := t.extra[idx]
			tail = &more[len(more)-1]
		}
		if p.last == idx && p.lastLine == p.lineNo-1 && tail.pos+int64(tail.len) == seg.pos && int64(tail.len)+int64(seg.len) <= maxSegment {
			tail.len += seg.len
		} else {
			if t.extra == nil {
				t.extra = map[int32][]segment{}
			}
			t.extra[idx] = append(t.extra[idx], seg)
			c.more = true
		}
	}
	if p.dump.src == nil {
		if counters != nil {
			p.dump.arena.append(blk, counters, space, body, newline)
		} else {
			p.dump.arena.append(blk, body, newline)
		}
	}
	c.count++
	if idx != p.last {
		p.last, p.lastName = idx, t.nameOf(idx)
		p.runPrefix = append(append(append(p.runPrefix[:0], "-A "...), p.lastName...), ' ')
	}
	p.lastLine = p.lineNo
	return nil
}

func (p *parser) isChain(i int32, name []byte) bool {
	return string(p.dump.names.get(p.table.chains.at(i).name)) == string(name)
}

func (p *parser) finish() error {
	p.dump.Lines = p.lineNo
	if p.moreWarnings > 0 {
		p.dump.Warnings = append(p.dump.Warnings, trace.Warning{Code: trace.CodeDumpIrregular, Message: fmt.Sprintf("%d more warnings like these were left out", p.moreWarnings)})
	}
	if p.table != nil {
		return &ParseError{Line: p.lineNo, Msg: fmt.Sprintf("the dump ends inside table %s (started at line %d) without COMMIT; it was probably cut off — collect it again", excerpt.Quote(p.table.Name), p.table.Line)}
	}
	if len(p.dump.tables) == 0 {
		return &ParseError{Msg: fmt.Sprintf("no tables found in %d lines: this is not iptables-save output", p.lineNo)}
	}
	return nil
}

// isCounters reports whether b is "[digits:digits]".
func isCounters(b []byte) bool {
	if len(b) < 5 || b[0] != '[' || b[len(b)-1] != ']' {
		return false
	}
	pk, by, ok := bytes.Cut(b[1:len(b)-1], []byte(":"))
	if !ok {
		return false
	}
	_, e1 := strconv.ParseUint(string(pk), 10, 64)
	_, e2 := strconv.ParseUint(string(by), 10, 64)
	return e1 == nil && e2 == nil
}
