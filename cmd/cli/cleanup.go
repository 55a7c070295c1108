package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
)

// NewCleanupCommand builds "kubectl trace-svc cleanup": delete node debug
// pods a trace left behind (a trace deletes its own; the kubelet also kills
// them at their deadline; this is for the impatient and for audits).
func NewCleanupCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	namespace := debugpod.DefaultNamespace
	cmd := &cobra.Command{
		Use:   "cleanup [--debug-namespace NS]",
		Short: "Delete node debug pods left behind by kubectl trace-svc",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("cannot build a client from the kubeconfig: %w", err)
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("cannot build a client from the kubeconfig: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			deleted, err := debugpod.Cleanup(ctx, client, namespace)
			for _, p := range deleted {
				fmt.Fprintf(streams.Out, "deleted pod %s\n", p)
			}
			if err != nil {
				return err
			}
			if len(deleted) == 0 {
				fmt.Fprintf(streams.Out, "no trace-svc debug pods in namespace %q\n", namespace)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&namespace, "debug-namespace", namespace, "namespace of the node debug pods")
	return cmd
}
