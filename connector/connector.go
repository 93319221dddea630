package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
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
	CommitRecords(ctx context.Context, sync, key string, to checkpoint.Position, fingerprint string, rejects []checkpoint.Reject, resolved [][]string, ledger checkpoint.Ledger) error
	// The record ledger, deferred rows and relinks (see refs.go).
	RecordIDs(ctx context.Context, refs []checkpoint.RecordRef) ([]string, error)
	Deferred(ctx context.Context, sync string) ([]checkpoint.Reject, error)
	Relinks(ctx context.Context, sync string) ([]checkpoint.Relink, error)
	DropRelinks(ctx context.Context, sync string, relinks []checkpoint.Relink) error
	// Deletes (see deletes.go): the ledger state of a page's rows, the
	// ledger in pages for reconcile, and its size for the delete guard.
	RecordStates(ctx context.Context, sync string, keys [][]string) ([]checkpoint.RecordState, error)
	LedgerPage(ctx context.Context, sync, after string, limit int) ([]checkpoint.LedgerEntry, error)
	CountRecords(ctx context.Context, sync string) (int, error)
}

// API is the part of the Micro import API the engine needs; *prism.Client
// implements it.
type API interface {
	Import(ctx context.Context, object, idempotencyKey string, body []byte) (*prism.Job, error)
	Wait(ctx context.Context, job *prism.Job) (*prism.Job, error)
	Job(ctx context.Context, jobID string) (*prism.Job, error)
	// BatchDelete and BatchUpdate send a journaled delete or archive batch
	// (at most prism.MaxBatchItems ids); replayed is Micro's
	// idempotent-replay header.
	BatchDelete(ctx context.Context, object, idempotencyKey string, body []byte) (res []prism.ItemResult, replayed bool, err error)
	BatchUpdate(ctx context.Context, object, idempotencyKey string, body []byte) (res []prism.ItemResult, replayed bool, err error)
}

// Budget plans Micro's monthly request quota; *budget.Budget implements
// it. Every batch is admitted before it is sent: a Decision with a Ticket
// may go (its API calls carry the ticket in their context), one without
// waits. An explicit run that no longer fits gets an error wrapping
// budget.ErrExhausted.
type Budget interface {
	Admit(ctx context.Context, r budget.Request) (budget.Decision, error)
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
	// AddFingerprints saves sums of keys that had none when looked up,
	// which a store can write more cheaply than replacing existing ones.
	AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error
	// HasFingerprints reports whether any is stored for sync: the first
	// pass of a sync has nothing to look up.
	HasFingerprints(ctx context.Context, sync string) (bool, error)
}

// ErrHeldBack ends a one-shot pass that could read nothing because a
// transaction that might still commit rows behind the checkpoint is open.
var ErrHeldBack = errors.New("rows held back by an open transaction")

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
	// Deferred counts rows kept back in this pass because they link to a
	// row of another sync that has no Micro record yet (recorded with code
	// missing_reference, sent by a later pass once it has one); Revisited
	// counts rows sent again because such a record appeared (deferred
	// rows) or was replaced (rows linking to it); Waiting counts the
	// sync's deferred rows older than Syncer.DeferWarnAfter at the pass's
	// start.
	Deferred  int
	Revisited int
	Waiting   int
	// Unchanged counts rows not sent because their object is the one the
	// API already confirmed (change fingerprints).
	Unchanged int
	Rejected  int // rows the API refused (recorded as rejects)
	// Deleted and Archived count records deleted in Micro, or archived
	// instead (on_delete: archive), for rows soft-deleted in the source or
	// gone from it (reconcile); Restored counts rows delivered live again
	// after their record was deleted or archived; Gone counts the ledger's
	// records whose rows reconcile did not find in the source.
	Deleted  int
	Archived int
	Restored int
	Gone     int
	Batches  int
	Resumed  int // journaled batches settled from an earlier, interrupted run
	Polls    int // job polls spent
	Position checkpoint.Position
	// HorizonLag is how far the commit horizon (and Syncer.Lag) held this
	// pass back from now; 0 for cursors that are not timestamps.
	HorizonLag time.Duration
	// Held is the number of rows a paced pass left for a later send (the
	// budget's pace), and NextSend when that send is due. BudgetSpent says
	// the hold lasts until the month turns: the budget beyond the reserve
	// is spent.
	Held        int
	NextSend    time.Time
	BudgetSpent bool
	Duration    time.Duration
}

// PermanentError marks a failure a retry will not fix: the operator has to
// change configuration, credentials or data first.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }
