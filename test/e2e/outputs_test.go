package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a reporter that keeps the errors.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestOutputChecks runs the tree and diagram checks, which every e2e
// scenario applies to the plugin's -o tree and -o dot, on the plugin's
// scenario goldens (cmd/cli/testdata: JSON, tree and DOT of one trace):
// every path passes as it is, and each path changed the way a renderer bug
// would change it — the other masquerade, another verdict, another
// endpoint — fails. Runs without root, as part of the suite's unit tests.
func TestOutputChecks(t *testing.T) {
	goldens, _ := filepath.Glob("../../cmd/cli/testdata/scenario-*.json")
	if len(goldens) == 0 {
		t.Fatal("no scenario goldens in ../../cmd/cli/testdata")
	}
	checked, caught := 0, 0
	for _, g := range goldens {
		base := strings.TrimSuffix(g, ".json")
		raw, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := os.ReadFile(base + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		dot, err := os.ReadFile(base + ".dot")
		if err != nil {
			t.Fatal(err)
		}
		var doc pathDoc
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		for _, n := range doc.Nodes {
			for _, p := range n.Paths {
				name := fmt.Sprintf("%s: %s %s:%d from %s on %s", filepath.Base(base), p.Entry.Kind, p.Entry.Address, p.Entry.Port, p.Entry.From, n.Name)
				r := &recorder{}
				checkTree(r, string(tree), n.Name, p)
				checkDOT(r, string(dot), n.Name, p)
				if len(r.errs) > 0 {
					t.Errorf("%s: the checks reject the plugin's own output:\n%s", name, strings.Join(r.errs, "\n"))
				}
				checked++
				for what, broken := range mutations(p) {
					r := &recorder{}
					checkTree(r, string(tree), n.Name, broken)
					checkDOT(r, string(dot), n.Name, broken)
					if len(r.errs) == 0 {
						t.Errorf("%s: the checks miss %s", name, what)
					}
					caught++
				}
			}
		}
	}
	t.Logf("%d paths of %d goldens pass; each of %d changed paths is caught", checked, len(goldens), caught)
}

// mutations returns p changed in ways the outputs must show.
func mutations(p entryPath) map[string]entryPath {
	m := map[string]entryPath{}
	clone := func() entryPath {
		b, _ := json.Marshal(p)
		var q entryPath
		json.Unmarshal(b, &q)
		return q
	}
	switch p.Verdict {
	case "DNAT":
		q := clone()
		q.Masquerade = !q.Masquerade
		m["the other masquerade"] = q
		q = clone()
		q.Verdict, q.Why = "DROP", "changed"
		m["a DROP instead of DNAT"] = q
		for i, e := range p.Endpoints {
			if e.InRules {
				q = clone()
				q.Endpoints[i].Port++
				m["another endpoint port"] = q
				break
			}
		}
	case "DROP", "REJECT":
		q := clone()
		q.Verdict = map[string]string{"DROP": "REJECT", "REJECT": "DROP"}[p.Verdict]
		m["the other of DROP and REJECT"] = q
	}
	return m
}
