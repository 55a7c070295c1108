package routes

import (
	"fmt"
	"slices"
)

// CompareRouteGet checks a lookup against what the kernel answered for the
// same packet: `ip route get` (get) and, when given, `ip route get fibmatch`
// (the route the kernel matched, parsed with ParseIPRoute). It returns nil
// when they agree: the same verdict (or the same kernel error), and for a
// routed packet the same device and gateway (any path of a multipath
// route) and the same matched route (table, destination, type). This is
// how the tests and the end-to-end suite hold Lookup to the kernel.
func CompareRouteGet(res Result, get RouteGet, fibmatch *Route) error {
	if get.Err != "" || res.Errno != "" {
		if get.Err != res.Errno {
			return fmt.Errorf("kernel says %q, lookup says %s (%q)", get.Err, res.Verdict, res.Errno)
		}
		return nil
	}
	if gv := get.Verdict(); gv != res.Verdict {
		return fmt.Errorf("kernel says %s, lookup says %s", gv, res.Verdict)
	}
	if res.Verdict == VerdictForward || res.Verdict == VerdictBroadcast || res.Verdict == VerdictMulticast {
		paths := res.Nexthops
		if len(paths) == 0 {
			paths = []Nexthop{{Via: res.Via, Dev: res.Dev}}
		}
		if !slices.ContainsFunc(paths, func(nh Nexthop) bool { return nh.Dev == get.Dev && nh.Via == get.Via }) {
			return fmt.Errorf("kernel routes via %v dev %s, lookup via %v dev %s", get.Via, get.Dev, res.Via, res.Dev)
		}
	}
	if fibmatch != nil {
		if res.Route == nil {
			return fmt.Errorf("kernel matched %q, lookup matched no route", fibmatch.String())
		}
		table := fibmatch.Table
		if table == TableMain && res.Route.Table == TableLocal && (fibmatch.Type == Local || fibmatch.Type == Broadcast) {
			// Until a policy rule is added the kernel keeps the local
			// table merged into main and reports its routes as main's.
			table = TableLocal
		}
		if table != res.Route.Table || fibmatch.Dst != res.Route.Dst || fibmatch.Type != res.Route.Type {
			return fmt.Errorf("kernel matched %q, lookup matched %q", fibmatch.String(), res.Route.String())
		}
	}
	return nil
}

// CompareHop checks a path's last leg — a Hop as a Path's JSON carries it,
// for a destination of the family v6 says — against the kernel's answers
// for the same packet, as CompareRouteGet does: the hop's verdict, device
// and gateway (or kernel error) against `ip route get`, and the route it
// names, read back from its text, against `ip route get fibmatch` when
// given. This is how the end-to-end suite holds the plugin's routes to the
// nodes' kernels.
func CompareHop(h Hop, v6 bool, get RouteGet, fibmatch *Route) error {
	res := Result{Verdict: h.Verdict, Dev: h.Dev, Via: h.Via, Errno: h.Errno}
	if h.Route != "" {
		family := 4
		if v6 {
			family = 6
		}
		rs, ws, err := ParseIPRoute([]byte(h.Route), family)
		if err != nil || len(ws) > 0 || len(rs) != 1 {
			return fmt.Errorf("the hop's route %s cannot be read back: %v %v", quote(h.Route), err, ws)
		}
		res.Route = &rs[0]
	}
	return CompareRouteGet(res, get, fibmatch)
}
