// Package ruleset is the one door to the dataplane engines. A node's
// dataplane is one value (Dataplane) built from any number of sources —
// iptables-save and ip6tables-save output, nft list ruleset text or JSON,
// the node's route and interface sections (ip route, /proc/net/route,
// …) and its connection tables (/proc/net/nf_conntrack, conntrack -L,
// /proc/net/ip_vs_conn) — each recognised from its content and handed to
// the engine that reads it (route sections to trace/routes: Routes;
// connection tables to trace/conntrack, when asked: Observe).
// The tracer, the commands and the renderers reach the engines only through
// this package: simulate a packet, which IP families and kube-proxy mode the
// sources cover, whether kube-proxy programmed a Service port (drift), and
// what part each chain plays (render).
//
// Adding an engine touches its own package, one adapter file here (a format
// in formats.go and an Engine), the node dump script and the docs.
package ruleset

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// Source is a dump to parse: its first bytes without consuming them, a
// stream from the start, and, for a regular file, random access.
type Source interface {
	Head() ([]byte, error)
	Reader() io.Reader
	ReaderAt() (r io.ReaderAt, size int64, ok bool)
}

// Input is one source of a node's dataplane.
type Input struct {
	// Name names the source in messages: a quoted file name, or the command
	// whose output it is.
	Name   string
	Source Source
	// Format forces a format (one of Formats); "" or "auto" detects it.
	Format string
	// Section, when it is one of routes.SectionNames or
	// conntrack.SectionNames, says that the source is that route,
	// interface or connection-table section (the collector's name for it,
	// or a saved file's NODE.NAME suffix: see SectionOf); otherwise such
	// sections are told by their content. ip -6 rule's output cannot be
	// told from ip rule's by content alone, nor /proc/net/nf_conntrack
	// from conntrack -L -o extended.
	Section string
}

// Options are the node facts every engine needs.
type Options struct {
	// LocalAddrs are the node's own addresses (what "LOCAL" matches).
	LocalAddrs []netip.Addr
	// AffinityEndpoint, when valid, is the endpoint a returning client is
	// pinned to by session affinity.
	AffinityEndpoint netip.AddrPort
}

// ErrNoRules is wrapped when no source covers the packet's IP family.
var ErrNoRules = errors.New("no rules for this IP family")

// Dataplane is one node's dataplane: every source it was given, parsed, and
// the engines built from them.
type Dataplane struct {
	// engines in the order their first source was given; for each family
	// the first engine that covers it decides.
	engines  []Engine
	formats  []string
	warnings []trace.Warning
	// routes is the node's routing, from its route sections; nil when
	// none was given or they could not be read (a warning says why).
	routes *routes.Snapshot
	// connTables are the node's connection tables, kept as sources until
	// Observe reads them; limits the table's fill, when given.
	connTables []*connTable
	limits     *conntrack.Limits
}

// Load parses every input and builds the node's dataplane. An input that
// cannot be read fails the whole load, naming the input.
func Load(inputs ...Input) (*Dataplane, error) {
	var parsed []parsedSource
	var sections []routes.Section
	d := &Dataplane{}
	for _, in := range inputs {
		ps, err := parse(in)
		if err != nil {
			if in.Name == "" {
				return nil, err
			}
			return nil, fmt.Errorf("read ruleset %s: %w", in.Name, err)
		}
		switch v := ps.value.(type) {
		case routes.Section:
			sections = append(sections, v)
			continue
		case *connTable:
			d.connTables = append(d.connTables, v)
			continue
		case conntrack.Limits:
			d.limits = &v
			continue
		}
		ps.name = in.Name
		parsed = append(parsed, ps)
		d.formats = append(d.formats, ps.format)
		for _, w := range ps.warnings {
			w.Source = in.Name
			d.warnings = append(d.warnings, w)
		}
	}
	var aw []trace.Warning
	d.engines, aw = assemble(parsed)
	d.warnings = append(d.warnings, aw...)
	d.tableWarnings()
	if len(sections) > 0 {
		d.loadRoutes(sections)
	}
	return d, nil
}

// loadRoutes reads the node's route sections together. Sections that
// cannot be read leave the routes unknown with a warning: the rules still
// trace, only the last leg is missing.
func (d *Dataplane) loadRoutes(sections []routes.Section) {
	snap, err := routes.Parse(sections)
	if err != nil {
		d.warnings = append(d.warnings, trace.Warning{Code: trace.CodeRoutesIncomplete,
			Message: fmt.Sprintf("the node's routes could not be read (%v): the path after DNAT is not shown", err)})
		return
	}
	for _, w := range snap.Warnings {
		d.warnings = append(d.warnings, trace.Warning{Code: trace.CodeRoutesIncomplete, Message: "routes: " + w})
	}
	if snap.RoutesFrom4 == "" && snap.RoutesFrom6 == "" {
		d.warnings = append(d.warnings, trace.Warning{Code: trace.CodeRoutesIncomplete,
			Message: fmt.Sprintf("the node's route sections (%s) hold no routing table: the path after DNAT is not shown", strings.Join(snap.Sections, ", "))})
		return
	}
	d.routes = snap
}

