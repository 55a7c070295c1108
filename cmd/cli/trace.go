package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mattn/go-isatty"

	"github.com/trace-svc/kubectl-trace-svc/cmd/run"
	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/objects"
	"github.com/trace-svc/kubectl-trace-svc/render"
	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

var traceOutputs = []string{"tree", "json", "yaml", "dot", "svg", "png"}

// TraceOptions holds "kubectl trace-svc NAME" flags.
type TraceOptions struct {
	Name      string
	Objects   string   // API objects saved with kubectl, for offline use
	Dumps     []string // NODE=FILE
	Nodes     []string
	AllNodes  bool
	SourceIP  string
	Output    string
	Wide      bool
	Color     string
	Timeout   time.Duration
	Collector string
	// Debug pod flags.
	Image          string
	PullSecrets    []string
	DebugNamespace string
	Parallel       int
	SaveDumps      string
	MaxDumpSize    string
	From           string
	FailOn         string
	CompareNodes   bool
	// Observe puts what the kernel observed next to the prediction;
	// ConntrackMaxBytes caps each connection table collected; ShowClients
	// lists client addresses.
	Observe           bool
	ConntrackMaxBytes int64
	ShowClients       bool

	configFlags *genericclioptions.ConfigFlags
	namespace   string
	client      kubernetes.Interface
	dumps       map[string][]string
	source      netip.Addr
	from        run.From
	failOn      trace.Severity
	maxOutput   int64 // --max-dump-size in bytes

	restConfig *rest.Config
	objects    []runtime.Object // --objects: the API, saved
	// collectLive gathers the rules of nodes without a --dump (debug pods);
	// replaced in tests.
	collectLive func(ctx context.Context, facts *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult
	// executor runs the dump script in a pod; nil execs through the API
	// server. Replaced in tests.
	executor nodedump.Executor

	genericiooptions.IOStreams
}

// addTraceFlags registers the trace flags on the root command, which runs
// the trace when given a Service name.
func addTraceFlags(cmd *cobra.Command, o *TraceOptions) {
	f := cmd.Flags()
	f.StringVar(&o.Objects, "objects", o.Objects, "read the Service, EndpointSlices, pods and nodes from this file (kubectl get service,endpointslices,pods,nodes -o yaml > FILE) instead of the API server: with --dump for the nodes, a trace needs no cluster")
	f.StringArrayVar(&o.Dumps, "dump", o.Dumps, "use a saved dump for a node instead of collecting it: NODE=FILE (iptables-save, ip6tables-save or nft list ruleset output, or one of the node's route sections or connection tables as --save-dumps writes them, e.g. NODE.ip-route, NODE.conntrack-proc); repeat for more nodes, families and sections")
	f.StringArrayVar(&o.Nodes, "node", o.Nodes, "trace through this node (repeatable); default: the nodes that matter for the path, at most 10")
	f.BoolVar(&o.AllNodes, "all-nodes", o.AllNodes, "trace through every node, not at most 10")
	f.StringVar(&o.SourceIP, "source-ip", o.SourceIP, "address of the external client for LoadBalancer, external IP and NodePort entries (default: an arbitrary internet client, from 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24, outside every address and source range of the Service)")
	f.StringVarP(&o.Output, "output", "o", o.Output, "output format: "+strings.Join(traceOutputs, ", "))
	f.BoolVar(&o.Wide, "wide", o.Wide, "print full chain names in the tree")
	f.StringVar(&o.Color, "color", o.Color, "colour the tree: "+strings.Join(render.ColorModes, ", ")+" (auto honours NO_COLOR)")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up after this long")
	f.StringVar(&o.Collector, "collector", o.Collector, "how node rules are collected when no --dump is given: debugpod (a short-lived debug pod per node) or kube-proxy (exec into the node's kube-proxy pod, labelled k8s-app=kube-proxy in kube-system; no new pod)")
	f.StringVar(&o.Image, "image", o.Image, "image of the node debug pod; it needs sh, iptables and nft (default: the image the cluster's kube-proxy runs, else registry.k8s.io/kube-proxy at the server's version)")
	f.StringArrayVar(&o.PullSecrets, "image-pull-secret", o.PullSecrets, "image pull secret in the debug namespace for --image (repeatable)")
	f.StringVar(&o.DebugNamespace, "debug-namespace", o.DebugNamespace, "namespace of the node debug pods; it must allow host-network pods (see docs/rbac.md)")
	f.IntVar(&o.Parallel, "parallel", o.Parallel, "collect at most this many nodes at once")
	f.StringVar(&o.From, "from", o.From, "trace one request: lb, nodeport, clusterip, external-ip, or pod/NAMESPACE/NAME (a ClusterIP request from that pod, on its node); with --source-ip for the client")
	f.BoolVar(&o.CompareNodes, "compare-nodes", o.CompareNodes, "print only a table of what each node does with each entry (the tree ends with it when several nodes are traced)")
	f.StringVar(&o.FailOn, "fail-on", o.FailOn, "exit non-zero when a finding is at least this severe: warning or error (for scripts and CI)")
	_ = cmd.RegisterFlagCompletionFunc("fail-on", cobra.FixedCompletions([]string{"warning", "error"}, cobra.ShellCompDirectiveNoFileComp))
	f.BoolVar(&o.Observe, "observe", o.Observe, "put what each node's kernel observed next to the prediction: its conntrack entries per endpoint and its DNAT rules' packet counters (collected read-only with iptables-save -c and /proc/net/nf_conntrack or conntrack -L; from saved NODE.conntrack-* files with --dump); --observe=false collects and shows neither")
	f.Int64Var(&o.ConntrackMaxBytes, "conntrack-max-bytes", o.ConntrackMaxBytes, "read at most this many bytes of each node's connection table (a warning says when a table was longer; counts are then of the part read)")
	f.BoolVar(&o.ShowClients, "show-clients", o.ShowClients, "list the client addresses of the observed connections per endpoint (by default only counts)")
	f.StringVar(&o.SaveDumps, "save-dumps", o.SaveDumps, "keep what was collected from the nodes in this directory (NODE.DUMP files: the rules, the route sections and the connection tables), so the trace can be repeated offline with --dump or attached to a bug report")
	_ = cmd.MarkFlagDirname("save-dumps")
	f.StringVar(&o.MaxDumpSize, "max-dump-size", o.MaxDumpSize, "fail a node whose rules and other output, as collected, are larger than this (256Mi, 1Gi, ...)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(traceOutputs, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("collector", cobra.FixedCompletions(run.Collectors, cobra.ShellCompDirectiveNoFileComp))
}

// Complete resolves the namespace, the client and the flag values.
func (o *TraceOptions) Complete(args []string) error {
	o.Name = args[0]
	o.dumps = map[string][]string{}
	for _, d := range o.Dumps {
		node, path, ok := strings.Cut(d, "=")
		if !ok || node == "" || path == "" {
			return fmt.Errorf("--dump %q is not NODE=FILE (for example --dump node-1=node-1.iptables)", d)
		}
		o.dumps[node] = append(o.dumps[node], path)
	}
	if o.FailOn != "" {
		sev, ok := trace.ParseSeverity(o.FailOn)
		if !ok || sev == trace.SeverityInfo {
			return fmt.Errorf("--fail-on %q is not one of warning, error", o.FailOn)
		}
		o.failOn = sev
	}
	from, err := run.ParseFrom(o.From)
	if err != nil {
		return err
	}
	o.from = from
	if o.SourceIP != "" {
		a, err := netip.ParseAddr(o.SourceIP)
		if err != nil {
			return fmt.Errorf("--source-ip %q is not an IP address", o.SourceIP)
		}
		o.source = a.Unmap()
	}
	if o.Objects != "" {
		objs, err := objects.Read(o.Objects)
		if err != nil {
			return err
		}
		o.objects = objs
		o.namespace = "default"
		if o.configFlags.Namespace != nil && *o.configFlags.Namespace != "" {
			o.namespace = *o.configFlags.Namespace
		}
		return nil
	}
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot read the kubeconfig: %w; pass --kubeconfig with an existing file, set KUBECONFIG, or pass --objects to trace offline", err)
		}
		return fmt.Errorf("cannot tell the namespace from the kubeconfig: %w", err)
	}
	o.namespace = ns
	if o.client == nil {
		cfg, err := o.configFlags.ToRESTConfig()
		if err != nil {
			return fmt.Errorf("cannot build a client from the kubeconfig: %w", err)
		}
		// A trace makes bursts of small reads (pods by name, access checks,
		// one helper pod per node): client-go's default 5 QPS would stall them.
		cfg.QPS, cfg.Burst = 50, 100
		o.restConfig = cfg
		if o.client, err = kubernetes.NewForConfig(cfg); err != nil {
			return fmt.Errorf("cannot build a client from the kubeconfig: %w", err)
		}
	}
	return nil
}

