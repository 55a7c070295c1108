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
	recorded, err := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stdout")
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
	recorded, err := os.ReadFile("../../collectors/nodedump/testdata/recorded/iptables-nft.stdout")
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

// hostileText is what a node can put in a rule comment, a chain name or a
// tool's warning: an OSC that retitles the terminal, BEL, a clear-screen
// CSI, a C1 CSI and a byte that is not UTF-8.
const hostileText = "\x1b]0;owned\a\x1b[2J\u009b1m\xff"

func checkNoControls(t *testing.T, what, out string) {
	t.Helper()
	for _, c := range []string{"\x1b", "\a", "\u009b", "\xff"} {
		if strings.Contains(out, c) {
			t.Errorf("%s: %q reaches the terminal:\n%q", what, c, out)
		}
	}
}

// TestSimulateEscapesNodeText: a dump's rule comments and # Warning lines
// reach the terminal escaped from simulate, in the tree and on stderr, also
// with -o json, whose document keeps the text exact.
func TestSimulateEscapesNodeText(t *testing.T) {
	dump := filepath.Join(t.TempDir(), "hostile.iptables")
	err := os.WriteFile(dump, []byte("# Warning: "+hostileText+"\n*nat\n:PREROUTING ACCEPT [0:0]\n"+
		"-A PREROUTING -m comment --comment \""+hostileText+"\" -j ACCEPT\nCOMMIT\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"simulate", "--ruleset", dump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "10.96.0.1", "--dport", "80"}
	const escaped = `\x1b]0;owned\x07\x1b[2J\u009b1m\xff`
	for _, color := range []string{"never", "always"} {
		out, errOut, err := runCLI(t, append(args, "--color", color)...)
		if err != nil {
			t.Fatal(err)
		}
		if color == "never" {
			checkNoControls(t, "tree", out)
		} else if strings.Contains(out, "\x1b]") || strings.Contains(out, "\a") || strings.Contains(out, "\x1b[2J") {
			t.Errorf("coloured tree lets node text through:\n%q", out)
		}
		checkNoControls(t, "stderr", errOut)
		if !strings.Contains(out, escaped) || !strings.Contains(errOut, "warning: ") || !strings.Contains(errOut, escaped) {
			t.Errorf("want %s shown escaped in the tree and the warning:\n%s\n%s", escaped, out, errOut)
		}
	}
	out, errOut, err := runCLI(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	checkNoControls(t, "stderr with -o json", errOut)
	var doc struct{ Rules []struct{ Rule string } }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Rules) != 1 || !strings.Contains(doc.Rules[0].Rule, "\x1b]0;owned\a") {
		t.Errorf("JSON must keep the rule exact: %q", doc.Rules)
	}
}

// TestProgressIsEscaped: collection progress lines quote pod names, images
// and errors; they are printed escaped.
func TestProgressIsEscaped(t *testing.T) {
	var b strings.Builder
	progressTo(&b)("node n: exec failed: " + hostileText)
	checkNoControls(t, "progress", b.String())
	if want := "node n: exec failed: \\x1b]0;owned\\x07\\x1b[2J\\u009b1m\\xff\n"; b.String() != want {
		t.Errorf("progress line %q, want %q", b.String(), want)
	}
}
