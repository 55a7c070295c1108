// Package ruleset puts the dataplane engines behind one door: it recognises a
// node's dump (iptables-save, nft list ruleset text or JSON), parses it with
// the right engine and simulates packets through it.
package ruleset

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/nftables"
)

// Formats lists what Parse accepts; "auto" detects the format.
var Formats = []string{"auto", trace.FormatIPTables, trace.FormatNFT, trace.FormatNFTJSON}

// Source is a dump to parse: its first bytes without consuming them, a
// stream from the start, and, for a regular file, random access.
type Source interface {
	Head() ([]byte, error)
	Reader() io.Reader
	ReaderAt() (r io.ReaderAt, size int64, ok bool)
}

// Ruleset is one node's parsed dataplane; exactly one engine field is set.
type Ruleset struct {
	Format   string
	IPTables *iptables.Dump
	NFT      *nftables.Ruleset
	// Warnings are lines worth showing the user (the tool's own warnings in
	// the dump, objects the model skipped).
	Warnings []string
}

// Parse reads src in format ("auto" detects it from the content).
func Parse(src Source, format string) (*Ruleset, error) {
	if format == "auto" {
		head, err := src.Head()
		if err != nil {
			return nil, err
		}
		switch format = trace.DetectRulesetFormat(head); format {
		case "":
			if len(head) == 0 {
				return nil, errors.New("the file is empty; save the rules with iptables-save or nft list ruleset")
			}
			return nil, errors.New("this is neither iptables-save nor nft list ruleset output (pass --format if it is one of them)")
		case trace.FormatNFTScript:
			return nil, errors.New("this is an nft script (add/flush commands), not nft list ruleset output; load it with nft -f in a scratch network namespace and pass what nft list ruleset prints")
		}
	}
	rs := &Ruleset{Format: format}
	var err error
	switch format {
	case trace.FormatIPTables:
		if ra, size, ok := src.ReaderAt(); ok {
			// In place: rule text is read back on demand, so memory stays
			// well below the dump's size.
			rs.IPTables, err = iptables.ParseReaderAt(ra, size)
		} else {
			rs.IPTables, err = iptables.Parse(src.Reader())
		}
		if err == nil {
			rs.Warnings = rs.IPTables.Warnings
		}
	case trace.FormatNFT:
		if ra, size, ok := src.ReaderAt(); ok {
			// One read into a buffer of the file's size; rules are
			// substrings of it.
			data := make([]byte, size)
			if _, err = ra.ReadAt(data, 0); err == nil || errors.Is(err, io.EOF) {
				rs.NFT, err = nftables.ParseTextBytes(data)
			}
		} else {
			rs.NFT, err = nftables.ParseText(src.Reader())
		}
	case trace.FormatNFTJSON:
		rs.NFT, err = nftables.ParseJSON(src.Reader())
	default:
		return nil, fmt.Errorf("format %q is not one of %v", format, Formats)
	}
	if err != nil {
		return nil, err
	}
	if rs.NFT != nil {
		for _, t := range rs.NFT.Tables {
			for _, sk := range t.Skipped {
				rs.Warnings = append(rs.Warnings, fmt.Sprintf("table %s %s: %s is not modelled and was skipped", t.Family, t.Name, sk))
			}
		}
	}
	return rs, nil
}

// Options are the node facts both engines need.
type Options struct {
	LocalAddrs       []netip.Addr
	AffinityEndpoint netip.AddrPort
}

// Simulate walks pkt through the ruleset with its engine.
func (rs *Ruleset) Simulate(pkt trace.Packet, opts Options) (*trace.Simulation, error) {
	if rs.IPTables != nil {
		return iptables.Simulate(rs.IPTables, pkt, iptables.Options{LocalAddrs: opts.LocalAddrs, AffinityEndpoint: opts.AffinityEndpoint})
	}
	return nftables.Simulate(rs.NFT, pkt, nftables.Options{LocalAddrs: opts.LocalAddrs, AffinityEndpoint: opts.AffinityEndpoint})
}
