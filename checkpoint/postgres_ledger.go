package checkpoint

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// The record ledger's statements. Each is written as primary-key probes, so
// its plan does not depend on how many records a sync has.
const (
	// qSaveRecords upserts a batch's record ids; an unchanged id writes
	// nothing (no dead tuple for the common re-send of a known row).
	qSaveRecords = `
		INSERT INTO prismsync.records AS r (sync, row_key, record_id)
		SELECT $1, u.k, u.id FROM unnest($2::text[], $3::uuid[]) AS u(k, id)
		ON CONFLICT (sync, row_key) DO UPDATE SET record_id = EXCLUDED.record_id, state = NULL
			WHERE r.record_id <> EXCLUDED.record_id OR r.state IS NOT NULL`
	// qAddRecords inserts the records of keys the ledger is not expected to
	// hold (Ledger.Fresh). Not an upsert: ON CONFLICT costs a speculative
	// insertion per row, half again the database time of a plain insert
	// (docs/performance.md), and new keys are what a first sync writes, a
	// million at a time. A key there after all fails the commit as a whole,
	// without effect, and CommitRecords sends it again with qSaveRecords.
	qAddRecords = `
		INSERT INTO prismsync.records (sync, row_key, record_id)
		SELECT $1, u.k, u.id FROM unnest($2::text[], $3::uuid[]) AS u(k, id)`
	// qSaveRecordsRelink is qSaveRecords for a sync other syncs link to: a
	// key whose stored id differs from the new one (read from the snapshot
	// before the upsert, one probe per key behind OFFSET 0) gets a relink
	// for each referrer.
	qSaveRecordsRelink = `
		WITH u AS (SELECT * FROM unnest($2::text[], $3::uuid[]) AS u(k, id)),
		replaced AS (
			SELECT u.k FROM u CROSS JOIN LATERAL (
				SELECT record_id FROM prismsync.records WHERE sync = $1 AND row_key = u.k OFFSET 0
			) AS old
			WHERE old.record_id <> u.id
		),
		saved AS (
			INSERT INTO prismsync.records AS r (sync, row_key, record_id)
			SELECT $1, u.k, u.id FROM u
			ON CONFLICT (sync, row_key) DO UPDATE SET record_id = EXCLUDED.record_id, state = NULL
				WHERE r.record_id <> EXCLUDED.record_id OR r.state IS NOT NULL
		)
		INSERT INTO prismsync.relinks AS l (sync, ref_sync, row_key, since)
		SELECT c.sync, $1, replaced.k, $5 FROM replaced CROSS JOIN unnest($4::text[]) AS c(sync)
		ON CONFLICT (sync, ref_sync, row_key) DO UPDATE SET since = EXCLUDED.since`
	// qRecordIDs looks up the records a batch links to, of any syncs: one
	// probe of the primary key per (sync, key), as qFingerprints does.
	qRecordIDs = `
		SELECT k.i, r.record_id::text
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(sync, row_key, i)
		CROSS JOIN LATERAL (
			SELECT record_id FROM prismsync.records
			WHERE sync = k.sync AND row_key = k.row_key AND state IS DISTINCT FROM 'deleted' OFFSET 0
		) AS r`
	// qMarkRecords marks a commit's deleted or archived records and drops
	// their change fingerprints (so the row, live again, is sent again):
	// primary-key probes, like the upserts.
	qMarkRecords = `
		WITH marked AS (
			UPDATE prismsync.records SET state = $3
			WHERE sync = $1 AND row_key = ANY($2::text[])
		)
		DELETE FROM prismsync.fingerprints WHERE sync = $1 AND row_key = ANY($2::text[])`
	qRecordStates = `
		SELECT k.i, r.record_id::text, coalesce(r.state, '')
		FROM unnest($2::text[]) WITH ORDINALITY AS k(row_key, i)
		CROSS JOIN LATERAL (
			SELECT record_id, state FROM prismsync.records WHERE sync = $1 AND row_key = k.row_key OFFSET 0
		) AS r`
	// qLedgerPage walks the primary key in order: each page is one index
	// range scan, whatever the size of the ledger.
	qLedgerPage = `
		SELECT row_key, record_id::text, coalesce(state, '') FROM prismsync.records
		WHERE sync = $1 AND row_key > $2 AND state IS DISTINCT FROM 'deleted'
		ORDER BY row_key LIMIT $3`
	qCountRecords = `SELECT count(*) FROM prismsync.records WHERE sync = $1 AND state IS DISTINCT FROM 'deleted'`
	qDeferred     = `
		SELECT sync, row_key, code, message, payload, attempts, first_seen, last_seen, wait_sync, wait_key
		FROM prismsync.rejects WHERE sync = $1 AND wait_sync IS NOT NULL
		ORDER BY first_seen, row_key COLLATE "C"`
	qCountDeferred = `SELECT count(*) FROM prismsync.rejects WHERE ($1 = '' OR sync = $1) AND wait_sync IS NOT NULL`
	qRelinks       = `SELECT ref_sync, row_key, since FROM prismsync.relinks WHERE sync = $1 ORDER BY since, ref_sync, row_key`
	qDropRelink    = `DELETE FROM prismsync.relinks WHERE sync = $1 AND ref_sync = $2 AND row_key = $3 AND since <= $4`
)

