// Package run is the trace runner: a Config in, a Path out. It decides
// which nodes to look at, reads the API (or saved objects), collects each
// node's dataplane live or from saved dumps, and hands it all to the tracer.
// It knows no cobra and prints nothing but progress; cmd/cli fills the
// Config from flags and picks the renderer.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/collectors/file"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
	"github.com/trace-svc/kubectl-trace-svc/trace/tracer"
)

// Collectors are the ways a live node's rules are read (--collector).
const (
	CollectorDebugPod  = "debugpod"
	CollectorKubeProxy = "kube-proxy"
)

// Collectors lists the --collector choices.
var Collectors = []string{CollectorDebugPod, CollectorKubeProxy}

// Config is one trace, as the user asked for it.
type Config struct {
	Namespace, Service string

	// The API: a client, or the objects saved with kubectl get -o yaml
	// (Objects wins when set).
	Client     kubernetes.Interface
	RESTConfig *rest.Config
	Objects    []runtime.Object

	// Nodes: the --node ones (sorted on use), or every candidate with
	// AllNodes, else at most NodeCap of them (DefaultNodeCap when 0).
	Nodes    []string
	AllNodes bool
	NodeCap  int

	// Dumps are saved dumps per node (--dump NODE=FILE); those nodes are
	// not collected. Stdin serves a dump named "-".
	Dumps map[string][]string
	Stdin io.Reader

	// From is one request (--from); zero means every way in.
	From From
	// ClientIP is the external client (--source-ip); invalid means the
	// tracer's default.
	ClientIP netip.Addr

	// Collector is CollectorDebugPod or CollectorKubeProxy; DebugPod
	// configures the debug pods (namespace, image, pull secrets, executor),
	// Parallel bounds how many nodes are collected at once.
	Collector string
	DebugPod  debugpod.Options
	Parallel  int
	// SaveDumps, when set, keeps what was collected in that directory.
	SaveDumps string

	// Observe puts what each node's kernel observed next to the
	// prediction (--observe): collected nodes are asked for their rule
	// counters and connection tables (capped at ConntrackMaxBytes per
	// table, DebugPod's default when 0), saved ones are read when given.
	// ShowClients lists client addresses (--show-clients).
	Observe           bool
	ConntrackMaxBytes int64
	ShowClients       bool

	// Progress gets a line per collection step (may be nil); Notice a
	// line for the user about the trace's scope (may be nil).
	Progress func(string)
	Notice   func(string)

	// CollectLive replaces live collection (tests). spool is the private
	// directory each node's output is to be spooled to
	// (nodedump.RunOptions.SpoolDir).
	CollectLive func(ctx context.Context, facts *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult
}

// ErrInterrupted is returned when the context was cancelled (Ctrl-C).
var ErrInterrupted = errors.New("interrupted: collection stopped and its debug pods were deleted; nothing was traced")

// Trace runs one trace.
func Trace(ctx context.Context, cfg Config) (*trace.Path, error) {
	notice := cfg.Notice
	if notice == nil {
		notice = func(string) {}
	}
	facts, err := cfg.facts(ctx)
	if err != nil {
		return nil, err
	}
	in := tracer.Input{Service: facts.Service, Slices: facts.EndpointSlices, Pods: facts.Pods, Client: cfg.ClientIP,
		NetworkPolicies: facts.NetworkPolicies, NetworkPoliciesInUse: facts.NetworkPoliciesInUse,
		Observe: cfg.Observe, ShowClients: cfg.ShowClients}
	for i := range facts.Nodes {
		in.AllNodes = append(in.AllNodes, &facts.Nodes[i])
	}
	if cfg.From.Kind != "" {
		in.Kinds = []string{cfg.From.Kind}
	}
	wanted := cfg.Nodes
	if cfg.From.Pod.Name != "" {
		pod, err := cfg.getPod(ctx, cfg.From.Pod.Namespace, cfg.From.Pod.Name)
		if err != nil {
			return nil, fmt.Errorf("--from %s: %w", cfg.From, err)
		}
		a, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil || pod.Spec.NodeName == "" {
			return nil, fmt.Errorf("--from %s: the pod has no IP or node yet (is it running?)", cfg.From)
		}
		in.PodSource = a
		if len(wanted) == 0 {
			wanted = []string{pod.Spec.NodeName} // the request leaves from the pod's node
		}
	}
	pick, err := PickNodes(facts, NodeChoice{Named: wanted, Dumped: mapsKeys(cfg.Dumps), All: cfg.AllNodes, Cap: cfg.NodeCap})
	if err != nil {
		return nil, err
	}
	if pick.Capped > 0 {
		notice(fmt.Sprintf("tracing through %d of %d nodes (pass --all-nodes or --node NAME for others)", len(pick.Nodes), len(pick.Nodes)+pick.Capped))
	}

	var live []string
	for _, n := range pick.Nodes {
		if len(cfg.Dumps[n.Name]) == 0 {
			live = append(live, n.Name)
		}
	}
	collected := map[string]nodedump.NodeResult{}
	if len(live) > 0 {
		// Each node's output is spooled to a file of its own in a private
		// directory while it is collected, and read back when the node is
		// parsed: the memory a trace takes does not grow with the number
		// of nodes. The directory goes when the trace ends, whichever way.
		spool, err := os.MkdirTemp("", "kubectl-trace-svc-")
		if err != nil {
			return nil, fmt.Errorf("cannot make a private directory for the nodes' dumps (set TMPDIR to a writable directory): %w", err)
		}
		defer os.RemoveAll(spool)
		collect := cfg.CollectLive
		if collect == nil {
			collect = cfg.collectLive
		}
		for _, r := range collect(ctx, facts, live, spool) {
			collected[r.Node] = r
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ErrInterrupted
	}
	b, err := tracer.NewBuilder(in)
	if err != nil {
		return nil, err
	}
	// Each node is read, parsed and reduced to its part of the Path on its
	// own (an engine shares nothing between dataplanes), on every core, and
	// its dump and parsed dataplane are dropped before the worker takes the
	// next node: 40 saved dumps of a large cluster take the time of
	// 40/cores, and the peak memory is that of one parsed node per core
	// whatever the number of nodes.
	parts := make([]tracer.NodePart, len(pick.Nodes))
	var g errgroup.Group
	g.SetLimit(goruntime.GOMAXPROCS(0))
	for i, n := range pick.Nodes {
		g.Go(func() error {
			if r, ok := collected[n.Name]; ok {
				var err error
				parts[i], err = cfg.liveNodePart(b, n, r)
				return err
			}
			parts[i] = savedNodePart(b, n, cfg.Dumps[n.Name], cfg.Stdin)
			return nil
		})
	}
	if err := g.Wait(); err != nil { // every node's own error is in its part
		return nil, err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// Ctrl-C: the collectors have deleted their debug pods; a partial
		// result would read as a finished trace, so there is none.
		return nil, ErrInterrupted
	}
	return b.Path(parts), nil
}

// nodePart reduces one node to its part of the Path with b. A parser or
// tracer bug on the node (a panic) is that node's error, not the end of the
// trace.
func nodePart(b *tracer.Builder, n *corev1.Node, load func() tracer.Node) (part tracer.NodePart) {
	defer func() {
		if r := recover(); r != nil {
			part = b.Node(tracer.Node{Node: n, Err: nodedump.PanicError(n.Name, r)})
		}
	}()
	return b.Node(load())
}

// liveNodePart reads a collected node's dumps back from its spool file,
// keeps them (--save-dumps), parses them and reduces the node to its part
// of the Path; the spool file is removed when it returns. Only a dump that
// cannot be saved fails the trace.
func (cfg Config) liveNodePart(b *tracer.Builder, n *corev1.Node, r nodedump.NodeResult) (tracer.NodePart, error) {
	if r.Result != nil {
		defer r.Result.Close()
		if err := r.Result.Load(); err != nil {
			r.Result, r.Err = nil, err
		}
	}
	if cfg.SaveDumps != "" && r.Result != nil {
		if err := r.Result.Save(cfg.SaveDumps); err != nil {
			return tracer.NodePart{}, fmt.Errorf("--save-dumps: %w", err)
		}
	}
	return nodePart(b, n, func() tracer.Node { return liveNode(n, r, cfg.Observe) }), nil
}

// savedNodePart parses a node's saved dumps and reduces the node to its part
// of the Path; the files are closed when it returns.
func savedNodePart(b *tracer.Builder, n *corev1.Node, paths []string, stdin io.Reader) tracer.NodePart {
	var opened []*file.Dump
	defer func() {
		for _, d := range opened {
			_ = d.Close()
		}
	}()
	return nodePart(b, n, func() tracer.Node {
		var tn tracer.Node
		tn, opened = savedNode(n, paths, stdin)
		return tn
	})
}

func (cfg Config) facts(ctx context.Context) (*cluster.Facts, error) {
	if cfg.Objects != nil {
		return cluster.FactsFromObjects(cfg.Objects, cfg.Namespace, cfg.Service)
	}
	if cfg.Client == nil {
		return nil, errors.New("no API server and no saved objects to read the Service from (pass --objects FILE to trace offline)")
	}
	return cluster.Collect(ctx, cfg.Client, cfg.Namespace, cfg.Service)
}

// getPod reads a pod from the API, or from the saved objects offline.
func (cfg Config) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	if cfg.Objects == nil {
		return cfg.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	for _, obj := range cfg.Objects {
		if p, ok := obj.(*corev1.Pod); ok && p.Namespace == namespace && p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s is not in the saved objects", namespace, name)
}

// savedNode reads a node's saved dumps into its dataplane. The files stay
// open until the node's part of the Path is built: the iptables engine
// reads rule text back on demand.
func savedNode(n *corev1.Node, paths []string, stdin io.Reader) (tracer.Node, []*file.Dump) {
	tn := tracer.Node{Node: n}
	var inputs []ruleset.Input
	var opened []*file.Dump
	for _, path := range paths {
		if strings.HasSuffix(path, "."+nodedump.SectionProxyMode) {
			// What kube-proxy said its mode was, as --save-dumps keeps it.
			mode, w := savedProxyMode(path)
			tn.ProxyMode = mode
			if w != nil {
				tn.Warnings = append(tn.Warnings, *w)
			}
			continue
		}
		d, err := file.Open(path, stdin)
		if err != nil {
			tn.Err = err
			return tn, opened
		}
		opened = append(opened, d)
		// A saved route section or connection table is named
		// NODE.SECTION (--save-dumps).
		inputs = append(inputs, ruleset.Input{Name: d.Name, Source: d, Section: ruleset.SectionOf(path)})
	}
	tn.Dataplane, tn.Err = ruleset.Load(inputs...)
	return tn, opened
}

// savedProxyMode reads kube-proxy's answer on /proxyMode as --save-dumps
// kept it (NODE.proxyMode): one of its modes, or a warning.
func savedProxyMode(path string) (string, *trace.Warning) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		var buf [64]byte
		n, _ := io.ReadFull(f, buf[:])
		switch mode := strings.TrimSpace(string(buf[:n])); mode {
		case trace.ModeIPTables, trace.ModeNFTables, trace.ModeIPVS:
			return mode, nil
		}
	}
	return "", &trace.Warning{Code: trace.CodeCollectorWarning, Source: path,
		Message: fmt.Sprintf("%s does not hold kube-proxy's mode (iptables, nftables or ipvs); the mode is taken from the rules", excerpt.Quote(filepath.Base(path)))}
}

// liveNode turns what a collector returned into the node's dataplane: the
// dumps of the backend that holds kube-proxy's rules (every iptables dump
// with data when none was chosen, so that a node without kube-proxy still
// shows which dataplane it has), the node's route sections, its connection
// tables when observing, and what kube-proxy said its mode is.
func liveNode(n *corev1.Node, r nodedump.NodeResult, observe bool) tracer.Node {
	tn := tracer.Node{Node: n}
	if r.Err != nil {
		tn.Err = r.Err
		return tn
	}
	tn.Warnings = r.Result.Warnings
	tn.ProxyMode = r.Result.ProxyMode
	var inputs []ruleset.Input
	for _, name := range r.Result.Chosen {
		if d, ok := r.Result.Dump(name); ok {
			inputs = append(inputs, ruleset.Input{Name: name + " output", Source: d})
		}
	}
	// The node's other rule dumps: the kernel runs every table at each
	// hook, whichever tool wrote it (Docker's iptables-nft FORWARD policy
	// next to kube-proxy's nftables table, a firewalld table next to
	// kube-proxy's iptables rules). They are optional: one that cannot be
	// read leaves the node traced with kube-proxy's backend alone.
	var extras []ruleset.Input
	if len(inputs) > 0 {
		for _, d := range r.Result.Dumps {
			if d.Family != "" && d.ExitCode == 0 && len(bytes.TrimSpace(d.Data)) > 0 && !slices.Contains(r.Result.Chosen, d.Name) {
				extras = append(extras, ruleset.Input{Name: d.Name + " output", Source: d})
			}
		}
	}
	if len(inputs) == 0 {
		for _, d := range r.Result.Dumps {
			// (iptables dumps only: nft list ruleset on a node without
			// kube-proxy's table holds other programs' tables, which the
			// nftables engine need not read.)
			if (d.Family == nodedump.FamilyIPv4 || d.Family == nodedump.FamilyIPv6) && len(bytes.TrimSpace(d.Data)) > 0 {
				inputs = append(inputs, ruleset.Input{Name: d.Name + " output", Source: d})
			}
		}
	}
	for _, d := range r.Result.Dumps {
		if nodedump.IsIPVSSection(d.Name) && d.ExitCode == 0 && len(bytes.TrimSpace(d.Data)) > 0 {
			// The IPVS table and the ipsets go with the rules; they are
			// told by their content.
			inputs = append(inputs, ruleset.Input{Name: d.Name + " output", Source: d})
			continue
		}
		if slices.Contains(nodedump.RouteDumps, d.Name) || observe && nodedump.IsConntrackSection(d.Name) && d.ExitCode == 0 {
			inputs = append(inputs, ruleset.Input{Name: d.Name + " output", Source: d, Section: d.Name})
		}
	}
	if len(inputs) == 0 {
		tn.Err = fmt.Errorf("no kube-proxy rules were found on node %s (in iptables-nft, iptables-legacy or nftables): kube-proxy may not run there, or a replacement such as an eBPF dataplane handles Services", n.Name)
		return tn
	}
	if len(extras) > 0 {
		all := append(slices.Clone(inputs), extras...)
		dp, err := ruleset.Load(all...)
		if err == nil {
			tn.Dataplane = dp
			return tn
		}
		tn.Warnings = append(slices.Clone(tn.Warnings), trace.Warning{Code: trace.CodeCollectorWarning,
			Message: fmt.Sprintf("node %s: the tables outside kube-proxy's backend were left out (%v): their drops and NAT are not part of the trace", n.Name, err)})
	}
	tn.Dataplane, tn.Err = ruleset.Load(inputs...)
	if tn.Err != nil {
		tn.Err = fmt.Errorf("node %s: %w", n.Name, tn.Err)
	}
	return tn
}

// From is one concrete request (--from): an entry kind, or a ClusterIP
// request from a pod (on its node).
type From struct {
	Kind string
	Pod  struct{ Namespace, Name string }
}

func (f From) String() string {
	if f.Pod.Name != "" {
		return "pod/" + f.Pod.Namespace + "/" + f.Pod.Name
	}
	for k, v := range fromKinds {
		if v == f.Kind {
			return k
		}
	}
	return ""
}

// fromKinds maps --from to entry kinds.
var fromKinds = map[string]string{"lb": trace.EntryLoadBalancer, "nodeport": trace.EntryNodePort, "clusterip": trace.EntryClusterIP, "external-ip": trace.EntryExternalIP}

// ParseFrom reads --from: lb, nodeport, clusterip, external-ip, or
// pod/NAMESPACE/NAME.
func ParseFrom(s string) (From, error) {
	var f From
	if s == "" {
		return f, nil
	}
	if k, ok := fromKinds[s]; ok {
		f.Kind = k
		return f, nil
	}
	if rest, ok := strings.CutPrefix(s, "pod/"); ok {
		ns, name, ok := strings.Cut(rest, "/")
		if ok && ns != "" && name != "" && !strings.Contains(name, "/") {
			f.Kind = trace.EntryClusterIP
			f.Pod.Namespace, f.Pod.Name = ns, name
			return f, nil
		}
	}
	return f, fmt.Errorf("--from %q is not one of lb, nodeport, clusterip, external-ip, pod/NAMESPACE/NAME", s)
}
