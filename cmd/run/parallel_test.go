package run

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/trace-svc/kubectl-trace-svc/collectors/objects"
	"github.com/trace-svc/kubectl-trace-svc/trace"
)

// TestTraceParsesNodesInParallel: nodes parsed at once, on more workers
// than there are cores, each keep their own dump and their place in the
// Path, and a node whose dump cannot be read is that node's error only.
func TestTraceParsesNodesInParallel(t *testing.T) {
	demo := filepath.Join("..", "..", "testdata", "demo")
	objs, err := objects.Read(filepath.Join(demo, "objects.json"))
	if err != nil {
		t.Fatal(err)
	}
	var node1 *corev1.Node
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok && n.Name == "node1" {
			node1 = n
		}
	}
	if node1 == nil {
		t.Fatal("testdata/demo/objects.json has no node1")
	}
	iptablesDump := []string{filepath.Join(demo, "node1.iptables-nft-save")}
	nftDump := []string{filepath.Join(demo, "node2.nft")}
	dumps := map[string][]string{}
	wantFormat := map[string]string{}
	var all []string
	for i := range 3 * runtime.GOMAXPROCS(0) {
		name := fmt.Sprintf("extra-%02d", i)
		n := node1.DeepCopy()
		n.Name = name
		objs = append(objs, k8sruntime.Object(n))
		all = append(all, name)
		switch i % 3 {
		case 0:
			dumps[name], wantFormat[name] = iptablesDump, trace.FormatIPTables
		case 1:
			dumps[name], wantFormat[name] = nftDump, trace.FormatNFT
		case 2:
			dumps[name], wantFormat[name] = []string{filepath.Join(t.TempDir(), "missing")}, ""
		}
	}
	cfg := Config{Namespace: "shop", Service: "web", Objects: objs, Dumps: dumps, Nodes: all}
	path, err := Trace(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range path.Nodes {
		got = append(got, n.Name)
	}
	slices.Sort(all)
	if !slices.Equal(got, all) {
		t.Fatalf("the Path's nodes are %v, want %v", got, all)
	}
	for _, n := range path.Nodes {
		if want := wantFormat[n.Name]; n.RulesetFormat != want {
			t.Errorf("node %s: ruleset format %q, want %q (another node's dump?)", n.Name, n.RulesetFormat, want)
		}
	}
}
