package checkpoint

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaLockKey is the pg_advisory_xact_lock key that serialises schema
// creation and migration ("prismsyn" in ASCII), so that stores opened at the
// same time on a fresh database do not race on CREATE.
const schemaLockKey int64 = 0x707269736d73796e

// migrations[i] brings the schema from version i to i+1. Append only: a
// released migration is never edited.
var migrations = []string{
	// 1: initial layout.
	`CREATE TABLE prismsync.positions (
		sync        text PRIMARY KEY,
		cursor_text text NOT NULL,
		key_text    text[] NOT NULL,
		fingerprint text NOT NULL,
		batches     bigint NOT NULL,
		updated_at  timestamptz NOT NULL
	);
	CREATE TABLE prismsync.sync_history (
		sync         text PRIMARY KEY,
		commits      bigint NOT NULL,
		first_commit timestamptz NOT NULL,
		last_commit  timestamptz NOT NULL
	);
	CREATE TABLE prismsync.journal (
		sync        text NOT NULL,
		batch_key   text NOT NULL,
		seq         bigint GENERATED ALWAYS AS IDENTITY,
		attempt     integer NOT NULL,
		from_cursor text NOT NULL,
		from_key    text[] NOT NULL,
		to_cursor   text NOT NULL,
		to_key      text[] NOT NULL,
		row_count   integer NOT NULL,
		body_gzip   bytea NOT NULL,
		object      text NOT NULL,
		job_id      text NOT NULL,
		created_at  timestamptz NOT NULL,
		PRIMARY KEY (sync, batch_key)
	);
	CREATE TABLE prismsync.rejects (
		sync       text NOT NULL,
		row_key    text[] NOT NULL,
		code       text NOT NULL,
		message    text NOT NULL,
		payload    bytea,
		attempts   integer NOT NULL,
		first_seen timestamptz NOT NULL,
		last_seen  timestamptz NOT NULL,
		PRIMARY KEY (sync, row_key)
	);
	CREATE INDEX rejects_last_seen ON prismsync.rejects (last_seen);`,
	// 2: last run per sync and the monthly API request count ("status").
	`CREATE TABLE prismsync.runs (
		sync        text PRIMARY KEY,
		started_at  timestamptz NOT NULL,
		finished_at timestamptz NOT NULL,
		ok          boolean NOT NULL,
		error       text NOT NULL,
		row_count   bigint NOT NULL,
		sent_count  bigint NOT NULL
	);
	CREATE TABLE prismsync.request_counts (
		month    text PRIMARY KEY,
		requests bigint NOT NULL
	);`,
	// 3: change fingerprints: per row key (encoded by fingerprintKey) the
	// hash of the object the API last confirmed.
	`CREATE TABLE prismsync.fingerprints (
		sync    text NOT NULL,
		row_key text NOT NULL,
		sum     bytea NOT NULL,
		PRIMARY KEY (sync, row_key)
	);`,
	// 4: the row key of each object of a journaled batch, so that rows a
	// settled batch's job refused are recorded under their own keys.
	`ALTER TABLE prismsync.journal ADD COLUMN row_keys jsonb NOT NULL DEFAULT '[]';`,
	// 5: the request budget's turn per sync: its last send and its claim
	// for the next one (see Turn).
	`CREATE TABLE prismsync.budget_turns (
		sync          text PRIMARY KEY,
		last_send     timestamptz,
		last_cost     integer NOT NULL,
		waiting_since timestamptz,
		waiting_rows  integer NOT NULL,
		due           timestamptz,
		held_at       timestamptz,
		interval_us   bigint NOT NULL
	);`,
	// 6: the run history: every pass, numbered per sync. runs keeps only
	// each sync's last number and the oldest one kept, so that recording
	// a pass is one statement whose retention deletes a known range of
	// the primary key instead of scanning the history. The last run
	// recorded so far becomes pass 1.
	`CREATE TABLE prismsync.run_history (
		sync           text NOT NULL,
		seq            bigint NOT NULL,
		started_at     timestamptz NOT NULL,
		finished_at    timestamptz NOT NULL,
		ok             boolean NOT NULL,
		error          text NOT NULL,
		budget         boolean NOT NULL,
		rows_read      bigint NOT NULL,
		rows_sent      bigint NOT NULL,
		rows_created   bigint NOT NULL,
		rows_updated   bigint NOT NULL,
		rows_existing  bigint NOT NULL,
		rows_unchanged bigint NOT NULL,
		rows_invalid   bigint NOT NULL,
		rows_rejected  bigint NOT NULL,
		rows_deferred  bigint NOT NULL,
		requests       bigint NOT NULL,
		cursor_text    text NOT NULL,
		key_text       text[] NOT NULL,
		PRIMARY KEY (sync, seq)
	);
	INSERT INTO prismsync.run_history
	SELECT sync, 1, started_at, finished_at, ok, error, false, row_count, sent_count, 0, 0, 0, 0, 0, 0, 0, 0, '', '{}'
	FROM prismsync.runs;
	ALTER TABLE prismsync.runs
		DROP COLUMN started_at, DROP COLUMN finished_at, DROP COLUMN ok, DROP COLUMN error,
		DROP COLUMN row_count, DROP COLUMN sent_count,
		ADD COLUMN seq bigint NOT NULL DEFAULT 1,
		ADD COLUMN history_from bigint NOT NULL DEFAULT 1;`,
	// 7: relations. The record ledger: per row key (encoded by
	// fingerprintKey) the Micro record id of the delivered row. A deferred
	// row is a reject that names the row it waits for. A relink queues, for
	// a sync whose rows link to another's, a referenced row whose record id
	// was replaced.
	`CREATE TABLE prismsync.records (
		sync      text NOT NULL,
		row_key   text NOT NULL,
		record_id uuid NOT NULL,
		PRIMARY KEY (sync, row_key)
	);
	ALTER TABLE prismsync.rejects ADD COLUMN wait_sync text, ADD COLUMN wait_key text[];
	CREATE TABLE prismsync.relinks (
		sync     text NOT NULL,
		ref_sync text NOT NULL,
		row_key  text NOT NULL,
		since    timestamptz NOT NULL,
		PRIMARY KEY (sync, ref_sync, row_key)
	);`,
	// 8: a journaled batch's body and row keys in one compressed value
	// (see journalPayload). Row keys in the jsonb column cost the database
	// more than the rest of the entry; entries written before keep theirs.
	`ALTER TABLE prismsync.journal ADD COLUMN batch_gzip bytea,
		ALTER COLUMN body_gzip DROP NOT NULL;`,
	// 9: deletes: what a journaled batch asks (import, delete, archive), the
	// state of a ledger record (NULL live, 'deleted', 'archived'), and the
	// deletes, archives and restores of each pass.
	`ALTER TABLE prismsync.journal ADD COLUMN kind text NOT NULL DEFAULT '';
	ALTER TABLE prismsync.records ADD COLUMN state text;
	ALTER TABLE prismsync.run_history
		ADD COLUMN rows_deleted bigint NOT NULL DEFAULT 0,
		ADD COLUMN rows_archived bigint NOT NULL DEFAULT 0,
		ADD COLUMN rows_restored bigint NOT NULL DEFAULT 0;`,
}

