package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

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

// Syncer runs one sync of the mapping file.
type Syncer struct {
	Sync   *mapping.Sync
	DB     *pgxpool.Pool
	Store  Store
	API    API
	Logger *slog.Logger
	// MaxJobAttempts bounds how often one batch is re-sent after its job
	// ended "failed" (each time under a new idempotency key). Default 3.
	MaxJobAttempts int
	// RetryDelay is the pause before re-sending a failed job (default 5s);
	// Sleep lets tests skip it.
	RetryDelay time.Duration
	Sleep      func(ctx context.Context, d time.Duration) error
	// Stopping, when closed, ends a pass after the batch in flight instead
	// of reading further pages (graceful shutdown).
	Stopping <-chan struct{}
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
	Rejected int // rows the API refused (recorded as rejects)
	Batches  int
	Resumed  int // journaled batches settled from an earlier, interrupted run
	Position checkpoint.Position
	Duration time.Duration
}

// PermanentError marks a failure a retry will not fix: the operator has to
// change configuration, credentials or data first.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Once settles interrupted batches, then reads and sends pages until the
// source has no rows after the checkpoint.
func (s *Syncer) Once(ctx context.Context) (Summary, error) {
	start := time.Now()
	sum := Summary{Sync: s.Sync.Name}
	err := s.once(ctx, &sum)
	sum.Duration = time.Since(start)
	if err != nil {
		return sum, fmt.Errorf("sync %s: %w", s.Sync.Name, err)
	}
	return sum, nil
}

func (s *Syncer) once(ctx context.Context, sum *Summary) error {
	name := s.Sync.Name
	state, err := s.Store.Load(ctx, name)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	fp := s.Sync.Fingerprint()
	if state.Exists && state.Fingerprint != "" && state.Fingerprint != fp {
		s.logger().Info("mapping changed since the last commit; continuing from the checkpoint (the new mapping applies to rows changed from now on; run a backfill to resend everything)",
			"sync", name)
	}

	pending, err := s.Store.Pending(ctx, name)
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	for _, b := range pending {
		s.logger().Info("settling batch from an interrupted run", "sync", name, "key", b.Key, "rows", b.Rows, "job_id", b.JobID)
		res, err := s.settle(ctx, b)
		if err != nil {
			return err
		}
		if err := s.commit(ctx, b, res, nil, fp, sum); err != nil {
			return err
		}
		state.Position = b.To
		sum.Resumed++
	}

	src, err := NewSource(ctx, s.DB, s.Sync)
	if err != nil {
		return &PermanentError{err}
	}
	enc, err := s.Sync.Compile(src.Fields())
	if err != nil {
		return &PermanentError{fmt.Errorf("compile mapping: %w", err)}
	}

	pos := state.Position
	sum.Position = pos
	limit := s.Sync.BatchSize
	for {
		rows, err := src.Page(ctx, pos, limit)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		sum.Rows += len(rows)
		b := s.build(enc, pos, rows)
		sum.Invalid += len(b.invalid)
		var res []prism.Result
		if len(b.sent) > 0 {
			if err := s.Store.Journal(ctx, b.Batch); err != nil {
				return fmt.Errorf("journal batch: %w", err)
			}
			res, err = s.send(ctx, b.Batch)
			if err != nil {
				return err
			}
		}
		if err := s.commit(ctx, b.Batch, res, &b, fp, sum); err != nil {
			return err
		}
		pos = b.To
		if len(rows) < limit || s.stopping() {
			return nil
		}
	}
}

// built is a batch ready to send plus what the engine needs to interpret
// the API's answer: which source row each object came from.
type built struct {
	checkpoint.Batch
	sent    []row // rows in request order
	objects [][]byte
	invalid []checkpoint.Reject
}

// build maps a page into one request. Rows the mapping refuses and rows whose
// dedupe value repeats inside the batch are kept out of the request and
// recorded as rejects, so one bad row never blocks the rows behind it.
func (s *Syncer) build(enc *mapping.Encoder, from checkpoint.Position, rows []row) built {
	b := built{}
	seen := make(map[string]bool)
	var buf []byte
	for _, r := range rows {
		start := len(buf)
		out, dedupe, err := enc.Encode(buf, r.values)
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
		b.objects = append(b.objects, buf[start:len(buf):len(buf)])
		b.sent = append(b.sent, r)
	}
	t := s.Sync.Target
	b.Batch = checkpoint.Batch{
		Sync:    s.Sync.Name,
		Attempt: 1,
		From:    from,
		To:      rows[len(rows)-1].pos,
		Rows:    len(b.sent),
		Object:  t.Object,
	}
	if len(b.sent) > 0 {
		b.Body = prism.EncodeImportBody(b.objects, prism.ImportOptions{
			DedupeBy:        t.DedupeBy,
			CaseInsensitive: t.CaseInsensitive,
			UpdateExisting:  t.UpdateExisting,
			ListID:          t.ListID,
		})
		b.Key = prism.IdempotencyKey(s.Sync.Name, positionString(from), b.Body, b.Attempt)
	}
	return b
}

func rowErrorCode(err error) string {
	var re *mapping.RowError
	if errors.As(err, &re) && re.Code != "" {
		return re.Code
	}
	return "invalid_row"
}

func (s *Syncer) reject(r row, code, msg string, payload []byte) checkpoint.Reject {
	return checkpoint.Reject{Sync: s.Sync.Name, RowKey: r.pos.Key, Code: code, Message: msg, Payload: append([]byte(nil), payload...)}
}

