package checkpoint

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecordRun implements Store in one statement: it takes the sync's next
// number from prismsync.runs (whose row lock orders two writers), inserts
// the pass and deletes the numbers that fell out of the last keep, from the
// oldest one kept on. That range holds only live rows, so retention costs a
// few index entries per pass however long the history is, and never walks
// the dead ones earlier deletes left for vacuum.
func (s *PGStore) RecordRun(ctx context.Context, sync string, r Run, keep int) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := checkKeep(sync, keep); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, recordRunSQL, recordRunArgs(sync, normRun(r), keep)...)
	if err != nil {
		return fmt.Errorf("checkpoint: record run of sync %q: %w", sync, err)
	}
	return nil
}

// recordRunSQL is RecordRun's statement; TestPostgresHistoryCost measures
// it. The range to delete is given by scalar subqueries, so that both of
// its ends are index conditions: joined to the CTEs instead, the planner
// filtered every kept row against the upper end.
const recordRunSQL = `
		WITH prev AS (
			SELECT history_from FROM prismsync.runs WHERE sync = $1
		), next AS (
			INSERT INTO prismsync.runs AS r (sync, seq, history_from) VALUES ($1, 1, 1)
			ON CONFLICT (sync) DO UPDATE SET seq = r.seq + 1, history_from = greatest(r.history_from, r.seq + 2 - $2)
			RETURNING seq, history_from
		), added AS (
			INSERT INTO prismsync.run_history (sync, seq, started_at, finished_at, ok, error, budget,
				rows_read, rows_sent, rows_created, rows_updated, rows_existing, rows_unchanged, rows_invalid,
				rows_rejected, rows_deferred, requests, cursor_text, key_text, rows_deleted, rows_archived, rows_restored)
			VALUES ($1, (SELECT seq FROM next), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
		)
		DELETE FROM prismsync.run_history
		WHERE sync = $1 AND seq >= (SELECT history_from FROM prev) AND seq < (SELECT history_from FROM next)`

func recordRunArgs(sync string, r Run, keep int) []any {
	return []any{sync, keep, r.Started, r.Finished, r.OK, r.Error, r.Budget,
		r.Rows, r.Sent, r.Created, r.Updated, r.Existing, r.Unchanged, r.Invalid, r.Rejected, r.Deferred, r.Requests,
		r.Checkpoint.Cursor, pgKey(r.Checkpoint.Key), r.Deleted, r.Archived, r.Restored}
}

const runColumns = `sync, seq, started_at, finished_at, ok, error, budget, rows_read, rows_sent, rows_created,
	rows_updated, rows_existing, rows_unchanged, rows_invalid, rows_rejected, rows_deferred, requests, cursor_text, key_text,
	rows_deleted, rows_archived, rows_restored`

func scanRun(row pgx.CollectableRow) (Run, error) {
	var r Run
	err := row.Scan(&r.Sync, &r.Seq, &r.Started, &r.Finished, &r.OK, &r.Error, &r.Budget, &r.Rows, &r.Sent, &r.Created,
		&r.Updated, &r.Existing, &r.Unchanged, &r.Invalid, &r.Rejected, &r.Deferred, &r.Requests, &r.Checkpoint.Cursor, &r.Checkpoint.Key,
		&r.Deleted, &r.Archived, &r.Restored)
	r.Started, r.Finished = r.Started.UTC(), r.Finished.UTC()
	r.Checkpoint.Key = normKey(r.Checkpoint.Key)
	return r, err
}

// LastRun implements Store.
func (s *PGStore) LastRun(ctx context.Context, sync string) (Run, bool, error) {
	if err := checkSync(sync); err != nil {
		return Run{}, false, err
	}
	rs, err := s.History(ctx, sync, 1)
	if err != nil {
		return Run{}, false, err
	}
	if len(rs) == 0 {
		return Run{}, false, nil
	}
	return rs[0], true, nil
}

// History implements Store. One sync's runs come from its primary key
// range, newest first; all syncs' are sorted (at most keep per sync).
func (s *PGStore) History(ctx context.Context, sync string, limit int) ([]Run, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	var rows pgx.Rows
	var err error
	if sync != "" {
		rows, err = s.pool.Query(ctx, `SELECT `+runColumns+` FROM prismsync.run_history
			WHERE sync = $1 ORDER BY seq DESC LIMIT $2`, sync, lim)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+runColumns+` FROM prismsync.run_history
			ORDER BY finished_at DESC, sync COLLATE "C", seq DESC LIMIT $1`, lim)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: run history: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanRun)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: run history: %w", err)
	}
	return out, nil
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
