//go:build unix && !linux

package file

// mapPopulate is Linux's; elsewhere pages fault in as they are read.
const mapPopulate = 0
