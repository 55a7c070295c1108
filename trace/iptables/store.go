// How a parsed dump is held: chains in chunked lists with a hash index,
// rule text in arenas (or read back from the file on demand), chain names
// interned; a chain's rules are tokenized on first use and cached.

package iptables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strings"
	"unsafe"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// parsedChain is a chain's rule text split into rules, each tokenized on
// first use. A dump read back from its file is split as far as walks have
// needed: texts holds the rules read so far, pending the rest.
type parsedChain struct {
	texts   []string
	lines   []int32
	rules   []*Rule
	errs    map[int]error // rules that failed to tokenize
	pending []segment
}

// chainData is what the parser keeps per chain. It is small (32 bytes) and
// pointer-free on purpose: big dumps have a hundred thousand chains.
type chainData struct {
	first  segment // the rule text, in order: first, then Table.extra[index]
	line   int32
	count  int32
	name   nameRef
	policy uint8
	more   bool // the rules continue in Table.extra
}

// chainList stores chains in fixed-size chunks: appending never copies
// what is already stored (a dump can declare a hundred thousand chains).
type chainList struct {
	chunks [][]chainData
	n      int32
}

const chainChunk = 4096

func (l *chainList) at(i int32) *chainData { return &l.chunks[i/chainChunk][i%chainChunk] }

func (l *chainList) len() int32 { return l.n }

func (l *chainList) append(c chainData) int32 {
	if l.n%chainChunk == 0 {
		// The first chunk starts small and grows (a node dump of a small
		// cluster has a few dozen chains); later chunks are allocated whole.
		size := chainChunk
		if l.n == 0 {
			size = 64
		}
		chunk := make([]chainData, 0, size)
		if size == chainChunk {
			populate(unsafe.Pointer(unsafe.SliceData(chunk)), size*int(unsafe.Sizeof(chainData{})))
		}
		l.chunks = append(l.chunks, chunk)
	}
	last := len(l.chunks) - 1
	l.chunks[last] = append(l.chunks[last], c)
	l.n++
	return l.n - 1
}

// Policies as stored in chainData.policy.
var policyNames = []string{"-", "ACCEPT", "DROP", "RETURN", "QUEUE"}

func policyCode(b []byte) (uint8, bool) {
	for i, p := range policyNames {
		if string(b) == p {
			return uint8(i), true
		}
	}
	return 0, false
}

func (t *Table) segments(i int32, fn func(segment) bool) {
	c := t.chains.at(i)
	if c.count == 0 || !fn(c.first) {
		return
	}
	if c.more {
		for _, s := range t.extra[i] {
			if !fn(s) {
				return
			}
		}
	}
}

var nameSeed = maphash.MakeSeed()

func (t *Table) nameOf(i int32) []byte { return t.dump.names.get(t.chains.at(i).name) }

// lookup returns the index of the named chain, or -1.
func (t *Table) lookup(name []byte) int32 {
	if t.unsorted {
		return t.hashLookup(name)
	}
	for i, head := range t.heads {
		if string(head) == string(name) {
			return int32(i)
		}
	}
	lo, hi := t.sortedFrom, t.chains.len()
	for lo < hi {
		mid := int32(uint32(lo+hi) >> 1)
		if bytes.Compare(t.nameOf(mid), name) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < t.chains.len() && string(t.nameOf(lo)) == string(name) {
		return lo
	}
	return -1
}

// add appends a chain, whose name (stored at c.name) is name, and keeps the
// lookup structure right. It reports false when the name is already
// declared.
func (t *Table) add(c chainData, name []byte) (int32, bool) {
	if !t.unsorted {
		n := t.chains.len()
		switch {
		case c.policy != 0 && n == t.sortedFrom:
			// Another built-in chain before the first user chain.
			t.sortedFrom++
		case c.policy != 0, n > t.sortedFrom && bytes.Compare(t.lastName, name) >= 0:
			t.unsorted = true
			t.slots = nil
			t.hashes = make([]uint64, 0, n+1)
			for i := int32(0); i < n; i++ {
				t.hashes = append(t.hashes, maphash.Bytes(nameSeed, t.nameOf(i)))
				t.insert(i)
			}
		}
		for i, head := range t.heads {
			if !t.unsorted && string(head) == string(name) {
				return int32(i), false
			}
		}
	}
	var h uint64
	if t.unsorted {
		if i := t.hashLookup(name); i >= 0 {
			return i, false
		}
		h = maphash.Bytes(nameSeed, name)
	}
	i := t.chains.append(c)
	if t.unsorted {
		t.hashes = append(t.hashes, h)
		t.insert(i)
	} else if i < t.sortedFrom {
		t.heads = append(t.heads, name)
	}
	t.lastName = name
	return i, true
}

func (t *Table) hashLookup(name []byte) int32 {
	if len(t.slots) == 0 {
		return -1
	}
	h := maphash.Bytes(nameSeed, name)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return -1
		}
		if t.hashes[v-1] == h && string(t.nameOf(v-1)) == string(name) {
			return v - 1
		}
	}
}

