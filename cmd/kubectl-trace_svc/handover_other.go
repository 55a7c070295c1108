//go:build !unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
)

// handOver runs trace-svc-cluster with the same arguments and streams and
// exits with its status (Windows cannot replace a process). Ctrl-C reaches
// both processes from the console; this one waits for the other to end.
func handOver(args []string) error {
	path, err := clusterBinaryPath()
	if err != nil {
		return err
	}
	signal.Ignore(os.Interrupt)
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("cannot run %s: %w", path, err)
	}
	os.Exit(0)
	return nil
}
