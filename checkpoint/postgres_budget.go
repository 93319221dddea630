package checkpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TakeRequests implements Store. The conditional upsert is decided on the
// locked row, so two replicas can never both take a month's last requests.
func (s *PGStore) TakeRequests(ctx context.Context, month string, n, limit int) (int, bool, error) {
	if err := checkMonth(month); err != nil {
		return 0, false, err
	}
	if err := s.writable(); err != nil {
		return 0, false, err
	}
	var total int
	var ok bool
	err := s.pool.QueryRow(ctx, `
		WITH took AS (
			INSERT INTO prismsync.request_counts AS c (month, requests)
			SELECT $1, greatest($2::bigint, 0) WHERE $3::bigint < 0 OR $2::bigint <= $3::bigint
			ON CONFLICT (month) DO UPDATE SET requests = greatest(c.requests + $2::bigint, 0)
				WHERE $3::bigint < 0 OR c.requests + $2::bigint <= $3::bigint
			RETURNING requests
		)
		SELECT requests, true FROM took
		UNION ALL
		SELECT coalesce((SELECT requests FROM prismsync.request_counts WHERE month = $1), 0), false
		WHERE NOT EXISTS (SELECT FROM took)`, month, n, limit).Scan(&total, &ok)
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint: take %d requests of %s: %w", n, month, err)
	}
	return total, ok, nil
}

// Turns implements Store.
func (s *PGStore) Turns(ctx context.Context) ([]Turn, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT sync, last_send, last_cost, waiting_since, waiting_rows, due, held_at, interval_us
		FROM prismsync.budget_turns ORDER BY sync`)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read turns: %w", err)
	}
	turns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Turn, error) {
		var t Turn
		var lastSend, waiting, due, held *time.Time
		var us int64
		err := r.Scan(&t.Sync, &lastSend, &t.LastCost, &waiting, &t.WaitingRows, &due, &held, &us)
		t.LastSend, t.WaitingSince, t.Due, t.HeldAt = utcOrZero(lastSend), utcOrZero(waiting), utcOrZero(due), utcOrZero(held)
		t.Interval = time.Duration(us) * time.Microsecond
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read turns: %w", err)
	}
	return turns, nil
}

// SaveTurn implements Store.
func (s *PGStore) SaveTurn(ctx context.Context, t Turn) error {
	if err := checkSync(t.Sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	t = normTurn(t)
	_, err := s.pool.Exec(ctx, `
		INSERT INTO prismsync.budget_turns (sync, last_send, last_cost, waiting_since, waiting_rows, due, held_at, interval_us)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (sync) DO UPDATE SET last_send = EXCLUDED.last_send, last_cost = EXCLUDED.last_cost,
			waiting_since = EXCLUDED.waiting_since, waiting_rows = EXCLUDED.waiting_rows, due = EXCLUDED.due,
			held_at = EXCLUDED.held_at, interval_us = EXCLUDED.interval_us`,
		t.Sync, nullTime(t.LastSend), t.LastCost, nullTime(t.WaitingSince), t.WaitingRows, nullTime(t.Due), nullTime(t.HeldAt), t.Interval.Microseconds())
	if err != nil {
		return fmt.Errorf("checkpoint: save turn of sync %q: %w", t.Sync, err)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
