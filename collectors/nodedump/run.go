// Package nodedump is the protocol between the plugin and a node: the
// read-only script a container on the node runs (Script, one list of known
// sections), how its output is split into sections and which backend holds
// kube-proxy's rules (ParseOutput, Result), and running it through an
// Executor within a size cap (Run), for any number of nodes at once
// (CollectNodes). The collectors — a debug pod (collectors/debugpod) or the
// node's kube-proxy pod (collectors/kubeproxy) — only provide the container.
// What a rule means is trace's business.
package nodedump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

const (
	// DefaultMaxOutput bounds what one node's dump script may print:
	// several times the iptables-save output of a node of a cluster with
	// tens of thousands of Services, and well below what would hurt the
	// machine running the plugin.
	DefaultMaxOutput = 256 << 20
	// DefaultParallel bounds how many nodes are collected at once.
	DefaultParallel = 5
)

// Target is the container a node's dump script runs in.
type Target struct {
	Namespace, Pod, Container string
}

func (t Target) String() string { return t.Namespace + "/" + t.Pod }

// RunOptions shape one run of the dump script.
type RunOptions struct {
	// Script says what the script reads (rule counters and connection
	// tables too, when it observes).
	Script ScriptOptions
	// MaxOutput bounds what the script may print, standard output and
	// error together (DefaultMaxOutput when 0); past it the run fails with
	// ErrOutputTooLarge.
	MaxOutput int64
	// SpoolDir, when set, is a private directory (os.MkdirTemp) where the
	// output is kept while the script runs and after: the Result's dumps
	// stay on disk until Result.Load, and Result.Close removes the file.
	// Memory then no longer grows with the number of nodes collected.
	SpoolDir string
}

// Run runs the dump script for node in target through ex and parses what it
// printed. An image without a shell gets each dump command run on its own.
// A run whose output passes the cap fails with an error wrapping
// ErrOutputTooLarge that names the node and the flag to raise it; any other
// error is the exec's, for the caller to place.
func Run(ctx context.Context, ex Executor, node string, target Target, o RunOptions) (*Result, error) {
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	if o.SpoolDir != "" {
		return runSpooled(ctx, ex, node, target, o)
	}
	var stdout, stderr bytes.Buffer
	limit := newOutputCap(o.MaxOutput)
	err := limit.exec(ctx, ex, target, CommandFor(o.Script), &stdout, &stderr)
	switch {
	case limit.exceeded():
		return nil, limit.tooLarge(node)
	case err == nil:
		return ParseOutput(node, stdout.Bytes(), stderr.Bytes()), nil
	case ctx.Err() == nil && noShell(err, stderr.Bytes()):
		// A distroless image: run each dump on its own.
		return runDirect(ctx, ex, node, target, newOutputCap(o.MaxOutput), o.Script)
	}
	return nil, err
}

// noShell tells whether the exec failed because the image has no sh.
func noShell(err error, stderr []byte) bool {
	s := err.Error() + " " + string(stderr)
	return strings.Contains(s, "executable file not found") ||
		strings.Contains(s, "no such file or directory") ||
		strings.Contains(s, "exit code 127") || strings.Contains(s, "exit code 126")
}

// runDirect runs each dump command without a shell in the container, all of
// them within limit (no connection tables then: without a shell nothing can
// cap them), and parses the outputs as if the script had printed them.
func runDirect(ctx context.Context, ex Executor, node string, target Target, limit *outputCap, so ScriptOptions) (*Result, error) {
	var out, errOut bytes.Buffer
	found := 0
	for _, dc := range dumpSections {
		if dc.argv == nil {
			continue
		}
		var o, e bytes.Buffer
		err := limit.exec(ctx, ex, target, dc.command(so), &o, &e)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if limit.exceeded() {
			return nil, limit.tooLarge(node)
		}
		if err != nil && noShell(err, e.Bytes()) {
			fmt.Fprintf(&out, "%s absent %s\n", Marker, dc.name)
			continue
		}
		found++
		rc := 0
		if err != nil {
			rc = 1
			if e.Len() == 0 {
				e.WriteString(err.Error())
			}
		}
		fmt.Fprintf(&errOut, "\n%s stderr %s\n%s", Marker, dc.name, e.Bytes())
		fmt.Fprintf(&out, "%s begin %s\n%s\n%s end %s rc=%d\n", Marker, dc.name, o.Bytes(), Marker, dc.name, rc)
	}
	if found == 0 {
		return nil, errors.New("the image has neither sh nor iptables-save nor nft; pass --image with one that has them (kube-proxy's image does)")
	}
	fmt.Fprintf(&out, "%s done\n", Marker)
	res := ParseOutput(node, out.Bytes(), errOut.Bytes())
	res.Warnings = append(res.Warnings, warn(trace.CodeCollectorWarning, "the image has no shell: dumps were taken one by one and kube-proxy's mode was not asked"))
	if so.Observe {
		res.Warnings = append(res.Warnings, warn(trace.CodeConntrackUnavailable, "the image has no shell, so the node's connection table was not read (nothing could cap it): observed connections are not shown"))
	}
	return res, nil
}

// NodeResult is one node's outcome in CollectNodes.
type NodeResult struct {
	Node   string
	Result *Result
	Err    error
}

// ErrPanic: collecting a node hit a bug (a panic), reported as its error.
var ErrPanic = errors.New("internal error")

// PanicError turns a recovered panic into node's error.
func PanicError(node string, r any) error {
	return fmt.Errorf("node %q: %w while collecting its rules, please report it: %v", node, ErrPanic, r)
}

// CollectNodes runs collect for every node, at most parallel at once
// (DefaultParallel when 0), and returns the results in the order of nodes.
// progress (may be nil) is serialised across the goroutines, and each line
// starts with the time since its node's collection began ("[  4.2s] node
// n1: ..."); a panic in one node's collect is that node's error (its
// collector cleans up in its own defers); a node not started before ctx
// ends gets ctx's error.
func CollectNodes(ctx context.Context, nodes []string, parallel int, progress func(string), collect func(ctx context.Context, node string, progress func(string)) (*Result, error)) []NodeResult {
	return collectNodes(ctx, nodes, parallel, progress, time.Now, collect)
}

// collectNodes is CollectNodes with the clock progress lines are timed by.
func collectNodes(ctx context.Context, nodes []string, parallel int, progress func(string), now func() time.Time, collect func(ctx context.Context, node string, progress func(string)) (*Result, error)) []NodeResult {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	var mu sync.Mutex
	safeProgress := func(s string) {
		if progress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		progress(s)
	}
	out := make([]NodeResult, len(nodes))
	var g errgroup.Group
	g.SetLimit(parallel)
	for i, node := range nodes {
		out[i].Node = node
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				out[i].Err = err
				return nil
			}
			// A panic in one node's collection must not take the others
			// down with their pods: it is that node's error.
			defer func() {
				if r := recover(); r != nil {
					out[i].Result, out[i].Err = nil, PanicError(node, r)
				}
			}()
			start := now()
			timed := func(s string) { safeProgress(fmt.Sprintf("[%s] %s", elapsed(now().Sub(start)), s)) }
			out[i].Result, out[i].Err = collect(ctx, node, timed)
			return nil
		})
	}
	_ = g.Wait() // every node's error is in its result
	return out
}

// elapsed formats a node's time so far for progress lines, in a column
// of the same width up to 999.9 s: "  0.4s", " 12.0s".
func elapsed(d time.Duration) string {
	return fmt.Sprintf("%5.1fs", max(d, 0).Seconds())
}
