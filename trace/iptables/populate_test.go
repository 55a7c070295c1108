package iptables

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestPopulateKeepsContent: populate only maps pages in; what the memory
// holds, at any alignment and length, stays as it was.
func TestPopulateKeepsContent(t *testing.T) {
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	want := bytes.Clone(b)
	for _, r := range [][2]int{{0, len(b)}, {1, 4095}, {4095, 2}, {100, 1 << 20}, {len(b) - 1, 1}, {5, 0}} {
		populate(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), r[0]), r[1])
	}
	if !bytes.Equal(b, want) {
		t.Fatal("populate changed the memory")
	}
	var a arena
	for i := 0; i < 200_000; i++ {
		blk, off := a.reserve(7)
		a.append(blk, []byte("chain-1"))
		if got := string(a.bytes(textRef{block: blk, off: off, len: 7})); got != "chain-1" {
			t.Fatalf("entry %d reads back %q", i, got)
		}
	}
}
