package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"

	"github.com/awalterschulze/gographviz/ast"

	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// ImageFormats are the formats PathImage renders through Graphviz.
var ImageFormats = []string{"svg", "png"}

// ErrNoGraphviz is returned (wrapped) by PathImage when Graphviz's dot is not
// on PATH.
var ErrNoGraphviz = errors.New("graphviz dot not found")

type noDotError struct{ format string }

func (e noDotError) Error() string {
	return fmt.Sprintf("-o %s needs Graphviz's dot on PATH (apt install graphviz, brew install graphviz); use -o dot to get the source", e.format)
}

func (e noDotError) Is(target error) bool { return target == ErrNoGraphviz }

// PathImage renders the diagram of PathDOT as an image (svg or png) by piping
// it through Graphviz's dot, which must be on PATH.
func PathImage(ctx context.Context, w io.Writer, p *trace.Path, format string) error {
	switch format {
	case "svg", "png":
	default:
		return fmt.Errorf("image format %q is not one of %s", format, strings.Join(ImageFormats, ", "))
	}
	dot, err := exec.LookPath("dot")
	if err != nil {
		return noDotError{format: format}
	}
	var src bytes.Buffer
	if err := PathDOT(&src, p); err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dot, "-T"+format)
	cmd.Stdin = &src
	cmd.Stdout = w
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("dot -T%s: %w: %s", format, err, msg)
		}
		return fmt.Errorf("dot -T%s: %w", format, err)
	}
	return nil
}

// PathDOT writes the path as a Graphviz digraph, left to right: load
// balancer and external IP entries outside the nodes; one cluster per node
// holding its node-port and cluster-IP entries and the chains the packet
// walks; then the pods, in one cluster per pod's node (a pod reached from
// several nodes is drawn once). Edges to pods carry the probability; DROP and
// REJECT are red; drift (a stale rule, or an endpoint missing from a node's
// rules) is dashed. When the node's routes are known, the route it takes
// after DNAT is drawn in its cluster between the DNAT and the pod (local
// veth, tunnel to a node, gateway), red when it drops the packet.
//
// The chains drawn are those walked before the endpoint is chosen: the
// endpoint chains themselves (KUBE-SEP-*, endpoint-*) are folded into the
// edge to the pod, and chains after them (postrouting, masquerade marks) into
// the edge's "masquerade" label. The tree and JSON list every chain.
//
// Output is deterministic: the same Path gives the same bytes.
func PathDOT(w io.Writer, p *trace.Path) error {
	if p == nil {
		return errNoPath
	}
	a, err := pathGraph(p)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, a.String())
	return err
}

// DOT colours.
const (
	dotRed    = "red3"
	dotOrange = "darkorange2"
	dotGreen  = "darkgreen"
	dotGrey   = "gray45"
	dotBlue   = "steelblue4"
)

// dotGraph collects nodes, clusters and edges by raw (unquoted) ID, then
// writes them in sorted order.
type dotGraph struct {
	name     string
	attrs    map[string]string
	clusters map[string]map[string]string // raw ID → attrs
	nodes    map[string]*dotNode
	edges    map[dotEdgeKey]map[string]string
}

type dotNode struct {
	parent string // raw cluster ID; "" for the graph
	attrs  map[string]string
}

type dotEdgeKey struct{ from, to, label string }

func (g *dotGraph) cluster(id string, attrs map[string]string) {
	if _, ok := g.clusters[id]; !ok {
		g.clusters[id] = attrs
	}
}

func (g *dotGraph) node(parent, id string, attrs map[string]string) {
	if _, ok := g.nodes[id]; !ok {
		g.nodes[id] = &dotNode{parent: parent, attrs: attrs}
	}
}

func (g *dotGraph) edge(from, to string, attrs map[string]string) {
	k := dotEdgeKey{from, to, attrs["label"]}
	if _, ok := g.edges[k]; !ok {
		g.edges[k] = attrs
	}
}

// dotQuote makes s one quoted DOT ID: quotes and backslashes escaped,
// newlines as "\n" (a line break in a label), other control characters and
// what is not valid UTF-8 replaced (gographviz's lexer rejects U+FFFD).
func dotQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			// C0, DEL and C1 controls: Graphviz has no use for them,
			// and a terminal shown the DOT text would act on them.
			b.WriteByte(' ')
		case r == 0xFFFD: // also what ranging yields for invalid UTF-8
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteAttrs quotes every value.
func quoteAttrs(attrs map[string]string) map[string]string {
	out := make(map[string]string, len(attrs))
	for k, v := range attrs {
		out[k] = dotQuote(v)
	}
	return out
}

