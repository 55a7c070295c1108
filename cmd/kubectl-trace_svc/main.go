// Command kubectl-trace_svc is the kubectl plugin "kubectl trace-svc". It only
// wires: streams, a signal-aware context, the root command, the exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/cmd/cli"
	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
)

func main() {
	// Ctrl-C, kill, and the terminal closing (SIGHUP) all cancel the
	// context, so the debug pods are deleted on the way out.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	err := cli.NewRootCommand(streams).ExecuteContext(ctx)
	stop()
	if err != nil {
		// Errors quote names and text a node sent: escape what a
		// terminal would act on.
		fmt.Fprintf(os.Stderr, "error: %s\n", termsafe.Text(err.Error()))
		os.Exit(1)
	}
}
