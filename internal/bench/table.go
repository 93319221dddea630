package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// mappingFile is ten properties over ten columns of mixed types; email
// goes through transforms as real mappings' do.
func mappingFile(batch int) string {
	return fmt.Sprintf(`syncs:
  - name: bench
    source: { table: public.items, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id }
    batch_size: %d
    properties:
      external_id: id
      name: name
      email: { column: email, transform: [trim, lower] }
      seats: seats
      revenue: revenue
      active: active
      founded: founded
      updated_at: updated_at
      tags: tags
      uid: uid
`, batch)
}

// seedChunk bounds one INSERT so a large seed neither holds one huge
// transaction nor gives up progress on cancellation.
const seedChunk = 250_000

// seedTable creates public.items and fills it with n rows generated in
// SQL. Keys and the sync index are built after the load (faster than
// maintaining them row by row); VACUUM ANALYZE sets hint bits and statistics
// so neither the COPY nor the sync pays for the first read of fresh tuples.
func seedTable(ctx context.Context, pool *pgxpool.Pool, n int) error {
	if _, err := pool.Exec(ctx, `
		CREATE TABLE public.items (
			id         bigint NOT NULL,
			name       text NOT NULL,
			email      text,
			seats      integer,
			revenue    numeric(14,2),
			active     boolean NOT NULL,
			founded    date,
			updated_at timestamptz NOT NULL,
			tags       text[],
			uid        uuid NOT NULL
		)`); err != nil {
		return fmt.Errorf("bench: create table: %w", err)
	}
	// 100 rows share each updated_at, as bulk updates leave them: the
	// keyset pages then split ties on id, as in production.
	for lo := 1; lo <= n; lo += seedChunk {
		hi := min(lo+seedChunk-1, n)
		if _, err := pool.Exec(ctx, `
			INSERT INTO public.items
			SELECT g, 'Company ' || g, '  Contact' || g || '@Example.COM ', (g % 500)::int,
			       round((g % 100000) * 1.37, 2), g % 7 <> 0, date '1990-01-01' + (g % 12000)::int,
			       timestamptz '2026-01-01 00:00:00+00' + (g / 100) * interval '1 second',
			       CASE g % 4 WHEN 0 THEN ARRAY['b2b', 'emea'] WHEN 1 THEN ARRAY['b2c'] WHEN 2 THEN '{}'::text[] END,
			       md5(g::text)::uuid
			FROM generate_series($1::bigint, $2::bigint) AS g`, lo, hi); err != nil {
			return fmt.Errorf("bench: seed rows %d..%d: %w", lo, hi, err)
		}
	}
	for _, stmt := range []string{
		`ALTER TABLE public.items ADD PRIMARY KEY (id)`,
		`CREATE INDEX items_sync ON public.items (updated_at, id)`,
		`VACUUM ANALYZE public.items`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("bench: %s: %w", stmt, err)
		}
	}
	return nil
}

// measureCopy reads the table's mapped columns with COPY TO STDOUT into
// io.Discard: the fastest way PostgreSQL can hand these rows to a client,
// so the ceiling for any reader on this machine.
func measureCopy(ctx context.Context, dsn string, rep *Report) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("bench: copy: connect: %w", err)
	}
	defer conn.Close(ctx)
	w := &countingWriter{}
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, w,
		`COPY (SELECT id, name, email, seats, revenue, active, founded, updated_at, tags, uid FROM public.items) TO STDOUT`)
	if err != nil {
		return fmt.Errorf("bench: copy: %w", err)
	}
	rep.CopyDuration = time.Since(start)
	rep.CopyRows = tag.RowsAffected()
	rep.CopyBytes = w.n
	return nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
