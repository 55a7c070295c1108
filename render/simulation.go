package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/tree"
	"sigs.k8s.io/yaml"

	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// SimulationSchemaVersion versions the JSON of "kubectl trace-svc simulate".
// Fields are only ever added within one version.
const SimulationSchemaVersion = "trace-svc.simulation/v1"

type simulationDoc struct {
	SchemaVersion string `json:"schemaVersion"`
	*trace.Simulation
}

// SimulationJSON writes the simulation as indented JSON.
func SimulationJSON(w io.Writer, sim *trace.Simulation) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // rule comments hold "->"; this is not HTML
	return enc.Encode(simulationDoc{SchemaVersion: SimulationSchemaVersion, Simulation: sim})
}

// SimulationYAML writes the same document as YAML.
func SimulationYAML(w io.Writer, sim *trace.Simulation) error {
	b, err := yaml.Marshal(simulationDoc{SchemaVersion: SimulationSchemaVersion, Simulation: sim})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// SimulationTree writes the walk as a tree: rules shared by every branch
// once, then one subtree per random choice, each ending in its verdict.
func SimulationTree(w io.Writer, r *lipgloss.Renderer, sim *trace.Simulation) error {
	sim = termsafe.Copy(sim) // rule text and notes must not drive the terminal
	pal := newPalette(r)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s packet", pal.bold.Render("Packet"), sim.Packet, sim.Origin)
	if len(sim.LocalAddresses) > 0 {
		addrs := make([]string, len(sim.LocalAddresses))
		for i, a := range sim.LocalAddresses {
			addrs[i] = a.String()
		}
		fmt.Fprintf(&b, "; node addresses %s", strings.Join(addrs, ", "))
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "%s %s", pal.bold.Render("Verdict"), verdictStyle(pal, sim.Verdict).Render(string(sim.Verdict)))
	if sim.Masquerade {
		b.WriteString(", masqueraded (source NAT to the node)")
	}
	b.WriteString("\n")
	if len(sim.Endpoints) > 0 {
		b.WriteString(pal.bold.Render("Endpoints") + "\n")
		for _, e := range sim.Endpoints {
			line := fmt.Sprintf("  %-24s %s", e.AddrPort(), Percent(e.Probability))
			if e.Masquerade {
				line += pal.warn.Render("  masqueraded")
			}
			b.WriteString(line + "\n")
		}
	}
	b.WriteString(pal.bold.Render("Rules") + "\n")
	t := ruleTree(pal, sim.Outcomes)
	t.EnumeratorStyle(r.NewStyle().Foreground(lipgloss.Color("8")).PaddingRight(1))
	b.WriteString(t.String())
	b.WriteString("\n")
	for _, a := range sim.Affinity {
		state := "a new client has no entry, so this did not match"
		if a.Hit {
			state = "assumed hit: the client is pinned"
		}
		target := a.List
		if a.Endpoint != "" {
			target = a.Endpoint
		}
		fmt.Fprintf(&b, "%s ClientIP affinity to %s for %ds (%s)\n", pal.accent.Render("Affinity"), target, a.Seconds, state)
	}
	for _, n := range sim.Notes {
		fmt.Fprintf(&b, "%s %s\n", pal.dim.Render("Note"), n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ruleTree merges the branches' rule lists into a trie: rules shared by
// branches are shown once, and where the walk forks (a random choice) each
// branch becomes a subtree headed by where it ends.
func ruleTree(pal palette, outcomes []trace.Outcome) *tree.Tree {
	root := &ruleNode{}
	for _, o := range outcomes {
		n := root
		n.outcomes = append(n.outcomes, o)
		for _, ref := range o.Rules {
			var next *ruleNode
			for _, c := range n.children {
				if c.ref == ref {
					next = c
					break
				}
			}
			if next == nil {
				next = &ruleNode{ref: ref}
				n.children = append(n.children, next)
			}
			next.outcomes = append(next.outcomes, o)
			n = next
		}
		n.leaves = append(n.leaves, o)
	}
	t := tree.New()
	addRules(pal, t, root)
	return t
}

type ruleNode struct {
	ref      trace.RuleRef
	children []*ruleNode
	leaves   []trace.Outcome // branches that end right after this rule
	outcomes []trace.Outcome // every branch through this rule
}

func ruleLabel(pal palette, ref trace.RuleRef) string {
	table := ref.Table
	if ref.Foreign && ref.Backend != "" {
		// Another tool's table: say whose ("iptables-legacy filter",
		// "nftables firewalld"), since two backends can each have a
		// table of the same name.
		table = ref.Backend + " " + table
	}
	if ref.Folded > 0 {
		return fmt.Sprintf("%s %s %s", pal.dim.Render(table), pal.accent.Render(ref.Chain), pal.dim.Render(ref.FoldedText()))
	}
	return fmt.Sprintf("%s %s %s", pal.dim.Render(table), pal.accent.Render(ref.Chain), ref.Rule)
}

// addRules appends the rules below n to t: flat while the walk does not
// fork, then one subtree per branch.
func addRules(pal palette, t *tree.Tree, n *ruleNode) {
	for len(n.children) == 1 && len(n.leaves) == 0 {
		n = n.children[0]
		t.Child(ruleLabel(pal, n.ref))
	}
	if len(n.children) == 0 {
		for _, o := range n.leaves {
			t.Child(outcomeLabel(pal, o))
		}
		return
	}
	for _, o := range n.leaves {
		t.Child(outcomeLabel(pal, o))
	}
	for _, c := range n.children {
		sub := tree.Root(branchLabel(pal, c.outcomes))
		sub.Child(ruleLabel(pal, c.ref))
		addRules(pal, sub, c)
		t.Child(sub)
	}
}

// branchLabel heads a subtree: the branch's share and, when all its
// outcomes agree, where it ends.
func branchLabel(pal palette, outs []trace.Outcome) string {
	p := 0.0
	for _, o := range outs {
		p += o.Probability
	}
	if len(outs) == 1 {
		return outcomeLabel(pal, outs[0])
	}
	return fmt.Sprintf("%s %s (%d branches)", pal.bold.Render("branch"), Percent(p), len(outs))
}

func outcomeLabel(pal palette, o trace.Outcome) string {
	var s string
	switch {
	case o.Verdict == trace.VerdictDNAT && o.Endpoint != nil:
		s = fmt.Sprintf("→ %s %s", verdictStyle(pal, o.Verdict).Render("DNAT "+o.Endpoint.AddrPort().String()), Percent(o.Probability))
	default:
		s = fmt.Sprintf("→ %s", verdictStyle(pal, o.Verdict).Render(string(o.Verdict)))
		if o.Probability < 1 {
			s += " " + Percent(o.Probability)
		}
	}
	if o.Masquerade {
		s += pal.warn.Render(" (masqueraded)")
	}
	return s
}

func verdictStyle(pal palette, v trace.Verdict) lipgloss.Style {
	switch v {
	case trace.VerdictDNAT, trace.VerdictAccept:
		return pal.good
	case trace.VerdictDrop, trace.VerdictReject:
		return pal.bad
	}
	return pal.dim
}

// Percent formats a probability for people: "50%", "33.3%", "0.01%".
func Percent(p float64) string {
	v := p * 100
	switch {
	case v == float64(int64(v)):
		return fmt.Sprintf("%d%%", int64(v))
	case v >= 1:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".") + "%"
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".") + "%"
	}
}
