package checkpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// queryCounter is a pgx tracer that records every statement sent.
type queryCounter struct {
	mu  sync.Mutex
	sql []string
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sql = append(c.sql, d.SQL)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A batch is one round trip: it counts as one entry, its statements joined.
func (c *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	var sql []string
	for _, q := range d.Batch.QueuedQueries {
		sql = append(sql, q.SQL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sql = append(c.sql, "batch: "+strings.Join(sql, "; "))
	return ctx
}

func (c *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (c *queryCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sql
	c.sql = nil
	return out
}

// openTraced opens a PGStore on a fresh database through a pool whose
// statements c (if not nil) sees.
func openTraced(t testing.TB, c *queryCounter) *PGStore {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	must(t, err)
	if c != nil {
		cfg.ConnConfig.Tracer = c
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err)
	t.Cleanup(pool.Close)
	s, err := openPostgres(ctx, pool)
	must(t, err)
	return s
}

func intKeys(from, n int) [][]string {
	keys := make([][]string, n)
	for i := range keys {
		keys[i] = []string{fmt.Sprint(from + i)}
	}
	return keys
}

// The engine looks up and saves a whole batch at a time; each must be one
// round trip however many keys it has.
func TestPostgresFingerprintsOneStatementPerCall(t *testing.T) {
	ctx := context.Background()
	var c queryCounter
	s := openTraced(t, &c)
	c.take()

	const n = 10_000
	keys := intKeys(0, n)
	sums := make([][]byte, n)
	for i := range sums {
		sums[i] = sum16("one", i)
		if i%100 == 0 {
			sums[i] = nil // deletes ride along in the same round trip
		}
	}
	must(t, s.SaveFingerprints(ctx, "orgs", keys, sums))
	if q := c.take(); len(q) != 1 {
		t.Errorf("SaveFingerprints of %d keys took %d round trips, want 1:\n%s", n, len(q), strings.Join(q, "\n---\n"))
	}
	got, err := s.Fingerprints(ctx, "orgs", keys)
	must(t, err)
	if q := c.take(); len(q) != 1 {
		t.Errorf("Fingerprints of %d keys took %d round trips, want 1:\n%s", n, len(q), strings.Join(q, "\n---\n"))
	}
	for i := range keys {
		if string(got[i]) != string(sums[i]) || (got[i] == nil) != (sums[i] == nil) {
			t.Fatalf("Fingerprints[%d] = %q, want %q", i, got[i], sums[i])
		}
	}
}

// A database at schema version 2 (before fingerprints) is migrated on open.
func TestPostgresFingerprintsMigration(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	migrateTo(t, dsn, 2)
	pgExec(t, dsn, `INSERT INTO prismsync.positions VALUES ('orgs', '1', '{}', '', 1, now());
		INSERT INTO prismsync.sync_history VALUES ('orgs', 1, now(), now())`)

	s2, err := Open(ctx, "", dsn)
	must(t, err)
	defer s2.Close()
	must(t, s2.SaveFingerprints(ctx, "orgs", [][]string{{"1"}}, [][]byte{sum16("m", 1)}))
	wantFingerprints(t, s2, "orgs", [][]string{{"1"}}, [][]byte{sum16("m", 1)})
	if st, err := s2.Load(ctx, "orgs"); err != nil || !st.Exists {
		t.Errorf("position after migration = %+v, %v", st, err)
	}
}

// fingerprintRowCost fills a fresh store with n fingerprints of a one-column
// bigint key (text "1".."n") and 16-byte sums, saved in batches of batch
// keys in the given order, and returns pg_total_relation_size / n.
func fingerprintRowCost(t *testing.T, sync string, n, batch int, shuffle bool) float64 {
	return storageCost(t, "fingerprints", n, batch, shuffle, func(s Store, ids []int) error {
		keys := make([][]string, 0, len(ids))
		sums := make([][]byte, 0, len(ids))
		for _, id := range ids {
			keys = append(keys, []string{fmt.Sprint(id)})
			sums = append(sums, sum16("cost", id))
		}
		return s.SaveFingerprints(context.Background(), sync, keys, sums)
	})
}

// storageCost fills table of a fresh store through save, batch ids (1..n,
// shuffled or in order) at a time, and returns its bytes per row.
func storageCost(t *testing.T, table string, n, batch int, shuffle bool, save func(s Store, ids []int) error) float64 {
	dsn := pgtest.NewDB(t)
	s, err := Open(context.Background(), "", dsn)
	must(t, err)
	defer s.Close()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	if shuffle {
		rand.New(rand.NewPCG(7, 7)).Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	for lo := 0; lo < n; lo += batch {
		must(t, save(s, ids[lo:min(lo+batch, n)]))
	}
	return bytesPerRow(t, dsn, table, n)
}

// bytesPerRow is pg_total_relation_size of prismsync.table (heap, TOAST
// and indexes) over its n rows, which it checks are there.
func bytesPerRow(t *testing.T, dsn, table string, n int) float64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	must(t, err)
	defer conn.Close(ctx)
	var (
		rows, size, heap, index int64
		version                 string
	)
	rel := "prismsync." + table
	must(t, conn.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM `+pgx.Identifier{"prismsync", table}.Sanitize()+`), pg_total_relation_size($1),
			pg_relation_size($1), pg_indexes_size($1), current_setting('server_version')`, rel).Scan(&rows, &size, &heap, &index, &version))
	if rows != int64(n) {
		t.Fatalf("%d rows in %s, want %d", rows, rel, n)
	}
	t.Logf("PostgreSQL %s: %s total %d bytes (heap %d, primary key index %d)", version, rel, size, heap, index)
	return float64(size) / float64(n)
}

// TestPostgresFingerprintStorageCost measures the figure doc.go quotes and
// fails if a change makes a row much dearer than documented.
func TestPostgresFingerprintStorageCost(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 100,000 rows per case")
	}
	const n = 100_000
	for _, tc := range []struct {
		name    string
		sync    string
		batch   int
		shuffle bool
	}{
		{"OneCall", "orgs", n, false},
		{"Batches5000InKeyOrder", "orgs", 5000, false},
		{"Batches5000Shuffled", "orgs", 5000, true},
		{"Batches5000ShuffledLongSyncName", "organizations_from_erp_eu", 5000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			per := fingerprintRowCost(t, tc.sync, n, tc.batch, tc.shuffle)
			t.Logf("sync %q, %d rows saved %d per call, shuffled=%v: %.1f bytes/row (pg_total_relation_size/%d)",
				tc.sync, n, tc.batch, tc.shuffle, per, n)
			if per > 200 {
				t.Errorf("%.1f bytes per fingerprint, documented as about 100-140", per)
			}
		})
	}
}

// BenchmarkPostgresFingerprints5000 is one engine batch against a table of
// 100,000+ fingerprints: look up 5,000 keys (half saved by the previous
// iteration, half new) and save all 5,000.
func BenchmarkPostgresFingerprints5000(b *testing.B) {
	ctx := context.Background()
	s := openTraced(b, nil)
	const n, stored = 5000, 100_000
	must(b, s.SaveFingerprints(ctx, "orgs", intKeys(0, stored), repeatSum(stored)))
	from := stored - n/2
	for b.Loop() {
		keys := intKeys(from, n)
		from += n / 2
		if _, err := s.Fingerprints(ctx, "orgs", keys); err != nil {
			b.Fatal(err)
		}
		if err := s.SaveFingerprints(ctx, "orgs", keys, repeatSum(n)); err != nil {
			b.Fatal(err)
		}
	}
}

func repeatSum(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = sum16("bench", i)
	}
	return out
}

// BenchmarkPostgresFingerprints5000Split times the two halves of
// BenchmarkPostgresFingerprints5000 apart.
func BenchmarkPostgresFingerprints5000Split(b *testing.B) {
	ctx := context.Background()
	s := openTraced(b, nil)
	const n, stored = 5000, 100_000
	must(b, s.SaveFingerprints(ctx, "orgs", intKeys(0, stored), repeatSum(stored)))
	b.Run("Lookup", func(b *testing.B) {
		from := 0
		for b.Loop() {
			if _, err := s.Fingerprints(ctx, "orgs", intKeys(from%(stored-n), n)); err != nil {
				b.Fatal(err)
			}
			from += n
		}
	})
	b.Run("Save", func(b *testing.B) {
		from := stored - n/2
		for b.Loop() {
			if err := s.SaveFingerprints(ctx, "orgs", intKeys(from, n), repeatSum(n)); err != nil {
				b.Fatal(err)
			}
			from += n / 2
		}
	})
}
