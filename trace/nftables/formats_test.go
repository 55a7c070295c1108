package nftables

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTextAndJSONAgree: `nft list ruleset` and `nft -j list ruleset` of the
// same ruleset give the same model: tables, chains with hooks and
// priorities, sets with their elements, and rules whose JSON-rendered text is
// exactly what nft prints.
func TestTextAndJSONAgree(t *testing.T) {
	dirs, _ := filepath.Glob("../../testdata/nftables/kube-proxy/*/*")
	if len(dirs) == 0 {
		t.Fatal("no fixtures")
	}
	for _, dir := range dirs {
		text := parseFile(t, filepath.Join(dir, "ruleset.nft"))
		js := parseFile(t, filepath.Join(dir, "ruleset.json"))
		if len(text.Tables) != len(js.Tables) {
			t.Fatalf("%s: %d tables in text, %d in JSON", dir, len(text.Tables), len(js.Tables))
		}
		for i, tt := range text.Tables {
			jt := js.Tables[i]
			// nft 1.0.6 leaves the table comment out of its JSON.
			if tt.Family != jt.Family || tt.Name != jt.Name || (jt.Comment != "" && tt.Comment != jt.Comment) {
				t.Errorf("%s: table %s %s %q vs %s %s %q", dir, tt.Family, tt.Name, tt.Comment, jt.Family, jt.Name, jt.Comment)
			}
			for name, tc := range tt.Chains {
				jc := jt.Chains[name]
				if jc == nil {
					t.Errorf("%s: chain %s missing from JSON", dir, name)
					continue
				}
				if tc.Base != jc.Base || tc.Hook != jc.Hook || tc.Type != jc.Type || tc.Priority != jc.Priority || tc.Policy != jc.Policy {
					t.Errorf("%s: chain %s header differs: %+v vs %+v", dir, name, *tc, *jc)
				}
				var tr, jr []string
				for _, r := range tc.Rules() {
					tr = append(tr, r.Text)
				}
				for _, r := range jc.Rules() {
					jr = append(jr, r.Text)
				}
				if diff := cmp.Diff(tr, jr); diff != "" {
					t.Errorf("%s: chain %s rules differ (-text +json):\n%s", dir, name, diff)
				}
			}
			for name, ts := range tt.Sets {
				js := jt.Sets[name]
				if js == nil {
					t.Errorf("%s: set %s missing from JSON", dir, name)
					continue
				}
				te, err1 := ts.Elements()
				je, err2 := js.Elements()
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: set %s: %v / %v", dir, name, err1, err2)
				}
				if diff := cmp.Diff(te, je); diff != "" {
					t.Errorf("%s: set %s elements differ (-text +json):\n%s", dir, name, diff)
				}
				if diff := cmp.Diff(ts.KeyType, js.KeyType); diff != "" || ts.DataType != js.DataType {
					t.Errorf("%s: set %s types differ: %v:%s vs %v:%s", dir, name, ts.KeyType, ts.DataType, js.KeyType, js.DataType)
				}
			}
		}
	}
}
