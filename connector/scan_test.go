package connector_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/mapping"
)

// countedSource is a query source over people whose rows PostgreSQL
// announces (a NOTICE from a volatile column, which stays in the subquery)
// as it produces them; the returned function counts the notices the
// returned pool's sessions received.
func countedSource(t *testing.T, e *env, batch int) (*mapping.Sync, *pgxpool.Pool, func() int64) {
	t.Helper()
	e.exec(`CREATE FUNCTION produced(id bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS
		$$ BEGIN RAISE NOTICE 'produced %', id; RETURN id; END $$`)
	f, findings := mapping.Parse("t.yaml", []byte(fmt.Sprintf(`syncs:
  - name: people
    source:
      query: "SELECT p.*, produced(p.id) AS produced FROM people AS p"
      key: [id]
      cursor: updated_at
    target: { object: organization }
    batch_size: %d
    properties: { external_id: id, name: name, seats: seats }
`, batch)))
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	m, _ := f.Sync("people")
	pc, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	connector.ConfigurePool(pc)
	var n atomic.Int64
	pc.ConnConfig.OnNotice = func(_ *pgconn.PgConn, nt *pgconn.Notice) {
		if strings.HasPrefix(nt.Message, "produced ") {
			n.Add(1)
		}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return m, pool, n.Load
}

// openTransactions counts the sessions of the engine's pool that are inside
// a transaction: a pass must leave none behind.
func (e *env) openTransactions() int {
	e.t.Helper()
	n, err := openTransactions(context.Background(), e.pool)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// openTransactions counts the other sessions of pool's application in its
// database that are inside a transaction.
func openTransactions(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `
		SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
		  AND application_name = current_setting('application_name')`).Scan(&n)
	return n, err
}

// A pass reads its window with one ordered query, whatever the number of
// batches: a source without an index on (cursor, key), here a query that
// cannot have one, is scanned and sorted once, not once per batch.
func TestOnePassIsOneScan(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01' + (g % 37) * interval '1 second'
		FROM generate_series(1, 3000) g`)
	sy, produced := countedSyncer(t, e, 100, 0)
	sum, err := sy.Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 3000 || sum.Batches != 30 {
		t.Fatalf("summary %+v: want 3000 rows in 30 batches", sum)
	}
	// One query per batch would have produced 3000 + 2900 + ... + 100.
	if n := produced(); n != 3000 {
		t.Fatalf("the server produced %d rows for a pass over 3000; want each row once", n)
	}
	if n := e.openTransactions(); n != 0 {
		t.Fatalf("%d transactions of the engine still open after the pass", n)
	}
	e.checkFake()
}

// countedSyncer syncs people through countedSource's pool, in batches of
// batch, with snapshots of at most a minute on a clock that moves by step
// every time the engine reads it.
func countedSyncer(t *testing.T, e *env, batch int, step time.Duration) (*connector.Syncer, func() int64) {
	t.Helper()
	m, pool, produced := countedSource(t, e, batch)
	sy := e.syncer(m)
	sy.DB = pool
	clock := &tickingClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), step: step}
	sy.Now, sy.MaxSnapshot = clock.now, time.Minute
	return sy, produced
}

// tickingClock advances by step every time it is read.
type tickingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *tickingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// When a snapshot reaches MaxSnapshot, the scan goes on from the last row
// read in a new one. Here every batch is read in a snapshot of its own, in
// batches that split runs of rows sharing one cursor value: nothing is
// skipped or sent twice (there is no dedupe_by, so a row sent twice would
// be two records).
func TestSnapshotReopensWhereItLeftOff(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01' + (g / 250) * interval '1 second'
		FROM generate_series(1, 2000) g`)
	sy, produced := countedSyncer(t, e, 300, time.Minute)
	sum, err := sy.Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 2000 || sum.Created != 2000 || sum.Batches != 7 {
		t.Fatalf("summary %+v: want 2000 rows created in 7 batches", sum)
	}
	// Each new snapshot produced what was left of the window.
	if n := produced(); n != 2000+1700+1400+1100+800+500+200 {
		t.Fatalf("the server produced %d rows; want one snapshot per batch, each from where the last left off", n)
	}
	e.checkFake()
}

