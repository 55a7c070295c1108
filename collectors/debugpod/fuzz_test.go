package debugpod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseOutput: whatever the dump script's output looks like (cut off,
// interleaved, hostile), ParseOutput never panics, keeps every byte of a
// dump it recognises, and chooses only dumps it returns.
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
	})
}
