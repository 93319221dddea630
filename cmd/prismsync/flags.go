package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// newFlagSet is the preamble every command shares: the standard flag
// package, errors on stderr, and --help printing the command's own help text
// (which lists its flags and examples) instead of flag's generated list.
func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, help) }
	return fs
}

// parseFlags parses a command's flags; help is true when the user asked for
// --help (already printed), so the command should just return.
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, &usageError{err}
	}
	return false, nil
}
