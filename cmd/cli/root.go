// Package cli holds the cobra commands of kubectl trace-svc. Commands parse
// and check flags, call collectors/trace/render, and nothing else.
package cli

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewRootCommand builds "kubectl trace-svc" and its subcommands.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-trace_svc",
		Short: "Show where a request to a Kubernetes Service actually goes",
		Long: `kubectl trace-svc answers "a request hits this Service: where does it actually go?"
It reads kube-proxy's real dataplane rules and follows a packet through them: load
balancer, node port, KUBE-SERVICES, firewall and external chains, the service chain
with each endpoint's probability, DNAT to the pod, masquerade, drops and rejects.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl trace-svc",
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)

	// Every kubectl global flag (--kubeconfig, --context, -n, --as,
	// --request-timeout, ...) on every command; commands that talk to a
	// cluster build their clients from configFlags.
	configFlags := genericclioptions.NewConfigFlags(true)
	configFlags.AddFlags(root.PersistentFlags())

	root.AddCommand(NewSimulateCommand(streams))
	root.AddCommand(NewVersionCommand(streams))
	root.AddCommand(NewCompletionCommand(streams))
	root.CompletionOptions.DisableDefaultCmd = true // ours documents kubectl_complete-trace_svc

	// The positional argument of "kubectl trace-svc NAME" is a Service.
	root.ValidArgsFunction = completeServiceNames(configFlags)
	// Last, so that flags of every subcommand above get completion too.
	registerCompletions(root, configFlags)
	return root
}
