package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// cmdFlags is the preamble every command shares: the standard flag
// package, with the command's own help text (its usage, what it does and
// examples) plus the flags and their defaults. --help prints that to stdout
// and succeeds; a bad flag prints it to stderr and fails with the error,
// which main prints once. A stray argument is an error too: prismsync
// takes its settings from flags and the environment only.
type cmdFlags struct {
	*flag.FlagSet
	help           string
	stdout, stderr io.Writer
	// argHint, when set, is added to the error for a stray argument.
	argHint string
}

func newFlagSet(name, help string, stdout, stderr io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// flag would print the error and its own usage itself; parse does.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, help: help, stdout: stdout, stderr: stderr}
}

// parse parses a command's arguments; help is true when the user asked for
// --help (already printed), so the command should just return.
func (fs *cmdFlags) parse(args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(fs.stdout, fs.helpText())
			return true, nil
		}
		fs.usage()
		return false, &usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		arg := fs.Arg(0)
		hint := fs.argHint
		if hint == "" && (strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")) {
			hint = "the mapping file is set with MAPPING_FILE=" + arg
		}
		if hint != "" {
			hint = " (" + hint + ")"
		}
		return false, &usageError{fmt.Errorf("%s: unexpected argument %q%s; see prismsync %s --help", fs.Name(), arg, hint, fs.Name())}
	}
	return false, nil
}

// usage prints the help to stderr, for a command that refuses its flags.
func (fs *cmdFlags) usage() { fmt.Fprint(fs.stderr, fs.helpText()) }

// helpText is the command's help with a Flags section listing every flag
// and its default, before the examples (unless the help lists its flags
// itself).
func (fs *cmdFlags) helpText() string {
	var flags strings.Builder
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 || strings.Contains(fs.help, "\nFlags:\n") {
		return fs.help
	}
	flags.WriteString("Flags:\n")
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	flags.WriteString("\n")
	for _, heading := range []string{"\nExamples:\n", "\nExample:\n"} {
		if before, after, ok := strings.Cut(fs.help, heading); ok {
			return before + "\n" + flags.String() + strings.TrimPrefix(heading, "\n") + after
		}
	}
	return fs.help + "\n" + flags.String()
}
