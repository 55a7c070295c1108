package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/tree"
	"sigs.k8s.io/yaml"

	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// errNoPath is returned by every Path renderer handed a nil Path.
var errNoPath = errors.New("no path to render")

// PathJSON writes the path as indented JSON with schemaVersion set to
// trace.PathSchemaVersion. Lists the model declares are written as [] rather
// than null, so readers need not tell "none" from "absent". p is not changed.
func PathJSON(w io.Writer, p *trace.Path) error {
	if p == nil {
		return errNoPath
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // rule text holds "->" and "<"; this is not HTML
	return enc.Encode(pathDoc(p))
}

// PathYAML writes the same document as PathJSON, as YAML.
func PathYAML(w io.Writer, p *trace.Path) error {
	if p == nil {
		return errNoPath
	}
	b, err := yaml.Marshal(pathDoc(p))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// pathDoc returns a copy of p ready to be written: the schema version set and
// nil lists replaced by empty ones (the slices' elements are shared with p
// only where nothing in them changes).
func pathDoc(p *trace.Path) *trace.Path {
	d := *p
	d.SchemaVersion = trace.PathSchemaVersion
	d.Service.Ports = orEmpty(d.Service.Ports)
	d.Findings = orEmpty(d.Findings)
	d.Endpoints = orEmpty(d.Endpoints)
	d.Nodes = make([]trace.NodePaths, len(p.Nodes))
	for i, n := range p.Nodes {
		n.Addresses = orEmpty(n.Addresses)
		n.Paths = make([]trace.EntryPath, len(p.Nodes[i].Paths))
		for j, ep := range p.Nodes[i].Paths {
			ep.Chains = orEmpty(ep.Chains)
			ep.Endpoints = orEmpty(ep.Endpoints)
			ep.Rules = orEmpty(ep.Rules)
			n.Paths[j] = ep
		}
		d.Nodes[i] = n
	}
	return &d
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// PathTreeOptions tunes PathTree.
type PathTreeOptions struct {
	// Wide prints chain names in full and never shortens a word to fit the
	// width; lines may then be longer than 80 columns.
	Wide bool
}

// treeWidth is the width the tree is laid out for, unless Wide.
const treeWidth = 80

// indentStep is the width one tree level adds ("├── ", "│   ").
const indentStep = 4

// PathTree writes the path for people: the Service, then one subtree per node
// with each entry's verdict, chains and endpoints, then the findings. Lines
// fit 80 columns unless opts.Wide.
func PathTree(w io.Writer, r *lipgloss.Renderer, p *trace.Path, opts PathTreeOptions) error {
	if p == nil {
		return errNoPath
	}
	p = termsafe.Copy(p) // node-made text must not drive the terminal
	v := &pathView{pal: newPalette(r), r: r, wide: opts.Wide}
	var b strings.Builder
	v.service(&b, p)
	for _, n := range p.Nodes {
		b.WriteString("\n")
		b.WriteString(v.node(n).String())
		b.WriteString("\n")
	}
	b.WriteString("\n")
	b.WriteString(v.findings(p.Findings))
	_, err := io.WriteString(w, trimLines(b.String()))
	return err
}

// trimLines drops the spaces lipgloss pads multi-line tree items with.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

type pathView struct {
	pal  palette
	r    *lipgloss.Renderer
	wide bool
	// chains describes the chains of the node being drawn.
	chains map[string]trace.ChainInfo
}

// newTree returns a subtree whose branches are drawn dim with the view's
// renderer (the package default would look at os.Stdout).
func (v *pathView) newTree(root string) *tree.Tree {
	return tree.Root(root).
		RootStyle(v.r.NewStyle()).
		ItemStyle(v.r.NewStyle()).
		EnumeratorStyle(v.pal.dim.PaddingRight(1))
}

// --- text that wraps --------------------------------------------------------

// words is a run of styled text laid out by wrap: it breaks between words,
// never inside one (a word too long for the line is shortened with "…"
// unless the view is wide).
type words struct {
	items []word
}

type word struct {
	text  string
	style *lipgloss.Style // nil: plain
	// glue: no space before this word (it continues the previous one).
	glue bool
}

// add appends text split at spaces, in style st (nil for plain).
func (ws *words) add(st *lipgloss.Style, text string) *words {
	for _, f := range strings.Fields(text) {
		ws.items = append(ws.items, word{text: f, style: st})
	}
	return ws
}

// keep appends text as one unbreakable word (it may hold spaces).
func (ws *words) keep(st *lipgloss.Style, text string) *words {
	if text != "" {
		ws.items = append(ws.items, word{text: text, style: st})
	}
	return ws
}

// glue appends text to the previous word, with no space and no break.
func (ws *words) glue(st *lipgloss.Style, text string) *words {
	if text != "" {
		ws.items = append(ws.items, word{text: text, style: st, glue: len(ws.items) > 0})
	}
	return ws
}

// wrap lays the words out in lines of at most width runes; lines after the
// first start with indent spaces.
func (v *pathView) wrap(ws *words, width, indent int) string {
	// Join glued words into unbreakable groups first.
	type group struct {
		parts []word
		n     int
	}
	var groups []group
	for _, w := range ws.items {
		if w.glue && len(groups) > 0 {
			g := &groups[len(groups)-1]
			g.parts = append(g.parts, w)
			g.n += utf8.RuneCountInString(w.text)
			continue
		}
		groups = append(groups, group{parts: []word{w}, n: utf8.RuneCountInString(w.text)})
	}
	var lines []string
	var line strings.Builder
	col := 0
	var pending *lipgloss.Style // style of the open run on the line
	var run strings.Builder
	flush := func() {
		if run.Len() == 0 {
			return
		}
		if pending != nil {
			line.WriteString(pending.Render(run.String()))
		} else {
			line.WriteString(run.String())
		}
		run.Reset()
	}
	emit := func(st *lipgloss.Style, s string) {
		if st != pending {
			flush()
			pending = st
		}
		run.WriteString(s)
	}
	newLine := func() {
		flush()
		lines = append(lines, line.String())
		line.Reset()
		pending = nil
		line.WriteString(strings.Repeat(" ", indent))
		col = indent
	}
	for gi, g := range groups {
		avail := width - col
		if gi > 0 {
			avail-- // the space before it
		}
		if gi > 0 && g.n > avail && col > indent {
			newLine()
			avail = width - col
		} else if gi > 0 {
			emit(pending, " ") // the space takes the previous style: no break in a run
			col++
		}
		parts := g.parts
		if g.n > avail && !v.wide {
			parts = shortenGroup(parts, max(avail, 1))
		}
		for _, p := range parts {
			emit(p.style, p.text)
			col += utf8.RuneCountInString(p.text)
		}
	}
	flush()
	lines = append(lines, line.String())
	return strings.Join(lines, "\n")
}

// shortenGroup cuts a group of words to n runes, ending in "…".
func shortenGroup(parts []word, n int) []word {
	var out []word
	left := n - 1
	for _, p := range parts {
		c := utf8.RuneCountInString(p.text)
		if c <= left {
			out = append(out, p)
			left -= c
			continue
		}
		r := []rune(p.text)
		out = append(out, word{text: string(r[:left]) + "…", style: p.style})
		return out
	}
	return out
}

// --- the Service -------------------------------------------------------------

// labelWidth is the width of the header's label column.
const labelWidth = 17

func (v *pathView) service(b *strings.Builder, p *trace.Path) {
	s := p.Service
	pal := v.pal
	head := (&words{}).add(&pal.bold, "Service").keep(&pal.accent, s.Namespace+"/"+s.Name)
	if s.Type != "" {
		head.add(&pal.dim, "·").add(nil, s.Type)
	}
	b.WriteString(v.wrap(head, treeWidth, 2) + "\n")

	field := func(label string, ws *words) {
		line := (&words{}).keep(nil, "  "+label+strings.Repeat(" ", max(labelWidth-2-len(label)-1, 0)))
		line.items = append(line.items, ws.items...)
		b.WriteString(v.wrap(line, treeWidth, labelWidth) + "\n")
	}
	list := func(items []string) *words {
		ws := &words{}
		for i, it := range items {
			if i < len(items)-1 {
				it += ","
			}
			ws.keep(nil, it)
		}
		return ws
	}
	switch {
	case s.Headless:
		field("cluster IP", (&words{}).add(nil, "None (headless: DNS names the pods; kube-proxy installs no rules)"))
	case len(s.ClusterIPs) > 0:
		label := "cluster IP"
		if len(s.ClusterIPs) > 1 {
			label = "cluster IPs"
		}
		field(label, list(addrStrings(s.ClusterIPs)))
	}
	if len(s.ExternalIPs) > 0 {
		field("external IPs", list(addrStrings(s.ExternalIPs)))
	}
	if len(s.LoadBalancerIngress) > 0 {
		var items []string
		for _, in := range s.LoadBalancerIngress {
			var parts []string
			if in.IP.IsValid() {
				parts = append(parts, in.IP.String())
			}
			if in.Hostname != "" {
				parts = append(parts, in.Hostname)
			}
			it := strings.Join(parts, " ")
			if in.IPMode != "" {
				it += " (" + in.IPMode + ")"
			}
			items = append(items, it)
		}
		field("load balancer", list(items))
	}
	if len(s.LoadBalancerSourceRanges) > 0 {
		field("source ranges", list(s.LoadBalancerSourceRanges))
	}
	if s.Type == "LoadBalancer" && len(s.LoadBalancerIngress) == 0 {
		field("load balancer", (&words{}).add(&pal.warn, "no ingress yet (status.loadBalancer is empty)"))
	}
	for i, sp := range s.Ports {
		label := ""
		if i == 0 {
			label = "ports"
		}
		ws := &words{}
		if sp.Name != "" {
			ws.keep(&pal.accent, sp.Name)
		}
		ws.keep(nil, fmt.Sprintf("%d/%s", sp.Port, sp.Protocol))
		if sp.TargetPort != "" {
			ws.add(nil, "→ "+sp.TargetPort)
		}
		if sp.NodePort != 0 {
			ws.glue(nil, ",").add(&pal.dim, "node port").keep(nil, strconv.Itoa(int(sp.NodePort)))
		}
		field(label, ws)
	}
	if len(s.Ports) == 0 {
		field("ports", (&words{}).add(&pal.warn, "none"))
	}
	var policies []string
	if s.ExternalTrafficPolicy != "" {
		pol := "externalTrafficPolicy " + s.ExternalTrafficPolicy
		if s.HealthCheckNodePort != 0 {
			pol += fmt.Sprintf(" (health check node port %d)", s.HealthCheckNodePort)
		}
		policies = append(policies, pol)
	}
	if s.InternalTrafficPolicy != "" {
		policies = append(policies, "internalTrafficPolicy "+s.InternalTrafficPolicy)
	}
	if s.SessionAffinity != "" && s.SessionAffinity != "None" {
		policies = append(policies, "sessionAffinity "+s.SessionAffinity)
	}
	if len(policies) > 0 {
		ws := &words{}
		for i, pol := range policies {
			if i < len(policies)-1 {
				pol += ","
			}
			ws.add(nil, pol)
		}
		field("policies", ws)
	}
	field("endpoints", v.endpointSummary(p.Endpoints))
}

// endpointSummary counts the API's endpoints once per pod (a Service with
// two ports, or two IP families, lists each pod twice).
func (v *pathView) endpointSummary(eps []trace.APIEndpoint) *words {
	pal := v.pal
	seen := map[string]bool{}
	var total, ready, notReady, terminating int
	for _, e := range eps {
		key := e.IP.String()
		if e.Pod != nil {
			key = e.Pod.Namespace + "/" + e.Pod.Name
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		total++
		switch {
		case e.Terminating:
			terminating++
		case e.Ready:
			ready++
		default:
			notReady++
		}
	}
	ws := &words{}
	if total == 0 {
		return ws.add(&pal.bad, "none in the API (no EndpointSlice lists a pod)")
	}
	ws.add(nil, fmt.Sprintf("%d in the API:", total))
	var parts []*words
	if ready > 0 {
		parts = append(parts, (&words{}).add(&pal.good, fmt.Sprintf("%d ready", ready)))
	}
	if notReady > 0 {
		parts = append(parts, (&words{}).add(&pal.warn, fmt.Sprintf("%d not ready", notReady)))
	}
	if terminating > 0 {
		parts = append(parts, (&words{}).add(&pal.warn, fmt.Sprintf("%d terminating", terminating)))
	}
	for i, part := range parts {
		ws.items = append(ws.items, part.items...)
		if i < len(parts)-1 {
			ws.glue(nil, ",")
		}
	}
	return ws
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// --- nodes -------------------------------------------------------------------

func (v *pathView) node(n trace.NodePaths) *tree.Tree {
	pal := v.pal
	head := (&words{}).keep(&pal.bold, n.Name)
	mode := n.ProxyMode
	if mode == "" {
		mode = "unknown"
	}
	replaced := n.ServiceDataplane != nil && n.ServiceDataplane.ReplacesKubeProxy
	if replaced {
		head.add(&pal.dim, "·").add(&pal.warn, n.ServiceDataplane.Name)
	} else {
		head.add(&pal.dim, "·").add(nil, mode+" mode")
	}
	if f := n.RulesetFormat; f != "" && !replaced && f != n.ProxyMode && !(n.ProxyMode == "nftables" && f == trace.FormatNFT) {
		head.add(&pal.dim, "("+f+" dump)")
	}
	if len(n.Addresses) > 0 {
		head.add(&pal.dim, "·")
		for i, a := range n.Addresses {
			s := a.String()
			if i < len(n.Addresses)-1 {
				s += ","
			}
			head.keep(&pal.dim, s)
		}
	}
	if names := pluginNames(n.NetworkPlugins); len(names) > 0 {
		head.add(&pal.dim, "·")
		for i, name := range names {
			if i < len(names)-1 {
				name += ","
			}
			head.keep(&pal.accent, name)
		}
	}
	t := v.newTree(v.wrap(head, treeWidth, 2))
	v.chains = n.ChainInfo
	if n.Error != "" {
		msg := (&words{}).add(&pal.bad, "error:").add(&pal.bad, n.Error)
		t.Child(v.wrap(msg, treeWidth-indentStep, 0))
		return t
	}
	if replaced {
		msg := (&words{}).add(&pal.dim, "kube-proxy's rules are absent: "+n.ServiceDataplane.Name+" serves this node's Services in eBPF (finding KubeProxyReplaced says what to use)")
		t.Child(v.wrap(msg, treeWidth-indentStep, 0))
		return t
	}
	if len(n.Paths) == 0 {
		t.Child(v.wrap((&words{}).add(&pal.dim, "no entry to this Service was traced on this node"), treeWidth-indentStep, 0))
	}
	// What holds for every entry of the node is said once: the reason
	// first, the assumptions after the entries.
	if n.Why != "" {
		t.Child(v.wrap((&words{}).add(&pal.warn, n.Why), treeWidth-indentStep, 2))
	}
	for _, ep := range n.Paths {
		t.Child(v.entry(ep))
	}
	for _, note := range n.Notes {
		t.Child(v.wrap((&words{}).add(&pal.dim, "note:").add(&pal.dim, note), treeWidth-indentStep, 2))
	}
	return t
}

func (v *pathView) entry(ep trace.EntryPath) *tree.Tree {
	pal := v.pal
	e := ep.Entry
	head := (&words{}).keep(&pal.bold, e.Kind).keep(nil, entryAddr(e))
	if e.ServicePort != "" {
		head.keep(&pal.accent, "("+e.ServicePort+")")
	}
	if e.From != "" || e.Source.IsValid() {
		head.add(&pal.dim, "from")
		if e.From != "" {
			head.add(&pal.dim, e.From)
		}
		if e.Source.IsValid() {
			head.keep(nil, e.Source.String())
		}
	}
	t := v.newTree(v.wrap(head, treeWidth-indentStep, 2))
	const width = treeWidth - 2*indentStep

	t.Child(v.wrap(v.verdict(ep), width, 2))
	if ep.DecidedBy != nil {
		r := ep.DecidedBy
		where := r.Table
		if r.Line > 0 {
			where += fmt.Sprintf(", line %d", r.Line)
		}
		ws := (&words{}).add(&pal.dim, "by").keep(&pal.accent, v.chainName(r.Chain))
		if where != "" {
			ws.add(&pal.dim, "("+where+"):")
		} else {
			ws.glue(&pal.dim, ":")
		}
		ws.add(nil, r.Rule)
		if r.Foreign {
			// The decision came from a table kube-proxy did not write.
			foreign := "— not kube-proxy's"
			if r.Backend != "" {
				foreign += " (" + r.Backend + ")"
			}
			ws.add(&pal.warn, foreign)
		}
		t.Child(v.wrap(ws, width, 2))
	}
	if len(ep.Chains) > 0 {
		ws := (&words{}).add(&pal.dim, "chains")
		for i, c := range ep.Chains {
			if i > 0 {
				ws.keep(&pal.dim, "→")
				ws.glue(nil, " ")
				ws.glue(&pal.accent, v.chainName(c))
			} else {
				ws.keep(&pal.accent, v.chainName(c))
			}
		}
		t.Child(v.wrap(ws, width, 2))
	}
	if ep.IPVS != nil {
		t.Child(v.wrap((&words{}).add(&pal.dim, "ipvs").add(&pal.accent, ep.IPVS.VirtualServer).add(&pal.dim, ipvsText(ep.IPVS)), width, 2))
	}
	pw := 0
	for _, pe := range ep.Endpoints {
		pw = max(pw, utf8.RuneCountInString(endpointShare(pe)))
	}
	someMasq, allMasq := false, true
	for _, pe := range ep.EndpointsInRules() {
		someMasq = someMasq || pe.Masquerade
		allMasq = allMasq && pe.Masquerade
	}
	for _, pe := range ep.Endpoints {
		t.Child(v.endpoint(pe, ep.Observed, pw, width, someMasq && !allMasq))
	}
	if ws := v.pathObserved(ep); ws != nil {
		t.Child(v.wrap(ws, width, 2))
	}
	for _, a := range ep.Affinity {
		t.Child(v.wrap((&words{}).add(&pal.dim, "affinity:").add(&pal.dim, affinityText(a)), width, 2))
	}
	for _, note := range ep.Notes {
		t.Child(v.wrap((&words{}).add(&pal.dim, "note:").add(&pal.dim, note), width, 2))
	}
	return t
}

// maxIPVSReals bounds the real servers an IPVS line lists.
const maxIPVSReals = 8

// ipvsText describes a virtual server: its scheduler, persistence and real
// servers with their weights (weight 0 takes no new connections).
func ipvsText(h *trace.IPVSHop) string {
	parts := []string{"scheduler " + h.Scheduler}
	if h.Persistent {
		if h.PersistenceSeconds > 0 {
			parts = append(parts, fmt.Sprintf("persistent %ds", h.PersistenceSeconds))
		} else {
			parts = append(parts, "persistent")
		}
	}
	var reals []string
	for i, r := range h.RealServers {
		if i == maxIPVSReals {
			reals = append(reals, fmt.Sprintf("… %d more", len(h.RealServers)-maxIPVSReals))
			break
		}
		reals = append(reals, fmt.Sprintf("%s weight %d", netip.AddrPortFrom(r.IP, r.Port), r.Weight))
	}
	if len(reals) == 0 {
		reals = []string{"none"}
	}
	return strings.Join(parts, " · ") + " · real servers " + strings.Join(reals, ", ")
}

// affinityText says what a session-affinity check means for this request.
func affinityText(a trace.AffinityRule) string {
	to := a.Endpoint
	if to == "" {
		to = "its endpoint"
	}
	if a.Hit {
		return fmt.Sprintf("this client is pinned to %s (ClientIP session affinity)", to)
	}
	s := "ClientIP session affinity: a new client is balanced as shown"
	if a.Seconds > 0 {
		return s + fmt.Sprintf("; its next connections within %ds go to the same endpoint (%s for one that landed there)", a.Seconds, to)
	}
	return s + fmt.Sprintf("; its next connections go to the same endpoint (%s for one that landed there)", to)
}

// entryAddr formats an entry as address:port/protocol.
func entryAddr(e trace.Entry) string {
	s := netip.AddrPortFrom(e.Address, e.Port).String()
	if !e.Address.IsValid() {
		s = ":" + strconv.Itoa(int(e.Port))
	}
	if e.Protocol != "" {
		s += "/" + e.Protocol
	}
	return s
}

func (v *pathView) verdict(ep trace.EntryPath) *words {
	pal := v.pal
	st := verdictStyle(pal, ep.Verdict)
	ws := (&words{}).keep(&st, string(ep.Verdict))
	switch ep.Verdict {
	case trace.VerdictDNAT:
		n := len(ep.EndpointsInRules())
		ws.add(nil, fmt.Sprintf("to %d %s", n, plural(n, "endpoint", "endpoints")))
		ws.glue(nil, ",")
		switch {
		case ep.Masquerade:
			ws.add(&pal.warn, "masquerade").add(&pal.dim, "(source NAT to the node's address)")
		default:
			ws.add(&pal.dim, "no masquerade (the pod sees the client's address)")
		}
	case trace.VerdictDrop, trace.VerdictReject:
		if ep.Why != "" {
			ws.glue(&st, ":").add(&st, ep.Why)
		}
	case trace.VerdictNone:
		ws.glue(&pal.dim, ":").add(&pal.dim, "kube-proxy's rules leave it alone")
		if ep.Why != "" {
			ws.glue(&pal.dim, ";").add(nil, ep.Why)
		}
	default:
		if ep.Why != "" {
			ws.glue(nil, ":").add(nil, ep.Why)
		}
	}
	return ws
}

// endpointShare is the first column of an endpoint line: its probability,
// or a dash when the node's rules do not send anything there.
func endpointShare(pe trace.PathEndpoint) string {
	if !pe.InRules {
		return "–"
	}
	return Percent(pe.Probability)
}

func (v *pathView) endpoint(pe trace.PathEndpoint, po *trace.PathObserved, pw, width int, markMasq bool) string {
	pal := v.pal
	share := endpointShare(pe)
	pad := strings.Repeat(" ", pw-utf8.RuneCountInString(share))
	indent := pw + 2
	first := (&words{}).keep(nil, pad+share+" ")
	first.keep(nil, netip.AddrPortFrom(pe.IP, pe.Port).String())
	if pe.Pod != nil {
		first.keep(&pal.accent, pe.Pod.Namespace+"/"+pe.Pod.Name)
	}
	second := (&words{}).keep(nil, strings.Repeat(" ", indent-1))
	node := ""
	if pe.Pod != nil {
		node = pe.Pod.Node
	}
	if node != "" {
		second.keep(nil, "on "+node).glue(nil, ",")
	}
	if pe.SameNode {
		second.add(&pal.good, "same node")
	} else {
		second.add(nil, "via pod network")
	}
	switch {
	case !pe.InAPI && pe.InRules:
		second.add(&pal.dim, "·").add(&pal.bad, "stale rule, not in API")
	case !pe.InRules && pe.InAPI:
		second.add(&pal.dim, "·").add(&pal.warn, "missing from this node's rules")
	}
	if pe.InAPI {
		second.add(&pal.dim, "·")
		switch {
		case pe.Ready:
			second.add(&pal.good, "ready")
		case pe.Serving:
			second.add(&pal.warn, "not ready, serving")
		default:
			second.add(&pal.bad, "not ready")
		}
		if pe.Terminating {
			second.glue(nil, ",").add(&pal.warn, "terminating")
		}
	}
	if markMasq && pe.Masquerade {
		second.add(&pal.dim, "·").add(&pal.warn, "masquerade")
	}
	// The second line is built with its indent as a word so it wraps like
	// the first.
	out := v.wrap(first, width, indent) + "\n" + v.wrap(second, width, indent)
	if r := pe.Route; r != nil {
		// The last leg: what the node does after DNAT.
		third := (&words{}).keep(nil, strings.Repeat(" ", indent-1)).add(&pal.dim, "route:")
		st, line := &pal.dim, r.Line()
		switch {
		case r.Verdict == routes.VerdictNoRoute:
			st, line = &pal.bad, "none (the node has no route to it)"
		case r.Verdict.Dropped():
			st = &pal.bad
		case pe.SameNode && r.Leaves != nil && *r.Leaves:
			st = &pal.warn
		}
		third.add(st, line)
		out += "\n" + v.wrap(third, width, indent+len("route: "))
	}
	if o := pe.Observed; o != nil {
		// What the kernel did, next to what the rules predict.
		ws := (&words{}).keep(nil, strings.Repeat(" ", indent-1))
		for i, part := range ObservedParts(pe, po) {
			if i > 0 {
				ws.add(&pal.dim, "·")
			}
			ws.add(&pal.accent, part)
		}
		out += "\n" + v.wrap(ws, width, indent)
		if len(o.Clients) > 0 {
			cl := (&words{}).keep(nil, strings.Repeat(" ", indent-1)).add(&pal.dim, "clients:")
			for i, c := range o.Clients {
				if i == maxTreeClients {
					cl.add(&pal.dim, fmt.Sprintf("and %d more", len(o.Clients)-i))
					break
				}
				s := fmt.Sprintf("%s ×%d", c.Addr, c.Connections)
				if i < min(len(o.Clients), maxTreeClients)-1 {
					s += ","
				}
				cl.add(nil, s)
			}
			if o.OtherClients > 0 {
				cl.add(&pal.dim, fmt.Sprintf("(+%d connections of other clients)", o.OtherClients))
			}
			out += "\n" + v.wrap(cl, width, indent+len("clients: "))
		}
	}
	return out
}

// maxTreeClients bounds the clients the tree lists per endpoint (JSON has
// them all).
const maxTreeClients = 8

// ObservedParts says what the kernel observed for an endpoint, next to the
// prediction, in short parts: "50% predicted", "12 connections, 60%
// observed", "14 rule hits". The share is of every connection to the
// entry's address (po); nil parts when nothing was observed.
func ObservedParts(pe trace.PathEndpoint, po *trace.PathObserved) []string {
	o := pe.Observed
	if o == nil {
		return nil
	}
	var parts []string
	if o.Connections != nil {
		if pe.InRules {
			parts = append(parts, Percent(pe.Probability)+" predicted")
		} else {
			parts = append(parts, "not predicted")
		}
		c := *o.Connections
		s := fmt.Sprintf("%d %s", c, plural(c, "connection", "connections"))
		if po != nil && po.Connections > 0 {
			s += ", " + Percent(roundShare(c, po.Connections)) + " observed"
		}
		parts = append(parts, s)
	}
	if o.RuleHits != nil {
		parts = append(parts, fmt.Sprintf("%d rule %s", *o.RuleHits, plural(int(min(*o.RuleHits, 2)), "hit", "hits")))
	}
	return parts
}

// roundShare is n/total rounded to a whole percent (an observed share is a
// count, not a probability: 1 of 3 is 33%, not 33.3%).
func roundShare(n, total int) float64 {
	return math.Round(100*float64(n)/float64(total)) / 100
}

// pathObserved is the path's line about connections to the entry's address
// that no endpoint line shows: to addresses that are no longer endpoints,
// not translated, or on a path the rules drop.
func (v *pathView) pathObserved(ep trace.EntryPath) *words {
	po := ep.Observed
	if po == nil {
		return nil
	}
	pal := v.pal
	dropped := ep.Verdict != trace.VerdictDNAT && po.Connections > 0
	if po.Stale == 0 && po.Untranslated == 0 && !dropped {
		return nil
	}
	ws := (&words{}).add(&pal.dim, "observed:").add(nil, fmt.Sprintf("%d %s to %s", po.Connections, plural(po.Connections, "connection", "connections"), entryAddr(ep.Entry)))
	if dropped {
		ws.add(&pal.bad, "although the rules "+strings.ToLower(string(ep.Verdict))+" it")
	}
	if po.Stale > 0 {
		ws.add(&pal.dim, "·").add(&pal.bad, fmt.Sprintf("%d to addresses that are no longer endpoints (stale)", po.Stale))
	}
	if po.Untranslated > 0 {
		ws.add(&pal.dim, "·").add(&pal.warn, fmt.Sprintf("%d not translated", po.Untranslated))
	}
	return ws
}

// pluginNames are the network plugins for the node header: "Calico (BGP)".
func pluginNames(ps []routes.Plugin) []string {
	return routes.Detection{Plugins: ps}.Names()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// --- chain names -------------------------------------------------------------

// maxChainName is the longest chain name printed in full when not wide.
const maxChainName = 28

// chainName is the name to print: in full when wide; else the short form
// the node's engine gave (kube-proxy's hashes cut: KUBE-SVC-XPGD46QR…,
// service-ULMVA6XW…), and any other name longer than 28 characters cut.
func (v *pathView) chainName(name string) string {
	if v.wide {
		return name
	}
	if s := v.chains[name].Short; s != "" {
		return s
	}
	if r := []rune(name); len(r) > maxChainName {
		return string(r[:maxChainName-1]) + "…"
	}
	return name
}

// --- findings ----------------------------------------------------------------

func (v *pathView) findings(fs []trace.Finding) string {
	pal := v.pal
	if len(fs) == 0 {
		return pal.bold.Render("Findings") + " " + pal.good.Render("none") + "\n"
	}
	sorted := append([]trace.Finding(nil), fs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].Severity.Rank() > sorted[j].Severity.Rank()
	})
	t := v.newTree(pal.bold.Render("Findings"))
	const width = treeWidth - indentStep
	for _, f := range sorted {
		st := pal.dim
		switch f.Severity {
		case trace.SeverityError:
			st = pal.bad
		case trace.SeverityWarning:
			st = pal.warn
		case trace.SeverityInfo:
			st = pal.accent
		}
		head := (&words{}).keep(&st, fmt.Sprintf("%-7s", f.Severity)).keep(&pal.bold, string(f.Code))
		if f.Node != "" {
			head.add(&pal.dim, "·").keep(nil, f.Node)
		}
		msg := (&words{}).keep(nil, strings.Repeat(" ", 7)).add(nil, f.Message)
		t.Child(v.wrap(head, width, 8) + "\n" + v.wrap(msg, width, 8))
	}
	return t.String() + "\n"
}
