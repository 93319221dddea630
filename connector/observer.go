package connector

import (
	"context"
	"time"
)

// Observer is told what the engine does, for metrics and status. Methods
// are called from the sync's goroutines and must be safe for concurrent use
// and quick (no I/O).
type Observer interface {
	// PassFinished ends one pass of a sync; err is nil on success.
	PassFinished(sum Summary, err error)
	// BatchDone reports one batch whose job reached a final state (or
	// failed to), before the checkpoint is committed.
	BatchDone(sync string, b BatchReport)
	// InFlight reports how many batches of a sync are sent and not yet
	// committed.
	InFlight(sync string, n int)
}

// BatchReport describes one batch for an Observer.
type BatchReport struct {
	Rows      int // objects in the request
	Invalid   int // rows kept out by the mapping
	Deferred  int // rows kept back: they link to a row without a record yet
	Unchanged int // rows not sent: Micro already has their object (fingerprints)
	Created   int // per-row outcomes from the job
	Updated   int
	Existing  int
	Rejected  int
	Deleted   int    // records deleted (delete batches)
	Archived  int    // records archived (archive batches)
	Restored  int    // rows live again after their record was deleted or archived
	Kind      string // "" an import batch; "delete" or "archive" a record batch
	Async     bool   // the API answered 202 and the job was polled
	Polls     int    // poll requests spent on the job
	Outcome   string // "complete", "failed", "error", or "nothing_to_send"
	Duration  time.Duration
	Attempts  int // job attempts used (1 unless the job failed and was re-sent)
}

type nopObserver struct{}

func (nopObserver) PassFinished(Summary, error)   {}
func (nopObserver) BatchDone(string, BatchReport) {}
func (nopObserver) InFlight(string, int)          {}

var _ Observer = nopObserver{}

type syncNameKey struct{}

// WithSyncName returns a context that names the sync its work is for. Every
// pass and retry puts its sync's name in the context its API calls get, so
// a hook that sees only the request's context (the API client's OnRequest,
// feeding the request metrics) can tell which sync spends the budget.
func WithSyncName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, syncNameKey{}, name)
}

// SyncName returns the sync name WithSyncName put in ctx, or "".
func SyncName(ctx context.Context) string {
	name, _ := ctx.Value(syncNameKey{}).(string)
	return name
}
