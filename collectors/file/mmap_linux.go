//go:build linux

package file

import "syscall"

const mapPopulate = syscall.MAP_POPULATE
