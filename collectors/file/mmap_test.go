package file

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func writeDump(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.nft")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMappedOnlyWhenAskedFor(t *testing.T) {
	content := "table ip kube-proxy {\n}\n"
	path := writeDump(t, content)

	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Mapped(); ok {
		t.Error("Open offered a mapping: only OpenMapped's callers promise to be done with the bytes at Close")
	}
	d.Close()

	m, err := OpenMapped(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, ok := m.Mapped()
	if runtime.GOOS != "windows" && (!ok || string(data) != content) {
		t.Fatalf("Mapped() = %q, %v, want the file", data, ok)
	}
	if again, _ := m.Mapped(); len(again) > 0 && &again[0] != &data[0] {
		t.Error("a second Mapped() mapped the file again")
	}
	// The head and the stream still work beside the mapping.
	if head, err := m.Head(); err != nil || string(head) != content {
		t.Errorf("Head() = %q, %v", head, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if m.mapped != nil {
		t.Error("Close left the mapping")
	}
}

func TestNothingToMap(t *testing.T) {
	empty := writeDump(t, "")
	d, err := OpenMapped(empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.Mapped(); ok {
		t.Error("an empty file was mapped (mmap of length 0 fails): it must be read instead")
	}
	s, err := OpenMapped("-", strings.NewReader("table ip x {\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Mapped(); ok {
		t.Error("standard input was offered as a mapping")
	}
}

// TestGuardFaultsTurnsTruncationIntoAnError: a dump truncated while it is
// mapped faults on the next read of a page past its new end; the guard
// makes that an error that says what happened, not a crash.
func TestGuardFaultsTurnsTruncationIntoAnError(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the fault of a truncated mapping is checked on Linux")
	}
	path := writeDump(t, strings.Repeat("x", 3*os.Getpagesize()))
	d, err := OpenMapped(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data, ok := d.Mapped()
	if !ok {
		t.Fatal("not mapped")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	var sum int
	err = GuardFaults(d.Name, func() error {
		for _, b := range data {
			sum += int(b)
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), d.Name+" changed while it was read") || !strings.Contains(err.Error(), "trace a copy") {
		t.Fatalf("GuardFaults = %v, want the truncation named with what to do", err)
	}

	// Errors pass through, other panics go on up.
	want := errors.New("plain")
	if err := GuardFaults("x", func() error { return want }); err != want {
		t.Errorf("GuardFaults passed %v, want the function's error", err)
	}
	defer func() {
		if r := recover(); r != "not a fault" {
			t.Errorf("recovered %v, want the panic to go on up", r)
		}
	}()
	_ = GuardFaults("x", func() error { panic("not a fault") })
}
