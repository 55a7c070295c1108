// Command rusage runs a command and reports what it cost, for the
// benchmarks in test/bench: a child's peak RSS (getrusage's maxrss) is never
// below the peak RSS of the process that started it, and the test binary's
// is some 25 MB, more than simulate's own. This small process starts the
// command instead, so the floor is its own few megabytes.
//
//	rusage COMMAND [ARG...]
//
// The command inherits the standard streams and the environment. When it
// has ended, rusage writes one line to file descriptor 3 —
// "WALL_NS CPU_NS MAXRSS_KIB FLOOR_KIB" (CPU is user + system; FLOOR is
// rusage's own VmHWM when it started the command) — and exits with the
// command's status.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rusage COMMAND [ARG...]")
		os.Exit(2)
	}
	report := os.NewFile(3, "report")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	floor := selfHWM()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintf(os.Stderr, "rusage: %v\n", err)
		os.Exit(127)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Fprintf(report, "%d %d %d %d\n", wall.Nanoseconds(), cpu.Nanoseconds(), ru.Maxrss, floor)
	os.Exit(cmd.ProcessState.ExitCode())
}

// selfHWM is this process's peak RSS in KiB (VmHWM), 0 if unknown.
func selfHWM() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
