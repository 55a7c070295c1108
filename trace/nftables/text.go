package nftables

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// ParseText reads `nft list ruleset` output (as a node prints it, or as a
// user pasted it). Every table is parsed; objects the model does not hold
// (flowtables, named counters, ...) are listed in Table.Skipped. Errors wrap
// ErrMalformed and carry the line number.
//
// Parsing is one pass that indexes tables, chains and sets; a chain's rules
// and a set's elements are read when first used (Chain.Rules,
// Set.Elements), so a walk through a 10,000-Service ruleset touches only the
// chains it visits. Ruleset.Check reads everything.
func ParseText(r io.Reader) (*Ruleset, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ParseTextBytes(data)
}

// ParseTextBytes is ParseText on a ruleset already in memory. The Ruleset
// refers to data, which must not be modified afterwards.
func ParseTextBytes(data []byte) (*Ruleset, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: the ruleset is empty", ErrMalformed)
	}
	// The text is never modified: rules and elements are substrings of it.
	text := unsafe.String(unsafe.SliceData(data), len(data))
	p := &textParser{rs: &Ruleset{Format: "nft"}, data: text, base: uintptr(unsafe.Pointer(unsafe.SliceData(data)))}
	for len(text) > 0 {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		p.lineNo++
		if err := p.line(line); err != nil {
			return nil, err
		}
	}
	if p.pendingLine != 0 {
		return nil, p.errorf(p.pendingLine, "a statement opened with { is never closed; is the ruleset truncated?")
	}
	if p.table != nil {
		return nil, p.errorf(p.table.Line, "table %s %s is not closed with }; is the ruleset truncated?", excerpt.Clip(p.table.Family), excerpt.Clip(p.table.Name))
	}
	if len(p.rs.Tables) == 0 {
		return nil, fmt.Errorf("%w: no table found: is this `nft list ruleset` output?", ErrMalformed)
	}
	return p.rs, nil
}

type textParser struct {
	rs     *Ruleset
	lineNo int
	table  *Table
	chain  *Chain
	set    *Set
	skip   int // depth of an object block being skipped
	// pending accumulates a statement whose braces span several lines
	// (set elements, long anonymous sets).
	// data is the whole input; base is its address, so a line's offset
	// in it is known from the line itself.
	data string
	base uintptr
	// A statement whose braces span several lines (set elements) is taken
	// as one substring of data when it closes.
	pendingStart   int
	pendingBalance int
	pendingLine    int
	// rules holds the open chain's rules from index ruleStart on (and
	// earlier chains' before it); chainSlab the chains still to hand out;
	// chainHint the open table's guessed chain count.
	rules     []rawRule
	ruleStart int
	chainSlab []Chain
	chainHint int
	// multiline is set while a statement taken from several lines is
	// handled.
	multiline bool
}

func (p *textParser) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrMalformed, line, fmt.Sprintf(format, args...))
}

// braceBalance counts { minus } outside quotes.
func braceBalance(s string) int {
	if strings.IndexByte(s, '{') < 0 && strings.IndexByte(s, '}') < 0 {
		return 0 // most lines: a rule without an anonymous set
	}
	if strings.IndexByte(s, '"') < 0 {
		// No quotes: two vectorized counts, which matter on a set
		// printed on one line of megabytes.
		return strings.Count(s, "{") - strings.Count(s, "}")
	}
	n, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '{':
			if !quoted {
				n++
			}
		case '}':
			if !quoted {
				n--
			}
		}
	}
	return n
}

func (p *textParser) line(raw string) error {
	text := strings.TrimSpace(raw)
	if p.pendingLine != 0 {
		if p.pendingBalance += braceBalance(text); p.pendingBalance > 0 {
			return nil
		}
		// The statement is the input from its first line to the end of
		// this one: a substring, newlines and all (the tokenizer skips them).
		start := p.pendingStart
		end := int(uintptr(unsafe.Pointer(unsafe.StringData(text)))-p.base) + len(text)
		line := p.pendingLine
		p.pendingLine = 0
		p.multiline = true
		defer func() { p.multiline = false }()
		return p.statement(strings.TrimSpace(p.data[start:end]), line)
	}
	if text == "" || strings.HasPrefix(text, "#") {
		return nil
	}
	if p.skip > 0 {
		p.skip += braceBalance(text)
		return nil
	}
	// A closing brace ends the innermost open block.
	if text == "}" {
		switch {
		case p.chain != nil:
			p.closeChain()
		case p.set != nil:
			p.set = nil
		case p.table != nil:
			p.rs.Tables = append(p.rs.Tables, p.table)
			p.table = nil
		default:
			return p.errorf(p.lineNo, "} without an open table, chain or set")
		}
		return nil
	}
	if b := braceBalance(text); b > 0 && !strings.HasSuffix(text, "{") {
		// A statement continued on the next lines: "elements = { a,".
		p.pendingStart = int(uintptr(unsafe.Pointer(unsafe.StringData(text))) - p.base)
		p.pendingBalance, p.pendingLine = b, p.lineNo
		return nil
	}
	return p.statement(text, p.lineNo)
}

