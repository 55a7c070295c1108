package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tracePacketDump is kube-proxy's own TestTracePacket ruleset (v1.37.2), as
// iptables-nft-save prints it after a real restore.
const tracePacketDump = "../../testdata/iptables/kube-proxy/v1.37.2/TestTracePacket/iptables-nft.save"

var simulateArgs = []string{"simulate", "--ruleset", tracePacketDump, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "172.30.0.41", "--dport", "80"}

func TestRunsHere(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"simulate", simulateArgs, true},
		{"simulate -o json", append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "-o", "json"), true},
		{"version", []string{"version"}, true},
		{"version -o json", []string{"version", "-o", "json"}, true},
		{"no arguments", nil, false},
		{"a Service", []string{"web", "-n", "shop"}, false},
		{"cleanup", []string{"cleanup"}, false},
		{"completion", []string{"completion", "bash"}, false},
		{"shell completion request", []string{"__complete", "simulate", "--"}, false},
		{"help command", []string{"help", "simulate"}, false},
		{"simulate --help", []string{"simulate", "--help"}, false},
		{"simulate -h", append([]string{"simulate", "-h"}, simulateArgs[1:]...), false},
		{"kubectl's cluster flag after simulate", append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "--context", "prod"), false},
		{"kubectl's cluster flag before simulate", append([]string{"--kubeconfig", "k"}, simulateArgs...), false},
		{"version with a cluster flag", []string{"version", "--request-timeout", "5s"}, false},
		{"a flag simulate does not have", append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "--dprot", "80"), false},
		{"a bad flag value", []string{"simulate", "--dport", "eighty"}, false},
		{"an argument simulate does not take", append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "extra"), false},
		{"end of flags", append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "--"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := runsHere(tc.args); got != tc.want {
				t.Errorf("runsHere(%q) = %v, want %v", tc.args, got, tc.want)
			}
		})
	}
}

// TestTwoBinariesActAsOne builds both binaries, as make install puts them
// side by side, and checks that what the plugin runs itself and what it
// hands over give what the whole tree gives, streams and exit status alike.
func TestTwoBinariesActAsOne(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries (-short)")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator), ".", "../trace-svc-cluster")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exe := func(name string) string {
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		return filepath.Join(dir, name)
	}
	plugin, whole := exe("kubectl-trace_svc"), exe(clusterBinary)

	for _, args := range [][]string{
		simulateArgs,
		append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "-o", "json"),
		append(simulateArgs[:len(simulateArgs):len(simulateArgs)], "--context", "prod"),
		{"version", "-o", "json"},
		{"version", "--kubeconfig", "/nonexistent"},
		{"simulate", "--help"},
		{"--help"},
		{"simulate", "--ruleset", tracePacketDump},
		{"simulate", "--dport", "eighty"},
		{"web", "--kubeconfig", filepath.Join(dir, "none"), "--request-timeout", "1s"},
		{"__complete", "simulate", "--proto", ""},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			wantOut, wantErr, wantCode := runBinary(t, whole, args)
			gotOut, gotErr, gotCode := runBinary(t, plugin, args)
			if gotOut != wantOut || gotErr != wantErr || gotCode != wantCode {
				t.Errorf("kubectl-trace_svc and %s differ:\nplugin: exit %d\nstdout:\n%s\nstderr:\n%s\nwhole tree: exit %d\nstdout:\n%s\nstderr:\n%s",
					clusterBinary, gotCode, gotOut, gotErr, wantCode, wantOut, wantErr)
			}
		})
	}

	// Without trace-svc-cluster beside it, simulate still runs; a command
	// that needs the whole tree says what is missing and how to fix it.
	alone := t.TempDir()
	data, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	lonePlugin := filepath.Join(alone, filepath.Base(plugin))
	if err := os.WriteFile(lonePlugin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _, code := runBinary(t, lonePlugin, simulateArgs); code != 0 || !strings.Contains(out, "Verdict DNAT") {
		t.Errorf("simulate without %s: exit %d\n%s", clusterBinary, code, out)
	}
	_, errOut, code := runBinary(t, lonePlugin, []string{"web"})
	if code != 1 || !strings.Contains(errOut, "kubectl trace-svc needs "+filepath.Base(whole)+" next to "+lonePlugin) || !strings.Contains(errOut, "reinstall the plugin") {
		t.Errorf("a trace without %s: exit %d, stderr %q", clusterBinary, code, errOut)
	}

	// Installed through a link (krew links its bin directory to the
	// plugin's own), the plugin finds the binary beside the link's target.
	linkDir := t.TempDir()
	link := filepath.Join(linkDir, filepath.Base(plugin))
	if err := os.Symlink(plugin, link); err != nil {
		t.Skipf("cannot make a symbolic link here: %v", err)
	}
	if out, errOut, code := runBinary(t, link, []string{"version", "--kubeconfig", "/nonexistent"}); code != 0 || !strings.HasPrefix(out, "kubectl trace-svc ") {
		t.Errorf("through a link: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func runBinary(t *testing.T, path string, args []string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = "."
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", path, err)
	}
	return out.String(), errOut.String(), code
}
