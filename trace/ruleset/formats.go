package ruleset

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// Formats lists what Load accepts; "auto" detects the format.
var Formats = []string{"auto", trace.FormatIPTables, trace.FormatNFT, trace.FormatNFTJSON, FormatIPVS, FormatIPSet}

// parsedSource is one source read by its engine's parser.
type parsedSource struct {
	// name is the input's Name.
	name     string
	format   string
	value    any // *iptables.Dump, *nftables.Ruleset, *ipvs.Table, *ipset.Dump, routes.Section
	warnings []trace.Warning
}

// formatRoutes marks a parsed source that is one of the node's route and
// interface sections (its value is a routes.Section).
const formatRoutes = "routes"

// maxRouteSection bounds what one route section may make Load hold: some
// hundred times what a node with a full BGP mesh of a big cluster prints.
const maxRouteSection = 64 << 20

// parse detects the input's format (unless forced) and reads it. A route
// section is recognised by its Section name or, when the format is not
// forced to one of the rule formats, by its content.
func parse(in Input) (parsedSource, error) {
	if slices.Contains(routes.SectionNames, in.Section) {
		return parseRouteSection(in, in.Section)
	}
	if slices.Contains(conntrack.SectionNames, in.Section) {
		format := conntrack.FormatUnknown
		if in.Section == conntrack.SectionIPVS {
			format = conntrack.FormatIPVS
		}
		return parseConntrack(in, in.Section, format)
	}
	format := in.Format
	auto := format == "" || format == "auto"
	head, err := in.Source.Head()
	if err != nil {
		return parsedSource{}, err
	}
	// An IPVS table or ipset dump first: ipvsadm -Sn and ipset save look
	// like an iptables dump and an nft script to DetectRulesetFormat.
	if auto {
		if f := detectIPVSOrIPSet(head); f != "" {
			return parseIPVSOrIPSet(in.Source, f)
		}
	} else if format == FormatIPVS || format == FormatIPSet {
		return parseIPVSOrIPSet(in.Source, format)
	}
	if detected := trace.DetectRulesetFormat(head); detected == "" {
		// A route section cannot be mistaken for a rule format, forced
		// or not: its first line names what it is.
		if name := routes.DetectSection(head); name != "" {
			return parseRouteSection(in, name)
		}
		// Nor a connection table: its lines start with a protocol name.
		section, format, ok, err := detectConntrack(head)
		if err != nil {
			return parsedSource{}, err
		}
		if ok {
			return parseConntrack(in, section, format)
		}
	}
	if auto {
		switch format = trace.DetectRulesetFormat(head); format {
		case "":
			if len(head) == 0 {
				return parsedSource{}, errors.New("the file is empty; save the rules with iptables-save or nft list ruleset")
			}
			return parsedSource{}, errors.New("this is neither iptables-save nor nft list ruleset output, nor a route or interface section, nor a connection table (pass --format if it is one of them)")
		case trace.FormatNFTScript:
			return parsedSource{}, errors.New("this is an nft script (add/flush commands), not nft list ruleset output; load it with nft -f in a scratch network namespace and pass what nft list ruleset prints")
		}
	}
	ps := parsedSource{format: format}
	src := in.Source
	switch format {
	case trace.FormatIPTables:
		var d *iptables.Dump
		var err error
		if ra, size, ok := src.ReaderAt(); ok {
			// In place: rule text is read back on demand, so memory stays
			// well below the dump's size.
			d, err = iptables.ParseReaderAt(ra, size)
		} else {
			d, err = iptables.Parse(src.Reader())
		}
		if err != nil {
			return ps, err
		}
		ps.value, ps.warnings = d, d.Warnings
	case trace.FormatNFT, trace.FormatNFTJSON:
		rs, err := parseNFT(src, format)
		if err != nil {
			return ps, err
		}
		ps.value = rs
		for _, t := range rs.Tables {
			for _, sk := range t.Skipped {
				ps.warnings = append(ps.warnings, trace.Warning{Code: trace.CodeObjectSkipped,
					Message: fmt.Sprintf("table %s %s: %s is not modelled and was skipped", excerpt.Clip(t.Family), excerpt.Clip(t.Name), sk)})
			}
		}
	default:
		return ps, fmt.Errorf("format %q is not one of %s", format, strings.Join(Formats, ", "))
	}
	return ps, nil
}