func (p *textParser) statement(text string, line int) error {
	if p.chain != nil {
		return p.chainLine(text, line) // the common case: a rule
	}
	if p.set != nil {
		return p.setLine(text, line) // may be a long elements list
	}
	if p.table != nil {
		if name, ok := chainHeader(text); ok {
			// "chain NAME {", as nft prints every chain: no need to split
			// the line into words.
			return p.openChain(name, line)
		}
	}
	words := strings.Fields(text)
	switch {
	case p.table == nil:
		if len(words) == 4 && words[0] == "table" && words[3] == "{" {
			p.table = newTable(words[1], words[2], line)
			p.table.base = []*Chain{} // filled by baseChainHeader
			p.presize(text)
			return nil
		}
		return p.errorf(line, "expected \"table FAMILY NAME {\", found %s", excerpt.Quote(text))
	}
	// Inside a table.
	if len(words) == 3 && words[2] == "{" {
		switch words[0] {
		case "chain":
			return p.openChain(words[1], line)
		case "set", "map":
			if _, dup := p.table.Sets[words[1]]; dup {
				return p.errorf(line, "%s %s is declared twice in table %s %s", excerpt.Clip(words[0]), excerpt.Clip(words[1]), excerpt.Clip(p.table.Family), excerpt.Clip(p.table.Name))
			}
			p.set = &Set{Name: words[1], IsMap: words[0] == "map", Line: line}
			p.table.Sets[p.set.Name] = p.set
			return nil
		}
	}
	if strings.HasSuffix(text, "{") {
		// flowtable, counter, quota, ct helper, secmark, synproxy, ...
		p.table.skip(strings.Join(words[:len(words)-1], " "))
		p.skip = braceBalance(text)
		return nil
	}
	if words[0] == "comment" {
		p.table.Comment = unquote(strings.TrimSpace(strings.TrimPrefix(text, "comment")))
		return nil
	}
	if words[0] == "flags" {
		return nil // table flags (dormant, owner, ...)
	}
	return p.errorf(line, "unexpected %s in table %s %s", excerpt.Quote(text), excerpt.Clip(p.table.Family), excerpt.Clip(p.table.Name))
}

// chainHeader returns NAME from "chain NAME {".
func chainHeader(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, "chain ")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, " {")
	if !ok || !plainWord(name) {
		return "", false // not the plain form: let the general path read it
	}
	return name, true
}

// plainWord reports a non-empty s of printable ASCII without blanks (bytes
// 0x21 to 0x7e, and 0x7f): what strings.Fields would keep as one word. It
// looks at eight bytes a step, as chain names run to 150 bytes.
func plainWord(s string) bool {
	if s == "" {
		return false
	}
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte of 0x80 or more, or one below 0x21 (blanks, controls).
		if w&highs != 0 || (w-0x21*ones)&^w&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] < 0x21 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// openChain starts chain name. Chains come from one slab a table, and their
// rules from one slice a table (see closeChain): a 10,000-Service ruleset
// has 30,000 chains of a rule or two.
func (p *textParser) openChain(name string, line int) error {
	if len(p.chainSlab) == 0 {
		p.chainSlab = make([]Chain, min(max(p.chainHint, 16), maxChainSlab))
	}
	c := &p.chainSlab[0]
	p.chainSlab = p.chainSlab[1:]
	c.Name, c.Line = name, line
	if err := p.table.addChain(c); err != nil {
		return p.errorf(line, "%v", err)
	}
	p.chain, p.ruleStart = c, len(p.rules)
	return nil
}

// closeChain ends the open chain: its rules are the ones appended since it
// opened, a window of p.rules with its capacity capped so that nothing can
// append into the next chain's rules.
func (p *textParser) closeChain() {
	if n := len(p.rules); n > p.ruleStart {
		p.chain.raw = p.rules[p.ruleStart:n:n]
	}
	p.chain = nil
}

// maxChainSlab bounds the slabs chains are taken from, whatever a
// ruleset's own counts claim.
const maxChainSlab = 1 << 12