// queueLedger adds a commit's ledger statement to its batch.
func queueLedger(b *pgx.Batch, owner string, p ledgerSave, now time.Time) {
	switch {
	case len(p.keys) == 0:
	case p.fresh:
		// No older id to replace, so no relink either.
		b.Queue(qAddRecords, owner, p.keys, p.ids)
	case len(p.referrers) == 0:
		b.Queue(qSaveRecords, owner, p.keys, p.ids)
	default:
		b.Queue(qSaveRecordsRelink, owner, p.keys, p.ids, p.referrers, now)
	}
	if len(p.deleted) > 0 {
		b.Queue(qMarkRecords, owner, p.deleted, StateDeleted)
	}
	if len(p.archived) > 0 {
		b.Queue(qMarkRecords, owner, p.archived, StateArchived)
	}
}

// RecordIDs implements Store with one statement (qRecordIDs).
func (s *PGStore) RecordIDs(ctx context.Context, refs []RecordRef) ([]string, error) {
	out := make([]string, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	// Each distinct (sync, key) once; the answer is mapped back below.
	type ref struct{ sync, key string }
	index := make(map[ref]int, len(refs))
	var syncs, keys []string
	at := make([]int, len(refs))
	for i, r := range refs {
		if err := checkSync(r.Sync); err != nil {
			return nil, err
		}
		k := ref{r.Sync, fingerprintKey(r.RowKey)}
		j, ok := index[k]
		if !ok {
			j = len(syncs)
			index[k] = j
			syncs, keys = append(syncs, k.sync), append(keys, k.key)
		}
		at[i] = j
	}
	rows, err := s.pool.Query(ctx, qRecordIDs, syncs, keys)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: look up %d record(s): %w", len(syncs), err)
	}
	found := make([]string, len(syncs))
	var (
		i  int64
		id string
	)
	_, err = pgx.ForEachRow(rows, []any{&i, &id}, func() error {
		found[i-1] = id
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: look up %d record(s): %w", len(syncs), err)
	}
	for n, j := range at {
		out[n] = found[j]
	}
	return out, nil
}

// Deferred implements Store.
func (s *PGStore) Deferred(ctx context.Context, sync string) ([]Reject, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, qDeferred, sync)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: deferred rows of sync %q: %w", sync, err)
	}
	out, err := pgx.CollectRows(rows, scanReject)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: deferred rows of sync %q: %w", sync, err)
	}
	return out, nil
}

// CountDeferred implements Store.
func (s *PGStore) CountDeferred(ctx context.Context, sync string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, qCountDeferred, sync).Scan(&n); err != nil {
		return 0, fmt.Errorf("checkpoint: count deferred rows: %w", err)
	}
	return n, nil
}

// Relinks implements Store.
func (s *PGStore) Relinks(ctx context.Context, sync string) ([]Relink, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, qRelinks, sync)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: relinks of sync %q: %w", sync, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Relink, error) {
		var r Relink
		var key string
		if err := row.Scan(&r.RefSync, &key, &r.Since); err != nil {
			return r, err
		}
		r.Since = r.Since.UTC()
		var err error
		r.RowKey, err = parseRowKey(key)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: relinks of sync %q: %w", sync, err)
	}
	return out, nil
}

// DropRelinks implements Store: one probe of the primary key per relink,
// in one round trip and one transaction.
func (s *PGStore) DropRelinks(ctx context.Context, sync string, relinks []Relink) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if len(relinks) == 0 {
		return nil
	}
	if err := s.writable(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, r := range slices.Clone(relinks) {
		b.Queue(qDropRelink, sync, r.RefSync, fingerprintKey(r.RowKey), stamp(r.Since))
	}
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return fmt.Errorf("checkpoint: drop %d relink(s) of sync %q: %w", len(relinks), sync, err)
	}
	return nil
}

// RecordStates implements Store with one statement (qRecordStates).
func (s *PGStore) RecordStates(ctx context.Context, sync string, keys [][]string) ([]RecordState, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	out := make([]RecordState, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = fingerprintKey(k)
	}
	rows, err := s.pool.Query(ctx, qRecordStates, sync, enc)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: record states of sync %q: %w", sync, err)
	}
	var (
		i         int64
		id, state string
	)
	_, err = pgx.ForEachRow(rows, []any{&i, &id, &state}, func() error {
		out[i-1] = RecordState{ID: id, State: state}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: record states of sync %q: %w", sync, err)
	}
	return out, nil
}

// LedgerPage implements Store (qLedgerPage).
func (s *PGStore) LedgerPage(ctx context.Context, sync, after string, limit int) ([]LedgerEntry, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, qLedgerPage, sync, after, limit)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: ledger of sync %q: %w", sync, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LedgerEntry, error) {
		var e LedgerEntry
		if err := row.Scan(&e.After, &e.ID, &e.State); err != nil {
			return e, err
		}
		var err error
		e.RowKey, err = parseRowKey(e.After)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: ledger of sync %q: %w", sync, err)
	}
	return out, nil
}

// CountRecords implements Store.
func (s *PGStore) CountRecords(ctx context.Context, sync string) (int, error) {
	if err := checkSync(sync); err != nil {
		return 0, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, qCountRecords, sync).Scan(&n); err != nil {
		return 0, fmt.Errorf("checkpoint: count records of sync %q: %w", sync, err)
	}
	return n, nil
}