// SchemaVersion is the newest schema this package writes and understands.
func SchemaVersion() int { return len(migrations) }

// migrate brings schema prismsync to SchemaVersion under an advisory lock.
// When the schema is already current it runs no DDL, so a role without CREATE
// on the database can use a schema an administrator prepared.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint: connect: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
		return fmt.Errorf("checkpoint: lock schema: %w", err)
	}
	current, exists, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS prismsync`); err != nil {
			return fmt.Errorf("checkpoint: create schema prismsync: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE prismsync.schema_version (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("checkpoint: create prismsync.schema_version: %w", err)
		}
	}
	if current > len(migrations) {
		return errSchemaTooNew(current)
	}
	if current == len(migrations) {
		return nil // read-only transaction; rollback is fine
	}
	for v := current; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("checkpoint: migrate schema prismsync to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO prismsync.schema_version (version) VALUES ($1)`, v+1); err != nil {
			return fmt.Errorf("checkpoint: record schema version %d: %w", v+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("checkpoint: commit schema migration: %w", err)
	}
	return nil
}

// checkSchema is what a read-only store needs instead of migrate: schema
// prismsync at exactly SchemaVersion. It changes nothing; an older schema
// is refused because its tables lack what this version reads.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	current, exists, err := schemaVersion(ctx, pool)
	switch {
	case err != nil:
		return err
	case !exists:
		return &noStoreError{what: "schema prismsync"}
	case current > len(migrations):
		return errSchemaTooNew(current)
	case current < len(migrations):
		return fmt.Errorf("checkpoint: schema prismsync is at version %d, older than the %d this prismsync reads; "+
			"opening it for writing migrates it: %w", current, len(migrations), ErrUnsupportedVersion)
	}
	return nil
}

// schemaVersion reads the version of schema prismsync; exists is false
// when there is no schema_version table yet.
func schemaVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (current int, exists bool, err error) {
	if err := q.QueryRow(ctx, `SELECT to_regclass('prismsync.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, false, fmt.Errorf("checkpoint: inspect schema: %w", err)
	}
	if !exists {
		return 0, false, nil
	}
	if err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM prismsync.schema_version`).Scan(&current); err != nil {
		return 0, false, fmt.Errorf("checkpoint: read schema version: %w", err)
	}
	return current, true, nil
}

func errSchemaTooNew(current int) error {
	return fmt.Errorf("checkpoint: schema prismsync is at version %d but this prismsync understands up to %d; use a newer prismsync: %w",
		current, len(migrations), ErrUnsupportedVersion)
}