// Routes is the node's routing (tables, policy rules, interfaces), from
// its route sections; nil when none was given or they hold no routing
// table.
func (d *Dataplane) Routes() *routes.Snapshot { return d.routes }

// Names are the names every engine's sources declare (chains, tables,
// sets), each once.
func (d *Dataplane) Names() Names {
	lists := make([]Names, 0, len(d.engines))
	for _, e := range d.engines {
		lists = append(lists, e.Names())
	}
	return mergeNames(lists...)
}

// RouteSectionOf returns the route section a saved dump's file name ends
// in ("node-1.ip-route" → "ip-route", as --save-dumps names them), or "".
func RouteSectionOf(fileName string) string {
	for _, name := range routes.SectionNames {
		if strings.HasSuffix(fileName, "."+name) {
			return name
		}
	}
	return ""
}

// Formats are the formats of the rule sources, in the order given (route
// sections and connection tables are not among them: see Routes and
// Observe).
func (d *Dataplane) Formats() []string { return slices.Clone(d.formats) }

// Warnings are what the parsers noticed: the tools' own warnings in the
// dumps, objects an engine does not model.
func (d *Dataplane) Warnings() []trace.Warning { return slices.Clone(d.warnings) }

// Engines are the engines built from the sources.
func (d *Dataplane) Engines() []Engine { return slices.Clone(d.engines) }

// Engine returns the engine that decides packets of the family, or nil:
// the first that holds kube-proxy's rules for it, else the first that
// covers it at all. A node's every dump replayed together (--dump with all
// that --save-dumps wrote) thus decides with kube-proxy's backend, not with
// whichever dump came first.
func (d *Dataplane) Engine(v6 bool) Engine {
	var first Engine
	for _, e := range d.engines {
		switch {
		case !e.Covers(v6):
		case e.KubeProxy(v6):
			return e
		case first == nil:
			first = e
		}
	}
	return first
}

// Covers tells whether a source holds rules for the family.
func (d *Dataplane) Covers(v6 bool) bool { return d.Engine(v6) != nil }

// ProxyMode is the kube-proxy mode whose rules the sources hold (iptables,
// nftables, ipvs), from their content: the mode of the engine that decides
// the node's IPv4 packets (else IPv6); "" when no source holds kube-proxy's
// rules.
func (d *Dataplane) ProxyMode() string {
	for _, v6 := range []bool{false, true} {
		if e := d.Engine(v6); e != nil && e.KubeProxy(v6) {
			return e.Mode()
		}
	}
	return ""
}

// Simulate walks pkt through the node's netfilter: every base chain of
// every table of its IP family, whichever source holds it (iptables-legacy,
// iptables-nft, native nftables tables), at each hook in the kernel's
// priority order (trace.WalkNetfilter). A drop or NAT from any table is the
// packet's fate; rules and policies not of kube-proxy's are marked foreign.
// An nft list ruleset's iptables-nft tables are read from the
// iptables-nft-save dump instead when one of the family was given, so no
// table counts twice.
func (d *Dataplane) Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	v6 := pkt.Destination.Unmap().Is6()
	e := d.Engine(v6)
	if e == nil && len(d.engines) > 0 {
		// The engine of the other family explains what is missing in its
		// own terms (an ip6tables-save dump, an ip6 kube-proxy table).
		return d.engines[0].Simulate(pkt, opts)
	}
	if e == nil {
		return nil, fmt.Errorf("%w: no %s rules were given", ErrNoRules, familyName(v6))
	}
	chains, iw := d.hookChains(v6, opts)
	if chains == nil {
		// An engine that cannot expose its chains decides alone.
		return e.Simulate(pkt, opts)
	}
	local := opts.LocalAddrs
	if iw.sched != nil {
		local = iw.local
	}
	walk, err := trace.StartWalk(pkt, trace.WalkOptions{LocalAddrs: local, AffinityEndpoint: opts.AffinityEndpoint})
	if err != nil {
		return nil, err
	}
	branches, err := trace.WalkNetfilter(walk, chains, walk.StartFlow())
	if err != nil {
		return nil, err
	}
	sim, err := walk.Finish(branches)
	if err != nil {
		return nil, err
	}
	if iw.sched != nil {
		sim.IPVS = iw.sched.hop
	}
	return sim, nil
}

