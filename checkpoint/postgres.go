package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGStore keeps checkpoints in schema prismsync of a PostgreSQL database.
type PGStore struct {
	pool     *pgxpool.Pool
	ownPool  bool // Close closes the pool only if Open created it
	readOnly bool // OpenReadOnly: no DDL, no writes
	now      func() time.Time
}

var _ Store = (*PGStore)(nil)

// openPostgres uses pool (which stays the caller's) and creates or migrates
// the prismsync schema.
func openPostgres(ctx context.Context, pool *pgxpool.Pool) (*PGStore, error) {
	if err := migrate(ctx, pool); err != nil {
		return nil, err
	}
	return &PGStore{pool: pool, now: time.Now}, nil
}

func openPostgresDSN(ctx context.Context, dsn string) (*PGStore, error) {
	pool, err := connect(ctx, dsn, false)
	if err != nil {
		return nil, err
	}
	s, err := openPostgres(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// openPostgresReadOnly opens a store on a schema that must already be at
// SchemaVersion; it never runs DDL, and its sessions are read-only too.
func openPostgresReadOnly(ctx context.Context, dsn string) (*PGStore, error) {
	pool, err := connect(ctx, dsn, true)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &PGStore{pool: pool, ownPool: true, readOnly: true, now: time.Now}, nil
}

// connect opens a pool on dsn with the session settings the store wants.
func connect(ctx context.Context, dsn string, readOnly bool) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(dsn, readOnly)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: connect: %w", err)
	}
	return pool, nil
}

// poolConfig is the configuration of the store's own pool: dsn with
// application_name and statement_timeout unless the URL sets them, and the
// planner settings the statements rely on.
func poolConfig(dsn string, readOnly bool) (*pgxpool.Config, error) {
	if dsn == "" {
		return nil, errors.New("checkpoint: postgres store needs a database URL (DATABASE_URL is empty)")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts passwords only on a best-effort basis for malformed
		// strings (and wrapped url errors repeat the input), so say nothing
		// about the string itself.
		return nil, errors.New("checkpoint: cannot parse the database URL (details withheld: it may contain a password)")
	}
	rp := cfg.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "prismsync"
	}
	if _, ok := rp["statement_timeout"]; !ok {
		rp["statement_timeout"] = "60000" // ms; a checkpoint query that hangs longer is a stuck lock
	}
	if readOnly {
		// Belt and braces: a write that slipped past ErrReadOnly fails in
		// the database instead of changing it.
		rp["default_transaction_read_only"] = "on"
	}
	for k, v := range plannerSettings {
		rp[k] = v // ours, whatever the URL says: the statements rely on them
	}
	return cfg, nil
}

// plannerSettings pin the plans of the store's statements. Each is written
// as primary-key lookups (an upsert on the key, or one probe per key behind
// an OFFSET 0 fence), but a generic plan made while a table was small, or
// before it was ever analyzed, would read a tiny table sequentially for
// each probe and keep doing so as the table grows (issue 12: 0.4–1.3 s per
// batch with a few hundred thousand fingerprints, until autovacuum first
// analyzed the table). With these off the planner has no cheaper choice
// than the index, whatever the statistics say. The store's sessions run
// nothing else: commands that list everything (status, rejects) still scan
// when there is no other way.
var plannerSettings = map[string]string{
	"enable_seqscan":    "off",
	"enable_bitmapscan": "off",
}

// writable refuses writes to a store opened read-only.
func (s *PGStore) writable() error {
	if s.readOnly {
		return ErrReadOnly
	}
	return nil
}

// Close closes the pool if Open created it.
func (s *PGStore) Close() error {
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}

// pgKey turns a key into a value for a NOT NULL text[] column: pgx sends a
// nil slice as NULL.
func pgKey(k []string) []string {
	if k == nil {
		return []string{}
	}
	return k
}

// qLoad reads a sync's position and history in one statement, so both come
// from the same snapshot.
const qLoad = `
	SELECT p.cursor_text, p.key_text, p.fingerprint, p.batches, p.updated_at, h.commits, h.last_commit
	FROM (SELECT $1::text AS sync) AS q
	LEFT JOIN prismsync.positions AS p ON p.sync = q.sync
	LEFT JOIN prismsync.sync_history AS h ON h.sync = q.sync`

