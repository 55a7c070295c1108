// Package nodedumptest helps test the collectors: a scripted Executor that
// checks each exec against the expected argv and plays back its output, the
// dump script's output markers, and the script outputs recorded on real
// nodes (collectors/nodedump/testdata/recorded).
package nodedumptest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
)

// ScriptCommand is the argv that runs the dump script with
// nodedump.DefaultScriptOptions: what a collector asks a debug pod to
// exec. It lives here, not in nodedump, so that the binary does not build
// the script at start-up.
var ScriptCommand = nodedump.CommandFor(nodedump.DefaultScriptOptions)

// Step is one expected exec and what it prints and returns.
type Step struct {
	Argv           []string
	Stdout, Stderr string
	Err            error
}

// ScriptedExec is an Executor that expects Steps in order.
type ScriptedExec struct {
	T *testing.T
	// Where checks the container of every exec (nil accepts any); its
	// error is reported.
	Where func(namespace, pod, container string) error

	mu    sync.Mutex
	Steps []Step
}

// Exec plays the next step back, checking the argv.
func (e *ScriptedExec) Exec(_ context.Context, ns, pod, container string, argv []string, stdout, stderr io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Where != nil {
		if err := e.Where(ns, pod, container); err != nil {
			e.T.Error(err)
		}
	}
	if len(e.Steps) == 0 {
		e.T.Errorf("unexpected exec %q", argv)
		return errors.New("unexpected exec")
	}
	s := e.Steps[0]
	e.Steps = e.Steps[1:]
	if diff := cmp.Diff(s.Argv, argv); diff != "" {
		e.T.Errorf("exec argv (-want +got):\n%s", diff)
	}
	_, _ = io.WriteString(stdout, s.Stdout)
	_, _ = io.WriteString(stderr, s.Stderr)
	return s.Err
}

// Done fails the test when steps were not run.
func (e *ScriptedExec) Done() {
	e.T.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.Steps) != 0 {
		e.T.Errorf("%d exec steps not run", len(e.Steps))
	}
}

// ExecFunc is an Executor made of a function.
type ExecFunc func(ctx context.Context, namespace, pod, container string, argv []string, stdout, stderr io.Writer) error

// Exec calls f.
func (f ExecFunc) Exec(ctx context.Context, namespace, pod, container string, argv []string, stdout, stderr io.Writer) error {
	return f(ctx, namespace, pod, container, argv, stdout, stderr)
}

// Section is a section of the dump script's output with exit status rc.
func Section(name, data string, rc int) string {
	return nodedump.Marker + " begin " + name + "\n" + data + "\n" + nodedump.Marker + " end " + name + " rc=" + strconv.Itoa(rc) + "\n"
}

// Absent is the line for a command the image does not have.
func Absent(name string) string { return nodedump.Marker + " absent " + name + "\n" }

// Done ends the script's output.
const Done = nodedump.Marker + " done\n"

// Recorded reads the dump script's output recorded on a real node
// (testdata/recorded/NAME.stdout and .stderr).
func Recorded(t *testing.T, name string) (stdout, stderr []byte) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(here), "..", "testdata", "recorded")
	stdout, err := os.ReadFile(filepath.Join(dir, name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err = os.ReadFile(filepath.Join(dir, name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	return stdout, stderr
}
