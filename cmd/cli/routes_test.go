package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/routes"
)

// record re-records the layouts' route sections (as root); -update
// leaves them alone, since a new recording differs in every MAC address.
var record = flag.Bool("record-routes", false, "record the route sections of the node layouts under testdata/scenarios/routes (root)")

// routesDir holds the node layouts (scripts) and, per layout, the route
// sections recorded from it.
const routesDir = "../../testdata/scenarios/routes"

// routeLayouts are the node layouts some scenarios trace through: a script
// under routesDir run with a variant builds the node in network namespaces
// (as trace/routes/testdata/layouts do), and the debug pod's route script
// run there gives the sections, saved as --save-dumps saves them.
var routeLayouts = []struct {
	name, script, variant, node string
}{
	{"calico-bgp", "test-node.sh", "", "test-node"},
	{"calico-bgp-broken", "test-node.sh", "broken", "test-node"},
}

// TestScenarioRoutes builds each layout in network namespaces (root only),
// records its route sections with -record-routes, and holds the route the plugin
// reports for every endpoint of every path of the scenarios that use it to
// what the layout's kernel answers for the same packet (`ip route get`,
// and `ip route get fibmatch` for the route matched).
func TestScenarioRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to build network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip is not installed")
	}
	for _, l := range routeLayouts {
		t.Run(l.name, func(t *testing.T) {
			ns := buildRouteLayout(t, l.name, l.script, l.variant)
			if *record {
				recordRoutes(t, ns, l.node, filepath.Join(routesDir, l.name))
			}
			n := 0
			for _, sc := range scenarios {
				if sc.routes != l.name {
					continue
				}
				for _, mode := range []struct {
					dir   string
					dumps []string
				}{{iptablesFixtures, sc.iptables}, {nftFixtures, sc.nftables}} {
					args := []string{sc.service, "-n", sc.namespace, "--objects", "../../testdata/scenarios/" + sc.dir + "/objects.yaml", "-o", "json"}
					for _, d := range mode.dumps {
						args = append(args, "--dump", sc.node+"="+mode.dir+d)
					}
					for _, f := range routeDumps(t, l.name) {
						args = append(args, "--dump", sc.node+"="+f)
					}
					stdout, stderr, err := runCLI(t, args...)
					if err != nil {
						t.Fatalf("%s: %v\n%s", sc.name, err, stderr)
					}
					var p trace.Path
					if err := json.Unmarshal([]byte(stdout), &p); err != nil {
						t.Fatal(err)
					}
					n += checkRoutesWithKernel(t, ns, &p)
				}
			}
			if n == 0 {
				t.Fatal("no endpoint route was compared")
			}
			t.Logf("%d endpoint routes agree with ip route get", n)
		})
	}
}

// buildRouteLayout runs a layout script with a namespace prefix of this
// test's own; every namespace it made is deleted when the test ends.
func buildRouteLayout(t *testing.T, name, script, variant string) string {
	t.Helper()
	prefix := fmt.Sprintf("h13w-%d-%s-", os.Getpid()%100000, name)
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if ns, _, _ := strings.Cut(line, " "); strings.HasPrefix(ns, prefix) {
				if o, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
					t.Errorf("ip netns delete %s: %v\n%s", ns, err, o)
				}
			}
		}
	})
	args := []string{filepath.Join(routesDir, script), prefix}
	if variant != "" {
		args = append(args, variant)
	}
	if out, err := exec.Command("sh", args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return prefix + "node"
}

// recordRoutes runs the debug pod's route script in ns and saves what it
// printed as node's dumps in dir, replacing what was there.
func recordRoutes(t *testing.T, ns, node, dir string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c", nodedump.RoutesScript)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("route script: %v\n%s", err, stderr.Bytes())
	}
	stdout.WriteString(nodedump.Marker + " done\n")
	res := nodedump.ParseOutput(node, stdout.Bytes(), stderr.Bytes())
	for _, w := range res.Warnings {
		if w.Code != trace.CodeKubeProxyRulesMissing {
			t.Errorf("route script: %s", w)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := res.Save(dir); err != nil {
		t.Fatal(err)
	}
}

// checkRoutesWithKernel compares every endpoint route of p with the kernel
// of ns, asked for the same packet; it returns how many it compared.
func checkRoutesWithKernel(t *testing.T, ns string, p *trace.Path) int {
	t.Helper()
	n := 0
	for _, node := range p.Nodes {
		for _, ep := range node.Paths {
			for _, pe := range ep.Endpoints {
				r := pe.Route
				if r == nil {
					t.Errorf("%s: %s endpoint %s has no route", node.Name, ep.Entry.Kind, pe.IP)
					continue
				}
				args := []string{pe.IP.String()}
				if r.IIF != "" {
					args = append(args, "from", r.Src.String(), "iif", r.IIF)
				}
				if r.Mark != 0 {
					args = append(args, "mark", fmt.Sprintf("%#x", r.Mark))
				}
				fam := "-4"
				if pe.IP.Is6() {
					fam = "-6"
				}
				getOut, _ := exec.Command("ip", append([]string{"-n", ns, fam, "route", "get"}, args...)...).CombinedOutput()
				get, err := routes.ParseRouteGet(getOut)
				if err != nil {
					t.Fatalf("ip route get %s: %v", strings.Join(args, " "), err)
				}
				var fib *routes.Route
				if get.Err == "" {
					fibOut, _ := exec.Command("ip", append([]string{"-n", ns, fam, "-d", "route", "get", "fibmatch"}, args...)...).CombinedOutput()
					rs, ws, err := routes.ParseIPRoute(fibOut, 0)
					if err != nil || len(ws) > 0 || len(rs) != 1 {
						t.Fatalf("ip route get fibmatch %s: %q: %v %v", strings.Join(args, " "), fibOut, err, ws)
					}
					fib = &rs[0]
				}
				if err := routes.CompareHop(r.Hop, pe.IP.Is6(), get, fib); err != nil {
					t.Errorf("%s, %s %s endpoint %s: ip route get %s: %v", node.Name, ep.Entry.Kind, ep.Entry.Address, pe.IP, strings.Join(args, " "), err)
				}
				n++
			}
		}
	}
	return n
}

// TestSimulateAcceptsRouteSections: a node's saved route sections given to
// simulate with its rules are read (named by their NODE.SECTION file name,
// which tells ip -6 rule from ip rule) and leave the verdict alone.
func TestSimulateAcceptsRouteSections(t *testing.T) {
	args := []string{"simulate", "--ruleset", tracePacketDump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "172.30.0.44", "--dport", "80", "-o", "json"}
	want, _, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range routeDumps(t, "calico-bgp") {
		args = append(args, "--ruleset", f)
	}
	got, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || stderr != "" {
		t.Errorf("with route sections: stderr %q, output differs: %v", stderr, got != want)
	}
}
