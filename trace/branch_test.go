package trace

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ref(chain string, line int) RuleRef {
	return RuleRef{Table: "nat", Chain: chain, Line: line, Rule: "-m comment --comment " + chain}
}

func folded(chain string, line, n int) RuleRef {
	return RuleRef{Table: "nat", Chain: chain, Line: line, Folded: n}
}

// step is one thing an engine tells the trail.
type step struct {
	effect, noEffect, jump *RuleRef // record, or record a jump (and mark)
	ret                    bool     // the chain entered by the last open jump returned
}

func eff(r RuleRef) step  { return step{effect: &r} }
func none(r RuleRef) step { return step{noEffect: &r} }
func jump(r RuleRef) step { return step{jump: &r} }

var ret = step{ret: true}

func noEffectRun(chain string, from, n int) []step {
	var out []step
	for i := range n {
		out = append(out, none(ref(chain, from+i)))
	}
	return out
}

func run(steps ...[]step) []RuleRef {
	var b Branch
	var marks []TrailMark
	for _, ss := range steps {
		for _, s := range ss {
			switch {
			case s.effect != nil:
				b.Record(*s.effect)
			case s.noEffect != nil:
				b.RecordNoEffect(*s.noEffect)
			case s.jump != nil:
				b.Record(*s.jump)
				marks = append(marks, b.Mark())
			case s.ret:
				b.JumpReturned(marks[len(marks)-1])
				marks = marks[:len(marks)-1]
			}
		}
	}
	o := b.Outcome()
	if b.TrailLen() != len(o.Rules) {
		panic(fmt.Sprintf("TrailLen %d, Outcome lists %d", b.TrailLen(), len(o.Rules)))
	}
	return o.Rules
}

func refs(rs ...RuleRef) []RuleRef { return rs }

func TestTrailFolding(t *testing.T) {
	var alternating []step
	for i := range 1000 {
		// FALL jumps to LOGGED (one LOG rule, no effect) and to EMPTY
		// (nothing matches) in turn.
		if i%2 == 0 {
			alternating = append(alternating, jump(ref("FALL", 10+i)), none(ref("LOGGED", 5)), ret)
		} else {
			alternating = append(alternating, jump(ref("FALL", 10+i)), ret)
		}
	}
	cases := []struct {
		name  string
		steps [][]step
		want  []RuleRef
	}{
		{
			name:  "a run up to FoldAfter is listed whole",
			steps: [][]step{{eff(ref("PREROUTING", 1))}, noEffectRun("FALL", 10, FoldAfter)},
			want: refs(ref("PREROUTING", 1), ref("FALL", 10), ref("FALL", 11), ref("FALL", 12), ref("FALL", 13), ref("FALL", 14),
				ref("FALL", 15), ref("FALL", 16), ref("FALL", 17), ref("FALL", 18), ref("FALL", 19)),
		},
		{
			name:  "one more folds all but the first and the last",
			steps: [][]step{{eff(ref("PREROUTING", 1))}, noEffectRun("FALL", 10, FoldAfter+1)},
			want:  refs(ref("PREROUTING", 1), ref("FALL", 10), folded("FALL", 11, FoldAfter-1), ref("FALL", 20)),
		},
		{
			name:  "1.2 million rules that fall through cost three entries",
			steps: [][]step{{jump(ref("PREROUTING", 1))}, noEffectRun("FALL", 10, 1_200_000)},
			want:  refs(ref("PREROUTING", 1), ref("FALL", 10), folded("FALL", 11, 1_199_998), ref("FALL", 1_200_009)),
		},
		{
			name:  "a rule with an effect ends the run; the next run starts afresh",
			steps: [][]step{noEffectRun("FALL", 10, 12), {eff(ref("FALL", 22))}, noEffectRun("FALL", 23, 2)},
			want:  refs(ref("FALL", 10), folded("FALL", 11, 10), ref("FALL", 21), ref("FALL", 22), ref("FALL", 23), ref("FALL", 24)),
		},
		{
			name:  "runs in different chains are not merged",
			steps: [][]step{noEffectRun("A", 10, 3), noEffectRun("B", 20, 3)},
			want:  refs(ref("A", 10), ref("A", 11), ref("A", 12), ref("B", 20), ref("B", 21), ref("B", 22)),
		},
		{
			name:  "a jump into a chain where nothing had an effect is listed as it was",
			steps: [][]step{{jump(ref("INPUT", 1)), ret, jump(ref("INPUT", 2)), none(ref("FW", 7)), ret, eff(ref("INPUT", 3))}},
			want:  refs(ref("INPUT", 1), ref("INPUT", 2), ref("FW", 7), ref("INPUT", 3)),
		},
		{
			name:  "a jump whose chain changed the packet stays out of runs",
			steps: [][]step{noEffectRun("FALL", 10, 9), {jump(ref("FALL", 19)), eff(ref("MARK", 1)), ret}, noEffectRun("FALL", 20, 9)},
			want: append(append(noEffectRefs("FALL", 10, 9), ref("FALL", 19), ref("MARK", 1)),
				noEffectRefs("FALL", 20, 9)...),
		},
		{
			name:  "jumps that change nothing fold with what they led to",
			steps: [][]step{{jump(ref("PREROUTING", 1))}, alternating},
			// The first unit (a jump and the LOG rule it led to) stays,
			// then 998 units of 1.5 rules on average, then the last jump.
			want: refs(ref("PREROUTING", 1), ref("FALL", 10), ref("LOGGED", 5), folded("FALL", 11, 998+499), ref("FALL", 1009)),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, run(c.steps...)); diff != "" {
				t.Errorf("trail (-want +got):\n%s", diff)
			}
		})
	}
}

