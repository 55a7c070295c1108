package dumpgen

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var updateLastLeg = flag.Bool("update", false, "rewrite the kube-proxy dumps of the network plugin layouts (trace/tracer/testdata/lastleg)")

// lastLegDir holds, per network plugin layout of trace/routes/testdata, the
// rules kube-proxy writes on that node for one Service whose endpoints are
// the layout's pods and pods on other nodes: the tracer's end-to-end tests
// send packets through them into the layout's routes.
const lastLegDir = "../../../tracer/testdata/lastleg"

// lastLegLayouts are the layouts' nodes and the Service's endpoints there
// (trace/tracer's lastleg_test.go builds the same Service from the API's
// side).
var lastLegLayouts = []struct {
	name        string
	nodeIP      string
	clusterCIDR string
	endpoints   []Endpoint
}{
	{"flannel", "10.0.0.11", "10.244.0.0/16", eps(true, "10.244.0.2", false, "10.244.1.5", false, "10.244.2.7")},
	{"calico", "172.17.0.7", "10.65.0.0/16", eps(true, "10.65.0.2", false, "10.65.1.3", false, "10.65.3.4")},
	{"cilium", "192.168.1.15", "10.0.0.0/16", eps(true, "10.0.0.20", false, "10.0.1.5")},
	{"kindnet", "172.18.0.3", "10.244.0.0/16", eps(true, "10.244.1.2", false, "10.244.0.5", false, "10.244.2.7")},
	{"aws-vpc-cni", "192.168.70.10", "192.168.64.0/18", eps(true, "192.168.70.181", true, "192.168.71.12", false, "192.168.90.7")},
}

// eps reads pairs of (on this node, address) into endpoints on port 8080.
func eps(pairs ...any) []Endpoint {
	var out []Endpoint
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(pairs[i+1].(string)), 8080), Local: pairs[i].(bool)})
	}
	SortEndpoints(out)
	return out
}

// TestLastLegDumps writes (with -update) and checks the kube-proxy dump of
// each layout: a NodePort Service shop/web, port http 80 → 8080, node port
// 30080, cluster IP 10.96.0.10, externalTrafficPolicy Cluster.
func TestLastLegDumps(t *testing.T) {
	for _, l := range lastLegLayouts {
		t.Run(l.name, func(t *testing.T) {
			c := &Cluster{
				Config: Config{
					ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"),
					ClusterCIDR: netip.MustParsePrefix(l.clusterCIDR),
					NodeIP:      netip.MustParseAddr(l.nodeIP),
					Time:        time.Date(2026, time.November, 24, 22, 2, 20, 0, time.UTC),
				},
				Services: []Service{{
					Namespace: "shop", Name: "web", PortName: "http", Protocol: "tcp",
					ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30080,
					Endpoints: l.endpoints,
				}},
			}
			var b bytes.Buffer
			if err := c.Write(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(lastLegDir, l.name+".kube-proxy.iptables")
			if *updateLastLeg {
				if err := os.MkdirAll(lastLegDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./trace/iptables/internal/dumpgen -run TestLastLegDumps -update)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}