// build turns the collected graph into a DOT syntax tree, every ID and
// value quoted, edges sorted. It lays the tree out as gographviz's
// Graph.WriteAst did (graph attributes, edges, clusters with their
// attributes and nodes, other nodes; names and attributes sorted), so the
// output is byte for byte what it was, without linking gographviz's
// parser: its package init (a parse table and encoding/gob) ran on every
// start of the binary, completions and "simulate" included.
func (g *dotGraph) build() (*ast.Graph, error) {
	root := dotQuote(g.name)
	t := &ast.Graph{Type: ast.DIGRAPH, ID: ast.ID(root)}
	t.StmtList = appendAttrStmts(t.StmtList, quoteAttrs(g.attrs))
	keys := make([]dotEdgeKey, 0, len(g.edges))
	for k := range g.edges {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.from != b.from {
			return a.from < b.from
		}
		if a.to != b.to {
			return a.to < b.to
		}
		return a.label < b.label
	})
	for _, k := range keys {
		for _, end := range []string{k.from, k.to} {
			if _, ok := g.nodes[end]; !ok {
				return nil, fmt.Errorf("edge %q -> %q: no node %q", k.from, k.to, end)
			}
		}
		t.StmtList = append(t.StmtList, &ast.EdgeStmt{
			Source:  ast.MakeNodeID(dotQuote(k.from), ""),
			EdgeRHS: ast.EdgeRHS{&ast.EdgeRH{Op: ast.DIRECTED, Destination: ast.MakeNodeID(dotQuote(k.to), "")}},
			Attrs:   ast.PutMap(quoteAttrs(g.edges[k])),
		})
	}
	nodeStmt := func(id string) *ast.NodeStmt {
		return &ast.NodeStmt{NodeID: ast.MakeNodeID(dotQuote(id), ""), Attrs: ast.PutMap(quoteAttrs(g.nodes[id].attrs))}
	}
	byQuoted := func(ids []string) []string {
		slices.SortFunc(ids, func(a, b string) int { return strings.Compare(dotQuote(a), dotQuote(b)) })
		return ids
	}
	children := map[string][]string{}
	for id, n := range g.nodes {
		if _, ok := g.clusters[n.parent]; ok && n.parent != "" {
			children[n.parent] = append(children[n.parent], id)
		}
	}
	for _, id := range byQuoted(slices.Collect(maps.Keys(g.clusters))) {
		sub := &ast.SubGraph{ID: ast.ID(dotQuote(id))}
		sub.StmtList = appendAttrStmts(sub.StmtList, quoteAttrs(g.clusters[id]))
		for _, child := range byQuoted(children[id]) {
			sub.StmtList = append(sub.StmtList, nodeStmt(child))
		}
		t.StmtList = append(t.StmtList, sub)
	}
	var top []string
	for id, n := range g.nodes {
		if _, ok := g.clusters[n.parent]; !ok || n.parent == "" {
			top = append(top, id)
		}
	}
	for _, id := range byQuoted(top) {
		t.StmtList = append(t.StmtList, nodeStmt(id))
	}
	return t, nil
}

// appendAttrStmts appends "name=value" statements, sorted by name.
func appendAttrStmts(list ast.StmtList, attrs map[string]string) ast.StmtList {
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		list = append(list, &ast.Attr{Field: ast.ID(name), Value: ast.ID(attrs[name])})
	}
	return list
}

