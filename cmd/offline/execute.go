package offline

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
)

// Execute runs a command tree as both of the plugin's binaries do and
// returns the exit status: Ctrl-C, kill and the terminal closing (SIGHUP)
// cancel the context, so that debug pods are deleted on the way out; an
// error is printed escaped, since errors quote names and text a node sent.
func Execute(root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(root.ErrOrStderr(), "error: %s\n", termsafe.Text(err.Error()))
		return 1
	}
	return 0
}
