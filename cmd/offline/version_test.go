package offline

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// setBuildVars sets what goreleaser's -ldflags -X set, for one test.
func setBuildVars(t *testing.T, v, c, d string) {
	t.Helper()
	oldV, oldC, oldD := version, commit, date
	version, commit, date = v, c, d
	t.Cleanup(func() { version, commit, date = oldV, oldC, oldD })
}

func runVersion(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewVersionCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	return out.String(), err
}

func TestVersionFromLdflags(t *testing.T) {
	setBuildVars(t, "v1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z")
	want := VersionInfo{
		Version:   "v1.2.3",
		Commit:    "0123456789abcdef0123456789abcdef01234567",
		Date:      "2026-01-02T03:04:05Z",
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}

	out, err := runVersion(t, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got VersionInfo
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("version -o json printed %q: %v", out, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("version -o json (-want +got):\n%s", diff)
	}
	// The documented keys, exactly: scripts depend on them.
	var keys map[string]any
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "commit", "date", "goVersion", "platform"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("version -o json has no %q: %s", k, out)
		}
	}

	out, err = runVersion(t)
	if err != nil {
		t.Fatal(err)
	}
	wantText := "kubectl trace-svc v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, built 2026-01-02T03:04:05Z, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if out != wantText {
		t.Errorf("version printed %q, want %q", out, wantText)
	}
}

func TestVersionRejectsOutputAndArgs(t *testing.T) {
	if _, err := runVersion(t, "-o", "yaml"); err == nil || err.Error() != `--output "yaml" is not supported: use json or leave it empty` {
		t.Errorf("version -o yaml: err = %v", err)
	}
	if _, err := runVersion(t, "extra"); err == nil {
		t.Error("version extra: no error")
	}
}
