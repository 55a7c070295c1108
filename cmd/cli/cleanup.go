package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
)

// NewCleanupCommand builds "kubectl trace-svc cleanup": delete node debug
// pods a trace left behind (a trace deletes its own; the kubelet also kills
// them at their deadline; this is for an unreachable node, a killed
// process, and audits). Pods another trace may be using right now are kept
// unless --all.
func NewCleanupCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	namespace := debugpod.DefaultNamespace
	all := false
	cmd := &cobra.Command{
		Use:   "cleanup [--debug-namespace NS] [--all]",
		Short: "Delete node debug pods left behind by kubectl trace-svc",
		Long: `
			Delete the node debug pods kubectl trace-svc left behind in the debug namespace:
			those that finished and those past their deadline. A debug pod still inside its
			deadline may belong to a trace running right now, perhaps someone else's: it is
			kept, and cleanup says who made it and when its deadline passes. --all deletes
			those too.`,
		Args: cobra.NoArgs,
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
			rep, err := debugpod.Cleanup(ctx, client, namespace, debugpod.CleanupOptions{All: all})
			printCleanup(streams, namespace, rep)
			return err
		},
	}
	cmd.Flags().StringVar(&namespace, "debug-namespace", namespace, "namespace of the node debug pods")
	cmd.Flags().BoolVar(&all, "all", all, "also delete debug pods a trace may still be using (inside their deadline)")
	return cmd
}

// printCleanup says what cleanup deleted and kept, and why. Pod names,
// node names and who made a pod come from the cluster: escaped.
func printCleanup(streams genericiooptions.IOStreams, namespace string, rep debugpod.CleanupReport) {
	line := func(verb string, p debugpod.CleanupPod) {
		about := []string{"node " + termsafe.String(p.Node)}
		if p.CreatedBy != "" {
			about = append(about, "made by "+termsafe.String(p.CreatedBy))
		} else {
			about = append(about, "maker not recorded")
		}
		fmt.Fprintf(streams.Out, "%s pod %s (%s): %s\n", verb, termsafe.String(p.Pod), strings.Join(about, ", "), termsafe.String(p.Why))
	}
	for _, p := range rep.Deleted {
		line("deleted", p)
	}
	for _, p := range rep.Kept {
		line("kept", p)
	}
	switch {
	case len(rep.Kept) > 0:
		fmt.Fprintf(streams.Out, "kept %d debug pod(s) a trace may still be using; kubectl trace-svc cleanup --all deletes them too\n", len(rep.Kept))
	case len(rep.Deleted) == 0:
		fmt.Fprintf(streams.Out, "no trace-svc debug pods in namespace %q\n", namespace)
	}
}
