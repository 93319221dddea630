// Package budget keeps prismsync within Micro's monthly request quota.
//
// Micro allows 1,000 requests per month per API key, polls included. A
// daemon that spends them freely stops working halfway through the month.
// Budget counts every request in the checkpoint store (so restarts and
// replicas share one count) and answers two questions for the engine:
// may it send at all (not when the month's budget is spent), and should it
// coalesce (hold back partial batches) because the month's pace would
// overrun the budget.
package budget

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Counter persists request counts per calendar month ("2026-11", UTC); the
// checkpoint stores implement it.
type Counter interface {
	AddRequests(ctx context.Context, month string, n int) error
	Requests(ctx context.Context, month string) (int, error)
}

// Budget tracks the requests of the current month against a limit.
type Budget struct {
	limit   int
	counter Counter
	now     func() time.Time
	log     *slog.Logger

	mu        sync.Mutex
	month     string
	used      int  // as known: loaded from the counter, plus what we added
	loaded    bool // used reflects the counter for month
	warned    bool // exhaustion logged for month
	lastError error
}

// New returns a budget of limit requests a month; limit 0 disables it
// (requests are still counted).
func New(limit int, c Counter, log *slog.Logger) *Budget {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Budget{limit: limit, counter: c, now: time.Now, log: log}
}

// SetClock replaces the clock (tests).
func (b *Budget) SetClock(now func() time.Time) { b.now = now }

func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// sync loads the month's count when the month changed or was never read.
func (b *Budget) syncLocked(ctx context.Context) error {
	m := monthOf(b.now())
	if m != b.month {
		b.month, b.loaded, b.warned, b.used = m, false, false, 0
	}
	if b.loaded {
		return nil
	}
	n, err := b.counter.Requests(ctx, m)
	if err != nil {
		return fmt.Errorf("request budget: %w", err)
	}
	b.used, b.loaded = n, true
	return nil
}

// Record counts n requests made now. It is called for every HTTP attempt.
func (b *Budget) Record(ctx context.Context, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.syncLocked(ctx)
	b.used += n
	if err := b.counter.AddRequests(ctx, b.month, n); err != nil {
		// Counting is best effort: failing a sync because a counter
		// update failed would cost more requests, not fewer.
		b.lastError = err
		b.loaded = false // re-read next time
		b.log.Warn("could not record API requests in the checkpoint store", "err", err)
	}
}

// Used returns the requests counted this month and the limit (0 = none).
func (b *Budget) Used(ctx context.Context) (used, limit int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	err = b.syncLocked(ctx)
	return b.used, b.limit, err
}

// Allow reports whether a batch may be sent now, needing about n requests
// (its POST plus polls). When the month's budget is spent it logs once and
// says no: rows wait in the database, nothing is lost, and sending resumes
// when the month turns or the limit is raised.
func (b *Budget) Allow(ctx context.Context, n int) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.syncLocked(ctx); err != nil {
		return false, err
	}
	if b.limit <= 0 || b.used+n <= b.limit {
		return true, nil
	}
	if !b.warned {
		b.warned = true
		b.log.Error("monthly API request budget exhausted; not sending until the month turns or MICRO_MONTHLY_REQUESTS is raised (rows wait, nothing is lost)",
			"used", b.used, "limit", b.limit, "month", b.month)
	}
	return false, nil
}

// Coalesce reports whether the month's pace is ahead of the budget: more
// requests used than the share of the month that has passed allows. The
// engine then sends only full batches (or ones that waited max_delay).
func (b *Budget) Coalesce(ctx context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit <= 0 || b.syncLocked(ctx) != nil {
		return false
	}
	now := b.now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	share := float64(now.Sub(start)) / float64(end.Sub(start))
	return float64(b.used) > share*float64(b.limit)
}