// Validate checks flag values.
func (o *TraceOptions) Validate() error {
	if !slices.Contains(traceOutputs, o.Output) {
		return fmt.Errorf("--output %q is not supported: use one of %s", o.Output, strings.Join(traceOutputs, ", "))
	}
	if !slices.Contains(render.ColorModes, o.Color) {
		return fmt.Errorf("--color %q is not one of %s", o.Color, strings.Join(render.ColorModes, ", "))
	}
	if !slices.Contains(run.Collectors, o.Collector) {
		return fmt.Errorf("--collector %q is not supported: use one of %s (or --dump NODE=FILE for saved dumps)", o.Collector, strings.Join(run.Collectors, ", "))
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if o.ConntrackMaxBytes <= 0 {
		return fmt.Errorf("--conntrack-max-bytes must be positive, got %d", o.ConntrackMaxBytes)
	}
	if o.ShowClients && !o.Observe {
		return errors.New("--show-clients lists the clients of observed connections and cannot be combined with --observe=false")
	}
	if o.CompareNodes && o.Output != "tree" {
		return fmt.Errorf("--compare-nodes prints a table and cannot be combined with -o %s; the same per-node verdicts are in -o json under .nodes[].paths[] (for example: jq '.nodes[] | {name, verdicts: [.paths[] | .verdict]}')", o.Output)
	}
	o.maxOutput = nodedump.DefaultMaxOutput
	if o.MaxDumpSize != "" {
		q, err := resource.ParseQuantity(o.MaxDumpSize)
		if err != nil || q.Sign() <= 0 {
			return fmt.Errorf("--max-dump-size %q is not a positive size (for example 256Mi or 1Gi)", o.MaxDumpSize)
		}
		o.maxOutput = q.Value()
	}
	return nil
}

// Run collects, traces and renders.
func (o *TraceOptions) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cfg := run.Config{
		Namespace: o.namespace, Service: o.Name,
		Client: o.client, RESTConfig: o.restConfig, Objects: o.objects,
		Nodes: o.Nodes, AllNodes: o.AllNodes,
		Dumps: o.dumps, Stdin: o.In,
		From: o.from, ClientIP: o.source,
		Collector: o.Collector, Parallel: o.Parallel, SaveDumps: o.SaveDumps,
		Observe: o.Observe, ConntrackMaxBytes: o.ConntrackMaxBytes, ShowClients: o.ShowClients,
		Progress:    o.progress(),
		Notice:      func(s string) { fmt.Fprintln(o.ErrOut, s) },
		CollectLive: o.collectLive,
	}
	cfg.DebugPod = debugpod.NewOptions()
	cfg.DebugPod.Namespace, cfg.DebugPod.ImagePullSecrets, cfg.DebugPod.Image = o.DebugNamespace, o.PullSecrets, o.Image
	cfg.DebugPod.Executor, cfg.DebugPod.MaxOutput = o.executor, o.maxOutput
	cfg.DebugPod.CreatedBy = creator(o.configFlags, time.Now())
	p, err := run.Trace(ctx, cfg)
	if err != nil {
		return err
	}
	if err := o.render(ctx, p); err != nil {
		return err
	}
	return failOn(o.failOn, p)
}