// insert adds chain i (whose hash is set) to the hash index.
func (t *Table) insert(i int32) {
	if 2*(int(i)+1) > len(t.slots) {
		size := 1024
		for size < 4*(int(i)+1) {
			size *= 2
		}
		t.slots = make([]int32, size)
		for j := int32(0); j < i; j++ {
			t.place(j)
		}
	}
	t.place(i)
}

func (t *Table) place(i int32) {
	mask := uint64(len(t.slots) - 1)
	for k := t.hashes[i] & mask; ; k = (k + 1) & mask {
		if t.slots[k] == 0 {
			t.slots[k] = i + 1
			return
		}
	}
}

func (t *Table) chain(i int32) *Chain {
	d := t.chains.at(i)
	name := t.dump.names.get(d.name)
	return &Chain{Name: unsafe.String(unsafe.SliceData(name), len(name)), Policy: policyNames[d.policy], Line: int(d.line), table: t, idx: i}
}

// split returns the chain's rules as text, cached per table. For a dump
// read back from its file it reads only the first rules; a walk asks for
// more with upTo, so a long chain such as KUBE-SERVICES is read only as far
// as the packet's rule. Callers that need all rules use splitAll.
func (c *Chain) split() (*parsedChain, error) {
	t := c.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if pc, ok := t.parsed[c.idx]; ok {
		return pc, nil
	}
	n := c.Len()
	pc := &parsedChain{texts: make([]string, 0, n), lines: make([]int32, 0, n), rules: make([]*Rule, n)}
	if t.dump.src == nil {
		t.segments(c.idx, func(seg segment) bool {
			pc.add(t.dump.arena.str(seg.arenaRef()), seg.firstLine)
			return true
		})
	} else {
		t.segments(c.idx, func(seg segment) bool {
			pc.pending = append(pc.pending, seg)
			return true
		})
		if err := c.readMore(pc, 0); err != nil {
			return nil, err
		}
	}
	if t.parsed == nil {
		t.parsed = map[int32]*parsedChain{}
	}
	t.parsed[c.idx] = pc
	return pc, nil
}

// splitAll is split with every rule read.
func (c *Chain) splitAll() (*parsedChain, error) {
	pc, err := c.split()
	if err != nil {
		return nil, err
	}
	_, err = c.upTo(pc, int(^uint(0)>>1))
	return pc, err
}

// upTo makes sure rule i is read, if the chain has it, and returns the
// rules read so far. Rules once read never change, so the caller may keep
// the returned slice and read it without the lock.
func (c *Chain) upTo(pc *parsedChain, i int) ([]string, error) {
	t := c.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := c.readMore(pc, i); err != nil {
		return nil, err
	}
	return pc.texts, nil
}

// add appends the rules of text, one per line, numbered from line.
func (pc *parsedChain) add(text string, line int32) {
	for len(text) > 0 {
		end := strings.IndexByte(text, '\n')
		pc.texts = append(pc.texts, text[:end])
		pc.lines = append(pc.lines, line)
		text = text[end+1:]
		line++
	}
}

// readPiece is how much rule text a walk reads back at a time.
const readPiece = 64 << 10

