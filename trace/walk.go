package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// WalkOptions are what every engine's walk takes besides its rules: the
// node's facts that a dump does not carry, and the bounds that keep a hostile
// dump from exhausting the simulator. The engines use the same options and
// the same limits.
type WalkOptions struct {
	// LocalAddrs are the node's own addresses (what "-m addrtype
	// --dst-type LOCAL" and "fib daddr type local" match). 127.0.0.0/8 and
	// ::1 are always local.
	LocalAddrs []netip.Addr
	// AffinityEndpoint, when valid, says the client already has a
	// session-affinity entry pointing at this endpoint. The default is a
	// new client with no entry (an nftables dump's affinity sets may still
	// hold real clients of a live node).
	AffinityEndpoint netip.AddrPort
	// MaxBranches bounds the random-choice branches followed (default
	// DefaultMaxBranches).
	MaxBranches int
	// MaxRules bounds how many rules one simulation looks at, counting a
	// rule again each time a walk passes it (default DefaultMaxRules).
	MaxRules int
}

const (
	// DefaultMaxBranches is WalkOptions.MaxBranches unless set.
	DefaultMaxBranches = 1_000_000
	// DefaultMaxRules is WalkOptions.MaxRules unless set: room for every
	// branch of a Service with thousands of endpoints to cross a dispatch
	// chain of tens of thousands of rules, while a hostile dump's walk
	// still ends in seconds.
	DefaultMaxRules = 50_000_000
	// MaxJumpDepth bounds how deeply jumps nest; kube-proxy's chains nest
	// four or five deep in either mode.
	MaxJumpDepth = 64
)

// ErrLoop is wrapped when the rules jump in a circle or nest deeper than
// MaxJumpDepth.
var ErrLoop = errors.New("rules loop or nest too deeply")

// Walk is the part of one simulation every engine shares: the packet and
// where it comes from, the node's addresses, the bounds and what was spent
// of them, the notes (each said once) and the session-affinity checks met.
// An engine starts one with StartWalk, walks its own rules with it, and
// ends it with Finish.
type Walk struct {
	opts     WalkOptions
	local    map[netip.Addr]bool
	sim      *Simulation
	notes    []string
	affinity []AffinityRule
	branches int
	visited  int
}

// StartWalk checks the packet and sets up the walk: the node's addresses,
// the defaults of the bounds, and the packet's origin — sent by the node
// when its source is a node address, arriving from the network otherwise.
func StartWalk(pkt Packet, opts WalkOptions) (*Walk, error) {
	if err := pkt.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxBranches <= 0 {
		opts.MaxBranches = DefaultMaxBranches
	}
	if opts.MaxRules <= 0 {
		opts.MaxRules = DefaultMaxRules
	}
	w := &Walk{opts: opts, local: map[netip.Addr]bool{},
		sim: &Simulation{Packet: pkt, LocalAddresses: []netip.Addr{}, Origin: "forwarded"}}
	for _, a := range opts.LocalAddrs {
		a = a.Unmap()
		if !w.local[a] {
			w.local[a] = true
			w.sim.LocalAddresses = append(w.sim.LocalAddresses, a)
		}
	}
	if w.IsLocal(pkt.Source.Unmap()) {
		w.sim.Origin = "local"
	}
	return w, nil
}

// Options are the walk's options, with the bounds' defaults filled in.
func (w *Walk) Options() WalkOptions { return w.opts }

// FromNode tells whether the packet was sent by the node itself.
func (w *Walk) FromNode() bool { return w.sim.Origin == "local" }

// IsLocal tells whether a is one of the node's addresses.
func (w *Walk) IsLocal(a netip.Addr) bool { return a.IsLoopback() || w.local[a] }

// Note records an assumption the walk made; each note is said once.
func (w *Walk) Note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(w.notes, n) {
		w.notes = append(w.notes, n)
	}
}

// Affinity are the session-affinity checks met so far.
func (w *Walk) Affinity() []AffinityRule { return w.affinity }

// AddAffinity records a session-affinity check, once per rule.
func (w *Walk) AddAffinity(ar AffinityRule) {
	if !slices.ContainsFunc(w.affinity, func(a AffinityRule) bool { return a.Rule == ar.Rule }) {
		w.affinity = append(w.affinity, ar)
	}
}

// CountRule counts one rule looked at against MaxRules.
func (w *Walk) CountRule() error {
	w.visited++
	if w.visited > w.opts.MaxRules {
		return fmt.Errorf("the walk looked at more than %d rules without finishing: the dump is too large or its chains call each other too often: %w", w.opts.MaxRules, ErrBudget)
	}
	return nil
}

// CountBranches counts n more random-choice branches against MaxBranches.
func (w *Walk) CountBranches(n int) error {
	w.branches += n
	if w.branches > w.opts.MaxBranches {
		return fmt.Errorf("more than %d random branches: the dump is too large or loops: %w", w.opts.MaxBranches, ErrBudget)
	}
	return nil
}

// CheckDepth returns an error wrapping ErrLoop when a jump would nest
// deeper than MaxJumpDepth; where names the chain jumped to.
func CheckDepth(depth int, where string) error {
	if depth > MaxJumpDepth {
		return fmt.Errorf("%s: jumps nest more than %d deep: %w", where, MaxJumpDepth, ErrLoop)
	}
	return nil
}

// Finish makes the simulation from the branches the walk ended with: their
// outcomes (within MaxOutcomeRules), the affinity checks, the notes, and the
// summary.
func (w *Walk) Finish(branches []*Branch) (*Simulation, error) {
	err := CheckOutcomeRules(func(yield func(int) bool) {
		for _, b := range branches {
			if !yield(b.TrailLen()) {
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sim := w.sim
	for _, b := range branches {
		sim.Outcomes = append(sim.Outcomes, b.Outcome())
	}
	sim.Affinity = w.affinity
	sim.Notes = w.notes
	sim.Summarize()
	return sim, nil
}
