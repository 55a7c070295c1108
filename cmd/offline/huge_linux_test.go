//go:build linux

package offline

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// hugeChild names the environment variable that makes this test binary run
// one simulate instead of the tests (see TestSimulateHugeFallThroughChain).
const hugeChild = "TRACE_SVC_HUGE_SIMULATE"

// hugeRules is how many rules match and fall through in one chain: 1.2
// million, about 40 MB of dump. Before the walk was iterative, each of them
// added a level of recursion: simulate died of a stack overflow at 1.1 GB.
const hugeRules = 1_200_000

// maxHugeRSS is the peak resident memory allowed for simulating the huge
// dump, with the test binary around it.
const maxHugeRSS = 512 << 20

// TestSimulateHugeFallThroughChain runs simulate, in a child process so its
// peak RSS can be read, on a generated dump of 1.2 million rules that match
// and fall through, in iptables-save and nft text form: no crash, the rule
// trail folded to its first and last rule, and peak RSS under maxHugeRSS.
func TestSimulateHugeFallThroughChain(t *testing.T) {
	if path := os.Getenv(hugeChild); path != "" {
		var out, errOut bytes.Buffer
		cmd := NewSimulateCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		cmd.SetArgs([]string{"--ruleset", path, "--node-ip", "192.168.0.2", "--src", "10.0.0.2", "--dst", "10.96.0.10", "--dport", "80"})
		err := cmd.Execute()
		fmt.Printf("%s%s", out.Bytes(), errOut.Bytes())
		if err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(3)
		}
		return
	}
	if testing.Short() {
		t.Skip("writes two 40 MB dumps and simulates a packet through each (-short)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name, file string
		write      func(w *bufio.Writer)
	}{
		{"iptables-save", "fall.iptables", func(w *bufio.Writer) {
			w.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:FALL - [0:0]\n-A PREROUTING -j FALL\n")
			for i := range hugeRules {
				fmt.Fprintf(w, "-A FALL -m comment --comment r%07d\n", i)
			}
			w.WriteString("COMMIT\n")
		}},
		{"nft", "fall.nft", func(w *bufio.Writer) {
			w.WriteString("table ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump fall\n\t}\n\tchain fall {\n")
			for i := range hugeRules {
				fmt.Fprintf(w, "\t\tmeta l4proto tcp comment \"r%07d\"\n", i)
			}
			w.WriteString("\t}\n}\n")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.file)
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriter(f)
			c.write(w)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSimulateHugeFallThroughChain$")
			cmd.Env = append(os.Environ(), hugeChild+"="+path)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("simulate on %d rules: %v\n%s", hugeRules, err, clipOutput(out))
			}
			const fold = "… 1,199,998 more rules matched, no effect"
			if !bytes.Contains(out, []byte(fold)) || !bytes.Contains(out, []byte("r1199999")) {
				t.Errorf("the rule trail is not folded to %q and the last rule:\n%s", fold, clipOutput(out))
			}
			rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
			t.Logf("%s, %d rules: peak RSS %d MiB, %s user, %s system", c.name, hugeRules, rss>>20, cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime())
			if rss > maxHugeRSS {
				t.Errorf("peak RSS %d MiB, want under %d MiB", rss>>20, maxHugeRSS>>20)
			}
		})
	}
}

// clipOutput keeps a failing child's output readable: a stack overflow
// prints thousands of frames.
func clipOutput(b []byte) []byte {
	if len(b) > 4000 {
		return append(b[:4000:4000], "…"...)
	}
	return b
}