// presize guesses how many chains the table just opened holds, so its
// chain map is allocated once instead of grown step by step (30,000 chains
// in a 10,000-Service ruleset). Every chain's header has a {, so the {s in
// the rest of the input bound the count from above (rules with anonymous
// sets and later tables count too); one vectorized count of a byte is far
// cheaper than finding where the table ends. Only the first two tables
// (kube-proxy's ip and ip6) are presized: counting to the end for every
// table of a ruleset of many small ones would cost time in the square of
// its size. The guess is also held to one chain per bytesPerChain of the
// rest, so input made of braces cannot make a map many times its size.
func (p *textParser) presize(header string) {
	p.chainHint = 0
	if len(p.rs.Tables) >= maxPresizedTables {
		return
	}
	start := int(uintptr(unsafe.Pointer(unsafe.StringData(header)))-p.base) + len(header)
	rest := p.data[start:]
	n := min(strings.Count(rest, "{"), len(rest)/bytesPerChain, maxPresizedChains)
	p.chainHint = n
	p.table.Chains = make(map[string]*Chain, n)
	p.table.ChainOrder = make([]string, 0, n)
}

const (
	maxPresizedTables = 2
	maxPresizedChains = 1 << 20
	// bytesPerChain is less than the text of any chain kube-proxy writes
	// (a header of 40 bytes and more, a rule, a closing brace).
	bytesPerChain = 64
)

// chainLine handles a line inside a chain block: the base-chain header, a
// comment, or a rule.
func (p *textParser) chainLine(text string, line int) error {
	c := p.chain
	if strings.HasPrefix(text, "type ") && len(p.rules) == p.ruleStart && !c.Base {
		return p.baseChainHeader(text, line)
	}
	if strings.HasPrefix(text, "comment \"") {
		if t := tokenize(text); len(t) == 2 {
			c.Comment = unquote(t[1]) // a chain comment; no rule starts with "comment"
			return nil
		}
	}
	if strings.HasPrefix(text, "policy ") && c.Base {
		c.Policy = strings.TrimSuffix(strings.TrimSpace(text[7:]), ";")
		return nil
	}
	if p.multiline && strings.IndexByte(text, '\n') >= 0 {
		// A rule whose anonymous set spans lines: one line, as nft would
		// print it with enough width.
		text = strings.Join(strings.Fields(text), " ")
	}
	if len(p.rules) == cap(p.rules) {
		// A new chunk, with the open chain's rules so far: the chains
		// before keep windows of the old one, and nothing large is ever
		// copied for them.
		chunk := make([]rawRule, 0, max(ruleChunk, 2*(len(p.rules)-p.ruleStart)))
		p.rules, p.ruleStart = append(chunk, p.rules[p.ruleStart:]...), 0
	}
	p.rules = append(p.rules, rawRule{line: int32(line), text: text})
	return nil
}

// ruleChunk is how many rules a chunk of textParser.rules holds.
const ruleChunk = 1 << 12

// baseChainHeader parses "type filter hook prerouting priority dstnat - 10;
// policy accept;" (the policy may be missing).
func (p *textParser) baseChainHeader(text string, line int) error {
	c := p.chain
	for _, part := range strings.Split(text, ";") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "type":
			// type T hook H [device D] priority P
			if len(f) < 6 || f[2] != "hook" {
				return p.errorf(line, "chain %s: cannot read base chain header %s", excerpt.Clip(c.Name), excerpt.Quote(text))
			}
			c.Type, c.Hook, c.Base = f[1], f[3], true
			i := 4
			if f[i] == "device" && len(f) > i+2 {
				i += 2
			}
			if f[i] != "priority" {
				return p.errorf(line, "chain %s: cannot read base chain header %s", excerpt.Clip(c.Name), excerpt.Quote(text))
			}
			prio, err := parsePriority(f[i+1:])
			if err != nil {
				return p.errorf(line, "chain %s: %v", excerpt.Clip(c.Name), err)
			}
			c.Priority = prio
		case "policy":
			if len(f) != 2 {
				return p.errorf(line, "chain %s: cannot read policy in %s", excerpt.Clip(c.Name), excerpt.Quote(text))
			}
			c.Policy = f[1]
		case "comment":
			c.Comment = unquote(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "comment")))
		default:
			return p.errorf(line, "chain %s: unexpected %s in base chain header", excerpt.Clip(c.Name), excerpt.Quote(strings.TrimSpace(part)))
		}
	}
	if c.Policy == "" {
		c.Policy = "accept"
	}
	if c.Base {
		p.table.base = append(p.table.base, c)
	}
	return nil
}