func pathGraph(p *trace.Path) (*ast.Graph, error) {
	s := p.Service
	g := &dotGraph{
		name:     "trace-svc " + s.Namespace + "/" + s.Name,
		clusters: map[string]map[string]string{},
		nodes:    map[string]*dotNode{},
		edges:    map[dotEdgeKey]map[string]string{},
	}
	title := "Service " + s.Namespace + "/" + s.Name
	if s.Type != "" {
		title += " (" + s.Type + ")"
	}
	var ports []string
	for _, sp := range s.Ports {
		pt := fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)
		if sp.Name != "" {
			pt = sp.Name + " " + pt
		}
		ports = append(ports, pt)
	}
	if len(ports) > 0 {
		title += "\n" + strings.Join(ports, ", ")
	}
	if s.ExternalTrafficPolicy != "" {
		title += "\nexternalTrafficPolicy " + s.ExternalTrafficPolicy
	}
	g.attrs = map[string]string{
		"label":    title,
		"labelloc": "t",
		"rankdir":  "LR",
		"fontname": "Helvetica",
		"newrank":  "true",
		"nodesep":  "0.3",
	}

	nodes := append([]trace.NodePaths(nil), p.Nodes...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		clusterID := "cluster node " + n.Name
		mode := n.ProxyMode
		if mode == "" {
			mode = "unknown"
		}
		label := n.Name + "\n" + mode + " mode"
		replaced := n.ServiceDataplane != nil && n.ServiceDataplane.ReplacesKubeProxy
		if replaced {
			label = n.Name + "\n" + n.ServiceDataplane.Name
		}
		if names := pluginNames(n.NetworkPlugins); len(names) > 0 {
			label += "\n" + strings.Join(names, ", ")
		}
		attrs := map[string]string{
			"label":    label,
			"style":    "rounded",
			"color":    dotGrey,
			"fontname": "Helvetica",
		}
		if n.Error != "" {
			attrs["color"] = dotRed
			attrs["fontcolor"] = dotRed
		}
		g.cluster(clusterID, attrs)
		if n.Error != "" {
			g.node(clusterID, "node "+n.Name+" error", map[string]string{
				"label":     "error:\n" + wrapLabel(n.Error, 40),
				"shape":     "note",
				"color":     dotRed,
				"fontcolor": dotRed,
				"fontname":  "Helvetica",
			})
			continue
		}
		if replaced {
			g.node(clusterID, "node "+n.Name+" service dataplane", map[string]string{
				"label":     wrapLabel("no kube-proxy rules: "+n.ServiceDataplane.Name+" serves Services in eBPF", 30),
				"shape":     "note",
				"color":     dotOrange,
				"fontcolor": dotOrange,
				"fontname":  "Helvetica",
			})
		} else if len(n.Paths) == 0 {
			g.node(clusterID, "node "+n.Name+" empty", map[string]string{
				"label":     "no entry traced",
				"shape":     "plaintext",
				"fontcolor": dotGrey,
				"fontname":  "Helvetica",
			})
		}
		if n.Why != "" {
			// The reason every entry of the node shares, said once.
			g.node(clusterID, "node "+n.Name+" why", map[string]string{
				"label": wrapLabel(n.Why, 40), "shape": "note", "color": dotOrange, "fontcolor": dotOrange, "fontname": "Helvetica", "fontsize": "10",
			})
		}
		for _, ep := range n.Paths {
			addEntryPath(g, n, clusterID, ep)
		}
		// The node's warnings and errors, as a note in its cluster.
		if text := findingsNote(p.Findings, n.Name); text != "" {
			g.node(clusterID, "node "+n.Name+" findings", map[string]string{
				"label": text, "shape": "note", "color": dotRed, "fontcolor": dotRed, "fontname": "Helvetica", "fontsize": "10",
			})
		}
	}
	// Findings about the Service as a whole, as a note outside the nodes.
	if text := findingsNote(p.Findings, ""); text != "" {
		g.node("", "service findings", map[string]string{
			"label": text, "shape": "note", "color": dotRed, "fontcolor": dotRed, "fontname": "Helvetica", "fontsize": "10",
		})
	}
	return g.build()
}

// findingsNote lists the warnings and errors for node ("" for those about
// no node in particular), one per line, or "" when there are none.
func findingsNote(findings []trace.Finding, node string) string {
	var lines []string
	for _, f := range findings {
		if f.Node != node || f.Severity == trace.SeverityInfo {
			continue
		}
		lines = append(lines, string(f.Severity)+" "+string(f.Code)+":\n"+wrapLabel(f.Message, 48))
	}
	return strings.Join(lines, "\n\n")
}

