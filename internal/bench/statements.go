package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statement is one normalized statement as pg_stat_statements counted it
// over the sync phase.
type Statement struct {
	Query string
	Calls int64
	Rows  int64
	Time  time.Duration // total execution time (planning excluded)
}

// resetStatements creates the extension if needed and forgets what the
// seed and COPY ran, so the report covers the sync phase only.
func resetStatements(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return fmt.Errorf("bench: pg_stat_statements: %w", err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		return fmt.Errorf("bench: pg_stat_statements: %w", err)
	}
	return nil
}

// topStatements returns the n statements that took the most execution
// time since resetStatements.
func topStatements(ctx context.Context, pool *pgxpool.Pool, n int) ([]Statement, error) {
	rows, err := pool.Query(ctx, `
		SELECT query, calls, rows, total_exec_time FROM pg_stat_statements
		WHERE query NOT LIKE '%pg_stat_statements%'
		ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("bench: pg_stat_statements: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Statement, error) {
		var st Statement
		var ms float64
		err := r.Scan(&st.Query, &st.Calls, &st.Rows, &ms)
		st.Time = time.Duration(ms * float64(time.Millisecond))
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: pg_stat_statements: %w", err)
	}
	return out, nil
}

// printStatements writes the statement table, time per synced row first.
func printStatements(w io.Writer, sts []Statement, rows int) {
	if len(sts) == 0 {
		return
	}
	fmt.Fprintf(w, "  statements     the sync phase's top statements by execution time (pg_stat_statements):\n")
	for _, st := range sts {
		q := strings.Join(strings.Fields(st.Query), " ")
		if len(q) > 110 {
			q = q[:110] + "…"
		}
		fmt.Fprintf(w, "    %6.2f µs/row %8s %7d calls %9d rows  %s\n",
			float64(st.Time.Microseconds())/float64(max(1, rows)), st.Time.Round(time.Millisecond), st.Calls, st.Rows, q)
	}
}