// Load implements Store.
func (s *PGStore) Load(ctx context.Context, sync string) (State, error) {
	if err := checkSync(sync); err != nil {
		return State{}, err
	}
	var (
		cursor, fp       *string
		key              []string
		batches, commits *int64
		updated, last    *time.Time
	)
	err := s.pool.QueryRow(ctx, qLoad, sync).
		Scan(&cursor, &key, &fp, &batches, &updated, &commits, &last)
	if err != nil {
		return State{}, fmt.Errorf("checkpoint: load sync %q: %w", sync, err)
	}
	if cursor == nil {
		if commits != nil && *commits > 0 {
			return State{}, &MissingCheckpointError{Sync: sync, Commits: *commits, LastCommit: last.UTC(),
				Where: "table prismsync.positions"}
		}
		return State{}, nil
	}
	return State{
		Position:    Position{Cursor: *cursor, Key: normKey(key)},
		Exists:      true,
		Fingerprint: *fp,
		Batches:     *batches,
		UpdatedAt:   updated.UTC(),
	}, nil
}

// qJournal writes one batch to the journal: an upsert on its primary key.
// Body and row keys go in batch_gzip (encodePayload); body_gzip and
// row_keys are what entries written before schema version 8 use.
const qJournal = `
	INSERT INTO prismsync.journal AS j (sync, batch_key, attempt, from_cursor, from_key, to_cursor, to_key,
		row_count, batch_gzip, object, job_id, created_at, kind)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, coalesce($12::timestamptz, $13::timestamptz), $14)
	ON CONFLICT (sync, batch_key) DO UPDATE SET
		attempt = EXCLUDED.attempt, from_cursor = EXCLUDED.from_cursor, from_key = EXCLUDED.from_key,
		to_cursor = EXCLUDED.to_cursor, to_key = EXCLUDED.to_key, row_count = EXCLUDED.row_count,
		batch_gzip = EXCLUDED.batch_gzip, body_gzip = NULL, row_keys = '[]',
		object = EXCLUDED.object, job_id = EXCLUDED.job_id, kind = EXCLUDED.kind,
		created_at = coalesce($12::timestamptz, j.created_at)`

// Journal implements Store. Replacing a batch keeps its place in Pending's
// order, and its CreatedAt unless b.CreatedAt is set.
func (s *PGStore) Journal(ctx context.Context, b Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	z, err := encodePayload(b.Body, b.RowKeys, b.Held)
	if err != nil {
		return fmt.Errorf("checkpoint: journal batch %q of sync %q: %w", b.Key, b.Sync, err)
	}
	var created *time.Time
	if !b.CreatedAt.IsZero() {
		t := stamp(b.CreatedAt)
		created = &t
	}
	_, err = s.pool.Exec(ctx, qJournal,
		b.Sync, b.Key, b.Attempt, b.From.Cursor, pgKey(b.From.Key), b.To.Cursor, pgKey(b.To.Key),
		b.Rows, z, b.Object, b.JobID, created, stamp(s.now()), b.Kind)
	if err != nil {
		return fmt.Errorf("checkpoint: journal batch %q of sync %q: %w", b.Key, b.Sync, err)
	}
	return nil
}

const qSetJobID = `UPDATE prismsync.journal SET job_id = $3 WHERE sync = $1 AND batch_key = $2`

// SetJobID implements Store.
func (s *PGStore) SetJobID(ctx context.Context, sync, key, jobID string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, qSetJobID, sync, key, jobID)
	if err != nil {
		return fmt.Errorf("checkpoint: set job id of batch %q of sync %q: %w", key, sync, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("checkpoint: set job id of batch %q of sync %q: %w", key, sync, ErrNotJournaled)
	}
	return nil
}

const qPending = `
	SELECT batch_key, attempt, from_cursor, from_key, to_cursor, to_key, row_count, batch_gzip, body_gzip, object, job_id, created_at, row_keys, kind
	FROM prismsync.journal WHERE sync = $1 ORDER BY created_at, seq`

