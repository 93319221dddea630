package main

import (
	"errors"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/mapping"
)

// Exit codes: this file alone decides them, so scripts and systemd can rely
// on them.
const (
	exitOK          = 0
	exitFailure     = 1 // a sync failed at run time
	exitUsage       = 2 // bad flags, environment or mapping: fix the configuration
	exitUnreachable = 3 // database or checkpoint store unreachable
	exitBudget      = 4 // the month's request budget is spent: rows wait, nothing is lost
)

// usageError is a problem the operator fixes in flags, environment or the
// mapping file.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// unreachableError is a database or store that cannot be reached.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// errSilent marks a failure already reported on stdout/stderr.
var errSilent = errors.New("failed")

// exitCode maps an error to the exit code that scripts and systemd read.
func exitCode(err error) int {
	var ue *usageError
	var un *unreachableError
	var fe *mapping.FindingsError
	var pe *connector.PermanentError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.As(err, &fe):
		return exitUsage
	case errors.As(err, &un):
		return exitUnreachable
	case budgetOnly(err):
		return exitBudget
	case errors.As(err, &pe):
		return exitFailure
	default:
		return exitFailure
	}
}

// budgetOnly reports whether every failure err holds is a spent request
// budget: a run that also failed for another reason exits as that failure.
func budgetOnly(err error) bool {
	for err != nil {
		if err == budget.ErrExhausted {
			return true
		}
		if _, ok := err.(*budget.ExhaustedError); ok {
			return true
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs := j.Unwrap()
			for _, e := range errs {
				if !budgetOnly(e) {
					return false
				}
			}
			return len(errs) > 0
		}
		err = errors.Unwrap(err)
	}
	return false
}
