package checkpoint

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Overviews implements Store: one statement, so every value comes from the
// same snapshot; each table is read once, not once per sync.
func (s *PGStore) Overviews(ctx context.Context) ([]Overview, error) {
	// The last run is the history's entry under the runs row's seq: one
	// primary-key lookup per sync.
	rows, err := s.pool.Query(ctx, `
		WITH j AS (SELECT sync, count(*) AS n FROM prismsync.journal GROUP BY sync),
		     r AS (SELECT sync, count(*) FILTER (WHERE wait_sync IS NULL) AS n, count(*) FILTER (WHERE wait_sync IS NOT NULL) AS d
		           FROM prismsync.rejects GROUP BY sync),
		     names AS (SELECT sync FROM prismsync.positions UNION SELECT sync FROM prismsync.sync_history
		               UNION SELECT sync FROM prismsync.runs UNION SELECT sync FROM j UNION SELECT sync FROM r)
		SELECT names.sync, p.cursor_text, p.key_text, p.updated_at, coalesce(j.n, 0), coalesce(r.n, 0), coalesce(r.d, 0),
		       h.seq, h.started_at, h.finished_at, h.ok, h.error, h.budget, h.rows_read, h.rows_sent, h.rows_created,
		       h.rows_updated, h.rows_existing, h.rows_unchanged, h.rows_invalid, h.rows_rejected, h.rows_deferred,
		       h.requests, h.cursor_text, h.key_text, h.rows_deleted, h.rows_archived, h.rows_restored
		FROM names
		LEFT JOIN prismsync.positions AS p ON p.sync = names.sync
		LEFT JOIN prismsync.runs AS ru ON ru.sync = names.sync
		LEFT JOIN prismsync.run_history AS h ON h.sync = ru.sync AND h.seq = ru.seq
		LEFT JOIN j ON j.sync = names.sync
		LEFT JOIN r ON r.sync = names.sync
		ORDER BY names.sync`)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: overviews: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Overview, error) {
		var (
			o                 Overview
			cursor, runCursor *string
			key, runKey       []string
			committed         *time.Time
			seq               *int64
			started, finished *time.Time
			ok, budget        *bool
			runErr            *string
			n                 [13]*int
		)
		if err := row.Scan(&o.Sync, &cursor, &key, &committed, &o.InFlight, &o.Rejects, &o.Deferred,
			&seq, &started, &finished, &ok, &runErr, &budget, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7], &n[8], &n[9],
			&runCursor, &runKey, &n[10], &n[11], &n[12]); err != nil {
			return o, err
		}
		if cursor != nil {
			o.Position = Position{Cursor: *cursor, Key: normKey(key)}
			o.Committed = committed.UTC()
		}
		if seq != nil {
			o.HasRun = true
			o.LastRun = Run{Sync: o.Sync, Seq: *seq, Started: started.UTC(), Finished: finished.UTC(), OK: *ok, Error: *runErr,
				Budget: *budget, Rows: *n[0], Sent: *n[1], Created: *n[2], Updated: *n[3], Existing: *n[4], Unchanged: *n[5],
				Invalid: *n[6], Rejected: *n[7], Deferred: *n[8], Requests: *n[9],
				Deleted: *n[10], Archived: *n[11], Restored: *n[12],
				Checkpoint: Position{Cursor: *runCursor, Key: normKey(runKey)}}
		}
		return o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: overviews: %w", err)
	}
	return out, nil
}

// Overviews implements Store.
func (s *FileStore) Overviews(ctx context.Context) ([]Overview, error) {
	var out []Overview
	err := s.view(ctx, func(st *fileState) error {
		names := map[string]bool{}
		add := func(syncs iter.Seq[string]) {
			for s := range syncs {
				names[s] = true
			}
		}
		add(maps.Keys(st.positions))
		add(maps.Keys(st.history))
		add(maps.Keys(s.runs.bySync))
		add(maps.Keys(st.journal))
		add(maps.Keys(st.rejects))
		for _, name := range slices.Sorted(maps.Keys(names)) {
			o := Overview{Sync: name, InFlight: len(st.journal[name])}
			for _, r := range st.rejects[name] {
				if r.WaitSync != "" {
					o.Deferred++
				} else {
					o.Rejects++
				}
			}
			if p, ok := st.positions[name]; ok {
				o.Position = Position{Cursor: p.Position.Cursor, Key: normKey(p.Position.Key)}
				o.Committed = p.UpdatedAt.UTC()
			}
			if rs := s.runs.bySync[name]; len(rs) > 0 {
				o.HasRun = true
				o.LastRun = rs[len(rs)-1]
			}
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: overviews: %w", err)
	}
	return out, nil
}
