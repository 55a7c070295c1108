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
)

// formatConntrack marks a parsed source that is one of the node's
// connection tables (its value is a *connTable) and formatLimits its
// conntrack-limits section (a conntrack.Limits).
const (
	formatConntrack = "conntrack"
	formatLimits    = "conntrack-limits"
)

// maxLimitsSection bounds the conntrack-limits section: two short lines.
const maxLimitsSection = 4 << 10

// connTable is one connection table of the node, kept as its source: a
// node tracks up to millions of connections, so the table is never held;
// Observe streams it when the tracer knows which Service addresses to
// count (see Dataplane.Observe).
type connTable struct {
	name    string // Input.Name, for messages
	section string // one of conntrack.SectionNames, or "" (told by content)
	src     Source
	format  conntrack.Format
	// read: a source without random access (a pipe) was read; it cannot
	// be read again.
	read bool
}

// parseConntrack keeps a connection table for later (it is read by
// Observe), or reads the small conntrack-limits section now.
func parseConntrack(in Input, section string, format conntrack.Format) (parsedSource, error) {
	if section == conntrack.SectionLimits {
		data, err := io.ReadAll(io.LimitReader(in.Source.Reader(), maxLimitsSection+1))
		if err != nil {
			return parsedSource{}, err
		}
		if len(data) > maxLimitsSection {
			return parsedSource{}, fmt.Errorf("conntrack-limits section is larger than %d KiB: it holds two lines", maxLimitsSection>>10)
		}
		l, err := conntrack.ParseLimits(data)
		if err != nil {
			// Only the table's fill is lost: the rules and the tables
			// themselves are still read.
			return parsedSource{format: formatLimits, warnings: []trace.Warning{{Code: trace.CodeConntrackIncomplete,
				Message: fmt.Sprintf("the conntrack table's fill could not be read (%v): whether the table is full is not shown", err)}}}, nil
		}
		return parsedSource{format: formatLimits, value: l}, nil
	}
	return parsedSource{format: formatConntrack, value: &connTable{name: in.Name, section: section, src: in.Source, format: format}}, nil
}

// detectConntrack tells a connection table (or the limits section) from
// its first bytes; ok is false for anything else.
func detectConntrack(head []byte) (section string, format conntrack.Format, ok bool, err error) {
	switch f := conntrack.Detect(head); f {
	case conntrack.FormatExtended, conntrack.FormatDefault:
		return "", f, true, nil
	case conntrack.FormatIPVS:
		return conntrack.SectionIPVS, f, true, nil
	case conntrack.FormatXML:
		return "", f, false, errors.New("this is conntrack's XML output (-o xml); save `conntrack -L` or /proc/net/nf_conntrack instead")
	}
	if len(head) <= maxLimitsSection && strings.HasPrefix(string(head), "count ") {
		if _, err := conntrack.ParseLimits(head); err == nil {
			return conntrack.SectionLimits, conntrack.FormatUnknown, true, nil
		}
	}
	return "", conntrack.FormatUnknown, false, nil
}

// ConntrackSectionOf returns the connection-table section a saved dump's
// file name ends in ("node-1.conntrack-proc" → "conntrack-proc", as
// --save-dumps names them), or "".
func ConntrackSectionOf(fileName string) string {
	for _, name := range conntrack.SectionNames {
		if strings.HasSuffix(fileName, "."+name) {
			return name
		}
	}
	return ""
}

// SectionOf returns the route or connection-table section a saved dump's
// file name ends in, or "" for a rule dump (told by its content).
func SectionOf(fileName string) string {
	if s := RouteSectionOf(fileName); s != "" {
		return s
	}
	return ConntrackSectionOf(fileName)
}

// Observes tells whether the node's connection tables were given: only
// then can Observe say what the kernel did.
func (d *Dataplane) Observes() bool { return len(d.connTables) > 0 }

// ConntrackLimits are the node's conntrack table fill and size, when its
// conntrack-limits section was given.
func (d *Dataplane) ConntrackLimits() (conntrack.Limits, bool) {
	if d.limits == nil {
		return conntrack.Limits{}, false
	}
	return *d.limits, true
}

// Observed is what the node's connection tables say about a set of
// Service frontends.
type Observed struct {
	// Frontends are the counts per frontend, in the order asked.
	Frontends []conntrack.FrontendCount
	// Tables name the tables that were counted (conntrack's, else IPVS's).
	Tables []string
	// IPVS: the counts are IPVS's connection table's (no conntrack table
	// was given).
	IPVS bool
	// Entries is the number of entries read.
	Entries int
	// Warnings say what could not be read: lines skipped, a table cut.
	Warnings []trace.Warning
}

