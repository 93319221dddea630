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
	rows, err := s.pool.Query(ctx, `
		WITH j AS (SELECT sync, count(*) AS n FROM prismsync.journal GROUP BY sync),
		     r AS (SELECT sync, count(*) FILTER (WHERE wait_sync IS NULL) AS n, count(*) FILTER (WHERE wait_sync IS NOT NULL) AS d
		           FROM prismsync.rejects GROUP BY sync),
		     names AS (SELECT sync FROM prismsync.positions UNION SELECT sync FROM prismsync.sync_history
		               UNION SELECT sync FROM prismsync.runs UNION SELECT sync FROM j UNION SELECT sync FROM r)
		SELECT names.sync, p.cursor_text, p.key_text, p.updated_at, coalesce(j.n, 0), coalesce(r.n, 0), coalesce(r.d, 0),
		       ru.started_at, ru.finished_at, ru.ok, ru.error, ru.row_count, ru.sent_count
		FROM names
		LEFT JOIN prismsync.positions AS p ON p.sync = names.sync
		LEFT JOIN prismsync.runs AS ru ON ru.sync = names.sync
		LEFT JOIN j ON j.sync = names.sync
		LEFT JOIN r ON r.sync = names.sync
		ORDER BY names.sync`)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: overviews: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Overview, error) {
		var (
			o                 Overview
			cursor, runErr    *string
			key               []string
			committed         *time.Time
			started, finished *time.Time
			ok                *bool
			rowCount, sent    *int
		)
		if err := row.Scan(&o.Sync, &cursor, &key, &committed, &o.InFlight, &o.Rejects, &o.Deferred,
			&started, &finished, &ok, &runErr, &rowCount, &sent); err != nil {
			return o, err
		}
		if cursor != nil {
			o.Position = Position{Cursor: *cursor, Key: normKey(key)}
			o.Committed = committed.UTC()
		}
		if finished != nil {
			o.HasRun = true
			o.LastRun = Run{Started: started.UTC(), Finished: finished.UTC(), OK: *ok, Error: *runErr, Rows: *rowCount, Sent: *sent}
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
		add(maps.Keys(st.runs))
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
			if r, ok := st.runs[name]; ok {
				o.HasRun = true
				o.LastRun = r.run()
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

func (r fileRun) run() Run {
	return Run{Started: r.Started.UTC(), Finished: r.Finished.UTC(), OK: r.OK, Error: r.Error, Rows: r.Rows, Sent: r.Sent}
}
