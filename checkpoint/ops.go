package checkpoint

import (
	"fmt"
	"hash/fnv"
	"time"
)

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

// normRun stores times as both stores can keep them and cleans the error
// text (it may come from anywhere, including the API).
func normRun(r Run) Run {
	r.Started, r.Finished = stamp(r.Started), stamp(r.Finished)
	r.Error = cleanText(r.Error)
	return r
}

// syncLockKey is the pg_try_advisory_lock key of a sync: a 64-bit hash of
// the name under a prefix of our own, so it neither meets schemaLockKey nor,
// in practice, another application's keys.
func syncLockKey(sync string) int64 {
	h := fnv.New64a()
	h.Write([]byte("prismsync/sync-lease/"))
	h.Write([]byte(sync))
	return int64(h.Sum64())
}