// Frontend returns the count for one frontend.
func (o *Observed) Frontend(f conntrack.Frontend) (*conntrack.FrontendCount, bool) {
	f.Addr = f.Addr.Unmap()
	for i := range o.Frontends {
		if o.Frontends[i].Frontend == f {
			return &o.Frontends[i], true
		}
	}
	return nil, false
}

// Observe reads the node's connection tables and counts the connections to
// frontends, per backend (the address each was translated to). It streams
// each table once, keeping only the counts: memory grows with the number
// of frontends, backends and (with opts.Clients) clients, never with the
// table's size. A table without random access (standard input) can be read
// only once; a second Observe then fails.
//
// Which tables count: /proc/net/nf_conntrack (conntrack-proc) when given,
// as it holds both families; otherwise every other conntrack table
// (conntrack -L per family, or tables told by content), added up; only when
// there is no conntrack table at all, IPVS's own connection table.
func (d *Dataplane) Observe(frontends []conntrack.Frontend, opts conntrack.Options) (*Observed, error) {
	tables := d.observedTables()
	if len(tables) == 0 {
		return nil, errors.New("no connection table of the node was given")
	}
	out := &Observed{IPVS: tables[0].format == conntrack.FormatIPVS}
	for _, t := range tables {
		r, err := t.open()
		if err != nil {
			return nil, fmt.Errorf("connection table %s: %w", t.name, err)
		}
		obs, err := conntrack.Observe(r, frontends, opts)
		if err != nil {
			return nil, fmt.Errorf("connection table %s: %w", t.name, err)
		}
		out.Tables = append(out.Tables, t.name)
		out.Entries += obs.Stats.Entries
		for _, w := range obs.Stats.Warnings(t.name) {
			out.Warnings = append(out.Warnings, trace.Warning{Code: trace.CodeConntrackIncomplete, Message: w, Source: t.name})
		}
		if out.Frontends == nil {
			out.Frontends = obs.Frontends
			continue
		}
		for i := range out.Frontends {
			mergeFrontend(&out.Frontends[i], obs.Frontends[i])
		}
	}
	return out, nil
}

// observedTables picks the tables Observe counts (see there).
func (d *Dataplane) observedTables() []*connTable {
	var proc, other, ipvs []*connTable
	for _, t := range d.connTables {
		switch {
		case t.format == conntrack.FormatIPVS || t.section == conntrack.SectionIPVS:
			ipvs = append(ipvs, t)
		case t.section == conntrack.SectionProc:
			proc = append(proc, t)
		default:
			other = append(other, t)
		}
	}
	switch {
	case len(proc) > 0:
		return proc[:1]
	case len(other) > 0:
		return other
	case len(ipvs) > 0:
		return ipvs[:1]
	}
	return nil
}

// open returns the table from its start.
func (t *connTable) open() (io.Reader, error) {
	if ra, size, ok := t.src.ReaderAt(); ok {
		return io.NewSectionReader(ra, 0, size), nil
	}
	if t.read {
		return nil, errors.New("it was read already and cannot be read again (it is a stream)")
	}
	t.read = true
	return t.src.Reader(), nil
}

// mergeFrontend adds b's counts (of another table, for the same frontend)
// to a.
func mergeFrontend(a *conntrack.FrontendCount, b conntrack.FrontendCount) {
	a.Connections += b.Connections
	a.OtherBackends += b.OtherBackends
	a.Templates += b.Templates
	for _, bb := range b.Backends {
		i, found := slices.BinarySearchFunc(a.Backends, bb.Backend, func(x conntrack.BackendCount, t netip.AddrPort) int { return x.Backend.Compare(t) })
		if !found {
			a.Backends = slices.Insert(a.Backends, i, bb)
			continue
		}
		ab := &a.Backends[i]
		ab.Connections += bb.Connections
		ab.Unreplied += bb.Unreplied
		ab.Assured += bb.Assured
		ab.OtherClients += bb.OtherClients
		for k, v := range bb.States {
			if ab.States == nil {
				ab.States = map[string]int{}
			}
			ab.States[k] += v
		}
		ab.Clients = append(ab.Clients, bb.Clients...)
	}
}
