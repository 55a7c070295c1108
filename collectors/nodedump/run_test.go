package nodedump

import (
	"context"
	"errors"
	"testing"
)

// TestCollectNodesRecoversFromPanic: a panic in one node's collection is
// that node's error; the others are collected.
func TestCollectNodesRecoversFromPanic(t *testing.T) {
	got := CollectNodes(context.Background(), []string{"a", "b"}, 2, nil, func(_ context.Context, node string, _ func(string)) (*Result, error) {
		if node == "a" {
			var m map[string]int
			m["boom"]++ // a nil map write panics
		}
		return &Result{Node: node}, nil
	})
	if !errors.Is(got[0].Err, ErrPanic) || got[1].Err != nil || got[1].Result == nil || got[0].Node != "a" || got[1].Node != "b" {
		t.Errorf("CollectNodes: %+v", got)
	}
}

// TestCollectNodesBoundsAndOrder: at most parallel at once, results in the
// order of the nodes; nodes not started before the context ends get its
// error.
func TestCollectNodesBoundsAndOrder(t *testing.T) {
	nodes := []string{"n0", "n1", "n2", "n3", "n4", "n5"}
	var running, most int
	mu := make(chan struct{}, 1)
	mu <- struct{}{}
	got := CollectNodes(context.Background(), nodes, 2, nil, func(_ context.Context, node string, _ func(string)) (*Result, error) {
		<-mu
		running++
		most = max(most, running)
		mu <- struct{}{}
		defer func() { <-mu; running--; mu <- struct{}{} }()
		return &Result{Node: node}, nil
	})
	if most > 2 {
		t.Errorf("%d ran at once, want at most 2", most)
	}
	for i, r := range got {
		if r.Node != nodes[i] || r.Result == nil || r.Result.Node != nodes[i] {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got = CollectNodes(ctx, nodes[:2], 1, nil, func(context.Context, string, func(string)) (*Result, error) {
		t.Error("collected after the context ended")
		return nil, nil
	})
	for _, r := range got {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", r.Node, r.Err)
		}
	}
}
