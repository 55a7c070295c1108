package ipvs

import (
	"fmt"
	"strings"
)

// Share is one real server's part of a virtual server's new connections.
type Share struct {
	Real        *RealServer
	Probability float64
}

// Scheduling is how a virtual server spreads new connections over its real
// servers, as far as the table alone can tell.
type Scheduling struct {
	// Shares are the real servers that can take a new connection, in
	// table order, with probabilities adding up to 1; empty when none can.
	Shares []Share
	// Notes say what the shares depend on, one sentence each: connection
	// counts, the client's address, persistence; none for rr and wrr,
	// whose shares hold exactly over any run of connections.
	Notes []string
}

// Schedule computes the shares of the kernel's scheduler for this table.
// Real servers with weight 0 take no new connections (kube-proxy sets 0
// on a terminating endpoint it keeps for open connections); with none
// left, IPVS answers a new connection with ICMP port unreachable.
func (v *VirtualServer) Schedule() Scheduling {
	var s Scheduling
	var eligible []*RealServer
	for _, r := range v.Reals {
		if r.Weight > 0 {
			eligible = append(eligible, r)
		}
	}
	if len(eligible) == 0 {
		s.Notes = append(s.Notes, "no real server takes new connections (none, or all with weight 0): IPVS answers them with ICMP port unreachable")
		return s
	}
	byWeight := func() {
		total := 0
		for _, r := range eligible {
			total += r.Weight
		}
		for _, r := range eligible {
			s.Shares = append(s.Shares, Share{Real: r, Probability: float64(r.Weight) / float64(total)})
		}
	}
	equal := func() {
		for _, r := range eligible {
			s.Shares = append(s.Shares, Share{Real: r, Probability: 1 / float64(len(eligible))})
		}
	}
	highest := func() {
		best := eligible[0]
		for _, r := range eligible[1:] {
			if r.Weight > best.Weight {
				best = r
			}
		}
		s.Shares = []Share{{Real: best, Probability: 1}}
	}
	switch sched := strings.ToLower(v.Scheduler); sched {
	case "rr":
		equal()
	case "wrr":
		byWeight()
	case "lc":
		equal()
		s.Notes = append(s.Notes, "lc picks the server with the fewest connections: the shares hold when the servers are equally loaded")
	case "wlc", "sed", "nq", "lblc", "lblcr", "twos":
		byWeight()
		s.Notes = append(s.Notes, fmt.Sprintf("%s picks by current connections relative to weight: the shares hold when the servers are equally loaded", sched))
	case "sh", "mh":
		byWeight()
		s.Notes = append(s.Notes, fmt.Sprintf("%s picks by a hash of the client's address: one client always reaches the same server, the shares are over many clients", sched))
	case "dh":
		byWeight()
		s.Notes = append(s.Notes, "dh picks by a hash of the destination address: every client reaches the same server")
	case "fo":
		highest()
		s.Notes = append(s.Notes, "fo (weighted failover) sends every new connection to the available server with the highest weight")
	case "ovf":
		highest()
		s.Notes = append(s.Notes, "ovf sends new connections to the highest-weight server until its active connections reach its weight, then overflows to the next")
	default:
		byWeight()
		s.Notes = append(s.Notes, fmt.Sprintf("scheduler %s is not known to the simulator: shares by weight", short(v.Scheduler)))
	}
	if v.Persistent {
		// Timeout's unit depends on the table's format (jiffies from
		// /proc/net/ip_vs): the note does not give it.
		s.Notes = append(s.Notes, PersistentNote)
	}
	return s
}

// PersistentNote is the schedule's note for a persistent virtual server;
// callers that know the timeout's unit say it themselves instead.
const PersistentNote = "persistent: a client that comes back within the persistence timeout reaches the same server (session affinity ClientIP)"