// ipvsWalk is what the IPVS engine adds to one walk: the Service addresses
// bound to kube-ipvs0 (local to the node) and the scheduler, which keeps
// the virtual server it answered with.
type ipvsWalk struct {
	local []netip.Addr
	sched *ipvsScheduler
}

// hookChains are the base chains of every engine for the family, in the
// order the sources were given (taken as the order they were registered
// in: the kernel runs the later of two chains of equal priority first).
// Each nft table counts once, and iptables-nft's tables come from an
// iptables-nft-save dump when one was given. nil when an engine that
// covers the family exposes no chains (it then simulates alone).
func (d *Dataplane) hookChains(v6 bool, opts Options) ([]trace.HookChain, ipvsWalk) {
	fromSave := d.hasIPTablesNFT(v6)
	seen := map[string]bool{}
	var out []trace.HookChain
	var iw ipvsWalk
	for _, e := range d.engines {
		ne, ok := e.(*nftEngine)
		if !ok {
			var cs []trace.HookChain
			if ie, ok := e.(*ipvsEngine); ok {
				cs, iw.local, iw.sched = ie.walkChains(v6, opts)
			} else {
				cs = e.HookChains(v6)
			}
			if cs == nil && e.Covers(v6) {
				return nil, ipvsWalk{}
			}
			out = append(out, cs...)
			continue
		}
		var tables []*nftables.Table
		for _, t := range ne.familyTables(v6) {
			key := t.Family + " " + t.Name
			if seen[key] || fromSave && isIPTablesNFTTable(t.Family, t.Name) {
				continue
			}
			seen[key] = true
			tables = append(tables, t)
		}
		out = append(out, nftables.HookChains(tables)...)
	}
	if !d.kubeProxyCovers(v6) {
		// No source holds kube-proxy's rules: the dumps given are the
		// subject, not context, and a broken one is an error.
		for i := range out {
			out[i].Optional = false
		}
	}
	return out, iw
}

// kubeProxyCovers tells whether any engine holds kube-proxy's rules for
// the family.
func (d *Dataplane) kubeProxyCovers(v6 bool) bool {
	for _, e := range d.engines {
		if e.KubeProxy(v6) {
			return true
		}
	}
	return false
}

// tableWarnings names, once per load, the tables of nft rulesets that are
// not walked: those of families that never see a routed IP packet.
// iptables-nft's tables, read from iptables-nft-save instead of from nft
// list ruleset (hookChains), are walked: that is no warning, as every node
// in iptables mode has them.
func (d *Dataplane) tableWarnings() {
	for _, e := range d.engines {
		ne, ok := e.(*nftEngine)
		if !ok {
			continue
		}
		for _, t := range ne.rs.Tables {
			name := excerpt.Clip(t.Family + " " + t.Name)
			switch t.Family {
			case "ip", "ip6", "inet":
			default:
				d.warnings = append(d.warnings, trace.Warning{Code: trace.CodeObjectSkipped, Source: ne.source,
					Message: fmt.Sprintf("table %s is not evaluated: %s tables see %s, not the routed IP packets the simulator follows", name, excerpt.Clip(t.Family), familySees(t.Family))})
			}
		}
	}
}

// hasIPTablesNFT tells whether an iptables-nft-save dump of the family was
// given (alone, or inside the IPVS engine).
func (d *Dataplane) hasIPTablesNFT(v6 bool) bool {
	for _, e := range d.engines {
		ie, _ := e.(*iptablesEngine)
		if ve, ok := e.(*ipvsEngine); ok {
			ie = ve.ipt
		}
		if ie != nil && ie.hasNFTBackend(v6) {
			return true
		}
	}
	return false
}

func familySees(family string) string {
	switch family {
	case "bridge":
		return "frames bridged between a bridge's ports"
	case "arp":
		return "ARP packets"
	case "netdev":
		return "packets at a device's ingress or egress, before and after the IP stack"
	}
	return "packets of another protocol family"
}

// Programmed asks the engine of the family whether kube-proxy's object of
// that kind exists for the Service port.
func (d *Dataplane) Programmed(kind ObjectKind, svc trace.ServiceInfo, sp trace.ServicePort, v6 bool) Check {
	if kind == ObjectAddressBound {
		return d.addressBound(svc, v6)
	}
	e := d.Engine(v6)
	if e == nil {
		return Check{}
	}
	return e.Programmed(kind, svc, sp, v6)
}

// ChainInfo describes a chain name an engine reported: the first engine
// that recognises it answers; others are ChainOther.
func (d *Dataplane) ChainInfo(name string) trace.ChainInfo {
	for _, e := range d.engines {
		if ci, ok := e.ChainInfo(name); ok {
			return ci
		}
	}
	return trace.ChainInfo{Kind: trace.ChainOther}
}

func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}
