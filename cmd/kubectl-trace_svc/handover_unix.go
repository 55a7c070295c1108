//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// handOver replaces this process with trace-svc-cluster and the same
// arguments: it keeps the process's ID, standard streams, signals and
// exit status, as if kubectl had run it. It returns only on failure.
func handOver(args []string) error {
	path, err := clusterBinaryPath()
	if err != nil {
		return err
	}
	if err := syscall.Exec(path, append([]string{path}, args...), os.Environ()); err != nil {
		return fmt.Errorf("cannot run %s: %w", path, err)
	}
	return nil
}
