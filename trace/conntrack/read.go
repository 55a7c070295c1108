package conntrack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// MaxLineLength bounds one line. A real entry is a few hundred bytes (with
// accounting, timestamps, labels and an SELinux context under 1 KiB);
// longer lines are skipped and counted.
const MaxLineLength = 8 << 10

// maxExamples is how many skipped lines Stats keeps, each clipped.
const maxExamples = 3

// Stats describes what a reader read.
type Stats struct {
	// Format is the table's format, from the first entry read.
	Format Format
	// Lines is the number of non-empty lines read, entries or not.
	Lines int
	// Entries is the number of entries handed out.
	Entries int
	// Skipped is the number of lines that were not entries: malformed, too
	// long, or of the other family's layout. Examples holds the first few,
	// clipped, with why.
	Skipped  int
	Examples []string
	// OtherProtocols counts entries of protocols without a name here (the
	// kernel prints them as "unknown"); they are handed out like the rest.
	OtherProtocols int
	// Cut: the input ended in the middle of a line, as when a size cap cut
	// it. An incomplete last line is dropped, not counted in Skipped.
	Cut bool
	// Shown is the count from conntrack's own summary line ("conntrack
	// v1.4.7 (conntrack-tools): N flow entries have been shown."), when the
	// input has it (stderr saved with stdout); -1 otherwise.
	Shown int
}

// Warnings says in sentences what a reader skipped or could not see.
func (s *Stats) Warnings(what string) []string {
	var w []string
	if s.Skipped > 0 {
		msg := fmt.Sprintf("%s: skipped %d line(s) that are not connection entries", what, s.Skipped)
		if len(s.Examples) > 0 {
			msg += " (first: " + s.Examples[0] + ")"
		}
		w = append(w, msg)
	}
	if s.Cut {
		w = append(w, fmt.Sprintf("%s: the table was cut off after %d entries (raise the collection cap to see all of it)", what, s.Entries))
	}
	if s.Shown >= 0 && s.Shown != s.Entries && !s.Cut {
		w = append(w, fmt.Sprintf("%s: conntrack said it showed %d entries but %d were read", what, s.Shown, s.Entries))
	}
	return w
}

func (s *Stats) skip(line int, raw []byte, why string) {
	s.Skipped++
	if len(s.Examples) < maxExamples {
		s.Examples = append(s.Examples, fmt.Sprintf("line %d: %s: %q", line, why, clip(raw)))
	}
}

