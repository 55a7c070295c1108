package render

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// PathCompare writes a compact table of what each node does with each entry:
// rows are entries (a node port is one row whatever the node's address),
// columns are nodes, cells the verdict and, for DNAT, how many endpoints and
// whether the source is masqueraded. Differences between nodes stand out.
func PathCompare(w io.Writer, p *trace.Path) error {
	if p == nil {
		return fmt.Errorf("no path to render")
	}
	p = termsafe.Copy(p) // node-made text must not drive the terminal
	type row struct{ key, label string }
	var rows []row
	seen := map[string]bool{}
	cells := map[string]map[string]string{} // row key → node → cell
	var nodes []string
	for _, n := range p.Nodes {
		nodes = append(nodes, n.Name)
		firstNodePort := map[string]bool{}
		for _, ep := range n.Paths {
			label := fmt.Sprintf("%s %s/%s", ep.Entry.Kind, netip.AddrPortFrom(ep.Entry.Address, ep.Entry.Port), ep.Entry.Protocol)
			if ep.Entry.Kind == trace.EntryClusterIP && ep.Entry.From != "" {
				label += " from " + strings.TrimSuffix(ep.Entry.From, " on this node")
			}
			key := label
			if ep.Entry.Kind == trace.EntryNodePort {
				k := fmt.Sprintf("%d/%s", ep.Entry.Port, ep.Entry.Protocol)
				if firstNodePort[k] {
					continue // the node's first address stands for the node
				}
				firstNodePort[k] = true
				key, label = "NodePort "+k, "NodePort :"+k
			}
			if !seen[key] {
				seen[key] = true
				rows = append(rows, row{key, label})
				cells[key] = map[string]string{}
			}
			cells[key][n.Name] = compareCell(ep)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return entryOrder(rows[i].key) < entryOrder(rows[j].key) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ENTRY\t%s\n", strings.Join(nodes, "\t"))
	for _, r := range rows {
		line := []string{r.label}
		for _, n := range nodes {
			c := cells[r.key][n]
			if c == "" {
				c = "-"
			}
			line = append(line, c)
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	for _, n := range p.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "(%s not collected: %s)\n", n.Name, n.Error)
		}
	}
	return tw.Flush()
}

func entryOrder(key string) int {
	for i, k := range trace.EntryKinds {
		if strings.HasPrefix(key, k) {
			return i
		}
	}
	return 9
}

func compareCell(ep trace.EntryPath) string {
	switch ep.Verdict {
	case trace.VerdictDNAT:
		s := fmt.Sprintf("DNAT %d", len(ep.EndpointsInRules()))
		if ep.Masquerade {
			s += " masq"
		}
		return s
	case trace.VerdictNone:
		return "none"
	}
	return string(ep.Verdict)
}
