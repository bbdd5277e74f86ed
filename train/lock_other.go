//go:build !unix

package train

import "os"

// lockDir does not lock where flock does not exist.
func lockDir(dir string) (*os.File, error) { return nil, nil }
