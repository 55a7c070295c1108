package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// completionTimeout bounds one completion request when --request-timeout is
// not set: a TAB that hangs on an unreachable cluster is worse than none.
const completionTimeout = 5 * time.Second

var completionShells = []string{"bash", "zsh", "fish", "powershell"}

// NewCompletionCommand builds "kubectl trace-svc completion SHELL".
func NewCompletionCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var noDescriptions bool
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `
			Print a shell completion script. Completion covers subcommands, flags, Service
			names (from the namespace that -n or the kubeconfig context selects), namespaces,
			nodes, and the contexts, clusters and users of the kubeconfig.

			"kubectl trace-svc TAB" (kubectl 1.26 or newer, with kubectl's own completion
			loaded) needs no script from this command: kubectl runs the executable
			kubectl_complete-trace_svc from PATH, which ships in every release archive next to
			the plugin. krew does not put it on PATH yet; link it yourself:

			    ln -s "$(ls -d "${KREW_ROOT:-$HOME/.krew}"/store/trace-svc/*/ | tail -n 1)kubectl_complete-trace_svc" "${KREW_ROOT:-$HOME/.krew}/bin/"

			The scripts printed here complete the binary when it is run directly, as
			kubectl-trace_svc.`,
		Example: `
			# bash (needs the bash-completion package), current shell
			source <(kubectl-trace_svc completion bash)

			# zsh, every new shell
			kubectl-trace_svc completion zsh > "${fpath[1]}/_kubectl-trace_svc"

			# fish
			kubectl-trace_svc completion fish | source

			# PowerShell
			kubectl-trace_svc completion powershell | Out-String | Invoke-Expression`,
		ValidArgs:             completionShells,
		Args:                  cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(streams.Out, !noDescriptions)
			case "zsh":
				if noDescriptions {
					return root.GenZshCompletionNoDesc(streams.Out)
				}
				return root.GenZshCompletion(streams.Out)
			case "fish":
				return root.GenFishCompletion(streams.Out, !noDescriptions)
			default: // powershell; Args has checked the choice
				if noDescriptions {
					return root.GenPowerShellCompletion(streams.Out)
				}
				return root.GenPowerShellCompletionWithDesc(streams.Out)
			}
		},
	}
	cmd.Flags().BoolVar(&noDescriptions, "no-descriptions", false, "leave out the description shown next to each completion")
	return cmd
}

// registerCompletions adds value completion to the kubeconfig flags of root
// (--namespace, --context, --cluster, --user) and to every --node flag in the
// command tree. Call it after every subcommand is added; a flag that already
// has a completion function keeps it.
func registerCompletions(root *cobra.Command, f genericclioptions.RESTClientGetter) {
	register := func(cmd *cobra.Command, flag string, fn cobra.CompletionFunc) {
		if cmd.Flag(flag) == nil {
			return
		}
		if _, ok := cmd.GetFlagCompletionFunc(flag); ok {
			return
		}
		_ = cmd.RegisterFlagCompletionFunc(flag, fn)
	}
	register(root, "namespace", completeNamespaces(f))
	register(root, "context", completeContexts(f))
	register(root, "cluster", completeClusters(f))
	register(root, "user", completeUsers(f))
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		register(cmd, "node", completeNodeNames(f))
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(root)
}

// completeServiceNames completes the first positional argument with the names
// of the Services in the namespace that f selects (-n, else the kubeconfig
// context's namespace, else "default"). Each name carries the Service's type
// and cluster IP as its description.
func completeServiceNames(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		namespace, _, err := f.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return completionFailed(err)
		}
		return fromCluster(cmd, f, func(ctx context.Context, client kubernetes.Interface) ([]cobra.Completion, error) {
			return serviceNames(ctx, client, namespace, toComplete)
		})
	}
}

// completeNamespaces completes namespace names.
func completeNamespaces(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return fromCluster(cmd, f, func(ctx context.Context, client kubernetes.Interface) ([]cobra.Completion, error) {
			return namespaceNames(ctx, client, toComplete)
		})
	}
}

// completeNodeNames completes node names.
func completeNodeNames(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return fromCluster(cmd, f, func(ctx context.Context, client kubernetes.Interface) ([]cobra.Completion, error) {
			return nodeNames(ctx, client, toComplete)
		})
	}
}