// clip shortens untrusted text for a message.
func clip(b []byte) string {
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// lineReader hands out lines of at most MaxLineLength bytes without
// holding more than one buffer.
type lineReader struct {
	br     *bufio.Reader
	lineNo int
	// partial: the line just returned had no newline (the input ended).
	partial bool
}

func newLineReader(r io.Reader) lineReader {
	return lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its newline, skipping over-long lines
// (reported through tooLong), or io.EOF.
func (lr *lineReader) next(tooLong func(lineNo int, head []byte)) ([]byte, error) {
	for {
		line, err := lr.br.ReadSlice('\n')
		lr.lineNo++
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong(lr.lineNo, line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = lr.br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			continue
		}
		lr.partial = false
		switch {
		case err == nil:
			line = line[:len(line)-1]
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			lr.partial = true
		default:
			return nil, err
		}
		if len(line) > MaxLineLength {
			tooLong(lr.lineNo, line)
			continue
		}
		return line, nil
	}
}

// Reader reads a conntrack table — /proc/net/nf_conntrack, `conntrack -L`
// or `conntrack -L -o extended` — one entry at a time. Each line's layout is
// recognized on its own, so saved outputs of both kinds can be concatenated.
type Reader struct {
	lines lineReader
	entry entryState
	stats Stats
	// want, when set, is asked about each entry's original destination as
	// soon as it is read; entries it does not want are counted but not
	// parsed further nor handed out (Observe's fast path).
	want func(Proto, netip.Addr, uint16) bool
}

// NewReader reads the table from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{lines: newLineReader(r), stats: Stats{Shown: -1}}
}

// Stats reports what was read so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next returns the next entry, or io.EOF after the last. The entry is
// overwritten by the following call. Lines that are not entries are
// skipped and counted in Stats; only a read error or an XML table is an
// error.
func (r *Reader) Next() (*Entry, error) {
	for {
		line, err := r.lines.next(func(n int, head []byte) { r.stats.Lines++; r.stats.skip(n, head, "line too long") })
		if err != nil {
			return nil, err
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		r.stats.Lines++
		if n, ok := summaryCount(line); ok {
			r.stats.Shown = n
			continue
		}
		e := &r.entry
		want := r.want
		if r.lines.partial {
			want = nil // a cut line must be parsed to the end to tell
		}
		f, why, unwanted := parseLine(line, e, want)
		if unwanted {
			r.count(f, e.Proto)
			continue
		}
		if why != "" {
			if r.lines.partial {
				r.stats.Cut = true
				return nil, io.EOF
			}
			if f == FormatXML {
				return nil, fmt.Errorf("%w: this is conntrack's XML output (-o xml); collect `conntrack -L` or /proc/net/nf_conntrack instead", ErrMalformed)
			}
			r.stats.skip(r.lines.lineNo, line, why)
			continue
		}
		if r.lines.partial && !e.complete {
			r.stats.Cut = true
			return nil, io.EOF
		}
		r.count(f, e.Proto)
		e.Line = r.lines.lineNo
		return &e.Entry, nil
	}
}

// count records one entry read.
func (r *Reader) count(f Format, p Proto) {
	if r.stats.Format == FormatUnknown {
		r.stats.Format = f
	}
	if _, named := protoNames[p]; !named {
		r.stats.OtherProtocols++
	}
	r.stats.Entries++
}

// Scan reads every entry of the table in r and calls fn with each (the
// entry is reused: copy what you keep). An input with lines but no entry at
// all is an error: it is not a conntrack table.
func Scan(r io.Reader, fn func(*Entry) error) (Stats, error) {
	return scan(NewReader(r), fn)
}

func scan(cr *Reader, fn func(*Entry) error) (Stats, error) {
	return drain(cr.Next, cr.Stats, fn, "connection entries")
}

// drain calls fn with each entry next hands out until io.EOF. An input with
// lines but no entry at all is an error naming what was looked for.
func drain[T any](next func() (*T, error), stats func() Stats, fn func(*T) error, what string) (Stats, error) {
	for {
		e, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stats(), err
		}
		if err := fn(e); err != nil {
			return stats(), err
		}
	}
	st := stats()
	if st.Entries == 0 && st.Skipped > 0 {
		return st, fmt.Errorf("%w: no %s in %d line(s); %s", ErrMalformed, what, st.Lines, st.Examples[0])
	}
	return st, nil
}

// summaryCount recognizes conntrack's closing line on stderr.
func summaryCount(line []byte) (int, bool) {
	const tail = " flow entries have been shown."
	if !hasPrefix(line, "conntrack v") || !bytes.HasSuffix(line, []byte(tail)) {
		return 0, false
	}
	body := line[:len(line)-len(tail)]
	i := bytes.LastIndexByte(body, ' ')
	n, ok := atoi(body[i+1:], 1<<31-1)
	return int(n), ok
}

// entryState is an Entry with the parser's bookkeeping.
type entryState struct {
	Entry
	complete bool // the line ended with use= (or id=) as the kernel and conntrack end it
}

// parseLine fills e from one line and returns the line's format, or a short
// reason why the line is not an entry. With want, it stops as soon as the
// original destination is known and want says no (unwanted).
func parseLine(line []byte, e *entryState, want func(Proto, netip.Addr, uint16) bool) (format Format, why string, unwanted bool) {
	*e = entryState{Entry: Entry{Timeout: -1}}
	rest := line
	t1, rest := nextToken(rest)
	t2, rest := nextToken(rest)
	if t1 == nil || t2 == nil {
		return FormatUnknown, "too few fields", false
	}
	if t1[0] == '<' {
		return FormatXML, "XML", false
	}
	format = FormatDefault
	if isL3Name(t1) {
		// ipv4 2 tcp 6 ... — but "unknown 253 ..." is also how conntrack -L
		// starts a line of an unnamed protocol: a layer-3 header is followed
		// by a layer-4 name.
		save := rest
		t3, r3 := nextToken(rest)
		t4, r4 := nextToken(r3)
		if t3 != nil && t4 != nil && isL4Name(t3) && isDigits(t4) {
			l3, ok := atoi(t2, 255)
			if !ok {
				return FormatExtended, "bad layer-3 number", false
			}
			e.Family = Family(l3)
			format = FormatExtended
			t1, t2, rest = t3, t4, r4
		} else {
			rest = save
		}
	}
	if !isL4Name(t1) {
		return FormatUnknown, "not a conntrack entry", false
	}
	l4, ok := atoi(t2, 255)
	if !ok {
		return format, "bad protocol number", false
	}
	e.Proto = Proto(l4)

	// Before the first tuple: the timeout, then protocol information
	// (TCP/SCTP/DCCP state; GRE prints "timeout=30, stream_timeout=180").
	var tok []byte
	first := true
	for {
		tok, rest = nextToken(rest)
		if tok == nil {
			return format, "no original tuple", false
		}
		if hasPrefix(tok, "src=") {
			break
		}
		if first && isDigits(tok) {
			n, ok := atoi(tok, 1<<62)
			if !ok {
				return format, "bad timeout", false
			}
			e.Timeout = int64(n)
		} else if e.Proto.hasState() && e.State == "" && isStateWord(tok) {
			e.State = internState(tok)
		}
		first = false
	}

	// The tuples and what follows them. A second src= starts the reply
	// tuple; flags and mark=/zone=/use= end it.
	dir := 1
	tup := &e.Original
	srcs := 0
	// With want, the original source is parsed only once the entry is
	// wanted: most entries are not.
	var origSrc []byte
	// seen holds, per tuple, the keys already read: the kernel prints each
	// once, and a repeated one would make the entry ambiguous.
	var seen [3]uint16
	eq := 3 // tok is "src=..."
	for ; tok != nil; tok, eq, rest = nextField(rest) {
		if tok[0] == '[' {
			switch string(tok) {
			case "[UNREPLIED]":
				e.Unreplied = true
			case "[ASSURED]":
				e.Assured, dir = true, 3
			case "[OFFLOAD]", "[HW_OFFLOAD]":
				e.Offload, dir = true, 3
			default:
				// [start=Mon Jan  2 15:04:05 2006] and [stop=...] (conntrack
				// -o timestamp) hold spaces: skip to the closing bracket.
				for tok[len(tok)-1] != ']' {
					if tok, rest = nextToken(rest); tok == nil {
						return format, "unterminated [ ]", false
					}
				}
				dir = 3
			}
			continue
		}
		if eq <= 0 {
			continue // a word this reader does not know: kept out of the entry
		}
		key, val := tok[:eq], tok[eq+1:]
		if dir < 3 {
			bit := tupleKeyBit(key)
			if bit != 0 {
				if string(key) == "src" {
					srcs++
					if srcs == 2 {
						dir, tup = 2, &e.Reply
					} else if srcs > 2 {
						return format, "more than two tuples", false
					}
				}
				if seen[dir]&bit != 0 {
					return format, "repeated " + string(key), false
				}
				seen[dir] |= bit
				var bad bool
				switch string(key) {
				case "src":
					if dir == 1 && want != nil {
						origSrc = val
						continue
					}
					if tup.Src, bad = parseAddr(val); bad {
						return format, "bad source address", false
					}
				case "dst":
					if tup.Dst, bad = parseAddr(val); bad {
						return format, "bad destination address", false
					}
				default:
					if !setTupleField(tup, key, val) {
						return format, "bad " + string(key), false
					}
				}
				// With want, decide as soon as the original destination is
				// known: its address and, for protocols with ports, its port.
				if want != nil && dir == 1 && seen[1]&keyDst != 0 && (seen[1]&keyDport != 0 || !e.Proto.hasPorts()) {
					if !want(e.Proto, tup.Dst, tup.DstPort) {
						return format, "", true
					}
					want = nil
				}
				continue
			}
		}
		dir = 3
		switch string(key) {
		case "mark":
			n, ok := atoi(val, 1<<32-1)
			if !ok {
				return format, "bad mark", false
			}
			e.Mark = uint32(n)
		case "zone":
			n, ok := atoi(val, 1<<16-1)
			if !ok {
				return format, "bad zone", false
			}
			e.Zone = uint16(n)
		case "use":
			n, ok := atoi(val, 1<<32-1)
			if !ok {
				return format, "bad use", false
			}
			e.Use = uint32(n)
			e.complete = true
		case "id":
			e.complete = true
		}
		// secctx=, secmark=, delta-time=, helper=, labels=: not needed here.
	}

	if srcs != 2 {
		return format, "no reply tuple", false
	}
	if origSrc != nil {
		var bad bool
		if e.Original.Src, bad = parseAddr(origSrc); bad {
			return format, "bad source address", false
		}
	}
	o, r := &e.Original, &e.Reply
	if !o.Src.IsValid() || !o.Dst.IsValid() || !r.Src.IsValid() || !r.Dst.IsValid() {
		return format, "a tuple lacks an address", false
	}
	v4 := o.Src.Is4()
	if o.Dst.Is4() != v4 || r.Src.Is4() != v4 || r.Dst.Is4() != v4 {
		return format, "addresses of different families", false
	}
	fam := IPv6
	if v4 {
		fam = IPv4
	}
	if e.Family == 0 {
		e.Family = fam
	} else if e.Family != fam {
		return format, "layer-3 number does not match the addresses", false
	}
	if e.Proto.hasPorts() && (o.DstPort == 0 && o.SrcPort == 0 || r.SrcPort == 0 && r.DstPort == 0) {
		return format, "no ports", false
	}
	return format, "", false
}

// Keys of a tuple, as bits.
const (
	keySrc uint16 = 1 << iota
	keyDst
	keySport
	keyDport
	keyType
	keyCode
	keyID
	keySrckey
	keyDstkey
	keyZone
	keyPackets
	keyBytes
)

func tupleKeyBit(key []byte) uint16 {
	switch string(key) {
	case "src":
		return keySrc
	case "dst":
		return keyDst
	case "sport":
		return keySport
	case "dport":
		return keyDport
	case "type":
		return keyType
	case "code":
		return keyCode
	case "id":
		return keyID
	case "srckey":
		return keySrckey
	case "dstkey":
		return keyDstkey
	case "zone-orig", "zone-reply":
		return keyZone
	case "packets":
		return keyPackets
	case "bytes":
		return keyBytes
	}
	return 0
}

func setTupleField(t *Tuple, key, val []byte) bool {
	switch string(key) {
	case "sport", "dport":
		n, ok := atoi(val, 65535)
		if !ok {
			return false
		}
		if key[0] == 's' {
			t.SrcPort = uint16(n)
		} else {
			t.DstPort = uint16(n)
		}
	case "type", "code":
		n, ok := atoi(val, 255)
		if !ok {
			return false
		}
		if key[0] == 't' {
			t.ICMPType = uint8(n)
		} else {
			t.ICMPCode = uint8(n)
		}
	case "id":
		n, ok := atoi(val, 65535)
		if !ok {
			return false
		}
		t.ICMPID = uint16(n)
	case "srckey", "dstkey":
		// GRE keys, printed in hex; not needed for counting.
	case "zone-orig", "zone-reply":
		n, ok := atoi(val, 65535)
		if !ok {
			return false
		}
		t.Zone, t.ZoneSet = uint16(n), true
	case "packets", "bytes":
		n, ok := atoi(val, 1<<63-1)
		if !ok {
			return false
		}
		if key[0] == 'p' {
			t.Packets = n
		} else {
			t.Bytes = n
		}
		t.Counted = true
	}
	return true
}

// parseAddr reads an IPv4 or IPv6 address without allocating for IPv4 and
// for the kernel's full-length IPv6 form. bad is true when it is neither.
func parseAddr(b []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(b); ok {
		return a, false
	}
	if a, ok := parseIPv6Full(b); ok {
		return a, false
	}
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, ':') < 0 {
		return netip.Addr{}, true
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, true
	}
	return a.Unmap(), false
}

