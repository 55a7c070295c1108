package nodedump

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock moves on by step each time it is read.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// Every progress line starts with its node's time so far.
func TestCollectNodesTimesProgress(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0), step: 1500 * time.Millisecond}
	var lines []string
	collectNodes(context.Background(), []string{"n1"}, 1, func(s string) { lines = append(lines, s) }, clock.now,
		func(_ context.Context, node string, progress func(string)) (*Result, error) {
			progress("node " + node + ": one")
			progress("node " + node + ": two")
			return &Result{Node: node}, nil
		})
	want := []string{"[  1.5s] node n1: one", "[  3.0s] node n1: two"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if got := elapsed(1234 * time.Second); got != "1234.0s" {
		t.Errorf("elapsed(1234s) = %q", got)
	}
}
