package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecordRun implements Store.
func (s *PGStore) RecordRun(ctx context.Context, sync string, r Run) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	r = normRun(r)
	_, err := s.pool.Exec(ctx, `
		INSERT INTO prismsync.runs (sync, started_at, finished_at, ok, error, row_count, sent_count)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (sync) DO UPDATE SET started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
			ok = EXCLUDED.ok, error = EXCLUDED.error, row_count = EXCLUDED.row_count, sent_count = EXCLUDED.sent_count`,
		sync, r.Started, r.Finished, r.OK, r.Error, r.Rows, r.Sent)
	if err != nil {
		return fmt.Errorf("checkpoint: record run of sync %q: %w", sync, err)
	}
	return nil
}

// LastRun implements Store.
func (s *PGStore) LastRun(ctx context.Context, sync string) (Run, bool, error) {
	if err := checkSync(sync); err != nil {
		return Run{}, false, err
	}
	var r Run
	err := s.pool.QueryRow(ctx, `
		SELECT started_at, finished_at, ok, error, row_count, sent_count FROM prismsync.runs WHERE sync = $1`, sync).
		Scan(&r.Started, &r.Finished, &r.OK, &r.Error, &r.Rows, &r.Sent)
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, fmt.Errorf("checkpoint: last run of sync %q: %w", sync, err)
	}
	r.Started, r.Finished = r.Started.UTC(), r.Finished.UTC()
	return r, true, nil
}

// AddRequests implements Store; the upsert adds atomically, so replicas can
// count into the same month.
func (s *PGStore) AddRequests(ctx context.Context, month string, n int) error {
	if err := checkRequests(month, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := s.writable(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO prismsync.request_counts AS c (month, requests) VALUES ($1, $2)
		ON CONFLICT (month) DO UPDATE SET requests = c.requests + EXCLUDED.requests`, month, n)
	if err != nil {
		return fmt.Errorf("checkpoint: add requests of %s: %w", month, err)
	}
	return nil
}

// Requests implements Store.
func (s *PGStore) Requests(ctx context.Context, month string) (int, error) {
	if err := checkMonth(month); err != nil {
		return 0, err
	}
	var n int
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(requests), 0) FROM prismsync.request_counts WHERE month = $1`, month).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: requests of %s: %w", month, err)
	}
	return n, nil
}

// TryLock implements Store with a session-level advisory lock on a
// connection of its own (outside the pool, so the lease never occupies a pool
// slot nor returns to the pool still holding the lock). PostgreSQL drops the
// lock when that session ends, so a replica that dies or loses its
// connection frees the sync for the others. Note that the holder is not told
// when the connection is lost; it keeps working under a lease it no longer
// has until it calls TryLock again.
func (s *PGStore) TryLock(ctx context.Context, name string) (func(), bool, error) {
	if err := checkSync(name); err != nil {
		return nil, false, err
	}
	cfg := s.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: lock sync %q: connect: %w", name, err)
	}
	closeConn := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // closing ends the session, which is all that matters
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, syncLockKey(name)).Scan(&ok); err != nil {
		closeConn()
		return nil, false, fmt.Errorf("checkpoint: lock sync %q: %w", name, err)
	}
	if !ok {
		closeConn()
		return nil, false, nil
	}
	var once sync.Once
	return func() { once.Do(closeConn) }, true, nil
}

// syncLockKey is the pg_try_advisory_lock key of a sync: a 64-bit hash of
// the name under a prefix of our own, so it neither meets schemaLockKey nor,
// in practice, another application's keys.
func syncLockKey(sync string) int64 {
	h := fnv.New64a()
	h.Write([]byte("prismsync/sync-lease/"))
	h.Write([]byte(sync))
	return int64(h.Sum64())
}
