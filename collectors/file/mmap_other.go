//go:build !unix

package file

import (
	"errors"
	"os"
)

func mapFile(*os.File, int) ([]byte, error) { return nil, errors.New("mmap is not available here") }

func unmapFile([]byte) error { return nil }
