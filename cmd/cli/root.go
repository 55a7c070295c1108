// Package cli holds the cobra commands of kubectl trace-svc. Commands parse
// and check flags, call collectors/trace/render, and nothing else.
package cli

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trace-svc/kubectl-trace-svc/cmd/offline"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/kubectl/pkg/util/templates"
)

// NewRootCommand builds "kubectl trace-svc" and its subcommands.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-trace_svc [NAME]",
		Short: "Show where a request to a Kubernetes Service actually goes",
		Long: `
			kubectl trace-svc answers "a request hits this Service: where does it actually go?"
			It reads kube-proxy's real dataplane rules and follows a packet through them: load
			balancer, node port, KUBE-SERVICES, firewall and external chains, the service chain
			with each endpoint's probability, DNAT to the pod, masquerade, drops and rejects.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl trace-svc",
		},
		Example: `
			# Where do requests to the Service "web" in namespace "shop" go?
			kubectl trace-svc web -n shop

			# The same from saved node dumps, as a Graphviz diagram
			kubectl trace-svc web -n shop --dump node-1=node-1.iptables --dump node-2=node-2.nft -o svg > web.svg

			# One packet through a saved dump, offline
			kubectl trace-svc simulate --ruleset node-1.iptables --node-ip 192.168.0.2 --src 10.0.0.2 --dst 10.96.0.10 --dport 53 --proto udp`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          oneServiceAtMost,
	}
	traceOpts := &TraceOptions{Output: "tree", Color: "auto", Timeout: 2 * time.Minute, Collector: "debugpod",
		DebugNamespace: debugpod.DefaultNamespace, Parallel: nodedump.DefaultParallel, MaxDumpSize: "256Mi",
		Observe: true, ConntrackMaxBytes: nodedump.DefaultConntrackMaxBytes, IOStreams: streams}
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		if err := traceOpts.Complete(args); err != nil {
			return err
		}
		if err := traceOpts.Validate(); err != nil {
			return err
		}
		return traceOpts.Run(cmd.Context())
	}
	addTraceFlags(root, traceOpts)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)

	// Every kubectl global flag (--kubeconfig, --context, -n, --as,
	// --request-timeout, ...) on every command; commands that talk to a
	// cluster build their clients from configFlags.
	configFlags := genericclioptions.NewConfigFlags(true)
	configFlags.AddFlags(root.PersistentFlags())
	traceOpts.configFlags = configFlags

	root.AddCommand(offline.NewSimulateCommand(streams))
	root.AddCommand(offline.NewVersionCommand(streams))
	root.AddCommand(NewCompletionCommand(streams))
	root.AddCommand(NewCleanupCommand(streams, configFlags))
	root.CompletionOptions.DisableDefaultCmd = true // ours documents kubectl_complete-trace_svc

	// The positional argument of "kubectl trace-svc NAME" is a Service.
	root.ValidArgsFunction = completeServiceNames(configFlags)
	// Last, so that flags of every subcommand above get completion too.
	registerCompletions(root, configFlags)
	normalizeHelpWhenShown(root)
	return root
}

// normalizeHelpWhenShown gives every command kubectl's help layout: its
// Long and Example, written as indented source text, go through
// templates.Normalize (LongDesc: one line per paragraph; Examples: two
// spaces in) — when help or usage is printed, not at every start.
// LongDesc is a markdown pass (blackfriday) that costs about 3 ms of CPU
// per start, and every TAB press in "kubectl trace-svc <TAB>" starts the
// binary.
func normalizeHelpWhenShown(root *cobra.Command) {
	var mu sync.Mutex
	done := map[*cobra.Command]bool{}
	normalize := func(c *cobra.Command) {
		mu.Lock()
		defer mu.Unlock()
		if !done[c] {
			done[c] = true
			templates.Normalize(c)
		}
	}
	help, usage := root.HelpFunc(), root.UsageFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		normalize(c)
		hideClusterFlagsWhenOffline(c)
		help(c, args)
	})
	root.SetUsageFunc(func(c *cobra.Command) error {
		normalize(c)
		hideClusterFlagsWhenOffline(c)
		return usage(c)
	})
}

// hideClusterFlagsWhenOffline leaves kubectl's cluster flags (--kubeconfig,
// --context, --as, ...; every one inherited from the root) out of an
// offline command's help: they would read as if simulate could use them.
// They are still accepted, so a script that passes them to every kubectl
// command keeps working. Help is the last thing the process does, so
// marking the shared flags hidden affects nothing else.
func hideClusterFlagsWhenOffline(c *cobra.Command) {
	if c.Annotations[offline.Annotation] != "true" {
		return
	}
	c.InheritedFlags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })
}

// oneServiceAtMost replaces cobra's "accepts at most 1 arg(s)" with a
// sentence that says what the argument is and how to trace several.
func oneServiceAtMost(_ *cobra.Command, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("trace-svc traces one Service at a time (NAME, or NAMESPACE/NAME), but got %d arguments: %s; run it once per Service", len(args), strings.Join(args, " "))
	}
	return nil
}