// readMore reads pending rule text until rule i is read or none is left.
// The caller holds the table's lock.
func (c *Chain) readMore(pc *parsedChain, i int) error {
	d := c.table.dump
	for len(pc.texts) <= i && len(pc.pending) > 0 {
		seg := &pc.pending[0]
		text, used, err := d.readSegmentPiece(*seg, readPiece)
		if err != nil {
			return fmt.Errorf("read rules of chain %s of table %s at line %d: %w", excerpt.Clip(c.Name), excerpt.Clip(c.table.Name), seg.firstLine, err)
		}
		before := len(pc.texts)
		pc.add(text, seg.firstLine)
		if len(pc.texts) > len(pc.rules) {
			// More rules than the parse counted (rules is indexed by rule).
			pc.texts, pc.lines = pc.texts[:before], pc.lines[:before]
			return fmt.Errorf("read rules of chain %s of table %s at line %d: the file changed since it was parsed; parse it again", excerpt.Clip(c.Name), excerpt.Clip(c.table.Name), seg.firstLine)
		}
		if used == seg.len {
			pc.pending = pc.pending[1:]
			continue
		}
		seg.pos += int64(used)
		seg.len -= used
		seg.firstLine += int32(len(pc.texts) - before)
	}
	return nil
}

// maxCachedRules bounds how many tokenized rules a table keeps. A rule costs
// a few hundred bytes tokenized; past the bound (a hostile or freak dump,
// such as a chain of a million rules that all match) rules are tokenized
// again each time a walk needs them instead of being kept.
const maxCachedRules = 1 << 17

// rule tokenizes rule i of a split chain, once while the table's cache has
// room.
func (c *Chain) rule(pc *parsedChain, i int) (*Rule, error) {
	t := c.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, err := pc.rules[i], pc.errs[i]; r != nil || err != nil {
		return r, err
	}
	r, err := parseRule(pc.texts[i])
	if err != nil {
		err = &ParseError{Line: int(pc.lines[i]), Msg: fmt.Sprintf("rule in chain %s of table %s: %v", excerpt.Clip(c.Name), t.Name, err)}
		if pc.errs == nil {
			pc.errs = map[int]error{}
		}
		pc.errs[i] = err
		return nil, err
	}
	r.Table, r.Chain, r.Line, r.Index = t.Name, c.Name, int(pc.lines[i]), i
	if t.cached < maxCachedRules {
		t.cached++
		pc.rules[i] = r
	}
	return r, nil
}

// readSegment reads raw rule lines back from the source and turns them into
// the stored form: one "[counters] body\n" per rule.
func (d *Dump) readSegment(seg segment) (string, error) {
	text, _, err := d.readSegmentPiece(seg, seg.len)
	return text, err
}

// readSegmentPiece is readSegment for the first whole lines of seg that fit
// in max bytes (at least one line, however long); used is how many bytes of
// seg they take. The conversion works in place: a stored line is never
// longer than its raw line, so the write position w never passes the start
// of the line being read (copy moves overlapping bytes correctly).
func (d *Dump) readSegmentPiece(seg segment, max int32) (text string, used int32, err error) {
	n := min(seg.len, max)
	buf := make([]byte, n)
	if _, err := d.src.ReadAt(buf, seg.pos); err != nil && !(errors.Is(err, io.EOF) && len(buf) > 0) {
		return "", 0, err
	}
	if n < seg.len {
		if cut := bytes.LastIndexByte(buf, '\n'); cut >= 0 {
			buf = buf[:cut+1]
		} else {
			// One line longer than max: read the whole segment.
			return d.readSegmentPiece(seg, seg.len)
		}
	}
	used = int32(len(buf))
	raw, w := buf, 0
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, '\n')
		line := raw
		if end >= 0 {
			line, raw = raw[:end], raw[end+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		counters, _, body, msg := splitRuleLine(line)
		if msg != "" {
			return "", 0, fmt.Errorf("the file changed since it was parsed: %s", msg)
		}
		if counters != nil {
			w += copy(buf[w:], counters)
			buf[w] = ' '
			w++
		}
		w += copy(buf[w:], body)
		buf[w] = '\n'
		w++
	}
	return unsafe.String(unsafe.SliceData(buf), w), used, nil
}