// parsePriority reads "dstnat", "dstnat - 10", "-110", "filter + 5".
func parsePriority(f []string) (int, error) {
	if len(f) == 0 {
		return 0, fmt.Errorf("priority is missing")
	}
	base, ok := namedPriorities[f[0]]
	if !ok {
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, fmt.Errorf("priority %s is neither a number nor a standard name", excerpt.Quote(strings.Join(f, " ")))
		}
		base = n
	}
	if len(f) == 1 {
		return base, nil
	}
	if len(f) != 3 || (f[1] != "+" && f[1] != "-") {
		return 0, fmt.Errorf("cannot read priority %s", excerpt.Quote(strings.Join(f, " ")))
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, fmt.Errorf("cannot read priority %s", excerpt.Quote(strings.Join(f, " ")))
	}
	if f[1] == "-" {
		n = -n
	}
	return base + n, nil
}

// setLine handles "type ...", "flags ...", "timeout ...", "comment ...",
// "elements = { ... }" inside a set or map block.
func (p *textParser) setLine(text string, line int) error {
	s := p.set
	key, rest, _ := strings.Cut(text, " ")
	switch key {
	case "type", "typeof":
		keyPart, dataPart, isMap := strings.Cut(rest, " : ")
		for _, k := range strings.Split(keyPart, " . ") {
			s.KeyType = append(s.KeyType, strings.TrimSpace(k))
		}
		if isMap {
			s.DataType = strings.TrimSpace(dataPart)
		}
	case "flags":
		for _, f := range strings.Split(rest, ",") {
			s.Flags = append(s.Flags, strings.TrimSpace(f))
		}
	case "comment":
		s.Comment = unquote(strings.TrimSpace(rest))
	case "elements":
		body := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "="))
		if !strings.HasPrefix(body, "{") || !strings.HasSuffix(body, "}") {
			return p.errorf(line, "set %s: cannot read elements %s", excerpt.Clip(s.Name), excerpt.Quote(text))
		}
		s.raw = append(s.raw, rawRule{line: int32(line), text: body[1 : len(body)-1]})
	case "timeout", "gc-interval", "size", "policy", "auto-merge", "counter":
	default:
		return p.errorf(line, "set %s: unexpected %s", excerpt.Clip(s.Name), excerpt.Quote(text))
	}
	return nil
}

// parseElements reads the inside of "{ ... }": elements separated by commas;
// each is a key (parts joined by " . ") with optional options (comment,
// timeout, expires, counter) and, in a map, " : data".
func parseElements(toks []string, isMap bool) ([]Element, error) {
	var out []Element
	for len(toks) > 0 {
		end := 0
		depth := 0
		for end < len(toks) {
			if toks[end] == "{" {
				depth++
			} else if toks[end] == "}" {
				depth--
			} else if toks[end] == "," && depth == 0 {
				break
			}
			end++
		}
		e, err := parseElement(toks[:end], isMap)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if end < len(toks) {
			end++ // the comma
		}
		toks = toks[end:]
	}
	return out, nil
}

func parseElement(toks []string, isMap bool) (Element, error) {
	var e Element
	keyToks := toks
	if isMap {
		i := indexOf(toks, ":")
		if i < 0 {
			return e, fmt.Errorf("map element %s has no \" : \"", excerpt.Quote(strings.Join(toks, " ")))
		}
		keyToks = toks[:i]
		e.Data = strings.Join(toks[i+1:], " ")
	}
	var extra []string
	expectPart := true
	for i := 0; i < len(keyToks); i++ {
		t := keyToks[i]
		switch {
		case t == ".":
			expectPart = true
		case t == "comment" && i+1 < len(keyToks):
			e.Comment = unquote(keyToks[i+1])
			i++
		case expectPart:
			e.Key = append(e.Key, t)
			expectPart = false
		default:
			extra = append(extra, t) // timeout 3h expires 2h59m, counter packets 0 bytes 0
		}
	}
	if len(e.Key) == 0 {
		return e, fmt.Errorf("empty element in %s", excerpt.Quote(strings.Join(toks, " ")))
	}
	e.Extra = strings.Join(extra, " ")
	return e, nil
}

func indexOf(toks []string, s string) int {
	for i, t := range toks {
		if t == s {
			return i
		}
	}
	return -1
}

// tokenize splits nft text on blanks, keeping quoted strings whole and
// making { } , separate tokens.
func tokenize(s string) []string {
	var out []string
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				out = append(out, s[i:])
				return out
			}
			out = append(out, s[i:i+j+2])
			i += j + 2
		case c == '{' || c == '}' || c == ',':
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r' && s[j] != '{' && s[j] != '}' && s[j] != ',' && s[j] != '"' {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}
