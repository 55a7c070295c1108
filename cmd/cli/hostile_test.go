package cli

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

// kubeProxyOn is node's kube-proxy pod, for --collector kube-proxy.
func kubeProxyOn(node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-proxy-" + node, Labels: map[string]string{"k8s-app": "kube-proxy"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.37.2"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// hostileNode makes the trace collect node-b through its kube-proxy pod,
// whose dump script prints stdout (on top of the real recorded output).
func hostileNode(stdout []byte) func(*TraceOptions) {
	return func(o *TraceOptions) {
		c := fake.NewClientset(append(lbObjects(), kubeProxyOn("node-b"))...)
		c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
			r.Status.Allowed = true
			return true, r, nil
		})
		o.client, o.restConfig = c, &rest.Config{Host: "https://example.invalid"}
		o.executor = execFunc(func(_ context.Context, _, _, _ string, _ []string, out, _ io.Writer) error {
			_, err := out.Write(stdout)
			return err
		})
	}
}

func section(name, data string) string {
	return "@@trace-svc@@ begin " + name + "\n" + data + "\n@@trace-svc@@ end " + name + " rc=0\n"
}

// TestSaveDumpsKeepsHostileSectionsOut: the node's output names sections
// after paths; --save-dumps writes only the sections the dump script
// collects, as NODE.SECTION inside DIR, 0600 in a 0700 DIR, and the
// unknown sections are dropped with one warning that names them escaped.
func TestSaveDumpsKeepsHostileSectionsOut(t *testing.T) {
	recorded, err := os.ReadFile("../../collectors/debugpod/testdata/recorded/iptables-nft.stdout")
	if err != nil {
		t.Fatal(err)
	}
	hostile := section("../../../escaped", "owned") + section("/tmp/absolute", "owned") +
		section("nft/../../sideways", "owned") + section("x\x1b]0;pwned\a", "owned") + section("", "owned")
	stdout := strings.Replace(string(recorded), "@@trace-svc@@ done\n", hostile+"@@trace-svc@@ done\n", 1)

	top := t.TempDir()
	dir := filepath.Join(top, "a", "b", "dumps")
	out, _, err := runTraceWith(t, hostileNode([]byte(stdout)), "svc1", "--dump", lbDump, "--node", "node-b",
		"--collector", "kube-proxy", "--save-dumps", dir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}

	var files []string
	modes := map[string]fs.FileMode{}
	err = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		modes[rel] = info.Mode().Perm()
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	want := []string{"a/b/dumps/node-b.iptables-nft-save", "a/b/dumps/node-b.nft", "a/b/dumps/node-b.proxyMode"}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("files under the temporary directory (-want +got):\n%s", diff)
	}
	for _, f := range want {
		if modes[f] != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, modes[f])
		}
	}
	if modes["a/b/dumps"] != 0o700 {
		t.Errorf("DIR has mode %v, want 0700", modes["a/b/dumps"])
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "node-b.proxyMode")); string(got) != "iptables" {
		t.Errorf("node-b.proxyMode holds %q", got)
	}

	var p struct {
		Findings []struct{ Message string }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	const warning = `node node-b: the node's output holds sections the dump script does not collect, dropped unread: "../../../escaped", "/tmp/absolute", "nft/../../sideways", "x\x1b]0;pwned\a", ""`
	var warnings []string
	for _, f := range p.Findings {
		if strings.Contains(f.Message, "dropped unread") {
			warnings = append(warnings, f.Message)
		}
	}
	if diff := cmp.Diff([]string{warning}, warnings); diff != "" {
		t.Errorf("warnings about unknown sections (-want +got):\n%s", diff)
	}
}

// TestMaxDumpSize: --max-dump-size bounds what a node may print; a node
// over it is not traced and says which flag to raise.
func TestMaxDumpSize(t *testing.T) {
	recorded, err := os.ReadFile("../../collectors/debugpod/testdata/recorded/iptables-nft.stdout")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runTraceWith(t, hostileNode(recorded), "svc1", "--dump", lbDump, "--node", "node-b",
		"--collector", "kube-proxy", "--max-dump-size", "4Ki", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if want := `node \"node-b\" printed more than 4Ki of rules; pass --max-dump-size with a larger size (for example --max-dump-size 8Ki)`; !strings.Contains(out, want) {
		t.Errorf("want node-b's error to say %s:\n%s", want, out)
	}
	for _, bad := range []string{"lots", "-1Mi", "0"} {
		if _, _, err := runTrace(t, "svc1", "--dump", lbDump, "--max-dump-size", bad); err == nil || !strings.Contains(err.Error(), "--max-dump-size") {
			t.Errorf("--max-dump-size %s: %v", bad, err)
		}
	}
}
