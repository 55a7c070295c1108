package nodedump

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseOutput: whatever the dump script's output looks like (cut off,
// interleaved, hostile), ParseOutput never panics, keeps every byte of a
// dump it recognises, keeps no section the script does not collect, and
// chooses only dumps it returns.
func FuzzParseOutput(f *testing.F) {
	files, _ := filepath.Glob("testdata/recorded/*.stdout")
	for _, name := range files {
		stdout, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		stderr, _ := os.ReadFile(strings.TrimSuffix(name, ".stdout") + ".stderr")
		f.Add(stdout, stderr)
	}
	f.Add([]byte("@@trace-svc@@ begin nft\n"), []byte(""))
	f.Add([]byte("@@trace-svc@@ begin ../../x\nowned\n@@trace-svc@@ end ../../x rc=0\n@@trace-svc@@ done\n"), []byte(""))
	f.Fuzz(func(t *testing.T, stdout, stderr []byte) {
		done := make(chan *Result, 1)
		go func() { done <- ParseOutput("node", stdout, stderr) }()
		var res *Result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ParseOutput did not return within 10s on %d bytes", len(stdout))
		}
		if res == nil {
			t.Fatal("nil result")
		}
		for _, name := range res.Chosen {
			if _, ok := res.Dump(name); !ok {
				t.Fatalf("chose %q, which is not among the dumps", name)
			}
		}
		for _, d := range res.Dumps {
			if len(d.Data) > len(stdout) {
				t.Fatalf("dump %s is longer than the output", d.Name)
			}
		}
		// Only sections the script collects are kept (Save names files
		// after them), and no warning repeats much of the output.
		for _, d := range res.Sections {
			if _, ok := sectionNamed(d.Name); !ok {
				t.Fatalf("kept section %q, which the script does not collect", d.Name)
			}
		}
		for _, w := range res.Warnings {
			if len(w.Message) > 1024 {
				t.Fatalf("warning of %d bytes", len(w.Message))
			}
		}
	})
}
