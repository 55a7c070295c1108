// Command trace-svc-cluster is the whole of "kubectl trace-svc": every
// command, the ones that talk to a cluster among them. The plugin's
// binary, kubectl-trace_svc, runs simulate and version itself and hands
// everything else to this one, which is installed next to it (it links
// client-go and cli-runtime, whose start-up simulate should not pay). It
// only wires: streams, the root command, the exit code.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/cmd/cli"
	"github.com/trace-svc/kubectl-trace-svc/cmd/offline"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	os.Exit(offline.Execute(cli.NewRootCommand(streams)))
}
