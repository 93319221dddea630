package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/mapping"
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

// ErrBudgetExhausted ends a pass when the month's request budget is spent.
// Unsent rows stay in the database; nothing is lost.
var ErrBudgetExhausted = errors.New("monthly API request budget exhausted; rows wait until the month turns or MICRO_MONTHLY_REQUESTS is raised")

// Syncer runs one sync of the mapping file.
type Syncer struct {
	Sync   *mapping.Sync
	DB     *pgxpool.Pool
	Store  Store
	API    API
	Logger *slog.Logger
	// Observer is told about passes and batches (metrics); nil ignores.
	Observer Observer
	// Budget, when set, is consulted before each batch is sent.
	Budget Budget
	// Fingerprints, when set, skips rows whose object is unchanged since the
	// API last confirmed it; Force sends them anyway (backfill --force).
	Fingerprints Fingerprints
	Force        bool
	// MaxDelay bounds how long a partial batch is held back while the
	// budget asks to coalesce (default 15m).
	MaxDelay time.Duration

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
	// RetryDelay is the pause before re-sending a failed job (default 5s);
	// Sleep lets tests skip it.
	RetryDelay time.Duration
	Sleep      func(ctx context.Context, d time.Duration) error
	// Stopping, when closed, ends a pass after the batches in flight instead
	// of reading further pages (graceful shutdown).
	Stopping <-chan struct{}

	warnOnce    sync.Once
	guard       valueGuard // late-commit guard for cursors that are not timestamps
	mappingOnce sync.Once
	batchSize   atomic.Int64 // learned: halved when the API says a body is too large (read by the page reader)
	lastSent    time.Time    // when this Syncer last sent a batch (coalescing)
	bodyHint    int          // largest encoded batch so far: the next buffer's size
	fpPrefix    string       // the target options every fingerprint hashes first (set by open)
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
	// HorizonLag is how far the commit horizon (and SYNC_LAG) held this
	// pass back from now; 0 for cursors that are not timestamps.
	HorizonLag time.Duration
	Duration   time.Duration
}

// PermanentError marks a failure a retry will not fix: the operator has to
// change configuration, credentials or data first.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Once settles interrupted batches, then reads and sends pages until the
// source has no rows after the checkpoint (below the commit horizon).
func (s *Syncer) Once(ctx context.Context) (Summary, error) {
	start := time.Now()
	sum := Summary{Sync: s.Sync.Name}
	err := s.once(ctx, &sum)
	sum.Duration = time.Since(start)
	if err != nil {
		err = fmt.Errorf("sync %s: %w", s.Sync.Name, err)
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
		return fmt.Errorf("load checkpoint: %w", err)
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
	w := Window{After: sum.Position, From: s.From, To: s.To}
	if src.TimeCursor() {
		lag := s.Lag
		h, err := commitHorizon(ctx, s.DB, lag)
		if err != nil {
			return err
		}
		if !h.known {
			s.warnOnce.Do(func() {
				s.logger().Warn("cannot read other sessions' transaction start times (grant pg_read_all_stats or pg_monitor to prismsync's role); late commits are guarded only by SYNC_LAG, using at least 1m")
			})
			if lag < time.Minute {
				if h, err = commitHorizon(ctx, s.DB, time.Minute); err != nil {
					return err
				}
			}
		}
		w.Until = h.until
		sum.HorizonLag = h.lag
	} else {
		bound, known, err := s.guard.cap(ctx, s.DB, src)
		// A fresh process has no marks yet: with a transaction open, wait
		// (GuardWait) for it to end rather than read nothing.
		for deadline := time.Now().Add(s.GuardWait); err == nil && known && bound == "" && time.Now().Before(deadline); {
			if err := s.sleep(ctx, 250*time.Millisecond); err != nil {
				return err
			}
			bound, known, err = s.guard.cap(ctx, s.DB, src)
		}
		if err != nil {
			return err
		}
		if !known {
			s.warnOnce.Do(func() {
				s.logger().Warn("cannot read other sessions' transaction start times (grant pg_read_all_stats or pg_monitor to prismsync's role); rows committed late behind the checkpoint can be missed")
			})
		} else if bound == "" {
			if s.GuardWait > 0 {
				return fmt.Errorf("%w: waited %s for transactions that were open when this pass began (see pg_stat_activity); nothing was read", ErrHeldBack, s.GuardWait)
			}
			return nil // nothing is known to be final yet: the next pass reads it
		} else {
			w.Cap = bound
		}
	}
	p := &pipeline{s: s, fp: fp, sum: sum, max: max(1, s.MaxInflight)}
	return p.run(ctx, src, enc, w)
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
	err := s.retry(ctx, keys, &sum)
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
		return fmt.Errorf("load checkpoint: %w", err)
	}
	src, enc, err := s.open(ctx)
	if err != nil {
		return err
	}
	p := &pipeline{s: s, fp: fp, sum: sum, max: 1}
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
		sum.Rows += len(rows)
		b := s.build(enc, state.Position, rows, s.logWarning)
		b.To = state.Position // the checkpoint stays where it is
		sum.Invalid += len(b.invalid)
		if err := p.add(ctx, b); err != nil {
			return err
		}
	}
	return p.drain(ctx, true)
}

