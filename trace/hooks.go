package trace

import "net/netip"

// Hook is a netfilter hook. Each engine maps it to its own names (nat
// PREROUTING / base chains hooked at prerouting, ...).
type Hook int

const (
	HookPrerouting Hook = iota
	HookInput
	HookForward
	HookOutput
	HookPostrouting
)

// WalkHooks sends the branches of one packet through the hooks in the order
// the kernel runs them. A packet sent by the node (local) goes through
// output and postrouting, and, when its destination is still a node address,
// input too (delivery over loopback). Any other packet goes through
// prerouting, then input when its destination after DNAT is local, else
// forward and postrouting. run evaluates one hook over the branches that
// reach it and returns those that survive; dst and isLocal read a branch's
// current destination and the node's addresses.
func WalkHooks[S any](local bool, start S, dst func(S) netip.Addr, isLocal func(netip.Addr) bool, run func(Hook, []S) ([]S, error)) ([]S, error) {
	var final []S
	if local {
		after, err := run(HookOutput, []S{start})
		if err != nil {
			return nil, err
		}
		if after, err = run(HookPostrouting, after); err != nil {
			return nil, err
		}
		for _, s := range after {
			if !isLocal(dst(s)) {
				final = append(final, s)
				continue
			}
			in, err := run(HookInput, []S{s})
			if err != nil {
				return nil, err
			}
			final = append(final, in...)
		}
		return final, nil
	}
	after, err := run(HookPrerouting, []S{start})
	if err != nil {
		return nil, err
	}
	var toInput, toForward []S
	for _, s := range after {
		if isLocal(dst(s)) {
			toInput = append(toInput, s)
		} else {
			toForward = append(toForward, s)
		}
	}
	in, err := run(HookInput, toInput)
	if err != nil {
		return nil, err
	}
	fwd, err := run(HookForward, toForward)
	if err != nil {
		return nil, err
	}
	if fwd, err = run(HookPostrouting, fwd); err != nil {
		return nil, err
	}
	return append(in, fwd...), nil
}
