package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// routesDoc is the part of the plugin's JSON the route check reads: each
// endpoint's last leg (route) and the packet it was looked up for.
type routesDoc struct {
	Nodes []struct {
		Name  string `json:"name"`
		Paths []struct {
			Entry struct {
				Kind    string     `json:"kind"`
				Address netip.Addr `json:"address"`
				From    string     `json:"from"`
			} `json:"entry"`
			Endpoints []struct {
				IP    netip.Addr `json:"ip"`
				Route *struct {
					routes.Hop
					Src  netip.Addr `json:"src"`
					IIF  string     `json:"iif"`
					Mark uint32     `json:"mark"`
				} `json:"route"`
			} `json:"endpoints"`
		} `json:"paths"`
	} `json:"nodes"`
}

// checkRoutes holds the route the plugin reports for every endpoint of
// every traced path on every node to what the node's kernel says for the
// same packet: `ip route get ENDPOINT` (from the source, in on the
// interface and with the mark the plugin assumed, when it did) and
// `ip route get fibmatch` for the route matched (routes.CompareHop). Every
// endpoint must have a route: the debug pod collects the node's routes.
func (c *cluster) checkRoutes(t *testing.T, raw []byte) {
	t.Helper()
	var doc routesDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decode plugin output for routes: %v", err)
	}
	netns := map[string]string{}
	for _, n := range c.nodes {
		netns[n.name] = n.ns
	}
	compared := 0
	for _, n := range doc.Nodes {
		ns, ok := netns[n.Name]
		if !ok {
			continue
		}
		for _, p := range n.Paths {
			for _, e := range p.Endpoints {
				what := fmt.Sprintf("%s: %s %s from %s, endpoint %s", n.Name, p.Entry.Kind, p.Entry.Address, p.Entry.From, e.IP)
				r := e.Route
				if r == nil {
					t.Errorf("%s: the plugin reports no route", what)
					continue
				}
				args := []string{e.IP.String()}
				if r.IIF != "" {
					args = append(args, "from", r.Src.String(), "iif", r.IIF)
				}
				if r.Mark != 0 {
					args = append(args, "mark", fmt.Sprintf("%#x", r.Mark))
				}
				fam := "-4"
				if e.IP.Is6() {
					fam = "-6"
				}
				getOut, _ := exec.Command("ip", append([]string{"-n", ns, fam, "route", "get"}, args...)...).CombinedOutput()
				get, err := routes.ParseRouteGet(getOut)
				if err != nil {
					t.Errorf("%s: ip route get %s: %v", what, strings.Join(args, " "), err)
					continue
				}
				var fib *routes.Route
				if get.Err == "" {
					fibOut, _ := exec.Command("ip", append([]string{"-n", ns, fam, "-d", "route", "get", "fibmatch"}, args...)...).CombinedOutput()
					rs, ws, err := routes.ParseIPRoute(fibOut, 0)
					if err != nil || len(ws) > 0 || len(rs) != 1 {
						t.Errorf("%s: ip route get fibmatch %s: %q: %v %v", what, strings.Join(args, " "), fibOut, err, ws)
						continue
					}
					fib = &rs[0]
				}
				if err := routes.CompareHop(r.Hop, e.IP.Is6(), get, fib); err != nil {
					t.Errorf("%s: the plugin's route (%s) is not the kernel's: ip route get %s: %v", what, r.Line(), strings.Join(args, " "), err)
				}
				compared++
			}
		}
	}
	t.Logf("routes: %d endpoint routes agree with ip route get on their nodes", compared)
}