// completeContexts completes the context names of the kubeconfig; it needs no
// cluster.
func completeContexts(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return fromKubeconfig(f, func(c kubeconfigNames) []string { return c.contexts })
}

// completeClusters completes the cluster names of the kubeconfig.
func completeClusters(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return fromKubeconfig(f, func(c kubeconfigNames) []string { return c.clusters })
}

// completeUsers completes the user (AuthInfo) names of the kubeconfig.
func completeUsers(f genericclioptions.RESTClientGetter) cobra.CompletionFunc {
	return fromKubeconfig(f, func(c kubeconfigNames) []string { return c.users })
}

type kubeconfigNames struct{ contexts, clusters, users []string }

func fromKubeconfig(f genericclioptions.RESTClientGetter, pick func(kubeconfigNames) []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		raw, err := f.ToRawKubeConfigLoader().RawConfig()
		if err != nil {
			return completionFailed(fmt.Errorf("read kubeconfig: %w", err))
		}
		var names kubeconfigNames
		for name := range raw.Contexts {
			names.contexts = append(names.contexts, name)
		}
		for name := range raw.Clusters {
			names.clusters = append(names.clusters, name)
		}
		for name := range raw.AuthInfos {
			names.users = append(names.users, name)
		}
		return withPrefix(pick(names), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// fromCluster builds a client from f, bounded in time and quiet about API
// warnings, and runs list with it.
func fromCluster(cmd *cobra.Command, f genericclioptions.RESTClientGetter, list func(context.Context, kubernetes.Interface) ([]cobra.Completion, error)) ([]cobra.Completion, cobra.ShellCompDirective) {
	config, err := f.ToRESTConfig()
	if err != nil {
		return completionFailed(err)
	}
	config = rest.CopyConfig(config)
	config.WarningHandler = rest.NoWarnings{}
	if config.Timeout == 0 {
		config.Timeout = completionTimeout
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return completionFailed(err)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	comps, err := list(ctx, client)
	if err != nil {
		return completionFailed(err)
	}
	return comps, cobra.ShellCompDirectiveNoFileComp
}

// completionFailed offers nothing (not file names) and leaves the reason in
// the completion debug log (BASH_COMP_DEBUG_FILE): a TAB never prints errors.
func completionFailed(err error) ([]cobra.Completion, cobra.ShellCompDirective) {
	cobra.CompDebugln("completion: "+err.Error(), false)
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// Lists for completion accept the API server's watch cache (resourceVersion
// "0"): slightly stale names are fine, and the request stays cheap.
var completionList = metav1.ListOptions{ResourceVersion: "0"}

// serviceNames lists the Services of namespace whose names start with prefix,
// sorted, as "name<TAB>type cluster-IP".
func serviceNames(ctx context.Context, client kubernetes.Interface, namespace, prefix string) ([]cobra.Completion, error) {
	list, err := client.CoreV1().Services(namespace).List(ctx, completionList)
	if err != nil {
		return nil, fmt.Errorf("list services in namespace %q: %w", namespace, err)
	}
	var out []cobra.Completion
	for i := range list.Items {
		svc := &list.Items[i]
		if strings.HasPrefix(svc.Name, prefix) {
			out = append(out, cobra.CompletionWithDesc(svc.Name, serviceDescription(svc)))
		}
	}
	slices.Sort(out)
	return out, nil
}

func serviceDescription(svc *corev1.Service) string {
	typ := string(svc.Spec.Type)
	if typ == "" {
		typ = string(corev1.ServiceTypeClusterIP)
	}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return typ + " " + svc.Spec.ExternalName
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		return "headless"
	case svc.Spec.ClusterIP != "":
		return typ + " " + svc.Spec.ClusterIP
	}
	return typ
}

// namespaceNames lists the namespaces whose names start with prefix, sorted.
func namespaceNames(ctx context.Context, client kubernetes.Interface, prefix string) ([]cobra.Completion, error) {
	list, err := client.CoreV1().Namespaces().List(ctx, completionList)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	return withPrefix(names, prefix), nil
}

// nodeNames lists the nodes whose names start with prefix, sorted.
func nodeNames(ctx context.Context, client kubernetes.Interface, prefix string) ([]cobra.Completion, error) {
	list, err := client.CoreV1().Nodes().List(ctx, completionList)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	names := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	return withPrefix(names, prefix), nil
}

// withPrefix returns the names that start with prefix, sorted.
func withPrefix(names []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
