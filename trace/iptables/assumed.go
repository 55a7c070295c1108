package iptables

import (
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// physdevChance decides -m physdev, the bridge-port match that network
// plugins with a Linux bridge use (flannel and the bridge CNI plugin with
// br_netfilter, Weave's FORWARD rules, Calico's --physdev-is-bridged
// exemptions). It matches only packets that cross a bridge port and reach
// iptables through br_netfilter. The simulated packet is routed: it
// arrives on its incoming interface, as the -i convention says, and is
// taken to have crossed no bridge port, so --physdev-is-in, -is-out and
// -is-bridged do not match, --physdev-in/--physdev-out NAME do not match,
// and each of them negated matches. The walk's notes say so.
func (w *walker) physdevChance(r *Rule, m *UnknownMatch) float64 {
	args := m.Args
	known := false
	for i := 0; i < len(args); i++ {
		neg := false
		if args[i] == "!" && i+1 < len(args) {
			neg = true
			i++
		}
		opt := args[i]
		switch opt {
		case "--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged":
		case "--physdev-in", "--physdev-out":
			if i+1 < len(args) {
				i++ // the bridge port's name
			}
		default:
			w.Note("line %d: the simulator does not evaluate -m physdev %s; taken as not matching", r.Line, excerpt.Clip(strings.Join(args, " ")))
			return 0
		}
		known = true
		if !neg {
			// A routed packet crossed no bridge port: the option fails.
			w.physdevNote()
			return 0
		}
	}
	if known {
		w.physdevNote()
	}
	return 1
}

func (w *walker) physdevNote() {
	w.Note("-m physdev: the packet is taken to arrive routed, not across a bridge port through br_netfilter: --physdev-is-in, --physdev-is-out, --physdev-is-bridged and --physdev-in/--physdev-out NAME do not match, and their negations do")
}

// rpfilterChance decides -m rpfilter (Calico's reverse-path check on
// traffic from its workloads): the node's routes are not part of the
// rules, so the source is taken to pass the check — the match holds, and
// with --invert it does not. A note says so.
func (w *walker) rpfilterChance(r *Rule, m *UnknownMatch) float64 {
	invert := false
	for _, a := range m.Args {
		switch a {
		case "--invert":
			invert = true
		case "--loose", "--validmark", "--accept-local":
		default:
			w.Note("line %d: the simulator does not evaluate -m rpfilter %s; taken as not matching", r.Line, excerpt.Clip(strings.Join(m.Args, " ")))
			return 0
		}
	}
	w.Note("-m rpfilter: the packet's source is taken to pass the reverse-path check (the route back to it leaves by the interface it came in on)")
	if invert {
		return 0
	}
	return 1
}

// socketChance decides -m socket (Cilium's and other transparent proxies'
// redirect rules): it matches a packet that belongs to a socket on the
// node. The first packet of a new connection to a Service is taken to
// belong to none — no proxy on the node has taken it over — so the match
// fails, and negated it holds.
func (w *walker) socketChance(r *Rule, m *UnknownMatch) float64 {
	neg := false
	for _, a := range m.Args {
		switch a {
		case "!":
			neg = true
		case "--transparent", "--nowildcard", "--restore-skmark":
		default:
			w.Note("line %d: the simulator does not evaluate -m socket %s; taken as not matching", r.Line, excerpt.Clip(strings.Join(m.Args, " ")))
			return 0
		}
	}
	w.Note("-m socket: the new connection is taken to belong to no socket on the node (no transparent proxy has taken it over)")
	if neg {
		return 1
	}
	return 0
}
