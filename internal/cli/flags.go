package cli

import (
	"errors"
	"flag"
	"fmt"
)

// ErrFlags marks a flag error the flag package has already printed (the command exits 2
// without saying more).
var ErrFlags = errors.New("bad flags")

// UsageError is a mistake on the command line: the command exits 2, with a pointer to its -h.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// ParseFlags parses args into fs, which must take no positional arguments. It returns
// flag.ErrHelp for -h, ErrFlags for what the flag package refused (and has printed), and a
// UsageError for a positional argument.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrFlags
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
