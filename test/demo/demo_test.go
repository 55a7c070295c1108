// Package demo checks `make demo`, the README's first command, the way a
// newcomer runs it: from a fresh checkout, with no kubeconfig and no
// cluster.
package demo

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeDemo copies the files git tracks (what a clone has: no bin/, no
// kubeconfig) to a temporary directory and runs make demo there with HOME
// an empty directory and KUBECONFIG a file that does not exist. The trace
// must show the recorded drift, and the diagram must be where the demo
// says: an SVG with Graphviz, else the DOT file and a sentence saying
// Graphviz is missing.
func TestMakeDemo(t *testing.T) {
	for _, tool := range []string{"git", "make", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH", tool)
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checkout := t.TempDir()
	copyTracked(t, repo, checkout)
	home := t.TempDir()

	// The Go caches are the developer's, so the build is not a cold one;
	// everything else a kubeconfig could come from is empty.
	env := []string{"HOME=" + home, "KUBECONFIG=" + filepath.Join(home, "no-such-kubeconfig"), "PATH=" + os.Getenv("PATH"), "CGO_ENABLED=0"}
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN", "TMPDIR"} {
		env = append(env, v+"="+goEnv(t, v))
	}

	run := func(t *testing.T, extra []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = checkout, append(append([]string{}, env...), extra...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	wantTrace := func(t *testing.T, out string) {
		t.Helper()
		for _, want := range []string{
			"Service shop/web · LoadBalancer",
			"node1 · iptables mode",
			"node2 · nftables mode",
			"missing from this node's rules",
			"EndpointMissingFromRules · node2",
			"ProxyModesDiffer",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("make demo's output lacks %q:\n%s", want, out)
			}
		}
		for _, bad := range []string{"kubeconfig", "error:"} {
			if strings.Contains(out, bad) {
				t.Errorf("make demo's output mentions %q:\n%s", bad, out)
			}
		}
	}

	out := run(t, nil, "make", "demo")
	wantTrace(t, out)
	svg := filepath.Join(checkout, "bin", "demo", "demo.svg")
	if _, err := exec.LookPath("dot"); err == nil {
		b, err := os.ReadFile(svg)
		if err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("web&#45;3")) && !bytes.Contains(b, []byte("web-3")) {
			t.Errorf("make demo with Graphviz: no SVG of the trace at %s (%v)", svg, err)
		}
		if !strings.Contains(out, "The same trace as a diagram: bin/demo/demo.svg") {
			t.Errorf("make demo does not say where the SVG is:\n%s", out)
		}
	}

	t.Run("without Graphviz", func(t *testing.T) {
		out := run(t, []string{"DOT=" + filepath.Join(home, "no-dot")}, "hack/demo.sh", "bin/kubectl-trace_svc", "bin/demo")
		wantTrace(t, out)
		if !strings.Contains(out, "Graphviz is not installed (no dot on PATH), so there is no SVG: the diagram is bin/demo/demo.dot") {
			t.Errorf("the demo does not say Graphviz is missing:\n%s", out)
		}
		if _, err := os.Stat(svg); err == nil {
			t.Errorf("an SVG was left at %s without Graphviz", svg)
		}
		if b, err := os.ReadFile(filepath.Join(checkout, "bin", "demo", "demo.dot")); err != nil || !bytes.HasPrefix(b, []byte("digraph")) {
			t.Errorf("no DOT diagram: %v", err)
		}
	})
}

// copyTracked copies the files git tracks in repo, as they are in the
// working tree, to dst.
func copyTracked(t *testing.T, repo, dst string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = repo
	list, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		src := filepath.Join(repo, name)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or a symlink
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(dst, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}
