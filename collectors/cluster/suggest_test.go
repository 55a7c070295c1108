package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCloseNames(t *testing.T) {
	tests := []struct {
		name       string
		candidates []string
		want       []string
	}{
		{"web", []string{"webb", "wbe", "cart"}, []string{"webb", "wbe"}},                                 // distance 1 and 2
		{"web", []string{"web-frontend", "frontend-web-v1"}, []string{"web-frontend", "frontend-web-v1"}}, // contains
		{"hello-world", []string{"hello-api", "goodbye-world"}, []string{"hello-api"}},                    // common prefix "hello-"
		{"checkout", []string{"check-svc"}, []string{"check-svc"}},                                        // prefix "check"
		{"db", []string{"web", "api", "dbs"}, []string{"dbs"}},                                            // distance 2 of 2 is no hint
		{"a", []string{"b", "ab"}, nil},                                                                   // one letter: anything is within reach, no hint
		{"Web", []string{"web"}, []string{"web"}},                                                         // case
		{"web", []string{"web"}, nil},                                                                     // itself
		{"payments", []string{"cart", "frontend", "redis"}, nil},
		{"nginx", []string{"redis"}, nil},
		{"web", []string{"web4", "web3", "web2", "web1", "we"}, []string{"we", "web1", "web2"}}, // at most 3, closest then by name
		{"api-gateway", []string{"api-gatewya", "gateway"}, []string{"api-gatewya", "gateway"}},
		{"zone-b", []string{"zöne-b"}, []string{"zöne-b"}}, // runes, not bytes
		{"web", nil, nil},
	}
	for _, tt := range tests {
		got := closeNames(tt.name, tt.candidates)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("closeNames(%q, %q) (-want +got):\n%s", tt.name, tt.candidates, diff)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"web", "web", 0},
		{"web", "wbe", 2},
		{"kitten", "sitting", 3},
		{"sitting", "kitten", 3},
		{"zöne", "zone", 1},
	}
	for _, tt := range tests {
		if got := levenshtein(tt.a, tt.b); got != tt.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestQuoteOr(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{[]string{"a"}, `"a"`},
		{[]string{"a", "b"}, `"a" or "b"`},
		{[]string{"a", "b", "c"}, `"a", "b" or "c"`},
	} {
		if got := quoteOr(tt.in); got != tt.want {
			t.Errorf("quoteOr(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
