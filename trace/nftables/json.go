package nftables

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// ParseJSON reads `nft -j list ruleset` output. Rules are turned back into
// nft syntax (the same text `nft list ruleset` prints for the common
// statements) and parsed like text rules, so both formats share one model.
// JSON carries no line numbers: a rule's Line is its position (1-based) in
// the top-level "nftables" array.
func ParseJSON(r io.Reader) (*Ruleset, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: not nft JSON: %v", ErrMalformed, err)
	}
	if doc.Nftables == nil {
		return nil, fmt.Errorf("%w: JSON without an \"nftables\" array: is this `nft -j list ruleset` output?", ErrMalformed)
	}
	rs := &Ruleset{Format: "nft-json"}
	tables := map[string]*Table{}
	table := func(family, name string, pos int) (*Table, error) {
		t := tables[family+" "+name]
		if t == nil {
			return nil, fmt.Errorf("%w: object %d refers to table %s %s before it is declared", ErrMalformed, pos, excerpt.Clip(family), excerpt.Clip(name))
		}
		return t, nil
	}
	for i, obj := range doc.Nftables {
		pos := i + 1
		for kind, raw := range obj {
			var o jsonObject
			if kind != "metainfo" {
				if err := decodeJSON(raw, &o); err != nil {
					return nil, fmt.Errorf("%w: object %d (%s): %v", ErrMalformed, pos, excerpt.Clip(kind), err)
				}
			}
			switch kind {
			case "metainfo":
			case "table":
				if tables[o.Family+" "+o.Name] != nil {
					return nil, fmt.Errorf("%w: object %d: table %s %s is declared twice", ErrMalformed, pos, excerpt.Clip(o.Family), excerpt.Clip(o.Name))
				}
				t := newTable(o.Family, o.Name, pos)
				t.Comment = o.Comment
				tables[o.Family+" "+o.Name] = t
				rs.Tables = append(rs.Tables, t)
			case "chain":
				t, err := table(o.Family, o.Table, pos)
				if err != nil {
					return nil, err
				}
				c := &Chain{Name: o.Name, Line: pos, Comment: o.Comment}
				if o.Hook != "" {
					c.Base, c.Type, c.Hook, c.Policy = true, strings.Join(stringList(o.Type), " "), o.Hook, o.Policy
					if c.Policy == "" {
						c.Policy = "accept"
					}
					if o.Prio != nil {
						p, err := jsonPriority(o.Prio)
						if err != nil {
							return nil, fmt.Errorf("%w: object %d: chain %s: %v", ErrMalformed, pos, excerpt.Clip(o.Name), err)
						}
						c.Priority = p
					}
				}
				if err := t.addChain(c); err != nil {
					return nil, fmt.Errorf("%w: object %d: %v", ErrMalformed, pos, err)
				}
			case "set", "map":
				t, err := table(o.Family, o.Table, pos)
				if err != nil {
					return nil, err
				}
				if _, dup := t.Sets[o.Name]; dup {
					return nil, fmt.Errorf("%w: object %d: %s %s is declared twice", ErrMalformed, pos, excerpt.Clip(kind), excerpt.Clip(o.Name))
				}
				s := &Set{Name: o.Name, IsMap: kind == "map", Comment: o.Comment, Line: pos}
				s.KeyType = stringList(o.Type)
				if s.IsMap {
					s.DataType = strings.Join(stringList(o.Map), " . ")
				}
				s.Flags = stringList(o.Flags)
				for _, e := range o.Elem {
					el, err := jsonElement(e, s.IsMap)
					if err != nil {
						return nil, fmt.Errorf("%w: object %d: %s %s: %v", ErrMalformed, pos, excerpt.Clip(kind), excerpt.Clip(o.Name), err)
					}
					s.elements = append(s.elements, el)
				}
				t.Sets[s.Name] = s
			case "rule":
				t, err := table(o.Family, o.Table, pos)
				if err != nil {
					return nil, err
				}
				c := t.Chains[o.Chain]
				if c == nil {
					return nil, fmt.Errorf("%w: object %d: rule for chain %s, which table %s %s has not declared", ErrMalformed, pos, excerpt.Clip(o.Chain), excerpt.Clip(o.Family), excerpt.Clip(o.Table))
				}
				var parts []string
				for _, st := range o.Expr {
					parts = append(parts, stmtText(st))
				}
				text := strings.Join(parts, " ")
				if o.Comment != "" {
					text += " comment " + strconv.Quote(o.Comment)
				}
				r := &Rule{Table: t.Name, Chain: c.Name, Line: pos, Text: text}
				parseRule(r)
				c.rules = append(c.rules, r)
			default:
				// flowtable, counter, quota, ct helper, element, ...
				if t := tables[o.Family+" "+o.Table]; t != nil {
					t.skip(kind + " " + o.Name)
				}
			}
		}
	}
	if len(rs.Tables) == 0 {
		return nil, fmt.Errorf("%w: no table found in the JSON ruleset", ErrMalformed)
	}
	return rs, nil
}

