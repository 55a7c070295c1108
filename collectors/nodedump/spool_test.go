package nodedump

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// playback is an Executor that prints a recorded script output (once per
// exec), or fails with err after printing it.
type playback struct {
	stdout, stderr []byte
	err            error
	// during runs in the middle of the exec (a look at the spool dir).
	during func()
}

func (p playback) Exec(_ context.Context, _, _, _ string, _ []string, stdout, stderr io.Writer) error {
	half := len(p.stdout) / 2
	if _, err := stdout.Write(p.stdout[:half]); err != nil {
		return err
	}
	if p.during != nil {
		p.during()
	}
	if _, err := stdout.Write(p.stdout[half:]); err != nil {
		return err
	}
	if _, err := stderr.Write(p.stderr); err != nil {
		return err
	}
	return p.err
}

var spoolName = regexp.MustCompile(`^spool-[0-9]+$`)

// spoolFiles lists dir with each file's mode.
func spoolFiles(t *testing.T, dir string) map[string]os.FileMode {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]os.FileMode{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Mode().Perm()
	}
	return out
}

// TestRunSpoolsOutput: with a spool directory the node's output is written
// to one private file while the script runs, the Result holds no dump in
// memory until Load, and once loaded it is what the output held in memory
// gives; Close removes the file.
func TestRunSpoolsOutput(t *testing.T) {
	for _, name := range []string{"iptables-nft", "nftables-and-stale-iptables-nft", "both-iptables-backends"} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr := readRecorded(t, name)
			dir := t.TempDir()
			var during map[string]os.FileMode
			ex := playback{stdout: stdout, stderr: stderr, during: func() { during = spoolFiles(t, dir) }}
			got, err := Run(context.Background(), ex, "node-1", Target{}, RunOptions{SpoolDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			want, err := Run(context.Background(), ex, "node-1", Target{}, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(during) != 1 {
				t.Fatalf("while the script ran the spool dir held %v, want one file", during)
			}
			for f, mode := range during {
				if !spoolName.MatchString(f) || mode != 0o600 {
					t.Errorf("spool file %s has mode %v, want 0600 and a name of os.CreateTemp's (spool-DIGITS), nothing of the node's", f, mode)
				}
			}
			if !got.Spooled() || want.Spooled() {
				t.Fatalf("Spooled() = %v with a spool dir, %v without", got.Spooled(), want.Spooled())
			}
			for _, d := range append(got.Dumps, got.Sections...) {
				if d.Data != nil {
					t.Errorf("spooled dump %s is held in memory (%d bytes) before Load", d.Name, len(d.Data))
				}
			}
			if got.DumpBytes() != want.DumpBytes() || want.DumpBytes() == 0 {
				t.Errorf("DumpBytes() = %d spooled, %d in memory", got.DumpBytes(), want.DumpBytes())
			}
			if got.Backend != want.Backend || !cmp.Equal(got.Chosen, want.Chosen) || !cmp.Equal(got.Warnings, want.Warnings) {
				t.Errorf("spooled result decided backend %s %v, warnings %v; in memory %s %v, %v", got.Backend, got.Chosen, got.Warnings, want.Backend, want.Chosen, want.Warnings)
			}
			if err := got.Load(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Dumps, got.Dumps); diff != "" {
				t.Errorf("loaded dumps (-in memory +spooled):\n%s", diff)
			}
			if diff := cmp.Diff(want.Sections, got.Sections); diff != "" {
				t.Errorf("loaded sections (-in memory +spooled):\n%s", diff)
			}
			got.Unload()
			if got.Dumps[0].Data != nil {
				t.Error("Unload kept the dumps in memory")
			}
			if err := got.Close(); err != nil {
				t.Fatal(err)
			}
			if left := spoolFiles(t, dir); len(left) != 0 {
				t.Errorf("Close left %v in the spool dir", left)
			}
			if err := got.Load(); err == nil {
				t.Error("Load after Close read something back")
			}
		})
	}
}

