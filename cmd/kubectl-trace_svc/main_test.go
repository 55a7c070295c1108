package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