// addEntryPath draws one entry on one node: entry → chains → pods or verdict.
func addEntryPath(g *dotGraph, n trace.NodePaths, clusterID string, ep trace.EntryPath) {
	node := n.Name
	e := ep.Entry
	entryLabel := e.Kind + "\n" + entryAddr(e)
	if e.ServicePort != "" {
		entryLabel += " (" + e.ServicePort + ")"
	}
	from := strings.TrimSpace(e.From)
	if e.Source.IsValid() {
		from = strings.TrimSpace(from + " " + e.Source.String())
	}
	if from != "" {
		entryLabel += "\nfrom " + from
	}
	entryAttrs := map[string]string{
		"label":    entryLabel,
		"shape":    "box",
		"style":    "rounded,bold",
		"color":    dotBlue,
		"fontname": "Helvetica",
	}
	var entryID string
	switch e.Kind {
	case trace.EntryLoadBalancer, trace.EntryExternalIP:
		// Outside the nodes: the same address reaches every node.
		entryID = "entry " + e.Kind + " " + entryAddr(e) + " from " + from
		entryAttrs["shape"] = "cds"
		entryAttrs["style"] = "bold"
		g.node("", entryID, entryAttrs)
	default:
		entryID = "node " + node + " entry " + e.Kind + " " + entryAddr(e) + " from " + from
		g.node(clusterID, entryID, entryAttrs)
	}

	chains := drawnChains(ep, n.ChainInfo)
	prev := entryID
	for _, c := range chains {
		id := "node " + node + " chain " + c
		label := c
		if ep.IPVS != nil && strings.HasPrefix(c, ipvsChainPrefix) {
			// The virtual server: its scheduler and real servers.
			label = c + "\n" + wrapLabel(ipvsText(ep.IPVS), 40)
		}
		g.node(clusterID, id, map[string]string{
			"label":    label,
			"shape":    "box",
			"fontname": "Courier",
			"fontsize": "10",
		})
		g.edge(prev, id, map[string]string{})
		prev = id
	}

	switch ep.Verdict {
	case trace.VerdictDNAT:
		for _, pe := range ep.Endpoints {
			addEndpoint(g, node, clusterID, prev, pe, ep.Observed)
		}
		if len(ep.Endpoints) == 0 {
			addVerdict(g, node, clusterID, prev, ep)
		}
	default:
		// Endpoints the API lists still show, dashed, so a DROP for "no local
		// endpoints" shows where the pods are.
		for _, pe := range ep.Endpoints {
			if !pe.InRules {
				addEndpoint(g, node, clusterID, prev, pe, ep.Observed)
			}
		}
		addVerdict(g, node, clusterID, prev, ep)
	}
}

// ipvsChainPrefix starts the name an IPVS virtual server is recorded under
// among a path's chains (trace/ruleset's IPVS engine).
const ipvsChainPrefix = "IPVS "

// drawnChains are the chains walked up to the choice of endpoint: endpoint
// chains and mark/postrouting helpers left out (as the node's engine
// classified them); for a DROP or REJECT, up to the chain whose rule decided
// it.
func drawnChains(ep trace.EntryPath, info map[string]trace.ChainInfo) []string {
	var out []string
	for _, c := range ep.Chains {
		kind := info[c].Kind
		if kind == trace.ChainEndpoint {
			break
		}
		if kind.Helper() {
			continue
		}
		out = append(out, c)
		if ep.IPVS != nil && strings.HasPrefix(c, ipvsChainPrefix) {
			// IPVS chose the endpoint: what follows only sends it on.
			break
		}
		if ep.DecidedBy != nil && ep.DecidedBy.Chain == c &&
			(ep.Verdict == trace.VerdictDrop || ep.Verdict == trace.VerdictReject) {
			break
		}
	}
	return out
}

// addEndpoint draws the way from the last chain to an endpoint: the DNAT's
// share (and masquerade) on the edge, then, when the node's routes are
// known, the route the node takes after DNAT as a hop of the node's own
// (red, with a dotted edge ending in a bar, when the route drops the
// packet).
func addEndpoint(g *dotGraph, node, clusterID, from string, pe trace.PathEndpoint, po *trace.PathObserved) {
	pod := podNode(g, pe)
	attrs := map[string]string{"fontname": "Helvetica", "fontsize": "10"}
	switch {
	case pe.InRules && !pe.InAPI:
		attrs["label"] = Percent(pe.Probability) + "\nstale rule"
		attrs["style"] = "dashed"
		attrs["color"] = dotRed
		attrs["fontcolor"] = dotRed
	case !pe.InRules:
		attrs["label"] = "missing from\nthis node's rules"
		attrs["style"] = "dashed"
		attrs["color"] = dotOrange
		attrs["fontcolor"] = dotOrange
	default:
		attrs["label"] = Percent(pe.Probability)
		if pe.Masquerade {
			attrs["label"] += "\nmasquerade"
		}
	}
	if parts := ObservedParts(pe, po); len(parts) > 0 {
		// The prediction is the edge's first line; what the kernel saw
		// follows it.
		if pe.InRules && pe.Observed.Connections != nil {
			parts = parts[1:]
		}
		attrs["label"] += "\n" + strings.Join(parts, "\n")
	}
	r := pe.Route
	if r == nil || !pe.InRules {
		g.edge(from, pod, attrs)
		return
	}
	hop := "node " + node + " route " + netip.AddrPortFrom(pe.IP, pe.Port).String() + " " + r.Line()
	hopAttrs := map[string]string{
		"label":    wrapLabel(r.Line(), 24),
		"shape":    "cds",
		"fontname": "Helvetica",
		"fontsize": "10",
		"color":    dotGrey,
	}
	switch {
	case r.Verdict.Dropped():
		hopAttrs["shape"] = "octagon"
		hopAttrs["color"], hopAttrs["fontcolor"] = dotRed, dotRed
	case pe.SameNode && r.Leaves != nil && *r.Leaves:
		hopAttrs["color"], hopAttrs["fontcolor"] = dotOrange, dotOrange
	}
	g.node(clusterID, hop, hopAttrs)
	g.edge(from, hop, attrs)
	if r.Verdict.Dropped() {
		// The pod the DNAT chose, which the packet never reaches.
		g.edge(hop, pod, map[string]string{"color": dotRed, "style": "dotted", "arrowhead": "tee"})
		return
	}
	g.edge(hop, pod, map[string]string{"color": dotGrey})
}

