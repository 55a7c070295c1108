package file

import (
	"fmt"
	"runtime/debug"
)

// GuardFaults runs f, which reads mapped dumps (OpenMapped), and turns the
// fault of a mapped file that was truncated meanwhile (SIGBUS; without the
// guard a crash with a register dump) into an error that names the
// rulesets and says what to do. Only faults are caught: any other panic
// goes on up. f must not read the mapping from other goroutines: the
// guard holds for this one only.
func GuardFaults(names string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if _, fault := r.(interface{ Addr() uintptr }); !fault {
			panic(r)
		}
		err = fmt.Errorf("ruleset %s changed while it was read (the file was truncated or replaced in place); trace a copy that nothing writes to", names)
	}()
	return f()
}
