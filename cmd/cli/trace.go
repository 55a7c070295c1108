package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mattn/go-isatty"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/collectors/file"
	"github.com/trace-svc/kubectl-trace-svc/render"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
	"github.com/trace-svc/kubectl-trace-svc/trace/tracer"
)

var traceOutputs = []string{"tree", "json", "yaml", "dot", "svg", "png"}

// traceCollectors are the --collector choices: a short-lived debug pod per
// node, or an exec into the node's own kube-proxy pod.
var traceCollectors = []string{"debugpod", "kube-proxy"}

// defaultNodeCap bounds how many nodes a trace collects unless --all-nodes
// or --node says otherwise: a path through a few nodes tells the story, and
// a helper pod per node costs the cluster something.
const defaultNodeCap = 10

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
	From           string
	FailOn         string
	CompareNodes   bool

	configFlags *genericclioptions.ConfigFlags
	namespace   string
	client      kubernetes.Interface
	dumps       map[string][]string
	source      netip.Addr

	restConfig *rest.Config
	objects    []runtime.Object // --objects: the API, saved
	open       []*file.Dump     // saved dumps in use, closed when Run returns
	// collectLive gathers the rules of nodes without a --dump (debug pods);
	// replaced in tests.
	collectLive func(ctx context.Context, facts *cluster.Facts, nodes []string) []debugpod.NodeResult
	// executor runs the dump script in a pod; nil execs through the API
	// server. Replaced in tests.
	executor debugpod.Executor

	genericiooptions.IOStreams
}

