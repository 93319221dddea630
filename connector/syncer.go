package connector

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// Syncer runs one sync of the mapping file.
type Syncer struct {
	Sync   *mapping.Sync
	DB     *pgxpool.Pool
	Store  Store
	API    API
	Logger *slog.Logger
	// Observer is told about passes and batches (metrics); nil ignores.
	Observer Observer
	// Budget, when set, admits each batch before it is sent.
	Budget Budget
	// Paced is set by the daemon: its partial batches wait for their turn
	// in the budget, and it leaves the budget's reserve alone. Explicit
	// runs (once, backfill, rejects --retry) leave it unset and send
	// everything pending, stopping only when the month's budget is spent.
	Paced bool
	// Interval is how often the daemon runs the sync (its schedule), so
	// the budget can tell a live claim for a turn from a stale one.
	Interval time.Duration
	// Fingerprints, when set, skips rows whose object is unchanged since the
	// API last confirmed it; Force sends them anyway (backfill --force).
	Fingerprints Fingerprints
	Force        bool
	// StateName is the name the checkpoint and journal are kept under;
	// default Sync.Name. A backfill uses its own so that it never moves the
	// daemon's live checkpoint.
	StateName string
	// From and To bound the cursor (inclusive, as PostgreSQL text) for a
	// backfill; "" = unbounded.
	From, To string

	// GuardWait is how long a pass over a non-timestamp cursor waits for
	// transactions open at its start to end when it knows no safe bound
	// yet (a fresh process). 0, the daemon's choice, reads nothing this
	// pass instead; once and backfill wait, then fail with ErrHeldBack.
	GuardWait time.Duration

	// KeyNonce, when set, goes into every new batch's idempotency key: a
	// backfill or a retry re-sends rows that may have been sent with the
	// same body from the same position before, and must not get Micro's
	// stored answer to that earlier request (or a stale-key 409).
	KeyNonce string

	// MaxInflight is how many batches may be sent and not yet committed at
	// once (default 1). Reading and encoding the next batch overlaps with
	// the API working on earlier ones; the checkpoint still only advances
	// over the longest prefix of completed batches.
	MaxInflight int
	// MaxJobAttempts bounds how often one batch is re-sent after its job
	// ended "failed" (each time under a new idempotency key). Default 3.
	MaxJobAttempts int
	// Lag keeps rows whose cursor is newer than now-Lag for a later pass: a
	// backstop for cursors stamped by application clocks, and the only
	// bound when the commit horizon cannot be read (then at least 1 minute).
	Lag time.Duration
	// MaxRejectShare stops a pass (with a PermanentError) once more than
	// this share of its rows were rejected, so a systematic problem (a
	// wrong slug, a broken transform) fails loudly instead of quietly
	// rejecting everything. 0 disables it. Checked after each commit, from
	// 20 rows on.
	MaxRejectShare float64
	// RetryDelay is the pause before re-sending a failed job (default 5s).
	RetryDelay time.Duration
	// Sleep, when set, takes every pause of the engine (RetryDelay, the
	// polls while GuardWait waits), so tests need not wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Stopping, when closed, ends a pass after the batches in flight instead
	// of reading further rows (graceful shutdown).
	Stopping <-chan struct{}
	// DeferWarnAfter is how long a row may wait for the record of the row
	// it links to before each pass warns about it, with its key (default
	// DefaultDeferWarnAfter, 24h).
	DeferWarnAfter time.Duration
	// MaxSnapshot bounds how long a pass reads the source in one snapshot
	// (default DefaultMaxSnapshot): an older one is ended and the read goes
	// on from the last row in a new one, so that a long backfill does not
	// keep vacuum from removing dead rows on the source.
	MaxSnapshot time.Duration
	// Now is the engine's clock: for MaxSnapshot, and for deferred rows
	// (when they began to wait, how long they have); nil is time.Now.
	Now func() time.Time

	// MaxDeleteShare refuses a reconcile that would delete more than this
	// share of the sync's records (see DeleteShareError); 0 is
	// DefaultMaxDeleteShare, negative disables the guard.
	MaxDeleteShare float64

	refusal     atomic.Pointer[error] // a reconcile the guard refused in the daemon (see Reconcile)
	warnOnce    sync.Once
	guard       valueGuard // late-commit guard for cursors that are not timestamps
	mappingOnce sync.Once
	batchSize   atomic.Int64 // learned: halved when the API says a body is too large (read by the page reader)
	holding     bool         // the last paced pass held rows (a hold is logged once)
	bodyHint    int          // largest encoded batch so far: the next buffer's size
	fpPrefix    string       // the target options every fingerprint hashes first (set by open)
	archive     []byte       // the archive properties' object (on_delete: archive; set by open)
	// warnedWaiting holds the keys of deferred rows warnWaiting reported.
	warnedWaiting map[string]bool
}

