package cluster

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// maxSuggestions bounds the "did you mean" list.
const maxSuggestions = 3

// closeNames returns up to maxSuggestions of candidates that look like a
// mistyped name, closest first. A candidate is close when, compared without
// case:
//   - its edit (Levenshtein) distance is at most 3 and smaller than the
//     shorter name's length (so "db" does not suggest "web"), or
//   - one name contains the other, the shorter having at least 3 characters
//     ("web" and "web-frontend"), or
//   - they share a prefix of at least 4 characters that covers at least half
//     of the shorter name ("hello-world" and "hello-api").
//
// The name itself is never suggested.
func closeNames(name string, candidates []string) []string {
	type scored struct {
		name string
		dist int
	}
	var hits []scored
	a := strings.ToLower(name)
	for _, c := range candidates {
		if c == name {
			continue
		}
		b := strings.ToLower(c)
		d := levenshtein(a, b)
		if isClose(a, b, d) {
			hits = append(hits, scored{c, d})
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].dist != hits[j].dist {
			return hits[i].dist < hits[j].dist
		}
		return hits[i].name < hits[j].name
	})
	var out []string
	for _, s := range hits {
		if len(out) == maxSuggestions {
			break
		}
		out = append(out, s.name)
	}
	return out
}

func isClose(a, b string, dist int) bool {
	la, lb := utf8.RuneCountInString(a), utf8.RuneCountInString(b)
	shorter, longer := a, b
	if lb < la {
		shorter, longer = b, a
		la, lb = lb, la
	}
	if dist <= 3 && dist < la {
		return true
	}
	if la >= 3 && strings.Contains(longer, shorter) {
		return true
	}
	p := commonPrefixLen(a, b)
	return p >= 4 && 2*p >= la
}

func commonPrefixLen(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	n := 0
	for n < len(ra) && n < len(rb) && ra[n] == rb[n] {
		n++
	}
	return n
}

// levenshtein is the edit distance (insertions, deletions, substitutions)
// between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) < len(rb) {
		ra, rb = rb, ra
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
