package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asMain names the environment variable that makes the test binary run
// main with the arguments that follow "--" on its command line.
const asMain = "TRACE_SVC_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) != "" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"kubectl-trace_svc"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// plugin returns the command that runs main with args.
func plugin(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	return cmd
}

// TestErrorsAreEscaped: an error quoting what a node sent (here a chain
// name in a saved dump) reaches the terminal escaped.
func TestErrorsAreEscaped(t *testing.T) {
	dump := filepath.Join(t.TempDir(), "hostile.iptables")
	if err := os.WriteFile(dump, []byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j \x1b]0;owned\a\nCOMMIT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := plugin("simulate", "--ruleset", dump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "10.96.0.1", "--dport", "80")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
	}
	got := stderr.String()
	if strings.ContainsAny(got, "\x1b\a") || !strings.Contains(got, `jumps to chain \x1b]0;owned\x07, which table nat does not have`) {
		t.Errorf("stderr %q: want the chain name escaped", got)
	}
}

// TestHangupCancels: closing the terminal (SIGHUP) cancels the run like
// Ctrl-C, so the plugin deletes its debug pods and says so, instead of
// dying on the spot. The trace here waits on an API server that never
// answers; the hangup must end it with an error, not kill it.
func TestHangupCancels(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGHUP to send on Windows")
	}
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer api.Close()
	kubeconfig := filepath.Join(t.TempDir(), "config")
	err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: \""+api.URL+
		"\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u, namespace: shop}\nusers:\n- name: u\n  user: {token: t}\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := plugin("web", "--kubeconfig", kubeconfig)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the plugin never asked the API server")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the plugin did not end after SIGHUP")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("after SIGHUP: %v (want exit status 1, not death by the signal)\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stderr.String(), "error: ") {
		t.Errorf("stderr %q, want an error line", stderr.String())
	}
}