type jsonObject struct {
	Family  string           `json:"family"`
	Table   string           `json:"table"`
	Chain   string           `json:"chain"`
	Name    string           `json:"name"`
	Comment string           `json:"comment"`
	Type    any              `json:"type"`
	Hook    string           `json:"hook"`
	Prio    any              `json:"prio"`
	Policy  string           `json:"policy"`
	Map     any              `json:"map"`
	Flags   any              `json:"flags"`
	Elem    []any            `json:"elem"`
	Expr    []map[string]any `json:"expr"`
}

func decodeJSON(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	return dec.Decode(v)
}

func jsonPriority(v any) (int, error) {
	switch p := v.(type) {
	case json.Number:
		n, err := p.Int64()
		return int(n), err
	case string:
		return parsePriority(strings.Fields(p))
	}
	return 0, fmt.Errorf("priority %s is not understood", excerpt.Quote(fmt.Sprint(v)))
}

func stringList(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// jsonElement reads a named set's element ("1.2.3.4", {"concat": [...]},
// {"elem": {"val": ..., "comment": ...}}) or a map's [key, data] pair.
func jsonElement(v any, isMap bool) (Element, error) {
	var e Element
	if isMap {
		pair, ok := v.([]any)
		if !ok || len(pair) != 2 {
			return e, fmt.Errorf("map element %s is not a [key, value] pair", excerpt.Quote(fmt.Sprint(v)))
		}
		v = pair[0]
		e.Data = exprText(pair[1])
	}
	if m, ok := v.(map[string]any); ok {
		if inner, ok := m["elem"].(map[string]any); ok {
			if c, ok := inner["comment"].(string); ok {
				e.Comment = c
			}
			var extra []string
			for _, k := range []string{"timeout", "expires"} {
				if x, ok := inner[k]; ok {
					extra = append(extra, fmt.Sprintf("%s %vs", k, x))
				}
			}
			e.Extra = strings.Join(extra, " ")
			v = inner["val"]
		}
	}
	if m, ok := v.(map[string]any); ok {
		if parts, ok := m["concat"].([]any); ok {
			for _, p := range parts {
				e.Key = append(e.Key, exprText(p))
			}
			return e, nil
		}
	}
	e.Key = []string{exprText(v)}
	if e.Key[0] == "" {
		return e, fmt.Errorf("element %s is not understood", excerpt.Quote(fmt.Sprint(v)))
	}
	return e, nil
}

// exprText renders a JSON expression in nft syntax.
func exprText(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case []any:
		// A list of flags, e.g. ct state { established, related }.
		var parts []string
		for _, x := range t {
			parts = append(parts, exprText(x))
		}
		return strings.Join(parts, ",")
	case map[string]any:
		if len(t) != 1 {
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return "?" + strings.Join(keys, "+")
		}
		for k, x := range t {
			return exprObject(k, x)
		}
	}
	return fmt.Sprint(v)
}

