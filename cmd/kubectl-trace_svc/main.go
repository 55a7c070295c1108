// Command kubectl-trace_svc is the kubectl plugin "kubectl trace-svc".
//
// It is two binaries. This one, the one kubectl runs, links only what the
// offline commands need and runs "simulate" and "version" itself; every
// other command line goes to trace-svc-cluster, installed next to it, which
// has the whole command tree. Starting client-go and cli-runtime costs a
// process tens of milliseconds and megabytes before it does anything
// (package initialisation); on a saved dump, simulate's own work is about
// as long. Anything this binary does not fully understand — another
// command, --help, a flag it does not know (kubectl's --context, say) — is
// handed over unchanged, so both binaries behave as one.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/cmd/offline"
)

// clusterBinary is the binary with the whole command tree, installed in
// the same directory as this one.
const clusterBinary = "trace-svc-cluster"

func main() {
	args := os.Args[1:]
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if runsHere(args) {
		os.Exit(offline.Execute(offlineRoot(streams, args)))
	}
	if err := handOver(args); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

// offlineRoot is the part of the command tree this binary runs.
func offlineRoot(streams genericiooptions.IOStreams, args []string) *cobra.Command {
	root := &cobra.Command{Use: "kubectl-trace_svc", SilenceErrors: true, SilenceUsage: true}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(offline.NewSimulateCommand(streams), offline.NewVersionCommand(streams))
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetArgs(args)
	return root
}

// runsHere says whether this binary runs the command line itself: simulate
// or version first, no help asked for (help has kubectl's layout, which the
// whole tree gives), and every flag one the command has. What it does not
// run goes to the whole tree, which accepts kubectl's cluster flags on
// every command and says what is wrong with the rest.
func runsHere(args []string) bool {
	if len(args) == 0 || (args[0] != "simulate" && args[0] != "version") {
		return false
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "--" }) {
		return false
	}
	discard := genericiooptions.NewTestIOStreamsDiscard()
	root := offlineRoot(discard, args)
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		return false
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return false
	}
	return cmd.ValidateArgs(cmd.Flags().Args()) == nil
}

// clusterBinaryPath is where trace-svc-cluster is: next to this binary,
// links resolved (krew links its bin directory to the plugin's own).
func clusterBinaryPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot tell where kubectl-trace_svc is installed, to find %s next to it: %w", clusterBinary, err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	name := clusterBinary
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	path := filepath.Join(filepath.Dir(exe), name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("kubectl trace-svc needs %s next to %s to run this command, and it is not there (%v); reinstall the plugin (kubectl krew install trace-svc, or make install from a checkout), which installs both", name, exe, err)
	}
	return path, nil
}