// addTraceFlags registers the trace flags on the root command, which runs
// the trace when given a Service name.
func addTraceFlags(cmd *cobra.Command, o *TraceOptions) {
	f := cmd.Flags()
	f.StringVar(&o.Objects, "objects", o.Objects, "read the Service, EndpointSlices, pods and nodes from this file (kubectl get service,endpointslices,pods,nodes -o yaml > FILE) instead of the API server: with --dump for the nodes, a trace needs no cluster")
	f.StringArrayVar(&o.Dumps, "dump", o.Dumps, "use a saved dump for a node instead of collecting it: NODE=FILE (iptables-save, ip6tables-save or nft list ruleset output); repeat for more nodes or families")
	f.StringArrayVar(&o.Nodes, "node", o.Nodes, "trace through this node (repeatable); default: the nodes that matter for the path, at most 10")
	f.BoolVar(&o.AllNodes, "all-nodes", o.AllNodes, "trace through every node, not at most 10")
	f.StringVar(&o.SourceIP, "source-ip", o.SourceIP, "address of the external client for LoadBalancer, external IP and NodePort entries (default 203.0.113.10)")
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
	f.StringVar(&o.SaveDumps, "save-dumps", o.SaveDumps, "keep what was collected from the nodes in this directory (NODE.DUMP files), so the trace can be repeated offline with --dump or attached to a bug report")
	_ = cmd.MarkFlagDirname("save-dumps")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(traceOutputs, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("collector", cobra.FixedCompletions(traceCollectors, cobra.ShellCompDirectiveNoFileComp))
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
	if o.SourceIP != "" {
		a, err := netip.ParseAddr(o.SourceIP)
		if err != nil {
			return fmt.Errorf("--source-ip %q is not an IP address", o.SourceIP)
		}
		o.source = a.Unmap()
	}
	if o.Objects != "" {
		objs, err := file.ReadObjects(o.Objects)
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
	if !slices.Contains(traceCollectors, o.Collector) {
		return fmt.Errorf("--collector %q is not supported: use one of %s (or --dump NODE=FILE for saved dumps)", o.Collector, strings.Join(traceCollectors, ", "))
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if o.FailOn != "" && o.FailOn != "warning" && o.FailOn != "error" {
		return fmt.Errorf("--fail-on %q is not one of warning, error", o.FailOn)
	}
	if _, _, err := parseFrom(o.From); err != nil {
		return err
	}
	return nil
}

// fromKinds maps --from to entry kinds.
var fromKinds = map[string]string{"lb": "LoadBalancer", "nodeport": "NodePort", "clusterip": "ClusterIP", "external-ip": "ExternalIP"}

// parseFrom reads --from: an entry kind, or pod/NAMESPACE/NAME.
func parseFrom(from string) (kind string, pod [2]string, err error) {
	if from == "" {
		return "", pod, nil
	}
	if k, ok := fromKinds[from]; ok {
		return k, pod, nil
	}
	if rest, ok := strings.CutPrefix(from, "pod/"); ok {
		ns, name, ok := strings.Cut(rest, "/")
		if ok && ns != "" && name != "" && !strings.Contains(name, "/") {
			return "ClusterIP", [2]string{ns, name}, nil
		}
	}
	return "", pod, fmt.Errorf("--from %q is not one of lb, nodeport, clusterip, external-ip, pod/NAMESPACE/NAME", from)
}

// Run collects, traces and renders.
func (o *TraceOptions) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	defer func() {
		for _, d := range o.open {
			_ = d.Close()
		}
	}()
	var facts *cluster.Facts
	var err error
	if o.objects != nil {
		facts, err = cluster.FactsFromObjects(o.objects, o.namespace, o.Name)
	} else {
		facts, err = cluster.Collect(ctx, o.client, o.namespace, o.Name)
	}
	if err != nil {
		return err
	}
	in := tracer.Input{Service: facts.Service, Slices: facts.EndpointSlices, Pods: facts.Pods, Client: o.source,
		NetworkPolicies: facts.NetworkPolicies, NetworkPoliciesInUse: facts.NetworkPoliciesInUse}
	kind, fromPod, _ := parseFrom(o.From)
	if kind != "" {
		in.Kinds = []string{kind}
	}
	if fromPod[1] != "" {
		pod, err := o.getPod(ctx, fromPod[0], fromPod[1])
		if err != nil {
			return fmt.Errorf("--from pod/%s/%s: %w", fromPod[0], fromPod[1], err)
		}
		a, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil || pod.Spec.NodeName == "" {
			return fmt.Errorf("--from pod/%s/%s: the pod has no IP or node yet (is it running?)", fromPod[0], fromPod[1])
		}
		in.PodSource = a
		if len(o.Nodes) == 0 {
			o.Nodes = []string{pod.Spec.NodeName} // the request leaves from the pod's node
		}
	}
	nodes, err := o.pickNodes(facts)
	if err != nil {
		return err
	}
	var live []string
	for _, n := range nodes {
		if len(o.dumps[n.Name]) == 0 {
			live = append(live, n.Name)
		}
	}
	collected := map[string]debugpod.NodeResult{}
	if len(live) > 0 {
		collect := o.collectLive
		if collect == nil {
			collect = o.collectNodes
		}
		for _, r := range collect(ctx, facts, live) {
			collected[r.Node] = r
			if o.SaveDumps != "" && r.Result != nil {
				if err := r.Result.Save(o.SaveDumps); err != nil {
					return fmt.Errorf("--save-dumps: %w", err)
				}
			}
		}
	}
	for _, n := range nodes {
		if r, ok := collected[n.Name]; ok {
			in.Nodes = append(in.Nodes, o.liveRules(n, r))
			continue
		}
		in.Nodes = append(in.Nodes, o.nodeRules(ctx, n))
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// Ctrl-C: the collectors have deleted their debug pods; a partial
		// result would read as a finished trace, so there is none.
		return errors.New("interrupted: collection stopped and its debug pods were deleted; nothing was traced")
	}
	p, err := tracer.Build(in)
	if err != nil {
		return err
	}
	if err := o.render(ctx, p); err != nil {
		return err
	}
	return failOn(o.FailOn, p)
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

// failOn returns an error when a finding is at least as severe as level.
func failOn(level string, p *trace.Path) error {
	if level == "" {
		return nil
	}
	rank := map[string]int{"info": 0, "warning": 1, "error": 2}
	var codes []string
	for _, f := range p.Findings {
		if rank[f.Severity] >= rank[level] {
			codes = append(codes, f.Code)
		}
	}
	if len(codes) == 0 {
		return nil
	}
	return fmt.Errorf("%d finding(s) at %s level or above (--fail-on %s): %s", len(codes), level, level, strings.Join(codes, ", "))
}

// pickNodes chooses the nodes to trace through: the --node ones; else the
// nodes that hold an endpoint, then the others (a Local policy drops there,
// which is worth showing), up to the cap.
func (o *TraceOptions) pickNodes(f *cluster.Facts) ([]*corev1.Node, error) {
	byName := map[string]*corev1.Node{}
	for i := range f.Nodes {
		byName[f.Nodes[i].Name] = &f.Nodes[i]
	}
	wanted := slices.Clone(o.Nodes)
	for n := range o.dumps {
		if !slices.Contains(wanted, n) {
			wanted = append(wanted, n)
		}
	}
	if len(wanted) > 0 {
		sort.Strings(wanted)
		var out []*corev1.Node
		for _, name := range wanted {
			n := byName[name]
			if n == nil {
				return nil, fmt.Errorf("node %q is not in the cluster (kubectl get nodes lists them)", name)
			}
			out = append(out, n)
		}
		return out, nil
	}
	withEndpoints := map[string]bool{}
	for _, s := range f.EndpointSlices {
		for _, e := range s.Endpoints {
			if e.NodeName != nil {
				withEndpoints[*e.NodeName] = true
			}
		}
	}
	var first, rest []*corev1.Node
	for i := range f.Nodes {
		n := &f.Nodes[i]
		switch {
		case withEndpoints[n.Name]:
			first = append(first, n)
		case n.Spec.Unschedulable:
			// A cordoned node still forwards node ports, but it is not
			// where a load balancer should send traffic; leave it out
			// unless asked for with --node.
		default:
			rest = append(rest, n)
		}
	}
	if f.Service.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && len(rest) > 1 {
		// With a Local policy the nodes with endpoints tell the story, and
		// one node without shows the drop.
		rest = rest[:1]
	}
	out := append(first, rest...)
	if len(out) == 0 {
		return nil, errors.New("the cluster has no nodes to trace through")
	}
	if !o.AllNodes && len(out) > defaultNodeCap {
		fmt.Fprintf(o.ErrOut, "tracing through %d of %d nodes (pass --all-nodes or --node NAME for others)\n", defaultNodeCap, len(out))
		out = out[:defaultNodeCap]
	}
	return out, nil
}

// nodeRules reads a node's saved dumps, or collects them live.
func (o *TraceOptions) nodeRules(ctx context.Context, n *corev1.Node) tracer.Node {
	tn := tracer.Node{Node: n}
	for _, path := range o.dumps[n.Name] {
		rs, d, err := readDump(path, "auto", o.In)
		if err != nil {
			tn.Err = err
			return tn
		}
		o.open = append(o.open, d)
		tn.Warnings = append(tn.Warnings, rs.Warnings...)
		tn.Rulesets = append(tn.Rulesets, rs)
		switch rs.Format {
		case trace.FormatIPTables:
			tn.ProxyMode = "iptables"
		default:
			tn.ProxyMode = "nftables"
		}
	}
	return tn
}

// readDump opens and parses one saved dump in format ("auto" detects it).
// The dump stays open, because the iptables engine reads rule text back on
// demand; the caller closes it when done with the ruleset.
func readDump(path, format string, stdin io.Reader) (*ruleset.Ruleset, *file.Dump, error) {
	d, err := file.Open(path, stdin)
	if err != nil {
		return nil, nil, err
	}
	rs, err := ruleset.Parse(d, format)
	if err != nil {
		_ = d.Close()
		return nil, nil, fmt.Errorf("read ruleset %s: %w", d.Name, err)
	}
	return rs, d, nil
}

// collectNodes collects the rules of nodes with the --collector.
func (o *TraceOptions) collectNodes(ctx context.Context, facts *cluster.Facts, nodes []string) []debugpod.NodeResult {
	if o.Collector == "kube-proxy" {
		return o.collectFromKubeProxy(ctx, facts, nodes)
	}
	return o.collectWithDebugPods(ctx, facts, nodes)
}

// failAll gives every node the same error.
func failAll(nodes []string, err error) []debugpod.NodeResult {
	out := make([]debugpod.NodeResult, len(nodes))
	for i, n := range nodes {
		out[i] = debugpod.NodeResult{Node: n, Err: err}
	}
	return out
}

// progress prints collection steps to stderr when it is a terminal.
func (o *TraceOptions) progress() func(string) {
	if f, ok := o.ErrOut.(interface{ Fd() uintptr }); ok && isatty.IsTerminal(f.Fd()) {
		return func(msg string) { fmt.Fprintln(o.ErrOut, msg) }
	}
	return func(string) {}
}

// collectFromKubeProxy checks permissions once, then execs the dump script
// into each node's kube-proxy pod (bounded in parallel); no pod is created.
// A refusal that concerns every node becomes every node's error.
func (o *TraceOptions) collectFromKubeProxy(ctx context.Context, facts *cluster.Facts, nodes []string) []debugpod.NodeResult {
	fail := func(err error) []debugpod.NodeResult { return failAll(nodes, err) }
	if facts.KubeProxyPodsErr != nil {
		return fail(fmt.Errorf("--collector kube-proxy: listing kube-proxy pods was forbidden (%w); use --collector debugpod", facts.KubeProxyPodsErr))
	}
	if o.restConfig == nil {
		return fail(errors.New("no API server to exec into kube-proxy through (offline: pass --dump NODE=FILE for every node)"))
	}
	checks := append(cluster.TraceAccessChecks(o.namespace, ""), debugpod.KubeProxyAccessChecks()...)
	if err := cluster.CheckAccess(ctx, o.client, checks); err != nil {
		return fail(err)
	}
	opts := debugpod.NewOptions()
	opts.Executor = o.executor
	res, err := debugpod.CollectAllFromKubeProxy(ctx, o.client, o.restConfig, facts.KubeProxyPods, nodes, opts, o.Parallel, o.progress())
	if err != nil {
		return fail(err)
	}
	return res
}

// collectWithDebugPods checks permissions once, then runs a debug pod on each
// node (bounded in parallel) and returns what each gave. A refusal that
// concerns every node (RBAC, Pod Security) becomes every node's error.
func (o *TraceOptions) collectWithDebugPods(ctx context.Context, facts *cluster.Facts, nodes []string) []debugpod.NodeResult {
	fail := func(err error) []debugpod.NodeResult { return failAll(nodes, err) }
	if o.restConfig == nil {
		return fail(errors.New("no API server to run a debug pod through (offline: pass --dump NODE=FILE for every node)"))
	}
	if err := cluster.CheckAccess(ctx, o.client, cluster.TraceAccessChecks(o.namespace, o.DebugNamespace)); err != nil {
		return fail(err)
	}
	opts := debugpod.NewOptions()
	opts.Namespace, opts.ImagePullSecrets, opts.Image = o.DebugNamespace, o.PullSecrets, o.Image
	opts.Executor = o.executor
	if opts.Image == "" {
		opts.Image = debugpod.DefaultImage(facts.KubeProxyPods, facts.ServerVersion)
	}
	res, err := debugpod.CollectAll(ctx, o.client, o.restConfig, nodes, opts, o.Parallel, o.progress())
	if err != nil {
		return fail(err)
	}
	return res
}

// liveRules turns the dumps a collector returned into the node's rulesets.
func (o *TraceOptions) liveRules(n *corev1.Node, r debugpod.NodeResult) tracer.Node {
	tn := tracer.Node{Node: n}
	if r.Err != nil {
		tn.Err = r.Err
		return tn
	}
	tn.Warnings = r.Result.Warnings
	for _, name := range r.Result.Chosen {
		d, ok := r.Result.Dump(name)
		if !ok {
			continue
		}
		rs, err := ruleset.Parse(d, "auto")
		if err != nil {
			tn.Err = fmt.Errorf("node %s: %s output: %w", n.Name, name, err)
			return tn
		}
		tn.Rulesets = append(tn.Rulesets, rs)
	}
	tn.ProxyMode = r.Result.ProxyMode
	if tn.ProxyMode == "" {
		tn.ProxyMode = map[string]string{"nftables": "nftables", "iptables-nft": "iptables", "iptables-legacy": "iptables"}[r.Result.Backend]
	}
	if len(tn.Rulesets) == 0 {
		tn.Err = fmt.Errorf("no kube-proxy rules were found on node %s (in iptables-nft, iptables-legacy or nftables): kube-proxy may not run there, or a replacement such as an eBPF dataplane handles Services", n.Name)
	}
	return tn
}

// getPod reads a pod from the API, or from the saved objects offline.
func (o *TraceOptions) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	if o.objects == nil {
		return o.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	for _, obj := range o.objects {
		if p, ok := obj.(*corev1.Pod); ok && p.Namespace == namespace && p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s is not in the saved objects", namespace, name)
}
