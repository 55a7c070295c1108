package file

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.iptables")
	content := "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	head, err := d.Head()
	if err != nil || string(head) != content {
		t.Fatalf("Head() = %q, %v", head, err)
	}
	all, err := io.ReadAll(d.Reader())
	if err != nil || string(all) != content {
		t.Fatalf("Reader after Head read %q, %v: Head must not consume", all, err)
	}
	ra, size, ok := d.ReaderAt()
	if !ok || size != int64(len(content)) {
		t.Fatalf("ReaderAt() = %v, %d, %v", ra, size, ok)
	}
	buf := make([]byte, 4)
	if _, err := ra.ReadAt(buf, 0); err != nil || string(buf) != "*nat" {
		t.Errorf("ReadAt = %q, %v", buf, err)
	}
	if d.Name != `"`+path+`"` {
		t.Errorf("Name = %s", d.Name)
	}
}

func TestOpenStdin(t *testing.T) {
	d, err := Open("-", strings.NewReader("table ip kube-proxy {\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := d.ReaderAt(); ok {
		t.Error("stdin must not offer random access")
	}
	head, _ := d.Head()
	all, _ := io.ReadAll(d.Reader())
	if string(head) != string(all) || d.Name != "from standard input" {
		t.Errorf("head %q, all %q, name %q", head, all, d.Name)
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ path, want string }{
		{dir, "is a directory; pass the file with the iptables-save or nft list ruleset output"},
		{filepath.Join(dir, "missing"), "cannot open ruleset \"" + filepath.Join(dir, "missing") + "\": no such file or directory; pass a file saved with iptables-save or nft list ruleset, or - to read standard input"},
	} {
		if _, err := Open(tc.path, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}