// beforeFirstImport runs hook once, before the first import is sent.
type beforeFirstImport struct {
	connector.API
	once sync.Once
	hook func()
}

func (b *beforeFirstImport) Import(ctx context.Context, object, key string, body []byte) (*prism.Job, error) {
	b.once.Do(b.hook)
	return b.API.Import(ctx, object, key, body)
}

// A row that changes while a pass reads in several snapshots moves beyond
// the pass's bound: the pass that had not reached it yet leaves it to the
// next, which sends its new values; one it had already sent is sent again
// by the next pass. Nothing is lost, nothing is sent twice within a pass.
func TestRowChangedBetweenSnapshotsIsReadByTheNextPass(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01' + (g / 250) * interval '1 second'
		FROM generate_series(1, 2000) g`)
	m := mappingFor(t, 300, true)
	sy := e.syncer(m)
	clock := &tickingClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), step: time.Minute}
	sy.Now, sy.MaxSnapshot = clock.now, time.Minute
	var hookErr error
	sy.API = &beforeFirstImport{API: e.api, hook: func() {
		_, hookErr = e.pool.Exec(ctx, `UPDATE people SET seats = -seats, updated_at = now() WHERE id IN (1, 1999)`)
	}}
	sum, err := sy.Once(ctx)
	if err != nil || hookErr != nil {
		t.Fatal(err, hookErr)
	}
	if sum.Rows != 1999 {
		t.Fatalf("first pass read %d rows; want 1999: row 1999 changed before its snapshot, row 1 after it was read", sum.Rows)
	}
	if sum, err = e.syncer(m).Once(ctx); err != nil || sum.Rows != 2 {
		t.Fatalf("second pass %+v, err %v: want the two changed rows", sum, err)
	}
	e.checkFake()
}

// waitWithoutSnapshot holds every import until no session of pool is inside
// a transaction, so each import proves that the reader, blocked behind it
// with a snapshot past its age, let the snapshot go.
type waitWithoutSnapshot struct {
	connector.API
	pool *pgxpool.Pool
}

func (w *waitWithoutSnapshot) Import(ctx context.Context, object, key string, body []byte) (*prism.Job, error) {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := openTransactions(ctx, w.pool)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return w.API.Import(ctx, object, key, body)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d snapshot(s) still held while the reader waits for the API", n)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// A reader that waits for a full pipeline (a slow API) gives its snapshot up
// when it reaches MaxSnapshot, and reads on from the last row afterwards.
func TestSlowAPIDoesNotHoldTheSnapshot(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01' + (g / 7) * interval '1 second'
		FROM generate_series(1, 1000) g`)
	// Every snapshot is past its age by the time the reader looks again.
	sy, _ := countedSyncer(t, e, 100, time.Hour)
	sy.API = &waitWithoutSnapshot{API: e.api, pool: sy.DB}
	sum, err := sy.Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 1000 || sum.Batches != 10 {
		t.Fatalf("summary %+v: want 1000 created in 10 batches", sum)
	}
	e.checkFake()
}

// A pass that stops in the middle of its window (a shutdown here; the
// budget ends a pass the same way) closes the scan: no snapshot is left
// open on the source.
func TestStoppedPassClosesTheScan(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01' + g * interval '1 second'
		FROM generate_series(1, 1000) g`)
	sy := e.syncer(mappingFor(t, 100, false))
	stopping := make(chan struct{})
	close(stopping)
	sy.Stopping = stopping
	sum, err := sy.Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Batches != 1 || sum.Rows != 100 {
		t.Fatalf("summary %+v: want the pass to stop after its first batch", sum)
	}
	if n := e.openTransactions(); n != 0 {
		t.Fatalf("%d transactions of the engine still open after the pass stopped", n)
	}
}