// parseRouteSection reads a route or interface section whole; it is parsed
// with the node's other sections once all are in (routes.Parse).
func parseRouteSection(in Input, name string) (parsedSource, error) {
	data, err := io.ReadAll(io.LimitReader(in.Source.Reader(), maxRouteSection+1))
	if err != nil {
		return parsedSource{}, err
	}
	if len(data) > maxRouteSection {
		return parsedSource{}, fmt.Errorf("route section %s is larger than %d MiB", name, maxRouteSection>>20)
	}
	return parsedSource{format: formatRoutes, value: routes.Section{Name: name, Data: data}}, nil
}

// mappedSource is a Source that can offer its bytes in place, mapped, and
// keeps them valid as long as the Dataplane is used (collectors/file's
// OpenMapped). nftables rules are substrings of their dump, so the
// mapping spares a copy of the whole file into fresh memory.
type mappedSource interface {
	Mapped() ([]byte, bool)
}

func parseNFT(src Source, format string) (*nftables.Ruleset, error) {
	if format == trace.FormatNFTJSON {
		return nftables.ParseJSON(src.Reader())
	}
	if m, ok := src.(mappedSource); ok {
		if data, ok := m.Mapped(); ok {
			return nftables.ParseTextBytes(data)
		}
	}
	if ra, size, ok := src.ReaderAt(); ok {
		// One read into a buffer of the file's size; rules are substrings
		// of it.
		data := make([]byte, size)
		if _, err := ra.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nftables.ParseTextBytes(data)
	}
	return nftables.ParseText(src.Reader())
}

// assemble builds the engines from the parsed sources, in the order their
// first source was given: every iptables dump (one per family) feeds one
// iptables engine; each nft ruleset is an nftables engine. An IPVS table
// makes the iptables engine part of an IPVS engine (kube-proxy's IPVS
// mode: the table decides, the iptables rules filter and masquerade around
// it); ipsets go to whichever of them evaluates -m set (the first ipset
// dump given; a node's ipset save holds every family).
func assemble(sources []parsedSource) ([]Engine, []trace.Warning) {
	var out []Engine
	var ipt *iptablesEngine
	var ipv *ipvsEngine
	var sets *ipset.Dump
	var warnings []trace.Warning
	for _, s := range sources {
		switch v := s.value.(type) {
		case *iptables.Dump:
			if ipt == nil {
				ipt = &iptablesEngine{}
				if ipv == nil {
					out = append(out, ipt)
				}
			}
			ipt.add(v)
		case *nftables.Ruleset:
			out = append(out, &nftEngine{rs: v, source: s.name})
		case *ipvs.Table:
			if ipv != nil {
				warnings = append(warnings, trace.Warning{Code: trace.CodeDumpIrregular,
					Message: "more than one IPVS table was given for the node: the first decides, the others are not read"})
				continue
			}
			ipv = &ipvsEngine{table: v}
			out = append(out, ipv)
		case *ipset.Dump:
			if sets != nil {
				warnings = append(warnings, trace.Warning{Code: trace.CodeDumpIrregular,
					Message: "more than one ipset dump was given for the node: the first is used, the others are not read"})
				continue
			}
			sets = v
		}
	}
	if ipv != nil {
		ipv.ipt, ipv.sets = ipt, sets
		if sets == nil && ipt != nil {
			warnings = append(warnings, trace.Warning{Code: trace.CodeIPVSIncomplete,
				Message: "the node's IPVS table was given without its ipsets (ipset save): kube-proxy's -m set rules are taken not to match, so what they accept, masquerade and drop is not traced"})
		}
		if ipt == nil {
			warnings = append(warnings, trace.Warning{Code: trace.CodeIPVSIncomplete,
				Message: "the node's IPVS table was given without its iptables dump: only the virtual servers are consulted, not kube-proxy's filter and masquerade rules around them"})
		}
		if ipt != nil {
			// The iptables engine serves inside the IPVS engine only.
			for i, e := range out {
				if e == Engine(ipt) {
					out = append(out[:i], out[i+1:]...)
					break
				}
			}
		}
	} else if ipt != nil {
		ipt.sets = sets
	}
	return out, warnings
}