func noEffectRefs(chain string, from, n int) []RuleRef {
	var out []RuleRef
	for i := range n {
		out = append(out, ref(chain, from+i))
	}
	return out
}

// TestTrailForksAreIndependent: a branch copied before a fold keeps its own
// trail; folding copies nodes instead of changing shared ones.
func TestTrailForksAreIndependent(t *testing.T) {
	var a Branch
	for i := range FoldAfter {
		a.RecordNoEffect(ref("FALL", 10+i))
	}
	b := a // fork
	a.RecordNoEffect(ref("FALL", 10+FoldAfter))
	b.Record(ref("FALL", 99))
	want := append(noEffectRefs("FALL", 10, FoldAfter), ref("FALL", 99))
	if diff := cmp.Diff(want, b.Outcome().Rules); diff != "" {
		t.Errorf("forked branch (-want +got):\n%s", diff)
	}
	wantA := refs(ref("FALL", 10), folded("FALL", 11, FoldAfter-1), ref("FALL", 10+FoldAfter))
	if diff := cmp.Diff(wantA, a.Outcome().Rules); diff != "" {
		t.Errorf("folded branch (-want +got):\n%s", diff)
	}
}

func TestFoldedText(t *testing.T) {
	for n, want := range map[int]string{
		1:         "… 1 more rule matched, no effect",
		999:       "… 999 more rules matched, no effect",
		1_199_998: "… 1,199,998 more rules matched, no effect",
	} {
		if got := (RuleRef{Folded: n}).FoldedText(); got != want {
			t.Errorf("FoldedText(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTrailBounds(t *testing.T) {
	var b Branch
	for i := range MaxTrail {
		b.Record(ref("MARK", i))
	}
	if err := b.CheckTrail(); err != nil {
		t.Fatalf("%d entries: %v", MaxTrail, err)
	}
	b.Record(ref("MARK", MaxTrail))
	if err := b.CheckTrail(); !errors.Is(err, ErrBudget) {
		t.Errorf("%d entries: got %v, want ErrBudget", MaxTrail+1, err)
	}
	lens := func(n, each int) func(func(int) bool) {
		return func(yield func(int) bool) {
			for range n {
				if !yield(each) {
					return
				}
			}
		}
	}
	if err := CheckOutcomeRules(lens(1000, 1000)); err != nil {
		t.Errorf("1000 branches of 1000 rules: %v", err)
	}
	if err := CheckOutcomeRules(lens(1001, 1000)); !errors.Is(err, ErrBudget) {
		t.Errorf("1001 branches of 1000 rules: got %v, want ErrBudget", err)
	}
}
