//go:build !linux

package iptables

import "unsafe"

// populate is a no-op where madvise(MADV_POPULATE_WRITE) does not exist.
func populate(unsafe.Pointer, int) {}