func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, digits := 0, 0
	val := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && val == 0 {
				return netip.Addr{}, false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return netip.Addr{}, false
			}
		case c == '.':
			if digits == 0 || part == 3 {
				return netip.Addr{}, false
			}
			ip[part] = byte(val)
			part, digits, val = part+1, 0, 0
		default:
			return netip.Addr{}, false
		}
	}
	if part != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	ip[3] = byte(val)
	return netip.AddrFrom4(ip), true
}

// parseIPv6Full reads the kernel's %pI6 form: eight groups of four hex
// digits.
func parseIPv6Full(b []byte) (netip.Addr, bool) {
	if len(b) != 39 {
		return netip.Addr{}, false
	}
	var ip [16]byte
	for g := 0; g < 8; g++ {
		s := b[g*5:]
		if g < 7 && s[4] != ':' {
			return netip.Addr{}, false
		}
		var v uint16
		for i := 0; i < 4; i++ {
			h, ok := hexVal(s[i])
			if !ok {
				return netip.Addr{}, false
			}
			v = v<<4 | uint16(h)
		}
		ip[2*g], ip[2*g+1] = byte(v>>8), byte(v)
	}
	return netip.AddrFrom16(ip).Unmap(), true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// atoi reads a decimal number of at most max.
func atoi(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isStateWord(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// knownStates are the state words of conntrack (TCP, SCTP, DCCP) and IPVS;
// interning them keeps parsing free of allocations.
var knownStates = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		// conntrack TCP
		"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2", "LISTEN",
		// conntrack SCTP
		"CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT", "HEARTBEAT_ACKED",
		// conntrack DCCP
		"REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE", "INVALID",
		// IPVS
		"SYNACK", "UDP", "ICMP", "INIT1", "INIT", "COOKIE_SENT", "COOKIE_REPLIED", "SHUTDOWN_RECEIVED", "REJECTED", "ASSURED", "ERR!",
	} {
		m[s] = s
	}
	return m
}()

func internState(b []byte) string {
	if s, ok := knownStates[string(b)]; ok {
		return s
	}
	return string(b) // bounded by isStateWord / the IPVS field check
}

// nextToken splits off the next space-separated token. The kernel and
// conntrack separate fields with spaces only (runs of them for alignment);
// a tab is part of a token.
func nextToken(b []byte) (tok, rest []byte) {
	tok, _, rest = nextField(b)
	return tok, rest
}

// nextField is nextToken that also returns the index of the token's first
// '=' (-1 when none): one pass over the bytes instead of two. Tokens are
// short, so a plain loop beats bytes.IndexByte's call.
func nextField(b []byte) (tok []byte, eq int, rest []byte) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i == len(b) {
		return nil, -1, nil
	}
	eq = -1
	j := i
	for ; j < len(b); j++ {
		c := b[j]
		if c == ' ' {
			break
		}
		if c == '=' && eq < 0 {
			eq = j - i
		}
	}
	return b[i:j], eq, b[j:]
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }
