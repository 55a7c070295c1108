package cli

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

var sink [][]byte

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Under its budget the heap grows without a single collection; past it
// the collector keeps memory near the limit; afterwards the process has
// its old settings back.
func TestBatchGC(t *testing.T) {
	runtime.GC()
	oldPercent := debug.SetGCPercent(100)
	debug.SetGCPercent(oldPercent)
	oldLimit := debug.SetMemoryLimit(-1)

	const budget = 64 << 20
	restore := batchGC(budget)
	limit := debug.SetMemoryLimit(-1)

	before := gcCycles()
	for range 32 { // 32 MiB, half the budget
		sink = append(sink, make([]byte, 1<<20))
	}
	if n := gcCycles() - before; n != 0 {
		t.Errorf("%d collections while the heap grew by half its budget, want none", n)
	}

	sink = nil
	peak := int64(0)
	for i := range 1024 { // 1 GiB of garbage, 16 times the budget
		b := make([]byte, 1<<20)
		b[0] = byte(i)
		sink = append(sink[:0], b)
		peak = max(peak, goMemoryInUse())
	}
	sink = nil
	if n := gcCycles() - before; n == 0 {
		t.Error("no collection while 16 times the budget was allocated")
	}
	// The limit is soft (the collector and the scavenger run beside the
	// allocating goroutine, on a loaded machine behind it): what matters is
	// that memory stays bounded, far below what was allocated.
	if peak > 2*limit || peak > 512<<20 {
		t.Errorf("memory in use peaked at %d MiB with a limit of %d MiB while 1 GiB was allocated", peak>>20, limit>>20)
	}

	restore()
	if got := debug.SetGCPercent(oldPercent); got != oldPercent {
		t.Errorf("GC percent after restore = %d, want %d", got, oldPercent)
	}
	if got := debug.SetMemoryLimit(oldLimit); got != oldLimit {
		t.Errorf("memory limit after restore = %d, want %d", got, oldLimit)
	}
}
