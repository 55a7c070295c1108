package offline

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/collectors/file"
	"github.com/trace-svc/kubectl-trace-svc/render"
	"github.com/trace-svc/kubectl-trace-svc/render/termsafe"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/ruleset"
)

var (
	simulateOutputs = []string{"tree", "json", "yaml"}
	rulesetFormats  = ruleset.Formats
)

// SimulateOptions holds "kubectl trace-svc simulate" flags and what Complete
// derives from them.
type SimulateOptions struct {
	Rulesets         []string
	Format           string
	NodeIPs          []string
	Source           string
	Destination      string
	DestinationPort  int
	Protocol         string
	InInterface      string
	AffinityEndpoint string
	Output           string
	Color            string

	packet   trace.Packet
	local    []netip.Addr
	affinity netip.AddrPort

	genericiooptions.IOStreams
}

// NewSimulateOptions returns options with every default set.
func NewSimulateOptions(streams genericiooptions.IOStreams) *SimulateOptions {
	return &SimulateOptions{Format: "auto", Protocol: "tcp", Output: "tree", Color: "auto", IOStreams: streams}
}

// NewSimulateCommand builds "kubectl trace-svc simulate".
func NewSimulateCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := NewSimulateOptions(streams)
	cmd := &cobra.Command{
		Annotations: map[string]string{Annotation: "true"},
		Use:         "simulate --ruleset FILE --node-ip IP[,IP...] --src IP --dst IP --dport N [--proto tcp|udp|sctp]",
		Short:       "Follow one packet through a node's saved iptables or nftables rules, offline",
		Long: `
			Follow the first packet of a new connection through a node's saved rules and print
			what the kernel would do: the verdict (DNAT, DROP, REJECT, ACCEPT, or NONE when
			kube-proxy's rules leave it alone), every endpoint it can reach with its probability,
			whether it is masqueraded, and the rules that matched, in order.

			The ruleset is iptables-save or ip6tables-save output (legacy or nf_tables, with or
			without -c counters) for kube-proxy's iptables mode, or nft list ruleset output (text,
			or JSON from nft -j) for its nftables mode; for its IPVS mode, pass the iptables dump
			with the IPVS table (cat /proc/net/ip_vs, ipvsadm -Sn or -Ln) and ipset save as more
			--ruleset files. The format is detected from the content (--format overrides). A packet whose source is one of --node-ip is treated as sent by
			the node itself; any other packet as arriving from the network. 127.0.0.1 and ::1 are
			always local.`,
		Example: `
			# A pod on another node connects to a ClusterIP
			kubectl trace-svc simulate --ruleset node1.iptables --node-ip 192.168.0.2 --src 10.0.1.5 --dst 172.30.0.41 --dport 80

			# The same on a node in nftables mode (nft list ruleset > node1.nft)
			kubectl trace-svc simulate --ruleset node1.nft --node-ip 192.168.0.2 --src 10.0.1.5 --dst 172.30.0.41 --dport 80

			# A client outside the cluster hits a node port, as JSON
			kubectl trace-svc simulate --ruleset node1.iptables --node-ip 192.168.0.2 --src 203.0.113.9 --dst 192.168.0.2 --dport 30080 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			cmd.SilenceUsage = true
			return o.Run()
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// AddFlags registers the flags on cmd.
func (o *SimulateOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&o.Rulesets, "ruleset", o.Rulesets, "file with the node's iptables-save, ip6tables-save or nft list ruleset output (- for standard input); repeat for a node's other dumps (each IP family's; in IPVS mode its IPVS table, /proc/net/ip_vs or ipvsadm -Sn, and ipset save; its saved route sections, which are read and checked but do not change the verdict)")
	f.StringVar(&o.Format, "format", o.Format, "ruleset format: "+strings.Join(rulesetFormats, ", ")+" (auto detects it from the content)")
	f.StringSliceVar(&o.NodeIPs, "node-ip", o.NodeIPs, "the node's own addresses, comma-separated or repeated (what --dst-type LOCAL matches)")
	f.StringVar(&o.Source, "src", o.Source, "source IP of the packet")
	f.StringVar(&o.Destination, "dst", o.Destination, "destination IP of the packet")
	f.IntVar(&o.DestinationPort, "dport", o.DestinationPort, "destination port of the packet")
	f.StringVar(&o.Protocol, "proto", o.Protocol, "protocol: tcp, udp or sctp")
	f.StringVar(&o.InInterface, "in-interface", o.InInterface, "interface the packet arrives on, for rules with -i (default: unknown, matches no -i NAME)")
	f.StringVar(&o.AffinityEndpoint, "affinity-endpoint", o.AffinityEndpoint, "assume the client has a ClientIP session-affinity entry for this endpoint IP:PORT")
	f.StringVarP(&o.Output, "output", "o", o.Output, "output format: "+strings.Join(simulateOutputs, ", "))
	f.StringVar(&o.Color, "color", o.Color, "colour the tree: "+strings.Join(render.ColorModes, ", ")+" (auto honours NO_COLOR)")
	_ = cmd.MarkFlagFilename("ruleset")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(simulateOutputs, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions([]string{"tcp", "udp", "sctp"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(rulesetFormats, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("color", cobra.FixedCompletions(render.ColorModes, cobra.ShellCompDirectiveNoFileComp))
}

// Complete parses flag values into typed fields.
func (o *SimulateOptions) Complete() error {
	o.Protocol = strings.ToLower(o.Protocol)
	var err error
	if o.packet.Source, err = parseAddrFlag("src", o.Source); err != nil {
		return err
	}
	if o.packet.Destination, err = parseAddrFlag("dst", o.Destination); err != nil {
		return err
	}
	for _, s := range o.NodeIPs {
		a, err := parseAddrFlag("node-ip", strings.TrimSpace(s))
		if err != nil {
			return err
		}
		o.local = append(o.local, a)
	}
	if o.AffinityEndpoint != "" {
		if o.affinity, err = netip.ParseAddrPort(o.AffinityEndpoint); err != nil {
			return fmt.Errorf("--affinity-endpoint %q is not IP:PORT (use [IPv6]:PORT for IPv6)", o.AffinityEndpoint)
		}
	}
	o.packet.Protocol = o.Protocol
	o.packet.InInterface = o.InInterface
	if o.DestinationPort > 0 && o.DestinationPort <= 65535 {
		o.packet.DestinationPort = uint16(o.DestinationPort)
	}
	return nil
}

func parseAddrFlag(flag, v string) (netip.Addr, error) {
	if v == "" {
		return netip.Addr{}, fmt.Errorf("--%s is required", flag)
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--%s %q is not an IP address", flag, v)
	}
	return a.Unmap(), nil
}

// Validate checks the flags for consistency.
func (o *SimulateOptions) Validate() error {
	if len(o.Rulesets) == 0 {
		return fmt.Errorf("--ruleset is required: pass a file with the node's iptables-save or nft list ruleset output")
	}
	if !slices.Contains(rulesetFormats, o.Format) {
		return fmt.Errorf("--format %q is not supported: use one of %s", o.Format, strings.Join(rulesetFormats, ", "))
	}
	if !slices.Contains(simulateOutputs, o.Output) {
		return fmt.Errorf("--output %q is not supported: use one of %s", o.Output, strings.Join(simulateOutputs, ", "))
	}
	if !slices.Contains(render.ColorModes, o.Color) {
		return fmt.Errorf("--color %q is not one of %s", o.Color, strings.Join(render.ColorModes, ", "))
	}
	if o.DestinationPort < 1 || o.DestinationPort > 65535 {
		return fmt.Errorf("--dport must be between 1 and 65535, got %d", o.DestinationPort)
	}
	switch o.Protocol {
	case "tcp", "udp", "sctp":
	default:
		return fmt.Errorf("--proto %q is not one of tcp, udp, sctp", o.Protocol)
	}
	if o.packet.Source.Is4() != o.packet.Destination.Is4() {
		return fmt.Errorf("--src %s and --dst %s are of different IP families", o.packet.Source, o.packet.Destination)
	}
	return nil
}

// Run reads the ruleset, simulates the packet and prints the result.
func (o *SimulateOptions) Run() error {
	var inputs []ruleset.Input
	var names []string
	budget := int64(batchBudget)
	for _, path := range o.Rulesets {
		d, err := file.OpenMapped(path, o.In)
		if err != nil {
			return err
		}
		defer d.Close()
		inputs = append(inputs, ruleset.Input{Name: d.Name, Source: d, Format: o.Format, Section: ruleset.RouteSectionOf(path)})
		names = append(names, d.Name)
		budget += max(d.Size(), 0)
	}
	defer batchGC(budget)()
	// The dumps are mapped: everything that reads them runs here, before
	// the deferred Close, and under the guard.
	return file.GuardFaults(strings.Join(names, ", "), func() error { return o.simulate(inputs) })
}

func (o *SimulateOptions) simulate(inputs []ruleset.Input) error {
	dp, err := ruleset.Load(inputs...)
	if err != nil {
		return err
	}
	for _, w := range dp.Warnings() {
		fmt.Fprintf(o.ErrOut, "warning: %s: %s\n", termsafe.String(w.Source), termsafe.String(w.Message))
	}
	sim, err := dp.Simulate(o.packet, ruleset.Options{LocalAddrs: o.local, AffinityEndpoint: o.affinity})
	if err != nil {
		return fmt.Errorf("simulate %s in %s: %w", o.packet, strings.Join(o.Rulesets, ", "), err)
	}
	switch o.Output {
	case "json":
		return render.SimulationJSON(o.Out, sim)
	case "yaml":
		return render.SimulationYAML(o.Out, sim)
	}
	r, err := render.NewRenderer(o.Out, o.Color)
	if err != nil {
		return err
	}
	return render.SimulationTree(o.Out, r, sim)
}
