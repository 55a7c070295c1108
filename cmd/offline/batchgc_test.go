package offline

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
	const allocated = 1 << 30
	past := gcCycles()
	for i := range allocated >> 20 { // 1 GiB of garbage, 16 times the budget
		b := make([]byte, 1<<20)
		b[0] = byte(i)
		sink = append(sink[:0], b)
		peak = max(peak, goMemoryInUse())
	}
	sink = nil
	// Past the budget the collector runs again and again, as it would have
	// without batchGC. How far memory in use overshoots the limit between
	// two collections is not something a test can hold on a shared machine:
	// with 1 MiB allocations in a tight loop it peaked at 500-900 MiB here
	// with the limit set and at 70 MiB-1.8 GiB with the default GOGC alike.
	// simulate's own bound is held by TestSimulateHugeFallThroughChain.
	n := gcCycles() - past
	t.Logf("%d collections while %d MiB were allocated past a limit of %d MiB; memory in use peaked at %d MiB", n, allocated>>20, limit>>20, peak>>20)
	if n < 4 {
		t.Errorf("%d collections while 16 times the budget was allocated, want the collector to keep running (at least 4)", n)
	}

	restore()
	if got := debug.SetGCPercent(oldPercent); got != oldPercent {
		t.Errorf("GC percent after restore = %d, want %d", got, oldPercent)
	}
	if got := debug.SetMemoryLimit(oldLimit); got != oldLimit {
		t.Errorf("memory limit after restore = %d, want %d", got, oldLimit)
	}
}
