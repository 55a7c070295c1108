// Package nftables reads kube-proxy's nftables rules (`nft list ruleset`
// text, or `nft -j list ruleset` JSON) and evaluates them for one packet the
// way the kernel would, with the same result shape as the iptables engine.
//
// Reading builds a small typed model: tables → sets/maps and chains → rules
// made of statements. Only what kube-proxy writes needs to be understood;
// every other rule is kept verbatim, and a rule with a statement the
// evaluator does not know is reported in the simulation's notes.
package nftables

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed nftables ruleset")

// KubeProxyTable is the table kube-proxy's nftables mode owns (in families
// ip and ip6).
const KubeProxyTable = "kube-proxy"

// Ruleset is a parsed `nft list ruleset`.
type Ruleset struct {
	Tables []*Table
	// Format is "nft" (text) or "nft-json".
	Format string
}

// Table returns the table of that family and name, or nil.
func (rs *Ruleset) Table(family, name string) *Table {
	for _, t := range rs.Tables {
		if t.Family == family && t.Name == name {
			return t
		}
	}
	return nil
}

// Table is one nftables table.
type Table struct {
	Family, Name string
	Comment      string
	Line         int
	Sets         map[string]*Set
	Chains       map[string]*Chain
	// ChainOrder lists chain names in the order the dump declares them.
	ChainOrder []string
	// Skipped lists objects the model does not hold (flowtables, counters,
	// quotas, ct helpers, ...) as "kind name".
	Skipped []string

	base   []*Chain // base chains (baseChains)
	cached int      // parsed rules kept by the chains, bounded by maxCachedRules
}

// maxSkipped bounds Table.Skipped: a ruleset can hold any number of objects
// the model does not read.
const maxSkipped = 100

// skip notes an object the model does not hold, as "kind name".
func (t *Table) skip(what string) {
	switch n := len(t.Skipped); {
	case n < maxSkipped:
		t.Skipped = append(t.Skipped, excerpt.Clip(what))
	case n == maxSkipped:
		t.Skipped = append(t.Skipped, "and more objects")
	}
}

func newTable(family, name string, line int) *Table {
	return &Table{Family: family, Name: name, Line: line, Sets: map[string]*Set{}, Chains: map[string]*Chain{}}
}

func (t *Table) addChain(c *Chain) error {
	c.table, c.cached = t.Name, &t.cached
	// One map operation, not a lookup and then an insert: the map holds
	// 30,000 chains in a 10,000-Service ruleset.
	n := len(t.Chains)
	if t.Chains[c.Name] = c; len(t.Chains) == n {
		return fmt.Errorf("chain %s is declared twice in table %s %s", excerpt.Clip(c.Name), excerpt.Clip(t.Family), excerpt.Clip(t.Name))
	}
	t.ChainOrder = append(t.ChainOrder, c.Name)
	return nil
}

// Set is a named set or map. Key parts are typed by KeyType (one entry per
// part of a concatenation: ipv4_addr, ipv6_addr, inet_proto, inet_service,
// mark, ifname, ...). A map also has DataType ("verdict", or a value type).
type Set struct {
	Name     string
	KeyType  []string
	DataType string
	IsMap    bool
	Flags    []string
	Comment  string
	Line     int

	elements []Element
	raw      []rawRule // "elements = { ... }" bodies not read yet
	rawErr   error
	index    map[string]int // exact keys → element, built on first lookup
	spans    []int          // elements with prefixes or ranges, tried in order
	// rawScans counts lookups in the unread text; rawIdx indexes it for
	// the lookups after the first (findRaw).
	rawScans int
	rawIdx   *rawIndex
}

// rawRule is a rule (or an elements body) not parsed yet, with its line.
type rawRule struct {
	line int32
	text string
}

// Elements returns the set's elements, reading them on first use; the error
// names the line of an element that cannot be read.
func (s *Set) Elements() ([]Element, error) {
	if s.raw != nil {
		for _, r := range s.raw {
			elems, err := parseElements(tokenize(r.text), s.IsMap)
			if err != nil {
				s.rawErr = fmt.Errorf("%w: line %d: set %s: %v", ErrMalformed, r.line, excerpt.Clip(s.Name), err)
				break
			}
			s.elements = append(s.elements, elems...)
		}
		s.raw = nil
	}
	return s.elements, s.rawErr
}

// Element is one set or map element.
type Element struct {
	// Key has one entry per concatenated part, as printed ("10.0.0.1",
	// "tcp", "80", "10.0.0.0/8", "1000-2000").
	Key []string
	// Data is a map element's value: a verdict ("goto CHAIN", "drop") or a
	// value ("10.180.0.1 . 80").
	Data    string
	Comment string
	// Extra holds element options such as "timeout 3h expires 2h59m".
	Extra string
}