// TestSaveSpooled: --save-dumps writes the same files from a spooled Result
// as from one held in memory, and leaves it unloaded.
func TestSaveSpooled(t *testing.T) {
	stdout, stderr := readRecorded(t, "nftables-and-stale-iptables-nft")
	ex := playback{stdout: stdout, stderr: stderr}
	spooled, err := Run(context.Background(), ex, "node-1", Target{}, RunOptions{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer spooled.Close()
	held := ParseOutput("node-1", stdout, stderr)
	a, b := t.TempDir(), t.TempDir()
	if err := spooled.Save(a); err != nil {
		t.Fatal(err)
	}
	if err := held.Save(b); err != nil {
		t.Fatal(err)
	}
	if spooled.Dumps[0].Data != nil {
		t.Error("Save left the spooled dumps in memory")
	}
	files := spoolFiles(t, b)
	if len(files) == 0 {
		t.Fatal("Save wrote nothing")
	}
	if diff := cmp.Diff(files, spoolFiles(t, a)); diff != "" {
		t.Fatalf("saved files (-in memory +spooled):\n%s", diff)
	}
	for f := range files {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between the spooled and the in-memory result", f)
		}
	}
}

// TestRunSpoolRemovedOnFailure: a run that fails — the exec's error, the
// output cap, a cancelled context — leaves no file behind.
func TestRunSpoolRemovedOnFailure(t *testing.T) {
	stdout, stderr := readRecorded(t, "iptables-nft")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		ex   Executor
		max  int64
		want error
	}{
		{"exec fails", context.Background(), playback{stdout: stdout, err: errors.New("stream closed")}, 0, nil},
		{"output too large", context.Background(), playback{stdout: stdout, stderr: stderr}, int64(len(stdout) / 3), ErrOutputTooLarge},
		{"cancelled", cancelled, playback{stdout: stdout, err: context.Canceled}, 0, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Run(tt.ctx, tt.ex, "node-1", Target{}, RunOptions{SpoolDir: dir, MaxOutput: tt.max})
			if err == nil || res != nil {
				t.Fatalf("Run = %v, %v; want an error", res, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Run error %v, want %v", err, tt.want)
			}
			if left := spoolFiles(t, dir); len(left) != 0 {
				t.Errorf("a failed run left %v in the spool dir", left)
			}
		})
	}
}

// TestRunSpoolsWithoutShell: an image without sh has its dumps taken one by
// one; they are spooled too.
func TestRunSpoolsWithoutShell(t *testing.T) {
	rules := "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
	ex := execFunc(func(argv []string, stdout, stderr io.Writer) error {
		if argv[0] == "sh" || argv[0] != DumpIPTablesNFT {
			return errors.New("exec: executable file not found in $PATH")
		}
		_, err := io.WriteString(stdout, rules)
		return err
	})
	dir := t.TempDir()
	res, err := Run(context.Background(), ex, "node-1", Target{}, RunOptions{SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Spooled() || len(spoolFiles(t, dir)) != 1 {
		t.Fatalf("Spooled() = %v, spool dir %v: want the dumps in one file", res.Spooled(), spoolFiles(t, dir))
	}
	if err := res.Load(); err != nil {
		t.Fatal(err)
	}
	d, ok := res.Dump(DumpIPTablesNFT)
	if !ok || strings.TrimSpace(string(d.Data)) != strings.TrimSpace(rules) {
		t.Fatalf("loaded %s = %q, want %q", DumpIPTablesNFT, d.Data, rules)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if left := spoolFiles(t, dir); len(left) != 0 {
		t.Errorf("Close left %v", left)
	}
}

type execFunc func(argv []string, stdout, stderr io.Writer) error

func (f execFunc) Exec(_ context.Context, _, _, _ string, argv []string, stdout, stderr io.Writer) error {
	return f(argv, stdout, stderr)
}