func (o *TraceOptions) render(ctx context.Context, p *trace.Path) error {
	switch o.Output {
	case "json":
		return render.PathJSON(o.Out, p)
	case "yaml":
		return render.PathYAML(o.Out, p)
	case "dot":
		return render.PathDOT(o.Out, p)
	case "svg", "png":
		return render.PathImage(ctx, o.Out, p, o.Output)
	}
	if o.CompareNodes {
		return render.PathCompare(o.Out, p)
	}
	r, err := render.NewRenderer(o.Out, o.Color)
	if err != nil {
		return err
	}
	if err := render.PathTree(o.Out, r, p, render.PathTreeOptions{Wide: o.Wide}); err != nil {
		return err
	}
	if len(p.Nodes) > 1 {
		fmt.Fprintln(o.Out, "\nPer node")
		return render.PathCompare(o.Out, p)
	}
	return nil
}

// failOn returns an error when a finding is at least as severe as level
// ("" never fails).
func failOn(level trace.Severity, p *trace.Path) error {
	if level == "" {
		return nil
	}
	var codes []string
	for _, f := range p.Findings {
		if f.Severity.AtLeast(level) {
			codes = append(codes, string(f.Code))
		}
	}
	if len(codes) == 0 {
		return nil
	}
	return fmt.Errorf("%d finding(s) at %s level or above (--fail-on %s): %s", len(codes), level, level, strings.Join(codes, ", "))
}

// progress prints collection steps to stderr when it is a terminal.
func (o *TraceOptions) progress() func(string) {
	if f, ok := o.ErrOut.(interface{ Fd() uintptr }); ok && isatty.IsTerminal(f.Fd()) {
		return progressTo(o.ErrOut)
	}
	return func(string) {}
}

// progressTo prints each step on its own line, escaped: steps name pods,
// images and errors that may quote what a node sent.
func progressTo(w io.Writer) func(string) {
	return func(msg string) { fmt.Fprintln(w, termsafe.Text(msg)) }
}
