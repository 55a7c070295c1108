// Package termsafe makes untrusted text safe to print on a terminal. Rule
// comments, chain and interface names, a tool's warnings and the errors that
// quote them come from a node, where any software can write them; printed
// raw, an ESC, OSC or BEL in them drives the operator's terminal (rewrites
// the title, hides lines, rings, on some terminals worse). Every output for
// people goes through here; JSON and YAML keep the text exact.
package termsafe

import (
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// String returns s with everything a terminal could act on written as an
// escape: C0 controls as \x1b (newline, tab and carriage return as \n, \t,
// \r), DEL and C1 controls as \x7f and \u009b, bidirectional-text controls
// and line separators (which reorder or break what is shown) as \u202e, and
// bytes that are not UTF-8 as \xff. All other text, including other
// non-ASCII, is unchanged, and s itself is returned when nothing needs
// escaping.
func String(s string) string { return escape(s, false) }

// Text is String for text of several lines, such as an error message:
// newlines and tabs are kept.
func Text(s string) string { return escape(s, true) }

func escape(s string, lines bool) string {
	i := firstUnsafe(s, lines)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case unsafe(r, lines) && r < 0x80:
			switch r {
			case '\n':
				b.WriteString(`\n`)
			case '\t':
				b.WriteString(`\t`)
			case '\r':
				b.WriteString(`\r`)
			default:
				b.WriteString(`\x`)
				b.WriteString(hex2(byte(r)))
			}
		case unsafe(r, lines):
			b.WriteString(`\u`)
			h := strconv.FormatInt(int64(r), 16)
			b.WriteString(strings.Repeat("0", 4-len(h)) + h)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// firstUnsafe is the index of the first byte to escape, or -1.
func firstUnsafe(s string, lines bool) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafe(r, lines) {
			return i
		}
		i += size
	}
	return -1
}

// unsafe tells whether a terminal could act on r.
func unsafe(r rune, lines bool) bool {
	switch {
	case lines && (r == '\n' || r == '\t'):
		return false
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		// Bidirectional-text controls: they reorder what follows.
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

// maxDepth bounds Copy's walk: the models it copies are trees a few levels
// deep; anything deeper is copied as it is.
const maxDepth = 64

// Copy returns a deep copy of v in which every string (in exported struct
// fields, slices, arrays, maps, pointers and interfaces) went through
// String. Views for people call it once on the model they draw, so a field
// added to the model later is covered too. Unexported fields are copied as
// they are.
func Copy[T any](v T) T {
	src := reflect.ValueOf(&v).Elem()
	dst := reflect.New(src.Type()).Elem()
	copyValue(dst, src, 0)
	return dst.Interface().(T)
}

func copyValue(dst, src reflect.Value, depth int) {
	if depth > maxDepth {
		dst.Set(src)
		return
	}
	switch src.Kind() {
	case reflect.String:
		dst.SetString(String(src.String()))
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		copyValue(p.Elem(), src.Elem(), depth+1)
		dst.Set(p)
	case reflect.Struct:
		dst.Set(src)
		for i := range src.NumField() {
			if f := dst.Field(i); f.CanSet() {
				copyValue(f, src.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			copyValue(s.Index(i), src.Index(i), depth+1)
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			copyValue(dst.Index(i), src.Index(i), depth+1)
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			k := reflect.New(src.Type().Key()).Elem()
			copyValue(k, it.Key(), depth+1)
			e := reflect.New(src.Type().Elem()).Elem()
			copyValue(e, it.Value(), depth+1)
			m.SetMapIndex(k, e)
		}
		dst.Set(m)
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		e := reflect.New(src.Elem().Type()).Elem()
		copyValue(e, src.Elem(), depth+1)
		dst.Set(e)
	default:
		dst.Set(src)
	}
}
