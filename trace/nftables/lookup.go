package nftables

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// protoNames maps protocol numbers as nft may print them to names.
var protoNames = map[string]string{"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}

// selectorKind says how a selector's values are compared.
func selectorKind(s Selector) byte {
	switch s.Field {
	case "saddr", "daddr":
		return 'a'
	case "dport", "sport", "mark":
		return 'n'
	}
	return 's'
}

// normalize turns an element token into the exact-match form of its kind;
// span is true when the token is a prefix or a range (matched by containment).
func normalize(kind byte, tok string) (norm string, span bool) {
	switch kind {
	case 'a':
		if strings.ContainsAny(tok, "/-") {
			return tok, true
		}
		if a, err := netip.ParseAddr(tok); err == nil {
			return a.Unmap().String(), false
		}
	case 'n':
		if strings.Contains(tok, "-") {
			return tok, true
		}
		if n, err := strconv.ParseUint(tok, 0, 64); err == nil {
			return strconv.FormatUint(n, 10), false
		}
	case 's':
		if name, ok := protoNames[tok]; ok {
			return name, false
		}
	}
	return tok, false
}

func keyString(key []keyPart) string {
	var b strings.Builder
	for i, k := range key {
		if i > 0 {
			b.WriteString(" . ")
		}
		switch k.kind {
		case 'a':
			b.WriteString(k.addr.Unmap().String())
		case 'n':
			b.WriteString(strconv.FormatUint(k.num, 10))
		default:
			b.WriteString(k.str)
		}
	}
	return b.String()
}

// elementKey returns an element's exact key string, or span when one of its
// parts is a prefix or range.
func elementKey(e *Element, sels []Selector) (string, bool) {
	if len(e.Key) != len(sels) {
		return "", true // shape mismatch: let the slow path decide (it won't match)
	}
	var b strings.Builder
	for i, tok := range e.Key {
		n, span := normalize(selectorKind(sels[i]), tok)
		if span {
			return "", true
		}
		if i > 0 {
			b.WriteString(" . ")
		}
		b.WriteString(n)
	}
	return b.String(), false
}

// lookup finds the element of s that key falls in, or nil. Exact keys are
// indexed on first use (kube-proxy's maps have one element per Service
// port); prefixes and ranges are tried in order.
func (s *Set) lookup(key []keyPart, sels []Selector) (*Element, error) {
	if s.raw != nil && s.rawErr == nil && s.index == nil && !s.interval() {
		// Not read yet: look for the key's text instead of reading every
		// element (kube-proxy's sets hold one element per Service port).
		return s.findRaw(keyString(key), sels)
	}
	elems, err := s.Elements()
	if err != nil {
		return nil, err
	}
	if s.index == nil {
		s.index = make(map[string]int, len(elems))
		for i := range elems {
			k, span := elementKey(&elems[i], sels)
			if span {
				s.spans = append(s.spans, i)
				continue
			}
			if _, dup := s.index[k]; !dup {
				s.index[k] = i
			}
		}
	}
	if i, ok := s.index[keyString(key)]; ok {
		return &elems[i], nil
	}
	for _, i := range s.spans {
		if elementMatches(&elems[i], key, sels) {
			return &elems[i], nil
		}
	}
	return nil, nil
}

// lookupIn finds the first of values (an anonymous set or a literal) that
// key falls in.
func lookupIn(values []Element, key []keyPart, sels []Selector) *Element {
	for i := range values {
		if elementMatches(&values[i], key, sels) {
			return &values[i]
		}
	}
	return nil
}

func elementMatches(e *Element, key []keyPart, sels []Selector) bool {
	if len(e.Key) != len(key) {
		return false
	}
	for i, tok := range e.Key {
		if !partMatches(key[i], selectorKind(sels[i]), tok) {
			return false
		}
	}
	return true
}

func partMatches(k keyPart, kind byte, tok string) bool {
	switch kind {
	case 'a':
		if strings.Contains(tok, "/") {
			p, err := netip.ParsePrefix(tok)
			return err == nil && p.Contains(k.addr)
		}
		if lo, hi, ok := strings.Cut(tok, "-"); ok {
			a, err1 := netip.ParseAddr(lo)
			b, err2 := netip.ParseAddr(hi)
			return err1 == nil && err2 == nil && a.Compare(k.addr) <= 0 && k.addr.Compare(b) <= 0
		}
		a, err := netip.ParseAddr(tok)
		return err == nil && a.Unmap() == k.addr.Unmap()
	case 'n':
		if lo, hi, ok := strings.Cut(tok, "-"); ok {
			a, err1 := strconv.ParseUint(lo, 0, 64)
			b, err2 := strconv.ParseUint(hi, 0, 64)
			return err1 == nil && err2 == nil && a <= k.num && k.num <= b
		}
		n, err := strconv.ParseUint(tok, 0, 64)
		return err == nil && n == k.num
	}
	n, _ := normalize('s', tok)
	return n == k.str
}

// interval reports a set that may hold prefixes and ranges.
func (s *Set) interval() bool {
	for _, f := range s.Flags {
		if f == "interval" {
			return true
		}
	}
	return false
}

// findRaw finds the element whose key is k in the set's unread text. nft
// prints keys the way keyString writes them (canonical addresses, decimal
// ports, protocol names, parts joined by " . "), and an exact set holds no
// prefixes or ranges, so a key that no element starts with is not in the
// set. TestFindRawAgreesWithFullRead checks this on real output.
//
// The first lookup walks the text element by element, from one top-level
// comma to the next: far fewer stops than searching for the key itself,
// whose first bytes ("10.", "172.") start most elements and many of their
// values. A set looked up again (cluster-ips, once for the ClusterIP and
// then once for each endpoint a numgen map forked the packet to) is
// indexed by each element's first token, without reading the elements.
func (s *Set) findRaw(k string, sels []Selector) (*Element, error) {
	if s.rawIdx != nil || (s.rawScans > 0 && s.indexable()) {
		return s.findRawIndexed(k, sels)
	}
	s.rawScans++
	return s.findRawScan(k, sels)
}

// findRawScan is findRaw's first lookup: one walk over the elements.
func (s *Set) findRawScan(k string, sels []Selector) (*Element, error) {
	for _, r := range s.raw {
		var found *Element
		var err error
		eachRawElement(r.text, func(start, stop int) bool {
			found, err = s.tryRawElement(r, start, stop, k, sels)
			return found == nil && err == nil
		})
		if found != nil || err != nil {
			return found, err
		}
	}
	return nil, nil
}

// indexable reports raw text short enough for rawAt's 32-bit offsets (a
// set of more than 2 GiB is scanned at every lookup).
func (s *Set) indexable() bool {
	for _, r := range s.raw {
		if len(r.text) > math.MaxInt32 {
			return false
		}
	}
	return true
}

// rawIndex indexes a set's unread elements by their first token (an
// address, a protocol, a port): elements with the same first token are
// chained through next, last first.
type rawIndex struct {
	head map[string]int32
	next []int32
	at   []rawAt
}

// rawAt is where an unread element is: raw text chunk, start and end.
type rawAt struct {
	chunk, start, stop int32
}

// findRawIndexed is findRaw through the index, built on first use.
func (s *Set) findRawIndexed(k string, sels []Selector) (*Element, error) {
	if s.rawIdx == nil {
		// Sized once from the commas (an upper bound on the elements of
		// a set without anonymous sets or quoted commas inside), held to
		// one element per 8 bytes (an IPv4 address and its comma) so that
		// a body of commas cannot make a map many times its size.
		n, size := 0, 0
		for _, r := range s.raw {
			n, size = n+strings.Count(r.text, ",")+1, size+len(r.text)
		}
		n = min(n, size/8+1)
		idx := &rawIndex{head: make(map[string]int32, n), next: make([]int32, 0, n), at: make([]rawAt, 0, n)}
		for ci, r := range s.raw {
			eachRawElement(r.text, func(start, stop int) bool {
				if start == stop {
					return true
				}
				n := int32(len(idx.at))
				tok := firstToken(r.text[start:stop])
				prev, ok := idx.head[tok]
				if !ok {
					prev = -1
				}
				idx.head[tok] = n
				idx.next = append(idx.next, prev)
				idx.at = append(idx.at, rawAt{chunk: int32(ci), start: int32(start), stop: int32(stop)})
				return true
			})
		}
		s.rawIdx = idx
	}
	idx := s.rawIdx
	first, ok := idx.head[firstToken(k)]
	if !ok {
		return nil, nil
	}
	// The chain runs last first; the scan would find the first element in
	// text order, so keep the earliest that matches.
	var found *Element
	for n := first; n >= 0; n = idx.next[n] {
		at := idx.at[n]
		e, err := s.tryRawElement(s.raw[at.chunk], int(at.start), int(at.stop), k, sels)
		if err != nil {
			return nil, err
		}
		if e != nil {
			found = e
		}
	}
	return found, nil
}

// firstToken returns s up to its first blank.
func firstToken(s string) string {
	for i := 0; i < len(s); i++ {
		if isBlank(s[i]) {
			return s[:i]
		}
	}
	return s
}

// tryRawElement reads the element of r at text[start:stop] if it starts
// with key k, and returns it if its key is k.
func (s *Set) tryRawElement(r rawRule, start, stop int, k string, sels []Selector) (*Element, error) {
	text := r.text
	if !strings.HasPrefix(text[start:stop], k) || (start+len(k) != stop && !isBlank(text[start+len(k)])) {
		return nil, nil
	}
	elems, err := parseElements(tokenize(text[start:stop]), s.IsMap)
	if err != nil {
		return nil, fmt.Errorf("%w: line %d: set %s: %v", ErrMalformed, r.line, excerpt.Clip(s.Name), err)
	}
	if len(elems) == 1 {
		if ek, span := elementKey(&elems[0], sels); !span && ek == k {
			return &elems[0], nil
		}
	}
	return nil, nil
}

// eachRawElement calls fn with the bounds of each element of an elements
// body, blanks before it skipped, until fn returns false.
func eachRawElement(text string, fn func(start, stop int) bool) {
	// Without quotes and braces (kube-proxy's sets and maps), an element
	// ends at the next comma.
	plain := strings.IndexByte(text, '"') < 0 && strings.IndexByte(text, '{') < 0 && strings.IndexByte(text, '}') < 0
	for i := 0; i < len(text); {
		for i < len(text) && isBlank(text[i]) {
			i++
		}
		var stop int
		if plain {
			if stop = strings.IndexByte(text[i:], ','); stop < 0 {
				stop = len(text)
			} else {
				stop += i
			}
		} else {
			stop = nextElement(text, i)
		}
		if !fn(i, stop) {
			return
		}
		i = stop + 1 // past the comma
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// nextElement returns where the element starting at i ends: the next comma
// outside quotes and braces, or the end of text. An element without quotes
// or braces before its comma (nearly all) is found with one vectorized
// search.
func nextElement(text string, i int) int {
	comma := strings.IndexByte(text[i:], ',')
	if comma < 0 {
		comma = len(text) - i
	}
	if seg := text[i : i+comma]; strings.IndexByte(seg, '"') < 0 && strings.IndexByte(seg, '{') < 0 && strings.IndexByte(seg, '}') < 0 {
		return i + comma
	}
	return elementEnd(text, i)
}

// elementEnd returns where the element starting at i ends: the next comma
// outside quotes and braces, or the end of text.
func elementEnd(text string, i int) int {
	depth, quoted := 0, false
	for ; i < len(text); i++ {
		switch c := text[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '{':
			depth++
		case c == '}':
			depth--
		case c == ',' && depth == 0:
			return i
		}
	}
	return len(text)
}