// settlePending finishes the batches an interrupted run left in the journal,
// oldest first. A crash inside nextAttempt can leave two entries for one
// batch (same start position); only the newest attempt is live, the older
// ones are dropped unsent.
func (s *Syncer) settlePending(ctx context.Context, fp string, sum *Summary) error {
	pending, err := s.Store.Pending(ctx, s.name())
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	newest := make(map[string]int) // start position -> index of its newest attempt
	for i, b := range pending {
		k := positionString(b.From)
		if j, ok := newest[k]; !ok || b.Attempt > pending[j].Attempt {
			newest[k] = i
		}
	}
	for i, b := range pending {
		if newest[positionString(b.From)] != i {
			s.logger().Info("dropping a superseded attempt from the journal", "key", b.Key, "attempt", b.Attempt)
			if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
				return fmt.Errorf("drop superseded attempt: %w", err)
			}
			continue
		}
		s.logger().Info("settling batch from an interrupted run", "key", b.Key, "rows", b.Rows, "job_id", b.JobID)
		f := &flight{batch: built{Batch: b}, done: make(chan struct{})}
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
func (s *Syncer) open(ctx context.Context) (*Source, *mapping.Encoder, error) {
	src, err := NewSource(ctx, s.DB, s.Sync)
	if err != nil {
		return nil, nil, &PermanentError{err}
	}
	enc, err := s.Sync.Compile(src.Fields())
	if err != nil {
		return nil, nil, &PermanentError{fmt.Errorf("compile mapping: %w", err)}
	}
	s.fpPrefix = fingerprintPrefix(s.Sync.Target)
	return src, enc, nil
}

// flight is one batch on its way: sent by its own goroutine, committed in
// order by the pipeline.
type flight struct {
	batch built
	done  chan struct{}
	res   []prism.Result
	rep   BatchReport
	err   error
}

// harmless reports whether the completed flight's commit cannot end the
// pass by itself: it succeeded and has no rejected rows for MAX_REJECT_SHARE
// to count. (A store failure during the commit still can; the batch sent
// meanwhile is journaled and settled by the next pass.)
func (f *flight) harmless() bool {
	if f.err != nil || len(f.batch.invalid) > 0 {
		return false
	}
	for _, r := range f.res {
		if r.Error != nil {
			return false
		}
	}
	return true
}

// pipeline keeps up to max batches in flight and commits them strictly in
// order, so the checkpoint only ever covers a prefix of confirmed batches.
type pipeline struct {
	s     *Syncer
	fp    string
	sum   *Summary
	max   int
	queue []*flight
	wg    sync.WaitGroup
}

func (p *pipeline) run(ctx context.Context, src *Source, enc *mapping.Encoder, w Window) error {
	err := p.feed(ctx, src, enc, w)
	if err != nil {
		// Let what is in flight finish (its journal entries stay for the
		// next run unless committed here), but commit nothing past a failure.
		p.wg.Wait()
		if cerr := p.drain(ctx, true); cerr != nil {
			p.s.logger().Warn("could not commit completed batches after a failure", "err", cerr)
		}
		return err
	}
	return p.drain(ctx, true)
}

// feed sends the batches that read produces, in order, while committing
// in-flight batches the moment they complete. Reading runs in its own
// goroutine so that neither the next page's query, encoding and journal
// write nor a commit waits for the other: a slot freed by a completed job is
// refilled at once with a batch that is already built and journaled. read
// stays one batch ahead, so memory holds at most max+2 batches (max in
// flight, one being committed, one ready).
func (p *pipeline) feed(ctx context.Context, src *Source, enc *mapping.Encoder, w Window) error {
	rctx, stop := context.WithCancel(ctx)
	pages := make(chan built)
	done := make(chan struct{})
	var rerr error
	go func() {
		defer close(done)
		defer close(pages)
		rerr = p.read(rctx, src, enc, w, pages)
	}()
	defer func() {
		stop()
		for b := range pages { // a batch the reader was handing over
			p.unjournal(ctx, b)
		}
		<-done
	}()
	in := pages // nil once read has handed over its last batch
	take := func(b built, ok bool) error {
		if !ok {
			in = nil
			return nil
		}
		p.sum.Rows += b.read
		p.sum.Invalid += len(b.invalid)
		return p.start(ctx, b)
	}
	for {
		if in == nil {
			<-done
			return rerr
		}
		var head <-chan struct{}
		if len(p.queue) > 0 {
			head = p.queue[0].done
		}
		var next <-chan built
		if len(p.queue) < p.max {
			next = in
		}
		select {
		case <-head:
			// The head's slot is free. When its commit cannot end the
			// pass, refill the slot first so that the commit's store
			// round trips overlap the next job instead of delaying it.
			if p.queue[0].harmless() {
				select {
				case b, ok := <-in:
					if err := take(b, ok); err != nil {
						return err
					}
				default:
				}
			}
			if err := p.commitHead(ctx); err != nil {
				return err
			}
		case b, ok := <-next:
			if err := take(b, ok); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read pages through the window, maps each page into a batch, and hands the
// batches to feed in order. It touches no pipeline state: feed owns that.
func (p *pipeline) read(ctx context.Context, src *Source, enc *mapping.Encoder, w Window, out chan<- built) error {
	s := p.s
	for {
		limit := s.limit()
		w.Limit = limit
		rows, err := src.Page(ctx, w)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		if hold, err := s.holdBack(ctx, len(rows) < limit); hold || err != nil {
			return err
		}
		b := s.build(enc, w.After, rows, s.logWarning)
		b.read = len(rows)
		if b, err = s.skipUnchanged(ctx, b); err != nil {
			return err
		}
		// Journaled here, ahead of its slot, so that sending it later
		// costs no store round trip. A batch journaled but never sent
		// (the pass stopped first) is settled by the next pass like one
		// interrupted by a crash.
		if err := p.journal(ctx, &b); err != nil {
			return err
		}
		select {
		case out <- b:
		case <-ctx.Done():
			p.unjournal(ctx, b)
			return ctx.Err()
		}
		w.After = b.To
		if len(rows) < limit || s.stopping() {
			return nil
		}
	}
}

// holdBack asks the budget whether the next batch may go. A spent budget
// ends the pass with ErrBudgetExhausted; a month running ahead of its pace
// holds partial batches back until MaxDelay passed since the last send, so
// that fewer, fuller requests carry the same rows.
func (s *Syncer) holdBack(ctx context.Context, partial bool) (bool, error) {
	if s.Budget == nil {
		return false, nil
	}
	// A batch costs its POST and, when async, about two polls.
	ok, err := s.Budget.Allow(ctx, 3)
	if err != nil {
		return true, err
	}
	if !ok {
		return true, ErrBudgetExhausted
	}
	maxDelay := s.MaxDelay
	if maxDelay <= 0 {
		maxDelay = 15 * time.Minute
	}
	if partial && !s.lastSent.IsZero() && time.Since(s.lastSent) < maxDelay && s.Budget.Coalesce(ctx) {
		s.logger().Debug("coalescing: request budget ahead of the month's pace; holding a partial batch", "max_delay", maxDelay)
		return true, nil
	}
	s.lastSent = time.Now()
	return false, nil
}

// add journals b, starts sending it, and commits whatever completed. It
// blocks while max batches are in flight.
func (p *pipeline) add(ctx context.Context, b built) error {
	for len(p.queue) >= p.max {
		if err := p.commitHead(ctx); err != nil {
			return err
		}
	}
	if err := p.start(ctx, b); err != nil {
		return err
	}
	return p.drain(ctx, false)
}

// start journals b and sends it from its own goroutine; the caller has
// made room for it.
func (p *pipeline) start(ctx context.Context, b built) error {
	f := &flight{batch: b, done: make(chan struct{})}
	if len(b.sent) == 0 {
		close(f.done) // nothing to send: only rejects to record
	} else {
		if err := p.journal(ctx, &f.batch); err != nil {
			return err
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(f.done)
			f.res, f.rep, f.err = p.s.send(ctx, &f.batch.Batch)
		}()
	}
	p.queue = append(p.queue, f)
	p.s.observer().InFlight(p.s.Sync.Name, len(p.queue))
	return nil
}

// journal writes b to the journal unless that is done: every batch is
// journaled before it is sent.
func (p *pipeline) journal(ctx context.Context, b *built) error {
	if b.journaled || len(b.sent) == 0 {
		return nil
	}
	if err := p.s.Store.Journal(ctx, b.Batch); err != nil {
		return fmt.Errorf("journal batch: %w", err)
	}
	b.journaled = true
	return nil
}

// unjournal removes a batch journaled ahead that will not be sent because
// the pass is ending, so the journal keeps only batches that may have
// reached the API. Best effort: an entry left behind is settled by the next
// pass like any other.
func (p *pipeline) unjournal(ctx context.Context, b built) {
	if !b.journaled {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		p.s.logger().Debug("could not drop a batch journaled ahead; the next pass settles it", "err", err)
	}
}

// drain commits completed batches from the head of the queue; with wait it
// waits for each head to complete.
func (p *pipeline) drain(ctx context.Context, wait bool) error {
	for len(p.queue) > 0 {
		if !wait {
			select {
			case <-p.queue[0].done:
			default:
				return nil
			}
		}
		if err := p.commitHead(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipeline) commitHead(ctx context.Context) error {
	f := p.queue[0]
	select {
	case <-f.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.finish(ctx, f); err != nil {
		return err
	}
	p.queue = p.queue[1:]
	p.s.observer().InFlight(p.s.Sync.Name, len(p.queue))
	return p.s.checkRejectShare(p.sum)
}

// finish settles a batch whose send has ended: a body the API found too
// large is split and re-sent, a failure ends the pass, a success commits.
func (p *pipeline) finish(ctx context.Context, f *flight) error {
	switch {
	case f.err != nil && prism.IsTooLarge(f.err) && len(f.batch.sent) > 1:
		return p.bisect(ctx, f)
	case f.err != nil:
		p.s.observer().BatchDone(p.s.Sync.Name, f.rep)
		return f.err
	default:
		return p.s.commit(ctx, f, p.fp, p.sum)
	}
}

// checkRejectShare fails the pass when too many of its rows were rejected.
// The batches so far are committed (their rejects recorded), so nothing is
// lost: the rejects are retried when their rows change again.
func (s *Syncer) checkRejectShare(sum *Summary) error {
	seen := sum.Sent + sum.Invalid
	bad := sum.Rejected + sum.Invalid
	if s.MaxRejectShare <= 0 || seen < 20 || float64(bad) <= s.MaxRejectShare*float64(seen) {
		return nil
	}
	return &PermanentError{fmt.Errorf("%d of %d rows in this pass were rejected, more than MAX_REJECT_SHARE=%g; stopping so that a systematic problem does not reject every row (see `prismsync rejects` for the reasons)",
		bad, seen, s.MaxRejectShare)}
}

// bisect handles a batch the API found too large: it forgets the batch,
// halves the batch size for the rest of this Syncer's life, and sends the
// same rows again in halves (recursively), in order, before anything behind
// them is committed.
func (p *pipeline) bisect(ctx context.Context, f *flight) error {
	s := p.s
	b := f.batch
	half := max(1, len(b.sent)/2)
	s.batchSize.Store(int64(half))
	s.logger().Warn("the API refused a batch as too large; halving the batch size", "rows", len(b.sent), "batch_size", half)
	if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		return fmt.Errorf("drop oversized batch: %w", err)
	}
	// The rows mapped fine already; rebuild the halves from them (rejects
	// of the original build stay with the first half's commit).
	parts := [][]row{b.sent[:half], b.sent[half:]}
	from := b.From
	for i, rows := range parts {
		sub := s.buildRows(rows, from)
		if i == 0 {
			sub.invalid = b.invalid
		}
		if i == len(parts)-1 {
			sub.To = b.To // the original end covers rows it kept out as invalid
		}
		if err := s.Store.Journal(ctx, sub.Batch); err != nil {
			return fmt.Errorf("journal batch: %w", err)
		}
		sf := &flight{batch: sub, done: make(chan struct{})}
		sf.res, sf.rep, sf.err = s.send(ctx, &sf.batch.Batch)
		close(sf.done)
		if err := p.finish(ctx, sf); err != nil {
			return err
		}
		from = sub.To
	}
	return nil
}

func (s *Syncer) limit() int {
	if n := int(s.batchSize.Load()); n > 0 && n < s.Sync.BatchSize {
		return n
	}
	return s.Sync.BatchSize
}

// built is a batch ready to send plus what the engine needs to interpret
// the API's answer: which source row each object came from.
type built struct {
	checkpoint.Batch
	sent      []row // rows in request order
	objects   [][]byte
	invalid   []checkpoint.Reject
	unchanged int  // rows left out because the API already has their object
	read      int  // rows read from the source for this batch
	journaled bool // Batch is in the journal
}

// build maps a page into one request. Rows the mapping refuses and rows whose
// dedupe value repeats inside the batch are kept out of the request and
// recorded as rejects, so one bad row never blocks the rows behind it.
//
// warn is told about values the mapping had to change (NaN sent as null,
// invalid UTF-8 replaced): the row is sent, and noted.
func (s *Syncer) build(enc *mapping.Encoder, from checkpoint.Position, rows []row, warn func(row, mapping.Warning)) built {
	b := built{}
	seen := make(map[string]bool)
	// Every object is a slice of buf and lives until its batch commits. A
	// buffer that grew by doubling would keep each outgrown array alive
	// through those slices, so size it from the previous batch up front.
	buf := make([]byte, 0, s.bodyHint+s.bodyHint/8)
	for _, r := range rows {
		start := len(buf)
		out, dedupe, err := enc.Append(buf, r.values, func(w mapping.Warning) { warn(r, w) })
		if err != nil {
			b.invalid = append(b.invalid, s.reject(r, rowErrorCode(err), err.Error(), nil))
			continue
		}
		if dedupe != "" {
			if seen[dedupe] {
				b.invalid = append(b.invalid, s.reject(r, "duplicate_in_batch",
					fmt.Sprintf("%s value %q already appears in this batch; the row is retried when it changes again", s.Sync.Target.DedupeBy, dedupe), out[start:]))
				buf = out[:start]
				continue
			}
			seen[dedupe] = true
		}
		buf = out
		r.object = buf[start:len(buf):len(buf)]
		// The decoded column values are not needed once the row is
		// encoded; dropping them keeps in-flight batches small.
		r.values = nil
		if s.Fingerprints != nil {
			r.sum = s.fingerprint(r.object)
		}
		b.sent = append(b.sent, r)
	}
	s.bodyHint = max(s.bodyHint, len(buf))
	nb := s.buildRows(b.sent, from)
	nb.invalid = b.invalid
	nb.To = rows[len(rows)-1].pos
	return nb
}

// skipUnchanged drops rows whose object hash equals the one stored for
// their key; the batch keeps its end position, so the checkpoint still moves
// past them.
func (s *Syncer) skipUnchanged(ctx context.Context, b built) (built, error) {
	if s.Fingerprints == nil || s.Force || len(b.sent) == 0 {
		return b, nil
	}
	keys := make([][]string, len(b.sent))
	for i, r := range b.sent {
		keys[i] = r.pos.Key
	}
	// Fingerprints belong to the sync, not to its state name: a backfill
	// skips what the live sync already delivered, and vice versa.
	stored, err := s.Fingerprints.Fingerprints(ctx, s.Sync.Name, keys)
	if err != nil {
		return b, fmt.Errorf("read change fingerprints: %w", err)
	}
	kept := b.sent[:0:0]
	for i, r := range b.sent {
		if i < len(stored) && bytes.Equal(stored[i], r.sum) {
			b.unchanged++
			continue
		}
		kept = append(kept, r)
	}
	if b.unchanged == 0 {
		return b, nil
	}
	nb := s.buildRows(kept, b.From)
	nb.invalid, nb.unchanged, nb.To, nb.read = b.invalid, b.unchanged, b.To, b.read
	return nb, nil
}

// fingerprint hashes what the API would apply for a row: its object and the
// target options that decide how it is applied.
// The target options come first (fingerprintPrefix, set by open).
//
// Stored fingerprints are compared across versions: changing what is hashed
// would resend every row once (TestFingerprintIsStable pins it).
func (s *Syncer) fingerprint(object []byte) []byte {
	h := sha256.New()
	io.WriteString(h, s.fpPrefix) //nolint:errcheck // hash writes cannot fail
	h.Write(object)
	return h.Sum(make([]byte, 0, sha256.Size))[:16]
}

func fingerprintPrefix(t mapping.Target) string {
	return fmt.Sprintf("%s\x00%s\x00%t\x00%t\x00%s\x00", t.Object, t.DedupeBy, t.CaseInsensitive, t.UpdateExisting, t.ListID)
}

// buildRows makes the request for rows whose objects are already encoded.
func (s *Syncer) buildRows(rows []row, from checkpoint.Position) built {
	b := built{sent: rows}
	for _, r := range rows {
		b.objects = append(b.objects, r.object)
	}
	t := s.Sync.Target
	b.Batch = checkpoint.Batch{
		Sync:    s.name(),
		Attempt: 1,
		From:    from,
		Rows:    len(rows),
		Object:  t.Object,
	}
	for _, r := range rows {
		b.RowKeys = append(b.RowKeys, r.pos.Key)
	}
	if len(rows) > 0 {
		b.To = rows[len(rows)-1].pos
		// The objects become views of the body, so the encode buffer
		// they were written to can go: each batch in flight holds its
		// objects once.
		b.Body = prism.EncodeImportBodyShared(b.objects, prism.ImportOptions{
			DedupeBy:        t.DedupeBy,
			CaseInsensitive: t.CaseInsensitive,
			UpdateExisting:  t.UpdateExisting,
			ListID:          t.ListID,
		})
		for i := range rows {
			rows[i].object = b.objects[i]
		}
		b.Key = s.batchKey(from, b.Body, b.Attempt)
	}
	return b
}

// logWarning notes a value the mapping changed on its way to the API.
func (s *Syncer) logWarning(r row, w mapping.Warning) {
	s.logger().Warn("value changed on the way to Micro", "row_key", r.pos.Key, "property", w.Property, "code", w.Code, "detail", w.Message)
}

// Preview is what a pass would send for some rows: nothing is journaled,
// sent or committed.
type Preview struct {
	Rows     int                 // rows read
	Bodies   [][]byte            // one import request body per batch, byte for byte
	Invalid  []checkpoint.Reject // rows kept out of the requests, with their reasons
	Warnings []RowWarning        // values the mapping changed
}

// RowWarning is a value the mapping changed on its way (the row is sent).
type RowWarning struct {
	RowKey []string
	mapping.Warning
}

// Preview reads up to limit rows of w (normally: after the checkpoint) and
// builds the request bodies exactly as a pass would, in batches of the
// sync's batch_size. It takes no lease and changes nothing.
func (s *Syncer) Preview(ctx context.Context, w Window) (Preview, error) {
	var pv Preview
	src, enc, err := s.open(ctx)
	if err != nil {
		return pv, err
	}
	rows, err := src.Page(ctx, w)
	if err != nil {
		return pv, err
	}
	pv.Rows = len(rows)
	warn := func(r row, w mapping.Warning) {
		pv.Warnings = append(pv.Warnings, RowWarning{RowKey: r.pos.Key, Warning: w})
	}
	from := w.After
	for len(rows) > 0 {
		n := min(len(rows), s.Sync.BatchSize)
		b := s.build(enc, from, rows[:n], warn)
		rows, from = rows[n:], b.To
		pv.Invalid = append(pv.Invalid, b.invalid...)
		if len(b.sent) > 0 {
			pv.Bodies = append(pv.Bodies, b.Body)
		}
	}
	return pv, nil
}

// batchKey is a batch's Idempotency-Key: deterministic in the sync (state)
// name, the start position, the exact body and the attempt, so a resend
// after a crash is recognised. KeyNonce makes deliberate resends of the
// same rows (backfill, rejects --retry) distinct from earlier ones: their
// keys, once used, are journaled, so a crash still replays them.
func (s *Syncer) batchKey(from checkpoint.Position, body []byte, attempt int) string {
	start := positionString(from)
	if s.KeyNonce != "" {
		start += "|" + s.KeyNonce
	}
	return prism.IdempotencyKey(s.name(), start, body, attempt)
}

func rowErrorCode(err error) string {
	var re *mapping.RowError
	if errors.As(err, &re) && re.Code != "" {
		return re.Code
	}
	return "invalid_row"
}

func (s *Syncer) reject(r row, code, msg string, payload []byte) checkpoint.Reject {
	return checkpoint.Reject{Sync: s.name(), RowKey: r.pos.Key, Code: code, Message: msg, Payload: append([]byte(nil), payload...)}
}

// send POSTs a journaled batch and waits for its job. A job that ends
// "failed" is re-sent under a new attempt (new key, same body) up to
// MaxJobAttempts; an idempotency conflict also earns a new attempt.
//
// b is updated in place when a new attempt replaces it in the journal, so
// that the commit removes the journal entry that is really there.
func (s *Syncer) send(ctx context.Context, b *checkpoint.Batch) ([]prism.Result, BatchReport, error) {
	maxAttempts := s.MaxJobAttempts
	if maxAttempts <= 0 {
		maxAttempts = 3
	}
	start := time.Now()
	rep := BatchReport{Rows: b.Rows}
	for {
		rep.Attempts++
		job, err := s.API.Import(ctx, b.Object, b.Key, b.Body)
		if err == nil && job.ID != "" && job.Status == prism.StatusProcessing {
			rep.Async = true
			if err := s.Store.SetJobID(ctx, b.Sync, b.Key, job.ID); err != nil {
				return nil, rep, fmt.Errorf("record job id: %w", err)
			}
			b.JobID = job.ID
			job, err = s.API.Wait(ctx, job)
		}
		if job != nil {
			rep.Polls += job.Polls
		}
		res, retry, err := s.outcome(*b, job, err)
		rep.Duration = time.Since(start)
		rep.Outcome = "complete"
		if err != nil {
			rep.Outcome = "error"
			if job != nil && job.Status == prism.StatusFailed {
				rep.Outcome = "failed"
			}
		}
		if !retry || err == nil {
			return res, rep, err
		}
		// Counted per pass: the journal's attempt number keeps growing
		// across passes so that each pass's resend gets a fresh key.
		if rep.Attempts >= maxAttempts {
			return nil, rep, fmt.Errorf("batch starting after %s did not complete in %d attempts; giving up for this pass (the journal keeps it; the next pass starts from it): %w", positionString(b.From), rep.Attempts, err)
		}
		s.logger().Warn("import job did not complete; re-sending under a new attempt", "attempt", b.Attempt+1, "err", err)
		if err := s.sleep(ctx, s.retryDelay()); err != nil {
			return nil, rep, err
		}
		if err := s.nextAttempt(ctx, b); err != nil {
			return nil, rep, err
		}
	}
}

// outcome interprets an Import or Wait result. retry says whether a new
// attempt with a new key may fix it.
func (s *Syncer) outcome(b checkpoint.Batch, job *prism.Job, err error) (res []prism.Result, retry bool, _ error) {
	if err != nil {
		if prism.IsIdempotencyConflict(err) || errors.Is(err, prism.ErrJobNotFound) {
			return nil, true, err
		}
		if prism.IsTooLarge(err) {
			return nil, false, err // the pipeline bisects
		}
		if prism.IsPermanent(err) {
			return nil, false, &PermanentError{err}
		}
		return nil, false, err
	}
	switch job.Status {
	case prism.StatusComplete:
		res, err := job.RowResults(b.Rows)
		if err != nil {
			return nil, false, fmt.Errorf("job %s: %w", job.ID, err)
		}
		return res, false, nil
	case prism.StatusFailed:
		return nil, true, fmt.Errorf("import job %s failed: %w", job.ID, job.Err())
	default:
		return nil, false, fmt.Errorf("import job %s ended in unexpected status %q", job.ID, job.Status)
	}
}

// nextAttempt replaces the journaled batch by the same body under a new
// attempt number, so the new key never collides with the old one.
//
// The new entry is written before the old one is dropped, so a crash in
// between leaves two entries for one batch; settlePending keeps the newest.
func (s *Syncer) nextAttempt(ctx context.Context, b *checkpoint.Batch) error {
	next := *b
	next.Attempt++
	next.Key = s.batchKey(b.From, b.Body, next.Attempt)
	next.JobID = ""
	if err := s.Store.Journal(ctx, next); err != nil {
		return fmt.Errorf("journal batch: %w", err)
	}
	if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		return fmt.Errorf("drop old attempt: %w", err)
	}
	*b = next
	return nil
}

// settle finishes a batch journaled by an interrupted run: poll the job if
// one was recorded, otherwise re-send the identical bytes under the same key
// (the API replays its stored answer if the first send got through).
func (s *Syncer) settle(ctx context.Context, b *checkpoint.Batch) ([]prism.Result, BatchReport, error) {
	if b.JobID == "" {
		return s.send(ctx, b)
	}
	rep := BatchReport{Rows: b.Rows, Async: true, Attempts: 1}
	job, err := s.API.Job(ctx, b.JobID)
	if err == nil && job.Status == prism.StatusProcessing {
		job, err = s.API.Wait(ctx, job)
	}
	if job != nil {
		rep.Polls = job.Polls
	}
	res, retry, err := s.outcome(*b, job, err)
	if !retry {
		rep.Outcome = "complete"
		if err != nil {
			rep.Outcome = "error"
		}
		return res, rep, err
	}
	// Expired or failed: the rows may or may not be in the CRM. Re-sending
	// under a new attempt is the only way forward; dedupe_by makes it safe.
	s.logger().Warn("journaled job cannot be settled; re-sending under a new attempt", "job_id", b.JobID, "err", err)
	if err := s.nextAttempt(ctx, b); err != nil {
		return nil, rep, err
	}
	return s.send(ctx, b)
}

// commit advances the checkpoint past a completed batch and records its
// rejects, in one store transaction.
func (s *Syncer) commit(ctx context.Context, f *flight, fp string, sum *Summary) error {
	b := f.batch
	rejects := append([]checkpoint.Reject(nil), b.invalid...)
	var resolved [][]string
	objects := b.objects
	if b.sent == nil && len(f.res) > 0 {
		// A batch settled from the journal: its row keys are not in the
		// journal, so per-row errors are recorded under batch and index.
		objects = splitObjects(b.Body)
	}
	rep := &f.rep
	rep.Invalid = len(b.invalid)
	rep.Unchanged = b.unchanged
	if len(b.sent) == 0 {
		rep.Outcome = "nothing_to_send"
	}
	for i, r := range f.res {
		switch {
		case r.Error != nil:
			rep.Rejected++
			rj := checkpoint.Reject{Sync: b.Sync, Code: r.Error.Code, Message: r.Error.Message}
			switch {
			case i < len(b.sent):
				rj.RowKey = b.sent[i].pos.Key
			case i < len(b.RowKeys):
				rj.RowKey = b.RowKeys[i] // a batch settled from the journal
			default:
				// Journaled by a version that kept no row keys.
				rj.RowKey = []string{fmt.Sprintf("batch %s #%d", b.Key, i)}
			}
			if i < len(objects) {
				rj.Payload = objects[i]
			}
			if rj.Code == "" {
				rj.Code = "rejected"
			}
			rejects = append(rejects, rj)
		case r.Created:
			rep.Created++
		case r.Updated:
			rep.Updated++
		case r.Existing:
			rep.Existing++
		}
		if r.Error == nil && i < len(b.RowKeys) {
			resolved = append(resolved, b.RowKeys[i])
		}
	}
	if err := s.Store.Commit(ctx, b.Sync, b.Key, b.To, fp, rejects, resolved); err != nil {
		return fmt.Errorf("commit checkpoint: %w", err)
	}
	s.saveFingerprints(ctx, b, f.res)
	sum.Unchanged += b.unchanged
	s.observer().BatchDone(s.Sync.Name, *rep)
	sum.Sent += len(f.res)
	sum.Created += rep.Created
	sum.Updated += rep.Updated
	sum.Existing += rep.Existing
	sum.Rejected += rep.Rejected
	sum.Polls += rep.Polls
	sum.Batches++
	sum.Position = b.To
	return nil
}

// saveFingerprints remembers the objects the API confirmed. Losing them (a
// crash right after the commit) only costs a resend, so a failure is logged,
// not fatal.
func (s *Syncer) saveFingerprints(ctx context.Context, b built, res []prism.Result) {
	if s.Fingerprints == nil || len(b.sent) == 0 {
		return
	}
	var sums [][]byte
	var rowKeys [][]string
	for i, r := range res {
		if r.Error == nil && i < len(b.sent) && b.sent[i].sum != nil {
			rowKeys = append(rowKeys, b.sent[i].pos.Key)
			sums = append(sums, b.sent[i].sum)
		}
	}
	if len(rowKeys) == 0 {
		return
	}
	if err := s.Fingerprints.SaveFingerprints(ctx, s.Sync.Name, rowKeys, sums); err != nil {
		s.logger().Warn("could not save change fingerprints; unchanged rows may be sent again", "err", err)
	}
}

// splitObjects recovers the objects of a journaled request body so rejected
// rows of a resumed batch keep their payload.
func splitObjects(body []byte) [][]byte {
	var req struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	out := make([][]byte, len(req.Objects))
	for i, o := range req.Objects {
		out[i] = o
	}
	return out
}

func positionString(p checkpoint.Position) string {
	if p.IsZero() {
		return "start"
	}
	return p.Cursor + "|" + strings.Join(p.Key, "|")
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

func (s *Syncer) retryDelay() time.Duration {
	if s.RetryDelay > 0 {
		return s.RetryDelay
	}
	return 5 * time.Second
}

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