// podNode adds (once) the node for an endpoint: the pod when known, in the
// cluster of the pod's node; otherwise the bare address.
func podNode(g *dotGraph, pe trace.PathEndpoint) string {
	var id, parent string
	addr := netip.AddrPortFrom(pe.IP, pe.Port).String()
	attrs := map[string]string{
		"shape":    "box",
		"style":    "rounded",
		"fontname": "Helvetica",
	}
	var state string
	switch {
	case !pe.InAPI:
		state = "stale rule, not in API"
		attrs["color"] = dotRed
		attrs["fontcolor"] = dotRed
		attrs["style"] = "rounded,dashed"
	case pe.Terminating:
		state = "terminating"
		if pe.Serving {
			state += ", serving"
		}
		attrs["color"] = dotGrey
		attrs["style"] = "rounded,dashed"
	case pe.Ready:
		state = "ready"
		attrs["color"] = dotGreen
	case pe.Serving:
		state = "not ready, serving"
		attrs["color"] = dotOrange
	default:
		state = "not ready"
		attrs["color"] = dotOrange
	}
	if pe.Pod != nil {
		id = "pod " + pe.Pod.Namespace + "/" + pe.Pod.Name + " " + addr
		attrs["label"] = pe.Pod.Namespace + "/" + pe.Pod.Name + "\n" + addr + "\n" + state
		if pe.Pod.Node != "" {
			parent = "cluster pods " + pe.Pod.Node
			g.cluster(parent, map[string]string{
				"label":    "pods on " + pe.Pod.Node,
				"style":    "dashed",
				"color":    dotGrey,
				"fontname": "Helvetica",
			})
		}
	} else {
		id = "endpoint " + addr
		attrs["label"] = addr + "\n" + state
	}
	g.node(parent, id, attrs)
	return id
}

func addVerdict(g *dotGraph, node, clusterID, from string, ep trace.EntryPath) {
	label := string(ep.Verdict)
	if ep.Why != "" {
		label += "\n" + wrapLabel(ep.Why, 30)
	}
	attrs := map[string]string{"label": label, "fontname": "Helvetica"}
	edge := map[string]string{}
	switch ep.Verdict {
	case trace.VerdictDrop, trace.VerdictReject:
		attrs["shape"] = "octagon"
		attrs["color"] = dotRed
		attrs["fontcolor"] = dotRed
		attrs["style"] = "bold"
		edge["color"] = dotRed
		edge["penwidth"] = "2"
	case trace.VerdictAccept:
		attrs["shape"] = "ellipse"
		attrs["color"] = dotGreen
	default:
		if ep.Verdict == trace.VerdictNone {
			attrs["label"] = "NONE: not captured\n(normal routing)"
			if ep.Why != "" {
				attrs["label"] += "\n" + wrapLabel(ep.Why, 30)
			}
		}
		attrs["shape"] = "ellipse"
		attrs["color"] = dotGrey
		attrs["fontcolor"] = dotGrey
		edge["color"] = dotGrey
	}
	if po := ep.Observed; po != nil && po.Connections > 0 && (ep.Verdict == trace.VerdictDrop || ep.Verdict == trace.VerdictReject) {
		edge["label"] = fmt.Sprintf("%d %s observed", po.Connections, plural(po.Connections, "connection", "connections"))
		edge["fontcolor"] = dotRed
		edge["fontname"] = "Helvetica"
		edge["fontsize"] = "10"
	}
	id := "node " + node + " verdict " + string(ep.Verdict) + " " + ep.Why
	g.node(clusterID, id, attrs)
	g.edge(from, id, edge)
}

// wrapLabel breaks s into lines of about width characters at spaces.
func wrapLabel(s string, width int) string {
	var lines []string
	var line string
	for _, f := range strings.Fields(s) {
		if line != "" && len(line)+1+len(f) > width {
			lines = append(lines, line)
			line = f
			continue
		}
		if line != "" {
			line += " "
		}
		line += f
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