// Once settles interrupted batches, then reads and sends pages until the
// source has no rows after the checkpoint (below the commit horizon).
func (s *Syncer) Once(ctx context.Context) (Summary, error) {
	start := time.Now()
	sum := Summary{Sync: s.Sync.Name}
	err := s.once(WithSyncName(ctx, s.Sync.Name), &sum)
	sum.Duration = time.Since(start)
	if err != nil {
		err = fmt.Errorf("sync %s: %w", s.Sync.Name, err)
	} else {
		err = s.refused()
	}
	s.observer().PassFinished(sum, err)
	return sum, err
}

func (s *Syncer) name() string {
	if s.StateName != "" {
		return s.StateName
	}
	return s.Sync.Name
}

func (s *Syncer) once(ctx context.Context, sum *Summary) error {
	state, err := s.Store.Load(ctx, s.name())
	if err != nil {
		return err
	}
	fp := s.Sync.Fingerprint()
	if s.StateName == "" && state.Exists && state.Fingerprint != "" && state.Fingerprint != fp {
		s.mappingOnce.Do(func() {
			s.logger().Info("mapping changed since the last commit; continuing from the checkpoint (the new mapping applies to rows changed from now on; run a backfill to resend everything)")
		})
	}
	sum.Position = state.Position

	if err := s.settlePending(ctx, fp, sum); err != nil {
		return err
	}

	src, enc, err := s.open(ctx)
	if err != nil {
		return err
	}
	b, ok, err := s.passBound(ctx, src)
	if err != nil || !ok {
		return err
	}
	sum.HorizonLag = b.lag
	w := Window{After: sum.Position, from: s.From, to: s.To, until: b.until, cap: b.cap}
	p := &pipeline{s: s, fp: fp, sum: sum, max: max(1, s.MaxInflight)}
	if s.Fingerprints != nil && !s.Force {
		// Asked once per pass: rows this pass saves are not read again
		// in it, and missing one that another process (a backfill of the
		// same sync) saves meanwhile costs a resend, never a row.
		if p.look, err = s.Fingerprints.HasFingerprints(ctx, s.Sync.Name); err != nil {
			return err
		}
	}
	if err := p.run(ctx, src, enc, w); err != nil {
		return err
	}
	if len(enc.Refs()) == 0 || s.StateName != "" || sum.Held > 0 || s.stopping() {
		// Only a sync with links has rows that wait; a backfill's, a held
		// or a stopping pass's wait for the next live pass.
		return nil
	}
	return s.revisit(ctx, src, enc, fp, sum)
}

// Retry re-sends the rows with the given keys — typically rows recorded as
// rejects, after the operator fixed their cause — without moving the
// checkpoint: each batch is journaled and committed at the current
// position. Keys of rows that no longer exist are ignored. The caller must
// hold the sync's lease so that no pass moves the checkpoint meanwhile.
func (s *Syncer) Retry(ctx context.Context, keys [][]string) (Summary, error) {
	if s.KeyNonce == "" {
		s.KeyNonce = uuid.NewString() // a deliberate resend: never Micro's stored answer
	}
	start := time.Now()
	sum := Summary{Sync: s.Sync.Name}
	err := s.retry(WithSyncName(ctx, s.Sync.Name), keys, &sum)
	sum.Duration = time.Since(start)
	if err != nil {
		err = fmt.Errorf("sync %s: retry rejects: %w", s.Sync.Name, err)
	}
	return sum, err
}

func (s *Syncer) retry(ctx context.Context, keys [][]string, sum *Summary) error {
	fp := s.Sync.Fingerprint()
	if err := s.settlePending(ctx, fp, sum); err != nil {
		return err
	}
	state, err := s.Store.Load(ctx, s.name())
	if err != nil {
		return err
	}
	src, enc, err := s.open(ctx)
	if err != nil {
		return err
	}
	p := &pipeline{s: s, fp: fp, sum: sum, max: 1}
	sum.Position = state.Position // the checkpoint stays where it is
	for len(keys) > 0 {
		n := min(len(keys), s.limit())
		rows, err := src.ByKeys(ctx, keys[:n])
		keys = keys[n:]
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			continue
		}
		// A retry is explicit: it is never paced, only stopped by a spent
		// budget, and it sends rows whatever their fingerprints say.
		if _, err := s.resend(ctx, p, enc, rows, nil, resendOptions{}); err != nil {
			return err
		}
	}
	return p.drain(ctx, true)
}

