//go:build linux

package iptables

import (
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14), which the syscall
// package does not name.
const madvPopulateWrite = 23

// populate maps in the pages of the n freshly allocated bytes at p in one
// system call (madvise MADV_POPULATE_WRITE) instead of one page fault per
// 4 KiB page as they are first written. A big dump's chain table and names
// are some ten megabytes written once, front to back: thousands of faults,
// each costing microseconds (tens of them in a virtual machine). Kernels
// without it refuse the call, which only costs the speed-up.
func populate(p unsafe.Pointer, n int) {
	const page = 4096
	start := (uintptr(p) + page - 1) &^ (page - 1)
	end := (uintptr(p) + uintptr(n)) &^ (page - 1)
	if end <= start {
		return
	}
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start), madvPopulateWrite)
}
