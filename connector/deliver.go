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

// admit asks the budget whether a batch of rows may go now. held is true
// when a paced batch waits for its turn: the pass ends there, and its rows
// (with whatever changes meanwhile) are read again by a later pass. An
// explicit run the month's budget no longer covers gets an error wrapping
// budget.ErrExhausted; its rows wait in the database, nothing is lost.
func (s *Syncer) admit(ctx context.Context, rows int, partial bool) (t *budget.Ticket, d budget.Decision, held bool, err error) {
	if s.Budget == nil {
		return nil, d, false, nil
	}
	d, err = s.Budget.Admit(ctx, budget.Request{Sync: s.Sync.Name, Rows: rows, Partial: partial, Limit: s.limit(), Paced: s.Paced, Interval: s.Interval})
	if err != nil {
		return nil, d, false, err
	}
	if d.Go() {
		s.holding = false
		return d.Ticket, d, false, nil
	}
	if !s.holding { // logged once per hold, not once per pass
		s.holding = true
		if d.Spent {
			s.logger().Warn("holding rows: the month's request budget beyond the reserve is spent; they are sent when the month turns or the budget is raised",
				"rows", rows, "next_send", d.Next.UTC().Format(time.RFC3339))
		} else {
			s.logger().Info("holding rows for the request budget's pace; changes until then join them",
				"rows", rows, "pace", d.Pace.Round(time.Second), "next_send", d.Next.UTC().Format(time.RFC3339), "syncs_ahead", d.Ahead)
		}
	}
	return nil, d, true, nil
}

// outcomeOf tells the budget how the API answered a batch.
func outcomeOf(rep BatchReport) budget.Outcome {
	return budget.Outcome{
		Answered: rep.Outcome == "complete" || rep.Outcome == "failed",
		Async:    rep.Async,
		Polls:    rep.Polls / max(1, rep.Attempts),
	}
}

// send POSTs a journaled batch and waits for its job. A job that ends
// "failed" is re-sent under a new attempt (new key, same body) up to
// MaxJobAttempts; an idempotency conflict also earns a new attempt.
//
// b is updated in place when a new attempt replaces it in the journal, so
// that the commit removes the journal entry that is really there.
func (s *Syncer) send(ctx context.Context, b *checkpoint.Batch) ([]prism.Result, BatchReport, error) {
	if b.Kind != checkpoint.KindImport {
		return s.sendRecords(ctx, b)
	}
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
				return nil, rep, err
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
		return nil, true, fmt.Errorf("job %s: %w", job.ID, job.Err())
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
		return err
	}
	if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		return err
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

func (s *Syncer) retryDelay() time.Duration {
	if s.RetryDelay > 0 {
		return s.RetryDelay
	}
	return 5 * time.Second
}
