package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/prism"
)

// Store keeps positions, the journal of in-flight batches and rejected rows.
// checkpoint.PGStore and checkpoint.FileStore implement it.
type Store interface {
	Load(ctx context.Context, sync string) (checkpoint.State, error)
	Journal(ctx context.Context, b checkpoint.Batch) error
	SetJobID(ctx context.Context, sync, key, jobID string) error
	Pending(ctx context.Context, sync string) ([]checkpoint.Batch, error)
	Drop(ctx context.Context, sync, key string) error
	Commit(ctx context.Context, sync, key string, to checkpoint.Position, fingerprint string, rejects []checkpoint.Reject, resolved [][]string) error
}

// API is the part of the Micro import API the engine needs; *prism.Client
// implements it.
type API interface {
	Import(ctx context.Context, object, idempotencyKey string, body []byte) (*prism.Job, error)
	Wait(ctx context.Context, job *prism.Job) (*prism.Job, error)
	Job(ctx context.Context, jobID string) (*prism.Job, error)
}

// Budget guards Micro's monthly request quota; *budget.Budget implements it.
type Budget interface {
	// Allow reports whether about n more requests may be made this month.
	Allow(ctx context.Context, n int) (bool, error)
	// Coalesce reports whether the month's pace is ahead of the budget, so
	// partial batches should wait.
	Coalesce(ctx context.Context) bool
}

// Fingerprints remembers, per row key, a hash of the object the API last
// confirmed, so a row whose mapped object did not change (its updated_at was
// bumped by an unrelated column, or a backfill re-reads it) is not sent
// again. The checkpoint stores implement it.
type Fingerprints interface {
	// Fingerprints returns the stored hash for each key (nil when none),
	// aligned with keys.
	Fingerprints(ctx context.Context, sync string, keys [][]string) ([][]byte, error)
	SaveFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error
}

// ErrHeldBack ends a one-shot pass that could read nothing because a
// transaction that might still commit rows behind the checkpoint is open.
var ErrHeldBack = errors.New("rows held back by an open transaction")

// ErrBudgetExhausted ends a pass when the month's request budget (Budget)
// is spent. Unsent rows stay in the database; nothing is lost.
var ErrBudgetExhausted = errors.New("monthly API request budget exhausted; rows wait until the month turns or the budget is raised")

// RejectShareError stops a pass in which more than Syncer.MaxRejectShare of
// the rows were rejected; it comes wrapped in a PermanentError.
type RejectShareError struct {
	Rejected int     // rows the mapping or the API refused in this pass
	Rows     int     // rows the pass sent or refused itself
	MaxShare float64 // Syncer.MaxRejectShare
}

func (e *RejectShareError) Error() string {
	return fmt.Sprintf("%d of %d rows in this pass were rejected, more than the maximum share of %g; stopping so that a systematic problem does not reject every row",
		e.Rejected, e.Rows, e.MaxShare)
}

// Summary counts what one pass did.
type Summary struct {
	Sync     string
	Rows     int // rows read from the source
	Sent     int // objects sent to the API
	Created  int
	Updated  int
	Existing int // matched on dedupe_by and left as they were
	Invalid  int // rows the mapping refused (recorded as rejects, not sent)
	// Unchanged counts rows not sent because their object is the one the
	// API already confirmed (change fingerprints).
	Unchanged int
	Rejected  int // rows the API refused (recorded as rejects)
	Batches   int
	Resumed   int // journaled batches settled from an earlier, interrupted run
	Polls     int // job polls spent
	Position  checkpoint.Position
	// HorizonLag is how far the commit horizon (and Syncer.Lag) held this
	// pass back from now; 0 for cursors that are not timestamps.
	HorizonLag time.Duration
	Duration   time.Duration
}

// PermanentError marks a failure a retry will not fix: the operator has to
// change configuration, credentials or data first.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }
