//go:build unix

package file

import (
	"os"
	"syscall"
)

// mapFile maps size bytes of f read-only and private, populated up front:
// the page cache's pages are mapped in one call, nothing is copied.
func mapFile(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_PRIVATE|mapPopulate)
}

func unmapFile(b []byte) error { return syscall.Munmap(b) }
