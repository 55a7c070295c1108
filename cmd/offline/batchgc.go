package offline

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
)

// batchBudget is how much the heap may grow before simulate's first
// collection, on top of the dumps' size: more than parsing and walking any
// realistic dump allocates (a 35 MB iptables dump: 7 MB; a 6 MB nftables
// dump: 6 MB), far less than a node has.
const batchBudget = 128 << 20

// batchGC runs the garbage collector the way a short batch job wants it:
// not at all until the Go heap has grown by budget bytes, and from there on
// as often as it takes to stay near that limit. simulate reads dumps,
// answers once and exits, so collecting while it parses only costs time:
// with the default GOGC the collector starts at a 4 MB heap and runs three
// times while a 6 MB nftables dump is parsed, a quarter of the command's
// CPU. Input built to allocate without end still cannot take more memory
// than before: past the limit the collector works as hard as it did.
// It returns a func that restores the previous settings, so commands run
// by tests in one process leave the process as they found it.
func batchGC(budget int64) (restore func()) {
	limit := goMemoryInUse() + budget
	if budget <= 0 || limit < budget { // overflow: leave the defaults
		return func() {}
	}
	oldLimit := debug.SetMemoryLimit(limit)
	oldPercent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	}
}

// goMemoryInUse is the memory the runtime counts against its memory limit:
// everything it mapped, minus what it gave back to the system.
func goMemoryInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if total < released || total-released > math.MaxInt64 {
		return 0
	}
	return int64(total - released)
}