// Pending implements Store.
func (s *PGStore) Pending(ctx context.Context, sync string) ([]Batch, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, qPending, sync)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: pending batches of sync %q: %w", sync, err)
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		b := Batch{Sync: sync}
		var payload, z []byte
		if err := rows.Scan(&b.Key, &b.Attempt, &b.From.Cursor, &b.From.Key, &b.To.Cursor, &b.To.Key,
			&b.Rows, &payload, &z, &b.Object, &b.JobID, &b.CreatedAt, &b.RowKeys, &b.Kind); err != nil {
			return nil, fmt.Errorf("checkpoint: pending batches of sync %q: %w", sync, err)
		}
		if payload != nil {
			b.Body, b.RowKeys, b.Held, err = decodePayload(sync, payload)
		} else {
			b.Body, err = decompress(z) // journaled before schema version 8
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint: pending batch %q of sync %q: %w", b.Key, sync, err)
		}
		b.From.Key, b.To.Key = normKey(b.From.Key), normKey(b.To.Key)
		b.CreatedAt = b.CreatedAt.UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: pending batches of sync %q: %w", sync, err)
	}
	return out, nil
}

const qDrop = `DELETE FROM prismsync.journal WHERE sync = $1 AND batch_key = $2`

// Drop implements Store. Dropping a batch that is not journaled is not an
// error: the outcome is the same.
func (s *PGStore) Drop(ctx context.Context, sync, key string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, qDrop, sync, key); err != nil {
		return fmt.Errorf("checkpoint: drop batch %q of sync %q: %w", key, sync, err)
	}
	return nil
}

// The statements of a commit, sent together: one round trip, and one
// implicit transaction, so they take effect together or not at all.
const (
	qCommitPosition = `
		INSERT INTO prismsync.positions AS p (sync, cursor_text, key_text, fingerprint, batches, updated_at)
		VALUES ($1, $2, $3, $4, 1, $5)
		ON CONFLICT (sync) DO UPDATE SET cursor_text = EXCLUDED.cursor_text, key_text = EXCLUDED.key_text,
			fingerprint = EXCLUDED.fingerprint, batches = p.batches + 1, updated_at = EXCLUDED.updated_at`
	qCommitHistory = `
		INSERT INTO prismsync.sync_history AS h (sync, commits, first_commit, last_commit)
		VALUES ($1, 1, $2, $2)
		ON CONFLICT (sync) DO UPDATE SET commits = h.commits + 1, last_commit = EXCLUDED.last_commit`
	// One statement for the whole batch: a statement per row made commits
	// of 5,000-row batches cost more than the import itself. It reads the
	// sync's rejects through the primary key (sync = $1), usually none, so
	// the key list is matched only when there are some.
	qCommitResolved = `
		DELETE FROM prismsync.rejects WHERE sync = $1
			AND to_jsonb(row_key) IN (SELECT jsonb_array_elements($2::jsonb))`
	// A row that was refused and now waits for a record (or the other way
	// round) starts a new story: FirstSeen and Attempts start over
	// (sameKind).
	qCommitReject = `
		INSERT INTO prismsync.rejects AS r (sync, row_key, code, message, payload, attempts, first_seen, last_seen, wait_sync, wait_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (sync, row_key) DO UPDATE SET code = EXCLUDED.code, message = EXCLUDED.message,
			payload = EXCLUDED.payload, last_seen = EXCLUDED.last_seen,
			attempts = CASE WHEN (r.wait_sync IS NULL) = (EXCLUDED.wait_sync IS NULL) THEN r.attempts + 1 ELSE EXCLUDED.attempts END,
			first_seen = CASE WHEN (r.wait_sync IS NULL) = (EXCLUDED.wait_sync IS NULL) THEN r.first_seen ELSE EXCLUDED.first_seen END,
			wait_sync = EXCLUDED.wait_sync, wait_key = EXCLUDED.wait_key`
)

// Commit implements Store: CommitRecords without records.
func (s *PGStore) Commit(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string) error {
	return s.CommitRecords(ctx, sync, key, to, fingerprint, rejects, resolved, Ledger{})
}

