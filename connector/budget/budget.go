// Package budget plans how prismsync spends Micro's monthly request quota.
//
// Micro allows 1,000 requests per month per API key, polls included. Spent
// freely, they are gone by day ten and the CRM goes stale until the month
// turns. The budget therefore plans, before every batch:
//
//   - Explicit runs (once, backfill, rejects --retry) never wait: they may
//     spend everything left, the reserve included, and stop with
//     ErrExhausted when a batch no longer fits.
//   - The daemon sends full batches at once while the budget beyond the
//     reserve lasts: they carry the most rows per request.
//   - A partial batch of the daemon waits for its turn: the pace (see Pace)
//     must have passed since the last send of any sync, and syncs that wait
//     are served in the order they began waiting, so one busy sync cannot
//     starve the others. Rows that change meanwhile join the batch.
//
// The pace spreads what is left over what remains of the month:
//
//	pace = time left in the month / (requests left - reserve) × cost of the send
//
// The cost of a send is learned from the API's answers: a batch of a size
// Micro answered synchronously costs one request, an asynchronous one its
// POST plus the polls jobs of its size have needed.
//
// Every request is counted in the checkpoint store, shared by all syncs and
// replicas. A batch reserves its expected cost before it is sent (atomically,
// so two replicas cannot both take the last requests) and gives back what it
// did not use when it ends, so the count never exceeds the limit even with
// batches in flight. A request that never left this machine (connection
// refused, DNS or TLS failure) is not counted; one that may have reached
// Micro is. Counts the store could not take while it was down are added once
// it is back.
package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
)

// Store keeps what every process shares: the month's request count and the
// syncs' turns. The checkpoint stores implement it.
type Store interface {
	// TakeRequests adds n (negative gives requests back) to month's count
	// if the result stays at or below max, or unconditionally when max < 0.
	// It returns the count afterwards, or the unchanged count and false
	// when n did not fit.
	TakeRequests(ctx context.Context, month string, n, limit int) (total int, ok bool, err error)
	// Requests returns month's count.
	Requests(ctx context.Context, month string) (int, error)
	// Turns returns every sync's turn.
	Turns(ctx context.Context) ([]checkpoint.Turn, error)
	// SaveTurn replaces the turn of t.Sync.
	SaveTurn(ctx context.Context, t checkpoint.Turn) error
}

// ErrExhausted means the month's requests do not cover the next batch. Rows
// wait in the database; nothing is lost.
var ErrExhausted = errors.New("monthly request budget spent")

// ExhaustedError says when sending can resume.
type ExhaustedError struct {
	Month   string
	Used    int
	Limit   int
	Resumes time.Time // the start of the next month
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("%s: %d of %d requests used in %s; sending resumes %s or when the budget is raised",
		ErrExhausted, e.Used, e.Limit, e.Month, e.Resumes.UTC().Format(time.RFC3339))
}

func (e *ExhaustedError) Unwrap() error { return ErrExhausted }

// Config sets a Budget up.
type Config struct {
	// Limit is the month's request budget; 0 disables planning (requests
	// are still counted).
	Limit int
	// Reserve is kept back from the daemon's sends for retries, polls and
	// explicit runs.
	Reserve Reserve
	// MaxDelay, when set, caps how long a partial batch waits for its turn,
	// even when that spends the budget before the month ends.
	MaxDelay time.Duration
	// Now is the clock (default time.Now); the month is its UTC calendar
	// month.
	Now    func() time.Time
	Logger *slog.Logger
}

// Budget plans the requests of every sync of one API key.
type Budget struct {
	store    Store
	limit    int
	reserve  int
	maxDelay time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	costs   costs
	pending map[string]int // month -> requests the store could not take yet
	warned  map[string]bool
	// flushing serialises flush: two flushes of the same pending count
	// would both store it.
	flushing sync.Mutex
}

// New returns a budget over store.
func New(store Store, cfg Config) *Budget {
	b := &Budget{
		store:    store,
		limit:    max(0, cfg.Limit),
		reserve:  cfg.Reserve.Of(cfg.Limit),
		maxDelay: cfg.MaxDelay,
		now:      cfg.Now,
		log:      cfg.Logger,
		pending:  make(map[string]int),
		warned:   make(map[string]bool),
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b
}

// Limit is the month's budget (0: none) and Reserve the part the daemon
// leaves alone.
func (b *Budget) Limit() int   { return b.limit }
func (b *Budget) Reserve() int { return b.reserve }

// Month is the key requests are counted under: the UTC calendar month of t,
// "2026-12".
func Month(t time.Time) string { return t.UTC().Format("2006-01") }

// monthBounds returns the start of t's UTC month and of the next one.
func monthBounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// take reserves n requests of month under max (< 0: no bound), first adding
// what earlier calls could not store.
func (b *Budget) take(ctx context.Context, month string, n, max int) (int, bool, error) {
	b.flush(ctx)
	return b.store.TakeRequests(ctx, month, n, max)
}

// give adds n (possibly negative) to month's count without a bound. It
// never fails: a count the store cannot take now is kept and added by a
// later call (Flush, or the next batch), so an outage does not make the
// month's count come out low.
func (b *Budget) give(ctx context.Context, month string, n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.pending[month] += n
	b.mu.Unlock()
	b.flush(ctx)
}

// Flush stores the counts an unreachable store could not take earlier. It
// reports whether nothing is left pending.
func (b *Budget) Flush(ctx context.Context) bool {
	b.flush(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) == 0
}

func (b *Budget) flush(ctx context.Context) {
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	months := make(map[string]int, len(b.pending))
	for m, n := range b.pending {
		months[m] = n
	}
	b.mu.Unlock()
	for m, n := range months {
		if _, _, err := b.store.TakeRequests(ctx, m, n, -1); err != nil {
			b.log.Debug("request count not stored yet; it is added when the checkpoint store answers again", "month", m, "requests", n, "err", err)
			continue
		}
		b.mu.Lock()
		if b.pending[m] -= n; b.pending[m] == 0 {
			delete(b.pending, m)
		}
		b.mu.Unlock()
	}
}
