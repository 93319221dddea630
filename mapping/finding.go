package mapping

import (
	"fmt"
	"sort"
	"strings"
)

// Severity tells whether a finding stops the file from being used.
type Severity int

const (
	// SeverityError makes the file unusable: Parse returns no File.
	SeverityError Severity = iota
	// SeverityWarning is reported but does not stop the file from loading.
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Finding is one problem found in a mapping file, located by line and column
// (both 1-based; 0 when the position is unknown).
type Finding struct {
	File     string
	Line     int
	Col      int
	Severity Severity
	Message  string
}

// String formats the finding as FILE:LINE:COL: message, the format editors and
// CI annotators understand. Warnings carry a "warning: " prefix so they are
// not mistaken for errors when the lines are mixed.
func (f Finding) String() string {
	msg := f.Message
	if f.Severity == SeverityWarning {
		msg = "warning: " + msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", f.File, f.Line, f.Col, msg)
}

// Findings is every finding of one parse, in file order.
type Findings []Finding

// HasErrors reports whether any finding is an error (not just a warning).
func (fs Findings) HasErrors() bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns only the error findings.
func (fs Findings) Errors() Findings { return fs.only(SeverityError) }

// Warnings returns only the warning findings.
func (fs Findings) Warnings() Findings { return fs.only(SeverityWarning) }

func (fs Findings) only(sev Severity) Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == sev {
			out = append(out, f)
		}
	}
	return out
}

// Error joins the findings one per line.
func (fs Findings) Error() string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f.String())
	}
	return b.String()
}

func (fs Findings) sort() {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Line != fs[j].Line {
			return fs[i].Line < fs[j].Line
		}
		return fs[i].Col < fs[j].Col
	})
}

// FindingsError is returned by Load when the file has at least one error
// finding. It carries the warnings too, so a caller can print everything.
type FindingsError struct {
	Findings Findings
}

func (e *FindingsError) Error() string {
	return e.Findings.Error()
}