// send POSTs a journaled batch and waits for its job. A job that ends
// "failed" is re-sent under a new attempt (new key, same body) up to
// MaxJobAttempts; an idempotency conflict also earns a new attempt.
func (s *Syncer) send(ctx context.Context, b checkpoint.Batch) ([]prism.Result, error) {
	maxAttempts := s.MaxJobAttempts
	if maxAttempts <= 0 {
		maxAttempts = 3
	}
	for {
		job, err := s.API.Import(ctx, b.Object, b.Key, b.Body)
		if err == nil && job.ID != "" && job.Status == "processing" {
			if err := s.Store.SetJobID(ctx, b.Sync, b.Key, job.ID); err != nil {
				return nil, fmt.Errorf("record job id: %w", err)
			}
			job, err = s.API.Wait(ctx, job)
		}
		res, retry, err := s.outcome(b, job, err)
		if !retry || err == nil {
			return res, err
		}
		if b.Attempt >= maxAttempts {
			return nil, fmt.Errorf("batch starting after %s failed %d times, giving up for this run (the journal keeps it; the next run starts from it): %w", positionString(b.From), b.Attempt, err)
		}
		s.logger().Warn("import job did not complete; re-sending under a new attempt", "sync", b.Sync, "attempt", b.Attempt+1, "err", err)
		if err := s.sleep(ctx, s.retryDelay()); err != nil {
			return nil, err
		}
		if b, err = s.nextAttempt(ctx, b); err != nil {
			return nil, err
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
		if prism.IsPermanent(err) {
			return nil, false, &PermanentError{err}
		}
		return nil, false, err
	}
	switch job.Status {
	case "complete":
		res, err := job.RowResults(b.Rows)
		if err != nil {
			return nil, false, fmt.Errorf("job %s: %w", job.ID, err)
		}
		return res, false, nil
	case "failed":
		msg := "no error given"
		if job.Error != nil {
			msg = strings.TrimSpace(job.Error.Code + " " + job.Error.Message)
		}
		return nil, true, fmt.Errorf("import job %s failed: %s", job.ID, msg)
	default:
		return nil, false, fmt.Errorf("import job %s ended in unexpected status %q", job.ID, job.Status)
	}
}

// nextAttempt replaces the journaled batch by the same body under a new
// attempt number, so the new key never collides with the old one.
func (s *Syncer) nextAttempt(ctx context.Context, b checkpoint.Batch) (checkpoint.Batch, error) {
	old := b.Key
	b.Attempt++
	b.Key = prism.IdempotencyKey(b.Sync, positionString(b.From), b.Body, b.Attempt)
	b.JobID = ""
	if err := s.Store.Journal(ctx, b); err != nil {
		return b, fmt.Errorf("journal batch: %w", err)
	}
	if err := s.Store.Drop(ctx, b.Sync, old); err != nil {
		return b, fmt.Errorf("drop old attempt: %w", err)
	}
	return b, nil
}

// settle finishes a batch journaled by an interrupted run: poll the job if
// one was recorded, otherwise re-send the identical bytes under the same key
// (the API replays its stored answer if the first send got through).
func (s *Syncer) settle(ctx context.Context, b checkpoint.Batch) ([]prism.Result, error) {
	if b.JobID == "" {
		return s.send(ctx, b)
	}
	job, err := s.API.Job(ctx, b.JobID)
	if err == nil && job.Status == "processing" {
		job, err = s.API.Wait(ctx, job)
	}
	res, retry, err := s.outcome(b, job, err)
	if !retry {
		return res, err
	}
	// Expired or failed: the rows may or may not be in the CRM. Re-sending
	// under a new attempt is the only way forward; dedupe_by makes it safe.
	s.logger().Warn("journaled job cannot be settled; re-sending under a new attempt", "sync", b.Sync, "job_id", b.JobID, "err", err)
	nb, err := s.nextAttempt(ctx, b)
	if err != nil {
		return nil, err
	}
	return s.send(ctx, nb)
}

// commit advances the checkpoint past b and records its rejects.
func (s *Syncer) commit(ctx context.Context, b checkpoint.Batch, res []prism.Result, bt *built, fp string, sum *Summary) error {
	var rejects []checkpoint.Reject
	var resolved [][]string
	var objects [][]byte
	var keys [][]string
	if bt != nil {
		rejects = append(rejects, bt.invalid...)
		for i, r := range bt.sent {
			keys = append(keys, r.pos.Key)
			objects = append(objects, bt.objects[i])
		}
	} else if len(res) > 0 {
		// A batch settled from the journal: the row keys are not in the
		// journal, so per-row errors are recorded under their object.
		objects = splitObjects(b.Body)
	}
	for i, r := range res {
		switch {
		case r.Error != nil:
			sum.Rejected++
			rj := checkpoint.Reject{Sync: b.Sync, Code: r.Error.Code, Message: r.Error.Message}
			if i < len(keys) {
				rj.RowKey = keys[i]
			} else {
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
			sum.Created++
		case r.Updated:
			sum.Updated++
		case r.Existing:
			sum.Existing++
		}
		if r.Error == nil && i < len(keys) {
			resolved = append(resolved, keys[i])
		}
	}
	sum.Sent += len(res)
	if err := s.Store.Commit(ctx, b.Sync, b.Key, b.To, fp, rejects, resolved); err != nil {
		return fmt.Errorf("commit checkpoint: %w", err)
	}
	sum.Batches++
	sum.Position = b.To
	return nil
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
