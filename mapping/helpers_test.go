package mapping

import (
	"strings"
	"testing"
)

// mustSync parses a one-sync file whose properties block is props (already
// indented for the properties mapping, 6 spaces) and returns the sync.
func mustSync(t testing.TB, props string, extra ...string) *Sync {
	t.Helper()
	src := "syncs:\n  - name: s\n    source: {table: t, key: [id], cursor: id}\n" + strings.Join(extra, "") +
		"    properties:\n      " + props + "\n"
	f, fs := Parse("test.yaml", []byte(src))
	if f == nil {
		t.Fatalf("parse:\n%s\n%s", src, fs)
	}
	return f.Syncs[0]
}
