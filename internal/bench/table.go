package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The tables a run can sync (Config.Table).
const (
	// Wide is public.items: ten columns of mixed types (bigint key, text,
	// an e-mail trimmed and lower-cased, integer, numeric(14,2), boolean,
	// date, the timestamptz cursor, text[], uuid); 100 rows share each
	// updated_at, in id order.
	Wide = "wide"
	// Narrow is issue 12's job: public.people with external_id, email,
	// plan, score and active, a primary key on id and a unique
	// external_id. updated_at is unrelated to id (a multiplicative hash of
	// id spread over 124 days, so some rows share a value), as in a table
	// whose rows were updated at random: neither the sort nor the walk of
	// the (updated_at, id) index reads the heap in order, and the keys reach
	// the fingerprint index in random order.
	Narrow = "narrow"
)

// table is what a run needs to know about the table it syncs.
type table struct {
	name    string
	create  string                 // CREATE TABLE
	insert  string                 // INSERT ... SELECT over generate_series($1, $2)
	keys    []string               // constraints and indexes built after the load
	index   string                 // the (updated_at, id) index, built when Config.Index
	copy    string                 // COPY ... TO STDOUT of the columns a pass reads
	mapping func(batch int) string // the mapping file, sync "bench"
}

func tableOf(name string) (table, error) {
	switch name {
	case Wide, "":
		return wideTable, nil
	case Narrow:
		return narrowTable, nil
	}
	return table{}, fmt.Errorf("bench: unknown table %q: want %s or %s", name, Wide, Narrow)
}

var wideTable = table{
	name: Wide,
	create: `CREATE TABLE public.items (
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
	)`,
	// 100 rows share each updated_at, as bulk updates leave them: the
	// batches then split ties on id, as in production.
	insert: `
		INSERT INTO public.items
		SELECT g, 'Company ' || g, '  Contact' || g || '@Example.COM ', (g % 500)::int,
		       round((g % 100000) * 1.37, 2), g % 7 <> 0, date '1990-01-01' + (g % 12000)::int,
		       timestamptz '2026-01-01 00:00:00+00' + (g / 100) * interval '1 second',
		       CASE g % 4 WHEN 0 THEN ARRAY['b2b', 'emea'] WHEN 1 THEN ARRAY['b2c'] WHEN 2 THEN '{}'::text[] END,
		       md5(g::text)::uuid
		FROM generate_series($1::bigint, $2::bigint) AS g`,
	keys:  []string{`ALTER TABLE public.items ADD PRIMARY KEY (id)`},
	index: `CREATE INDEX items_sync ON public.items (updated_at, id)`,
	copy:  `COPY (SELECT id, name, email, seats, revenue, active, founded, updated_at, tags, uid FROM public.items) TO STDOUT`,
	// Ten properties over ten columns of mixed types; email goes through
	// transforms as real mappings' do.
	mapping: func(batch int) string {
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
	},
}

var narrowTable = table{
	name: Narrow,
	create: `CREATE TABLE public.people (
		id          bigint NOT NULL,
		external_id text NOT NULL,
		email       text,
		plan        text,
		score       integer,
		active      boolean NOT NULL,
		updated_at  timestamptz NOT NULL
	)`,
	insert: `
		INSERT INTO public.people
		SELECT g, 'ext-' || g, 'person' || g || '@example.com', (ARRAY['free', 'pro', 'team'])[g % 3 + 1],
		       (g % 100)::int, g % 2 = 0,
		       timestamptz '2026-01-01 00:00:00+00' + ((g * 2654435761) % 4294967296 / 400) * interval '1 second'
		FROM generate_series($1::bigint, $2::bigint) AS g`,
	keys: []string{
		`ALTER TABLE public.people ADD PRIMARY KEY (id)`,
		`ALTER TABLE public.people ADD UNIQUE (external_id)`,
	},
	index: `CREATE INDEX people_sync ON public.people (updated_at, id)`,
	copy:  `COPY public.people TO STDOUT`,
	mapping: func(batch int) string {
		return fmt.Sprintf(`syncs:
  - name: bench
    source: { table: public.people, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id }
    batch_size: %d
    properties:
      external_id: external_id
      email: email
      plan: plan
      score: score
      active: active
`, batch)
	},
}

// seedChunk bounds one INSERT so a large seed neither holds one huge
// transaction nor gives up progress on cancellation.
const seedChunk = 250_000

// seed creates the table and fills it with n rows generated in SQL. Keys
// and indexes are built after the load (faster than maintaining them row by
// row); VACUUM ANALYZE sets hint bits and statistics so neither the COPY nor
// the sync pays for the first read of fresh tuples.
func (t table) seed(ctx context.Context, pool *pgxpool.Pool, n int, index bool) error {
	if _, err := pool.Exec(ctx, t.create); err != nil {
		return fmt.Errorf("bench: create table: %w", err)
	}
	for lo := 1; lo <= n; lo += seedChunk {
		hi := min(lo+seedChunk-1, n)
		if _, err := pool.Exec(ctx, t.insert, lo, hi); err != nil {
			return fmt.Errorf("bench: seed rows %d..%d: %w", lo, hi, err)
		}
	}
	stmts := t.keys
	if index {
		stmts = append(stmts[:len(stmts):len(stmts)], t.index)
	}
	for _, stmt := range append(stmts[:len(stmts):len(stmts)], `VACUUM ANALYZE`) {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("bench: %s: %w", stmt, err)
		}
	}
	return nil
}

// measureCopy reads the table with COPY TO STDOUT into io.Discard: the
// fastest way PostgreSQL can hand these rows to a client, so the ceiling for
// any reader on this machine. pool, on the same cluster, reads its CPU.
func measureCopy(ctx context.Context, dsn, copySQL string, pool *pgxpool.Pool, rep *Report) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("bench: copy: connect: %w", err)
	}
	defer conn.Close(ctx)
	w := &countingWriter{}
	pg0, pgErr := clusterCPU(ctx, pool)
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, w, copySQL)
	if err != nil {
		return fmt.Errorf("bench: copy: %w", err)
	}
	rep.CopyDuration = time.Since(start)
	if pg1, err := clusterCPU(ctx, pool); err == nil && pgErr == nil {
		rep.CopyPostgresCPU = pg1 - pg0
	}
	rep.CopyRows = tag.RowsAffected()
	rep.CopyBytes = w.n
	return nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
