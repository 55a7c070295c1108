package nftables

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestFindRawAgreesWithFullRead: on every set of the real rulesets, looking
// a key up in the unread text finds exactly the element a full read finds,
// for every element's own key and for keys that are not there.
func TestFindRawAgreesWithFullRead(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/nftables/kube-proxy/*/*/ruleset.nft")
	more, _ := filepath.Glob("../../testdata/nftables/variants/*.nft")
	files = append(files, more...)
	files = append(files, "") // the inline sample
	checked := 0
	for _, path := range files {
		load := func() *Ruleset {
			// Parsed without Check, which would read every element.
			data := []byte(tinyRuleset)
			if path != "" {
				var err error
				if data, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
			}
			rs, err := ParseTextBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}
		full, lazy := load(), load()
		for ti, tb := range full.Tables {
			for name, set := range tb.Sets {
				if set.interval() {
					continue
				}
				sels := selectorsFor(set)
				if sels == nil {
					continue
				}
				elems, err := set.Elements()
				if err != nil {
					t.Fatal(err)
				}
				var keys [][]keyPart
				for _, e := range elems {
					if k, ok := keyFromElement(e, sels); ok {
						keys = append(keys, k)
					}
				}
				// Misses: the first key with its first part changed.
				if len(keys) > 0 {
					miss := append([]keyPart(nil), keys[0]...)
					switch miss[0].kind {
					case 'a':
						miss[0].addr = miss[0].addr.Next()
					case 'n':
						miss[0].num++
					default:
						miss[0].str += "x"
					}
					keys = append(keys, miss)
				}
				for _, k := range keys {
					lazySet := lazy.Tables[ti].Sets[name]
					if lazySet.raw == nil {
						continue // an empty set
					}
					want, err := set.lookup(k, sels)
					if err != nil {
						t.Fatalf("%s: %v", path, err)
					}
					// The first lookup scans, the next ones use the index.
					for _, find := range []struct {
						how string
						f   func(string, []Selector) (*Element, error)
					}{{"scan", lazySet.findRawScan}, {"index", lazySet.findRawIndexed}} {
						got, err := find.f(keyString(k), sels)
						if err != nil {
							t.Fatalf("%s: %s: %v", path, find.how, err)
						}
						if (got == nil) != (want == nil) || (got != nil && (got.Data != want.Data || got.Comment != want.Comment)) {
							t.Errorf("%s: set %s key %s: findRaw (%s) %+v, full read %+v", path, name, keyString(k), find.how, got, want)
						}
						checked++
					}
				}
			}
		}
	}
	if checked < 400 {
		t.Errorf("only %d lookups compared", checked)
	}
	t.Logf("%d lookups compared", checked)
}

// selectorsFor returns selectors of the set's key types, or nil for types
// this test does not build keys for.
func selectorsFor(s *Set) []Selector {
	var out []Selector
	for _, typ := range s.KeyType {
		switch typ {
		case "ipv4_addr", "ipv6_addr":
			out = append(out, Selector{Proto: "ip", Field: "daddr"})
		case "inet_proto":
			out = append(out, Selector{Proto: "meta", Field: "l4proto"})
		case "inet_service":
			out = append(out, Selector{Proto: "th", Field: "dport"})
		default:
			return nil
		}
	}
	return out
}

func keyFromElement(e Element, sels []Selector) ([]keyPart, bool) {
	var key []keyPart
	for i, tok := range e.Key {
		switch selectorKind(sels[i]) {
		case 'a':
			a, err := netip.ParseAddr(tok)
			if err != nil {
				return nil, false
			}
			key = append(key, keyPart{kind: 'a', addr: a})
		case 'n':
			var n uint64
			for _, c := range tok {
				if c < '0' || c > '9' {
					return nil, false
				}
				n = n*10 + uint64(c-'0')
			}
			key = append(key, keyPart{kind: 'n', num: n})
		default:
			norm, _ := normalize('s', tok)
			key = append(key, keyPart{kind: 's', str: norm})
		}
	}
	return key, true
}