func exprObject(kind string, x any) string {
	m, _ := x.(map[string]any)
	switch kind {
	case "payload":
		return fmt.Sprint(m["protocol"], " ", m["field"])
	case "meta":
		return "meta " + fmt.Sprint(m["key"])
	case "ct":
		return "ct " + fmt.Sprint(m["key"])
	case "fib":
		return "fib " + strings.Join(stringList(m["flags"]), " . ") + " " + fmt.Sprint(m["result"])
	case "numgen":
		s := fmt.Sprintf("numgen %v mod %v", m["mode"], m["mod"])
		if off, ok := m["offset"].(json.Number); ok && off.String() != "0" {
			s += " offset " + off.String()
		}
		return s
	case "concat":
		var parts []string
		for _, p := range x.([]any) {
			parts = append(parts, exprText(p))
		}
		return strings.Join(parts, " . ")
	case "prefix":
		return fmt.Sprintf("%v/%v", m["addr"], m["len"])
	case "range":
		r, _ := x.([]any)
		if len(r) == 2 {
			return exprText(r[0]) + "-" + exprText(r[1])
		}
	case "set":
		items, _ := x.([]any)
		var parts []string
		for _, it := range items {
			if pair, ok := it.([]any); ok && len(pair) == 2 {
				parts = append(parts, exprText(pair[0])+" : "+exprText(pair[1]))
				continue
			}
			parts = append(parts, exprText(it))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	case "map":
		return exprText(m["key"]) + " map " + exprText(m["data"])
	case "&", "|", "^":
		ops, _ := x.([]any)
		if len(ops) == 2 {
			left := exprText(ops[0])
			return left + " " + kind + " " + markText(left, ops[1])
		}
	case "jump", "goto":
		return kind + " " + fmt.Sprint(m["target"])
	case "accept", "drop", "return", "continue":
		return kind
	}
	return kind // not understood: the statement parser reports it
}

// markText renders v like nft prints mark values (0x00004000) when it is a
// number compared with or combined into a mark; otherwise like exprText.
func markText(left string, v any) string {
	if n, ok := v.(json.Number); ok && (strings.HasPrefix(left, "meta mark") || strings.HasPrefix(left, "ct mark")) {
		if u, err := strconv.ParseUint(n.String(), 10, 32); err == nil {
			return fmt.Sprintf("0x%08x", u)
		}
	}
	return exprText(v)
}

// stmtText renders one JSON statement in nft syntax.
func stmtText(st map[string]any) string {
	for kind, x := range st {
		m, _ := x.(map[string]any)
		switch kind {
		case "match":
			left := exprText(m["left"])
			right := markText(left, m["right"])
			switch op := fmt.Sprint(m["op"]); op {
			case "==", "in":
				if strings.Contains(left, " & ") {
					return left + " == " + right // nft spells it out after a mask
				}
				return left + " " + right
			default:
				return left + " " + op + " " + right
			}
		case "vmap":
			return exprText(m["key"]) + " vmap " + exprText(m["data"])
		case "mangle":
			key := exprText(m["key"])
			return key + " set " + markText(key, m["value"])
		case "masquerade":
			if f := stringList(m["flags"]); len(f) > 0 {
				return "masquerade " + strings.Join(f, ",")
			}
			return "masquerade"
		case "dnat", "snat":
			fam := ""
			if f, ok := m["family"].(string); ok {
				fam = f + " "
			}
			addr := exprText(m["addr"])
			if port, ok := m["port"]; ok {
				if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
					addr = "[" + addr + "]"
				}
				addr += ":" + exprText(port)
			}
			return kind + " " + fam + "to " + addr
		case "reject":
			return "reject"
		case "set":
			return fmt.Sprintf("%v %v { %s }", m["op"], m["set"], exprText(m["elem"]))
		case "counter":
			return "counter"
		case "jump", "goto", "accept", "drop", "return", "continue":
			return exprObject(kind, x)
		}
		return kind // e.g. "xt", "log", "limit": reported as not evaluated
	}
	return ""
}