// segment is a run of rules of one chain that were consecutive lines in the
// dump and are stored back to back in the arena, each ending in '\n'.
type segment struct {
	// pos is block<<32|offset in the arena, or the byte offset of the
	// first raw line in Dump.src.
	pos       int64
	len       int32
	firstLine int32
}

func (s segment) arenaRef() textRef {
	return textRef{block: int32(s.pos >> 32), off: int32(s.pos & 0xffffffff), len: s.len}
}

// textRef locates bytes in the arena.
type textRef struct {
	block, off, len int32
}

// Blocks start small and double up to arenaBlockSize, so parsing a small
// dump does not cost a megabyte.
const (
	arenaFirstBlock = 16 << 10
	arenaBlockSize  = 1 << 20
)

const (
	nameOffsetBits = 20
	maxNameBlocks  = 1 << (32 - nameOffsetBits)
)

// arena holds rule text in fixed-size blocks so that a dump read from a
// stream is stored once, without the doubling copies of a growing buffer.
// Blocks hold no pointers; the garbage collector does not scan them.
type arena struct {
	blocks [][]byte
	// populated is how much of the last block is mapped in (populate),
	// in steps of populateStep as the block fills.
	populated int
}

const populateStep = 64 << 10

// reserve returns the block index and offset where n more bytes fit.
func (a *arena) reserve(n int) (int32, int32) {
	if len(a.blocks) > 0 {
		last := len(a.blocks) - 1
		if b := a.blocks[last]; cap(b)-len(b) >= n {
			if end := len(b) + n; end > a.populated {
				a.populateTo(b, end)
			}
			return int32(last), int32(len(b))
		}
	}
	size := arenaFirstBlock
	if k := len(a.blocks); k > 0 {
		size = min(cap(a.blocks[k-1])*2, arenaBlockSize)
	}
	if n > size {
		size = n
	}
	b := make([]byte, 0, size)
	a.blocks = append(a.blocks, b)
	a.populated = 0
	a.populateTo(b, n)
	return int32(len(a.blocks) - 1), 0
}

// populateTo maps in block b's pages up to at least end, a step at a time,
// so that a block filled line by line does not take a page fault per page.
func (a *arena) populateTo(b []byte, end int) {
	if cap(b) < populateStep {
		return // small blocks: small dumps
	}
	to := min(max(end, a.populated+populateStep), cap(b))
	populate(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), a.populated), to-a.populated)
	a.populated = to
}

func (a *arena) append(block int32, p ...[]byte) {
	b := a.blocks[block]
	for _, x := range p {
		b = append(b, x...)
	}
	a.blocks[block] = b
}

func (a *arena) bytes(r textRef) []byte {
	return a.blocks[r.block][r.off : r.off+r.len]
}

// str returns the bytes as a string without copying. Blocks are never
// written below their length again, so the string stays immutable.
func (a *arena) str(r textRef) string {
	b := a.bytes(r)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// store copies p into the arena.
func (a *arena) store(p []byte) textRef {
	blk, off := a.reserve(len(p))
	a.append(blk, p)
	return textRef{block: blk, off: off, len: int32(len(p))}
}

// nameRef locates a chain name in the nameStore: block<<20 | offset.
type nameRef uint32

// nameStore keeps chain names as length-prefixed entries in blocks of at
// most 1 MiB (a longer name gets a block of its own, at offset 0), so a
// 4-byte reference finds one. Like the arena it holds no pointers and
// never rewrites stored bytes.
type nameStore struct {
	arena
}

// add stores name and returns its reference and the stored copy.
func (s *nameStore) add(name []byte) (nameRef, []byte, error) {
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(len(name)))
	blk, off := s.reserve(h + len(name))
	if blk >= maxNameBlocks {
		return 0, nil, fmt.Errorf("more than %d MiB of chain names", maxNameBlocks)
	}
	s.append(blk, hdr[:h], name)
	start := int(off) + h
	return nameRef(uint32(blk)<<nameOffsetBits | uint32(off)), s.blocks[blk][start : start+len(name)], nil
}

func (s *nameStore) get(r nameRef) []byte {
	b := s.blocks[r>>nameOffsetBits][r&(1<<nameOffsetBits-1):]
	n, h := binary.Uvarint(b)
	return b[h : h+int(n)]
}