// Count counts the rows between From and To (a backfill's window; the
// checkpoint and a pass's bound do not apply), for a backfill's progress
// estimate. It takes no lease and changes nothing.
func (s *Syncer) Count(ctx context.Context) (int64, error) {
	src, err := newSource(ctx, s.DB, s.Sync)
	if err != nil {
		return 0, err
	}
	return src.Count(ctx, Window{from: s.From, to: s.To})
}

// Backlog counts the rows still after the checkpoint (within From and To):
// what a pass that stopped early, for instance on a spent budget, leaves
// for the next one. It takes no lease and changes nothing.
func (s *Syncer) Backlog(ctx context.Context) (int64, error) {
	state, err := s.Store.Load(ctx, s.name())
	if err != nil {
		return 0, err
	}
	src, err := newSource(ctx, s.DB, s.Sync)
	if err != nil {
		return 0, err
	}
	return src.Count(ctx, Window{After: state.Position, from: s.From, to: s.To})
}

// settlePending finishes the batches an interrupted run left in the journal,
// oldest first. A crash inside nextAttempt can leave two entries for one
// batch (same start position); only the newest attempt is live, the older
// ones are dropped unsent.
func (s *Syncer) settlePending(ctx context.Context, fp string, sum *Summary) error {
	pending, err := s.Store.Pending(ctx, s.name())
	if err != nil {
		return err
	}
	newest := make(map[string]int) // batch -> index of its newest attempt
	for i, b := range pending {
		k := batchIdentity(b)
		if j, ok := newest[k]; !ok || b.Attempt > pending[j].Attempt {
			newest[k] = i
		}
	}
	for i, b := range pending {
		if newest[batchIdentity(b)] != i {
			s.logger().Info("dropping a superseded attempt from the journal", "key", b.Key, "attempt", b.Attempt)
			if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
				return err
			}
			continue
		}
		s.logger().Info("settling batch from an interrupted run", "key", b.Key, "rows", b.Rows, "job_id", b.JobID)
		f := &flight{batch: settled(b), done: make(chan struct{})}
		f.res, f.rep, f.err = s.settle(ctx, &f.batch.Batch)
		if f.err != nil {
			return f.err
		}
		if err := s.commit(ctx, f, fp, sum); err != nil {
			return err
		}
		sum.Resumed++
	}
	return nil
}

// open describes the source and compiles the mapping against it. Both fail
// only on configuration the operator must fix, hence PermanentError.
func (s *Syncer) open(ctx context.Context) (*source, *mapping.Encoder, error) {
	src, err := newSource(ctx, s.DB, s.Sync)
	if err != nil {
		return nil, nil, &PermanentError{err}
	}
	enc, err := s.Sync.Compile(src.Fields())
	if err != nil {
		return nil, nil, &PermanentError{fmt.Errorf("compile mapping: %w", err)}
	}
	s.fpPrefix = fingerprintPrefix(s.Sync.Target)
	if s.Sync.Target.OnDelete == mapping.OnDeleteArchive {
		if s.archive, err = s.Sync.ArchiveObject(); err != nil {
			return nil, nil, &PermanentError{err}
		}
	}
	return src, enc, nil
}

func (s *Syncer) stopping() bool {
	select {
	case <-s.Stopping:
		return true
	default:
		return false
	}
}

func (s *Syncer) observer() Observer {
	if s.Observer == nil {
		return nopObserver{}
	}
	return s.Observer
}

func (s *Syncer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// sleep pauses for d, or until ctx ends (then it returns ctx's error).
func (s *Syncer) sleep(ctx context.Context, d time.Duration) error {
	if s.Sleep != nil {
		return s.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// batchIdentity names a batch across its attempts: its start position, and
// for the parts of a page split by deletes (which share the page's start)
// its kind and first row.
func batchIdentity(b checkpoint.Batch) string {
	k := positionString(b.From)
	if b.Kind != checkpoint.KindImport {
		k += "|" + b.Kind
		if len(b.RowKeys) > 0 {
			k += "|" + keyString(b.RowKeys[0])
		}
	}
	return k
}