// Chain is a regular or base chain.
type Chain struct {
	Name string
	// Type, Hook, Priority and Policy are set on base chains only.
	Type, Hook string
	Priority   int
	Policy     string
	Base       bool
	Comment    string
	Line       int

	table string
	// rules are the parsed rules: all of them for a chain read from JSON;
	// for one read from text, those parsed so far (index-aligned with raw).
	rules []*Rule
	raw   []rawRule // the rules' text, from a text ruleset
	// cached counts the parsed rules the table keeps (Table.cached).
	cached *int
}

// Rules returns the chain's rules, parsing them on first use.
func (c *Chain) Rules() []*Rule {
	if c.raw == nil {
		return c.rules
	}
	out := make([]*Rule, c.Len())
	for i := range out {
		out[i] = c.Rule(i)
	}
	return out
}

// Len is the number of rules in the chain.
func (c *Chain) Len() int {
	if c.raw != nil {
		return len(c.raw)
	}
	return len(c.rules)
}

// maxCachedRules bounds how many parsed rules a table keeps. A parsed rule
// costs a few hundred bytes; past the bound (a hostile or freak ruleset,
// such as a chain of a million rules that all match) rules are parsed again
// each time a walk needs them instead of being kept.
const maxCachedRules = 1 << 17

// Rule returns rule i (0-based), parsing it on first use.
func (c *Chain) Rule(i int) *Rule {
	if c.raw == nil {
		return c.rules[i]
	}
	if c.rules == nil {
		c.rules = make([]*Rule, len(c.raw))
	}
	if r := c.rules[i]; r != nil {
		return r
	}
	raw := c.raw[i]
	r := &Rule{Table: c.table, Chain: c.Name, Line: int(raw.line), Text: raw.text}
	parseRule(r)
	if c.cached != nil && *c.cached < maxCachedRules {
		*c.cached++
		c.rules[i] = r
	}
	return r
}

// Rule is one rule: its text as printed, and the statements it was parsed
// into.
type Rule struct {
	Table, Chain string
	Line         int
	Text         string
	Comment      string
	Stmts        []Stmt
	// Unknown, when set, names the part of the rule the evaluator does not
	// understand; such a rule is never taken to match.
	Unknown string
}

// namedPriorities are nft's standard priority names (for families ip, ip6
// and inet).
var namedPriorities = map[string]int{
	"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100,
}

// baseChains returns t's base chains in the order the dump declares them.
// The text parser lists them as it reads them; otherwise they are found on
// first use.
func (t *Table) baseChains() []*Chain {
	if t.base == nil {
		t.base = []*Chain{}
		for _, name := range t.ChainOrder {
			if c := t.Chains[name]; c != nil && c.Base {
				t.base = append(t.base, c)
			}
		}
	}
	return t.base
}

// hookChains returns t's base chains on hook, in priority order.
func (t *Table) hookChains(hook string) []*Chain {
	var out []*Chain
	for _, c := range t.baseChains() {
		if c.Hook == hook {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

// quoted returns s without surrounding double quotes.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// Check reads every rule and element (Parse leaves them for first use) and
// verifies references: every jump/goto and vmap target chain and every @set a
// rule uses exists in the rule's table.
func (rs *Ruleset) Check() error {
	for _, t := range rs.Tables {
		for _, name := range t.ChainOrder {
			for _, r := range t.Chains[name].Rules() {
				for _, st := range r.Stmts {
					for _, target := range st.targets() {
						if _, ok := t.Chains[target]; !ok {
							return fmt.Errorf("%w: line %d: rule in chain %s jumps to chain %s, which table %s %s does not have", ErrMalformed, r.Line, excerpt.Clip(r.Chain), excerpt.Clip(target), excerpt.Clip(t.Family), excerpt.Clip(t.Name))
						}
					}
					for _, set := range st.setRefs() {
						if _, ok := t.Sets[set]; !ok {
							return fmt.Errorf("%w: line %d: rule in chain %s uses @%s, which table %s %s does not have", ErrMalformed, r.Line, excerpt.Clip(r.Chain), excerpt.Clip(set), excerpt.Clip(t.Family), excerpt.Clip(t.Name))
						}
					}
				}
			}
		}
		for _, s := range t.Sets {
			elems, err := s.Elements()
			if err != nil {
				return err
			}
			if s.DataType != "verdict" {
				continue
			}
			for _, e := range elems {
				if v := parseVerdict(e.Data); v.Target != "" {
					if _, ok := t.Chains[v.Target]; !ok {
						return fmt.Errorf("%w: line %d: map %s sends %s to chain %s, which table %s %s does not have", ErrMalformed, s.Line, excerpt.Clip(s.Name), excerpt.Clip(strings.Join(e.Key, " . ")), excerpt.Clip(v.Target), excerpt.Clip(t.Family), excerpt.Clip(t.Name))
					}
				}
			}
		}
	}
	return nil
}