// CommitRecords implements Store in one round trip and one transaction.
// Resolved keys are deleted before rejects are upserted, so a row in both
// ends up rejected.
func (s *PGStore) CommitRecords(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string, ledger Ledger) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	records, err := prepareCommit(sync, rejects, ledger)
	if err != nil {
		return err
	}
	var resolvedJSON string
	if len(resolved) > 0 {
		keys, err := json.Marshal(resolved)
		if err != nil {
			return fmt.Errorf("checkpoint: commit sync %q: %w", sync, err)
		}
		resolvedJSON = string(keys)
	}
	now := stamp(s.now())
	err = s.pool.SendBatch(ctx, commitBatch(sync, key, to, fingerprint, rejects, resolvedJSON, records, now)).Close()
	var pe *pgconn.PgError
	if records.fresh && errors.As(err, &pe) && pe.Code == uniqueViolation {
		// A record the hint did not expect (a backfill of the same sync,
		// or a row deleted in Micro and live again): the same commit as
		// an upsert. The failed one had no effect.
		records.fresh = false
		err = s.pool.SendBatch(ctx, commitBatch(sync, key, to, fingerprint, rejects, resolvedJSON, records, now)).Close()
	}
	if err != nil {
		return fmt.Errorf("checkpoint: commit batch %q of sync %q: %w", key, sync, err)
	}
	return nil
}

// commitBatch is the statements of one commit. A batch outside a
// transaction is one implicit transaction (pgx sends a single Sync): they
// take effect together or not at all, without BEGIN and COMMIT round trips.
func commitBatch(sync, key string, to Position, fingerprint string, rejects []Reject, resolved string, records ledgerSave, now time.Time) *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue(qDrop, sync, key)
	b.Queue(qCommitPosition, sync, to.Cursor, pgKey(to.Key), fingerprint, now)
	b.Queue(qCommitHistory, sync, now)
	if resolved != "" {
		b.Queue(qCommitResolved, RejectOwner(sync), resolved)
	}
	for _, r := range rejects {
		first, last := now, now
		if !r.FirstSeen.IsZero() {
			first = stamp(r.FirstSeen)
		}
		if !r.LastSeen.IsZero() {
			last = stamp(r.LastSeen)
		}
		var waitSync *string
		if r.WaitSync != "" {
			waitSync = &r.WaitSync
		}
		b.Queue(qCommitReject,
			RejectOwner(sync), pgKey(r.RowKey), cleanText(r.Code), cleanText(r.Message), r.Payload, max(r.Attempts, 1), first, last,
			waitSync, r.WaitKey)
	}
	queueLedger(b, RejectOwner(sync), records, now)
	return b
}

// Rejects implements Store.
func (s *PGStore) Rejects(ctx context.Context, sync string, limit int) ([]Reject, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	// COLLATE "C" makes ties sort in byte order, like the file store,
	// whatever the database's collation.
	rows, err := s.pool.Query(ctx, `
		SELECT sync, row_key, code, message, payload, attempts, first_seen, last_seen, coalesce(wait_sync, ''), wait_key
		FROM prismsync.rejects WHERE $1 = '' OR sync = $1
		ORDER BY last_seen DESC, sync COLLATE "C", row_key COLLATE "C"
		LIMIT $2`, sync, lim)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list rejects: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanReject)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list rejects: %w", err)
	}
	return out, nil
}

// scanReject reads the columns Rejects and Deferred select.
func scanReject(row pgx.CollectableRow) (Reject, error) {
	var r Reject
	err := row.Scan(&r.Sync, &r.RowKey, &r.Code, &r.Message, &r.Payload, &r.Attempts, &r.FirstSeen, &r.LastSeen, &r.WaitSync, &r.WaitKey)
	r.RowKey, r.WaitKey = normKey(r.RowKey), normKey(r.WaitKey)
	r.FirstSeen, r.LastSeen = r.FirstSeen.UTC(), r.LastSeen.UTC()
	return r, err
}

// CountRejects implements Store.
func (s *PGStore) CountRejects(ctx context.Context, sync string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM prismsync.rejects WHERE $1 = '' OR sync = $1`, sync).Scan(&n); err != nil {
		return 0, fmt.Errorf("checkpoint: count rejects: %w", err)
	}
	return n, nil
}

// Syncs implements Store.
func (s *PGStore) Syncs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT sync FROM prismsync.positions UNION SELECT sync FROM prismsync.sync_history`)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list syncs: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list syncs: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// Forget implements Store.
func (s *PGStore) Forget(ctx context.Context, sync string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, table := range []string{"positions", "sync_history", "journal", "rejects", "runs", "run_history", "fingerprints", "budget_turns", "records", "relinks"} {
		b.Queue(`DELETE FROM `+pgx.Identifier{"prismsync", table}.Sanitize()+` WHERE sync = $1`, sync)
	}
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return fmt.Errorf("checkpoint: forget sync %q: %w", sync, err)
	}
	return nil
}
