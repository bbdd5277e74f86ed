//go:build !unix

package fsutil

import "os"

const oNonblock = 0

func clearNonblock(*os.File) error { return nil }
