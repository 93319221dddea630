package checkpoint

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// checkSync rejects an empty sync name, which Rejects and CountRejects
// reserve for "all syncs".
func checkSync(sync string) error {
	if sync == "" {
		return errors.New("checkpoint: empty sync name")
	}
	return nil
}

func checkBatch(b Batch) error {
	if err := checkSync(b.Sync); err != nil {
		return err
	}
	if b.Key == "" {
		return fmt.Errorf("checkpoint: journal batch of sync %q: empty key", b.Sync)
	}
	return nil
}

// checkMonth accepts a UTC calendar month as "2006-01".
func checkMonth(month string) error {
	if _, err := time.Parse("2006-01", month); err != nil || len(month) != len("2006-01") {
		return fmt.Errorf("checkpoint: month %q: want YYYY-MM", month)
	}
	return nil
}

func checkRequests(month string, n int) error {
	if err := checkMonth(month); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("checkpoint: add %d requests to %s: negative count", n, month)
	}
	return nil
}

// stamp normalises a time to what both stores can keep exactly: UTC,
// microsecond precision (PostgreSQL's), no monotonic reading.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// normKey makes nil and empty keys the same and copies, so a caller reusing its
// slice cannot change stored values.
func normKey(k []string) []string {
	if len(k) == 0 {
		return nil
	}
	return slices.Clone(k)
}

func normPos(p Position) Position { return Position{Cursor: p.Cursor, Key: normKey(p.Key)} }

// normRun stores times as both stores can keep them and cleans the error
// text (it may come from anywhere, including the API).
func normRun(r Run) Run {
	r.Started, r.Finished = stamp(r.Started), stamp(r.Finished)
	r.Error = cleanText(r.Error)
	r.Checkpoint = normPos(r.Checkpoint)
	return r
}

// checkKeep refuses a history that would keep nothing: the last run is
// what "prismsync status" shows.
func checkKeep(sync string, keep int) error {
	if keep < 1 {
		return fmt.Errorf("checkpoint: record run of sync %q: keep %d runs: want at least 1", sync, keep)
	}
	return nil
}

// sortHistory orders runs of several syncs the way both stores list them:
// newest first, then by sync in byte order, then newest Seq first.
func sortHistory(rs []Run) {
	slices.SortFunc(rs, func(a, b Run) int {
		if c := b.Finished.Compare(a.Finished); c != 0 {
			return c
		}
		if c := strings.Compare(a.Sync, b.Sync); c != 0 {
			return c
		}
		return cmp.Compare(b.Seq, a.Seq)
	})
}

// cleanText makes API-supplied text storable in PostgreSQL (no NUL, valid
// UTF-8): a strange error message must never make a commit fail.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// rejectKey is a map key for a row key; length prefixes keep ["a,b"] and
// ["a","b"] apart.
func rejectKey(k []string) string {
	var b strings.Builder
	for _, s := range k {
		fmt.Fprintf(&b, "%d:%s;", len(s), s)
	}
	return b.String()
}

// sortRejects orders rejects the way both stores return them: most recently
// seen first, then by sync and row key in byte order.
func sortRejects(rs []Reject) {
	slices.SortFunc(rs, func(a, b Reject) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		if c := strings.Compare(a.Sync, b.Sync); c != 0 {
			return c
		}
		return slices.Compare(a.RowKey, b.RowKey)
	})
}
