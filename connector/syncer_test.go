package connector_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
	"github.com/prismsync/prismsync/mapping"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's world: its own database, store, fake API and client.
type env struct {
	t     *testing.T
	pool  *pgxpool.Pool
	dsn   string
	store checkpoint.Store
	fake  *prismtest.Server
	api   *prism.Client
	url   string
	team  string
}

func (e *env) apiURL() string { return e.url }

func newEnv(t *testing.T, opts prismtest.Options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, dsn: pgtest.NewDB(t), team: uuid.NewString()}
	pc, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	connector.ConfigurePool(pc)
	if e.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if e.store, err = checkpoint.Open(ctx, "postgres", e.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.fake = prismtest.New(opts)
	srv := httptest.NewServer(e.fake)
	t.Cleanup(srv.Close)
	t.Cleanup(e.fake.Close)
	e.url = srv.URL
	e.api = e.client(t, srv.URL, 0)
	return e
}

func (e *env) client(t *testing.T, url string, maxAttempts int) *prism.Client {
	c, err := prism.New(prism.Config{
		BaseURL: url, APIKey: "test-key", TeamID: e.team,
		RateLimit: -1, MaxAttempts: maxAttempts,
		// Waiting is the fake's business, not the test's: skip every delay.
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

const peopleTable = `CREATE TABLE people (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	email text,
	seats integer,
	updated_at timestamptz NOT NULL)`

func mappingFor(t *testing.T, batch int, dedupe bool) *mapping.Sync {
	t.Helper()
	target := "      object: organization\n"
	if dedupe {
		target += "      dedupe_by: external_id\n      update_existing: true\n"
	}
	y := fmt.Sprintf(`syncs:
  - name: people
    source:
      table: public.people
      key: [id]
      cursor: updated_at
    target:
%s    batch_size: %d
    properties:
      external_id: id
      name: name
      email: { column: email, transform: [trim, lower] }
      seats: seats
`, target, batch)
	f, findings := mapping.Parse("test.yaml", []byte(y))
	if findings.HasErrors() {
		t.Fatalf("mapping: %v", findings)
	}
	s, _ := f.Sync("people")
	return s
}

func (e *env) syncer(s *mapping.Sync) *connector.Syncer {
	return &connector.Syncer{Sync: s, DB: e.pool, Store: e.store, API: e.api,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}
}

// checkFake compares the fake's records with the table: every row exactly
// once (by external_id), with the row's current values.
func (e *env) checkFake() {
	e.t.Helper()
	ctx := context.Background()
	recs := e.fake.Records("organization")
	byID := make(map[string]int)
	for _, r := range recs {
		byID[fmt.Sprint(r.Properties["external_id"])]++
	}
	rows, err := e.pool.Query(ctx, "SELECT id, name, lower(trim(email)), seats FROM people")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	want := make(map[string][3]any)
	for rows.Next() {
		var id int64
		var name string
		var email *string
		var seats *int32
		if err := rows.Scan(&id, &name, &email, &seats); err != nil {
			e.t.Fatal(err)
		}
		var em, se any
		if email != nil {
			em = *email
		}
		if seats != nil {
			se = *seats
		}
		want[strconv.FormatInt(id, 10)] = [3]any{name, em, se}
	}
	if len(recs) != len(want) {
		e.t.Errorf("fake holds %d records, table has %d rows", len(recs), len(want))
	}
	bad := 0
	for id, n := range byID {
		if n != 1 {
			bad++
			if bad < 5 {
				e.t.Errorf("external_id %s is in the fake %d times", id, n)
			}
		}
	}
	for _, r := range recs {
		id := fmt.Sprint(r.Properties["external_id"])
		w, ok := want[id]
		if !ok {
			e.t.Errorf("fake has a record for id %s that the table lacks", id)
			continue
		}
		got := [3]any{r.Properties["name"], r.Properties["email"], r.Properties["seats"]}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			bad++
			if bad < 5 {
				e.t.Errorf("id %s: fake has %v, table has %v", id, got, w)
			}
		}
	}
	if bad > 0 {
		e.t.Fatalf("%d records wrong", bad)
	}
}

func TestSync20000RowsAsyncExactlyOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, ' Mail' || g || '@Example.com ', g % 40,
		timestamptz '2026-01-01' + (g % 997) * interval '1 second' FROM generate_series(1, 20000) g`)
	sy := e.syncer(mappingFor(t, 1000, true))
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 20000 || sum.Created != 20000 || sum.Batches != 20 {
		t.Fatalf("summary %+v: want 20000 rows created in 20 batches", sum)
	}
	if st := e.fake.Stats(); st.Polls == 0 {
		t.Fatalf("batches of 1000 should have run as async jobs, but nothing was polled: %+v", st)
	}
	e.checkFake()

	// Changes after the first sync: updates and inserts arrive once.
	e.exec(`UPDATE people SET seats = seats + 1000, updated_at = now() WHERE id % 10 = 0`)
	e.exec(`INSERT INTO people SELECT g, 'New ' || g, NULL, NULL, now() FROM generate_series(20001, 20500) g`)
	sum, err = sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 2500 || sum.Updated != 2000 || sum.Created != 500 {
		t.Fatalf("second pass %+v: want 2500 rows, 2000 updated, 500 created", sum)
	}
	e.checkFake()

	// Nothing changed: nothing read, nothing sent.
	before := e.fake.Stats().Requests
	sum, err = sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 0 || e.fake.Stats().Requests != before {
		t.Fatalf("idle pass read %d rows and made %d requests", sum.Rows, e.fake.Stats().Requests-before)
	}
}

// 5,000 rows share one updated_at and go in batches of 300: keyset paging on
// (cursor, key) must neither skip nor repeat a row at page boundaries. There
// is no dedupe_by, so a row sent twice would show up as two records.
func TestManyRowsShareOneCursorValue(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, g, timestamptz '2026-03-01 12:00:00.123456+00'
		FROM generate_series(1, 5000) g`)
	sum, err := e.syncer(mappingFor(t, 300, false)).Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 5000 || sum.Batches != 17 {
		t.Fatalf("summary %+v: want 5000 created in 17 batches", sum)
	}
	e.checkFake()
}

// A run that dies midway (the API refuses the third batch) leaves the
// checkpoint after the second; a new run resends nothing already confirmed.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 1000) g`)
	m := mappingFor(t, 200, false)
	imports := 0
	e.fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultStatus, Status: 403, Match: func(ri prismtest.RequestInfo) bool {
		if ri.Kind != prismtest.KindImport {
			return false
		}
		imports++
		return imports == 3
	}})
	_, err := e.syncer(m).Once(ctx)
	if err == nil {
		t.Fatal("pass succeeded although the API refused a batch")
	}
	var pe *connector.PermanentError
	if !errors.As(err, &pe) {
		t.Fatalf("403 should be a permanent error, got %v", err)
	}
	st, err := e.store.Load(ctx, "people")
	if err != nil {
		t.Fatal(err)
	}
	if st.Position.Key[0] != "400" {
		t.Fatalf("checkpoint after failed 3rd batch = %+v, want the 400th row", st.Position)
	}
	if n := len(e.fake.Records("organization")); n != 400 {
		t.Fatalf("fake holds %d records after 2 batches, want 400", n)
	}

	// "Restart": a new syncer with the same store.
	sum, err := e.syncer(m).Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The refused batch stayed in the journal and is settled first (same key,
	// same body), then the remaining 400 rows are read.
	if sum.Resumed != 1 || sum.Rows != 400 || sum.Created != 600 {
		t.Fatalf("resumed pass %+v: want the journaled batch settled and the remaining 400 rows read", sum)
	}
	if st := e.fake.Stats(); st.Rows != 1000 {
		t.Fatalf("the API received %d objects in all, want each of the 1000 rows once", st.Rows)
	}
	e.checkFake()
}

// The API applies a batch but the answer never arrives, and the run gives up.
// The journal holds the batch, so the next run resends the same bytes under
// the same key and the API recognises it: no duplicates, even without
// dedupe_by, and even though the row changed in between.
func TestJournaledBatchIsReplayedNotDuplicated(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 50) g`)
	m := mappingFor(t, 100, false)
	sy := e.syncer(m)
	sy.API = e.client(t, e.apiURL(), 1) // one attempt: the dropped answer ends the run
	e.fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultDropAfterApply,
		Match: func(ri prismtest.RequestInfo) bool { return ri.Kind == prismtest.KindImport }})
	if _, err := sy.Once(ctx); err == nil {
		t.Fatal("pass succeeded although the answer was dropped")
	}
	if n := len(e.fake.Records("organization")); n != 50 {
		t.Fatalf("the fake should have applied the batch: %d records", n)
	}
	e.exec(`UPDATE people SET name = 'changed' WHERE id = 7`) // keeps its updated_at: a different body if re-read

	sum, err := e.syncer(m).Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Resumed != 1 {
		t.Fatalf("summary %+v: want the journaled batch settled", sum)
	}
	if n := len(e.fake.Records("organization")); n != 50 {
		t.Fatalf("fake holds %d records after the resend, want 50 (duplicates created); stats %+v", n, e.fake.Stats())
	}
	if st := e.fake.Stats(); st.Replays != 1 {
		t.Fatalf("want exactly one idempotent replay, stats %+v", st)
	}
}

// A transaction stamps a row with its start time but commits after rows
// stamped later were synced. The commit horizon keeps the pass from moving
// the checkpoint past the open transaction's start, so the row arrives in
// the next pass instead of being lost behind the checkpoint.
func TestLateCommitIsNotLost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 0, timestamptz '2026-01-01' + g * interval '1 second'
		FROM generate_series(1, 100) g`)
	sy := e.syncer(mappingFor(t, 50, true))
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}

	late, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if _, err := late.Exec(ctx, `UPDATE people SET seats = 555, updated_at = now() WHERE id = 5`); err != nil {
		t.Fatal(err)
	}
	// Later transactions, committed while the first is still open.
	e.exec(`UPDATE people SET seats = 1, updated_at = clock_timestamp() WHERE id BETWEEN 10 AND 19`)
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 0 {
		t.Fatalf("pass read %d rows stamped after the open transaction began; the horizon should hold them back", sum.Rows)
	}
	if sum.HorizonLag <= 0 {
		t.Fatalf("horizon lag %v, want > 0 while a transaction is open", sum.HorizonLag)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sum, err = sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 11 {
		t.Fatalf("after the commit the pass read %d rows, want 11 (the late one and the 10 behind it)", sum.Rows)
	}
	e.checkFake()
}

// With several batches in flight, a failure in the middle commits only the
// prefix before it; batches behind it stay journaled and are settled, not
// re-created, by the next pass.
func TestPipelinedFailureCommitsOnlyThePrefix(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{SyncThreshold: 1}) // every batch async
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 2000) g`)
	m := mappingFor(t, 100, false)
	// The 4th batch to reach the fake, told by its idempotency key. Four
	// batches are sent at once from their own goroutines, so which of them
	// arrives 4th is up to the scheduler (usually the 4th, not always):
	// the test checks the prefix before whichever one failed.
	order := map[string]int{}
	e.fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultStatus, Status: 403, Match: func(ri prismtest.RequestInfo) bool {
		if ri.Kind != prismtest.KindImport {
			return false
		}
		if _, ok := order[ri.IdempotencyKey]; !ok {
			order[ri.IdempotencyKey] = len(order) + 1
		}
		return order[ri.IdempotencyKey] == 4
	}})
	sy := e.syncer(m)
	sy.MaxInflight = 4
	if _, err := sy.Once(ctx); err == nil {
		t.Fatal("pass succeeded although the API refused a batch")
	}
	st, err := e.store.Load(ctx, "people")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := e.store.Pending(ctx, "people")
	if err != nil {
		t.Fatal(err)
	}
	// The refused batch and those behind it stay journaled; everything
	// before it is committed, nothing after it.
	if len(pending) == 0 {
		t.Fatalf("checkpoint after a failure with 4 in flight = %+v, and nothing journaled: the refused batch is gone", st.Position)
	}
	if !pending[0].From.Equal(st.Position) {
		t.Fatalf("checkpoint after a failure with 4 in flight = %+v; the oldest journaled batch starts at %+v: want the checkpoint at the refused batch's start",
			st.Position, pending[0].From)
	}
	if st.Exists {
		if k := st.Position.Key[0]; k != "100" && k != "200" && k != "300" {
			t.Fatalf("checkpoint %+v, want the end of one of the first three batches", st.Position)
		}
	}
	sy = e.syncer(m)
	sy.MaxInflight = 4
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Resumed == 0 {
		t.Fatalf("summary %+v: the journaled batches were not settled", sum)
	}
	e.checkFake()
	if got := e.fake.Stats().Creates; got != 2000 {
		t.Fatalf("fake created %d records, want exactly 2000", got)
	}
}

// A body the API refuses as too large is split in halves until it fits; the
// smaller size is kept for the rest of the pass.
func TestTooLargeBatchIsBisected(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{MaxBodyBytes: 6000})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, 'someone' || g || '@example.com', 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 400) g`)
	sy := e.syncer(mappingFor(t, 200, false))
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 400 {
		t.Fatalf("summary %+v: want 400 created", sum)
	}
	if got := e.fake.Stats().ByStatus[413]; got == 0 {
		t.Fatal("the fake never answered 413; the test does not exercise bisection")
	}
	e.checkFake()
}

// When most rows are refused (here: a slug the workspace does not have), the
// pass fails loudly instead of quietly rejecting everything; what was
// committed so far is recorded as rejects, so nothing is lost.
func TestRejectShareStopsThePass(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{KnownSlugs: map[string][]string{"organization": {"external_id", "name", "seats"}}})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, 'x' || g || '@example.com', 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 300) g`)
	sy := e.syncer(mappingFor(t, 50, false))
	sy.MaxRejectShare = 0.5
	sum, err := sy.Once(ctx)
	var pe *connector.PermanentError
	var share *connector.RejectShareError
	if !errors.As(err, &pe) || !errors.As(err, &share) || share.Rejected != 50 || share.Rows != 50 || share.MaxShare != 0.5 {
		t.Fatalf("want a permanent error for 50 of 50 rows rejected, over the maximum share 0.5, got %v", err)
	}
	if sum.Batches != 1 || sum.Rejected != 50 {
		t.Fatalf("summary %+v: want the pass stopped after the first batch of 50 rejects", sum)
	}
	rs, err := e.store.(interface {
		Rejects(context.Context, string, int) ([]checkpoint.Reject, error)
	}).Rejects(ctx, "people", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 50 || rs[0].Code != "unknown_property" || len(rs[0].RowKey) != 1 || len(rs[0].Payload) == 0 {
		t.Fatalf("rejects %d, first %+v: want 50 unknown_property rejects with key and payload", len(rs), rs[0])
	}
}

// withBudget plans e's requests with the real budget over e's store, on
// clock: the client meters every request, as the daemon's does.
func (e *env) withBudget(t *testing.T, clock *prismtest.Clock, limit int, reserve budget.Reserve) *budget.Budget {
	t.Helper()
	b := budget.New(e.store, budget.Config{Limit: limit, Reserve: reserve, Now: clock.Now})
	c, err := prism.New(prism.Config{
		BaseURL: e.url, APIKey: "test-key", TeamID: e.team, RateLimit: -1,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Meter: b.Meter,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.api = c
	return b
}

func (e *env) requestsIn(month string) int {
	e.t.Helper()
	n, err := e.store.(interface {
		Requests(context.Context, string) (int, error)
	}).Requests(context.Background(), month)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// An explicit run stops cleanly when the month's budget cannot cover the
// next batch, makes no request beyond it, and delivers the rest when the
// month turns.
func TestBudgetExhaustedStopsSendingAndLosesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{SyncThreshold: 1000})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 500) g`)
	clock := prismtest.NewClock(time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC))
	// An unknown size is reserved as its POST and two polls: the first
	// batch takes the whole budget until its answer gives two back.
	bud := e.withBudget(t, clock, 3, budget.Reserve{})
	sy := e.syncer(mappingFor(t, 100, true))
	sy.Budget = bud
	_, err := sy.Once(ctx)
	var ee *budget.ExhaustedError
	if !errors.Is(err, budget.ErrExhausted) || !errors.As(err, &ee) || !ee.Resumes.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("want ErrExhausted resuming on January 1, got %v", err)
	}
	// Five batches need at least five requests: some went, not all. A
	// pass may stop while a reservation of a batch in flight is still
	// counted, so a later pass can use what its answer gave back; passes
	// keep sending until the budget is really spent, never beyond it.
	var requests int
	for pass := 1; ; pass++ {
		sent := len(e.fake.Records("organization"))
		if sent == 0 || sent == 500 || sent%100 != 0 {
			t.Fatalf("pass %d: fake has %d records: want some whole batches sent, not all", pass, sent)
		}
		if got, want := e.requestsIn("2026-12"), e.fake.Stats().Requests; got != want || got > 3 {
			t.Fatalf("pass %d: counted %d requests, Micro saw %d; want them equal and within the limit of 3", pass, got, want)
		}
		if pass > 1 && e.fake.Stats().Requests == requests {
			break // spent: this pass made no request
		}
		if pass > 4 {
			t.Fatalf("%d passes each still sent something", pass)
		}
		requests = e.fake.Stats().Requests
		if _, err := sy.Once(ctx); !errors.Is(err, budget.ErrExhausted) {
			t.Fatalf("pass %d: want ErrExhausted, got %v", pass+1, err)
		}
	}
	clock.Advance(12 * time.Hour) // January
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkFake()
	if e.requestsIn("2027-01") != e.fake.Stats().Requests-requests {
		t.Fatalf("January counted %d, Micro saw %d", e.requestsIn("2027-01"), e.fake.Stats().Requests-requests)
	}
}

// An explicit run (once) sends the partial batch at its end however far
// ahead of the month's pace the budget is: it never strands rows.
func TestExplicitRunsSendPartialBatches(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{SyncThreshold: 1000})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 250) g`)
	clock := prismtest.NewClock(time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC)) // far ahead of a linear pace
	bud := e.withBudget(t, clock, 1000, budget.DefaultReserve)
	sy := e.syncer(mappingFor(t, 100, true))
	sy.Budget = bud
	for pass := range 2 {
		sum, err := sy.Once(ctx)
		if err != nil || sum.Held != 0 {
			t.Fatalf("pass %d: %+v, %v: want nothing held", pass, sum, err)
		}
		e.checkFake()
		e.exec(`UPDATE people SET name = name || '!', updated_at = now() WHERE id % 50 = 0`)
	}
}

// The daemon sends full batches at once and holds a partial one for its
// turn; changes made meanwhile join it, and it goes out at the announced
// time.
func TestPacedPartialBatchWaitsForItsTurn(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{SyncThreshold: 1000})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 250) g`)
	clock := prismtest.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	bud := e.withBudget(t, clock, 1000, budget.Reserve{})
	sy := e.syncer(mappingFor(t, 100, true))
	sy.Budget, sy.Paced, sy.Interval = bud, true, time.Minute
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Batches != 2 || sum.Held != 50 || sum.NextSend.IsZero() {
		t.Fatalf("summary %+v: want 2 full batches sent and the partial 50 held", sum)
	}
	due := sum.NextSend
	// About 31 days / 998 requests left after the two sends.
	if pace := due.Sub(clock.Now()); pace < 40*time.Minute || pace > 50*time.Minute {
		t.Fatalf("next send in %s, want the month's pace of ~45m", pace)
	}
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-02-01' + g * interval '1 minute'
		FROM generate_series(251, 270) g`)
	clock.Advance(10 * time.Minute)
	if sum, err = sy.Once(ctx); err != nil || sum.Batches != 0 || sum.Held != 70 {
		t.Fatalf("pass before the turn: %+v (err %v): want the 70 rows held", sum, err)
	}
	clock.Advance(due.Sub(clock.Now()))
	requests := e.fake.Stats().Requests
	if sum, err = sy.Once(ctx); err != nil || sum.Batches != 1 || sum.Sent != 70 || sum.Held != 0 {
		t.Fatalf("pass at the turn: %+v (err %v): want one batch of the 70", sum, err)
	}
	if e.fake.Stats().Requests != requests+1 {
		t.Fatalf("the held batch cost %d requests, want 1", e.fake.Stats().Requests-requests)
	}
	e.checkFake()
}

// memFingerprints is an in-memory Fingerprints; the checkpoint stores'
// conformance suite tests the persistent ones.
type memFingerprints struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (f *memFingerprints) Fingerprints(_ context.Context, sync string, keys [][]string) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = f.m[sync+"\x00"+strings.Join(k, "\x00")]
	}
	return out, nil
}

func (f *memFingerprints) SaveFingerprints(_ context.Context, sync string, keys [][]string, sums [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range keys {
		f.m[sync+"\x00"+strings.Join(k, "\x00")] = sums[i]
	}
	return nil
}

func (f *memFingerprints) AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	return f.SaveFingerprints(ctx, sync, keys, sums)
}

func (f *memFingerprints) HasFingerprints(_ context.Context, sync string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.m {
		if strings.HasPrefix(k, sync+"\x00") {
			return true, nil
		}
	}
	return false, nil
}

func TestUnchangedRowsAreNotSentAgain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 300) g`)
	sy := e.syncer(mappingFor(t, 100, true))
	sy.Fingerprints = &memFingerprints{m: map[string][]byte{}}
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	// updated_at bumped on every row, but only 10 rows really changed.
	e.exec(`UPDATE people SET updated_at = now()`)
	e.exec(`UPDATE people SET seats = 99, updated_at = now() WHERE id <= 10`)
	before := e.fake.Stats()
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := e.fake.Stats()
	if sum.Rows != 300 || sum.Unchanged != 290 || sum.Sent != 10 || after.Rows-before.Rows != 10 {
		t.Fatalf("summary %+v, objects sent %d: want 300 read, 290 unchanged, 10 sent", sum, after.Rows-before.Rows)
	}
	e.checkFake()

	// Nothing changed at all: the whole pass sends nothing.
	e.exec(`UPDATE people SET updated_at = now()`)
	if sum, err = sy.Once(ctx); err != nil || sum.Unchanged != 300 || e.fake.Stats().Requests != after.Requests {
		t.Fatalf("summary %+v (err %v), requests %d: want everything skipped, no request", sum, err, e.fake.Stats().Requests-after.Requests)
	}
	// Force sends anyway.
	e.exec(`UPDATE people SET updated_at = now()`)
	sy.Force = true
	if sum, err = sy.Once(ctx); err != nil || sum.Sent != 300 {
		t.Fatalf("forced pass %+v (err %v): want all 300 sent", sum, err)
	}
}

// countingFingerprints counts the keys each method of memFingerprints got.
type countingFingerprints struct {
	memFingerprints
	looked, added, replaced int
}

func (c *countingFingerprints) Fingerprints(ctx context.Context, sync string, keys [][]string) ([][]byte, error) {
	c.looked += len(keys)
	return c.memFingerprints.Fingerprints(ctx, sync, keys)
}

func (c *countingFingerprints) AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	c.added += len(keys)
	return c.memFingerprints.SaveFingerprints(ctx, sync, keys, sums)
}

func (c *countingFingerprints) SaveFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	c.replaced += len(keys)
	return c.memFingerprints.SaveFingerprints(ctx, sync, keys, sums)
}

// The first pass of a sync has no fingerprints to find: it looks none up and
// adds the new ones (a store writes those without an upsert). Later passes
// look their rows up, add the keys that had none and replace the others.
func TestFirstPassLooksUpNoFingerprints(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 300) g`)
	sy := e.syncer(mappingFor(t, 100, true))
	fp := &countingFingerprints{memFingerprints: memFingerprints{m: map[string][]byte{}}}
	sy.Fingerprints = fp
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if fp.looked != 0 || fp.added != 300 || fp.replaced != 0 {
		t.Fatalf("first pass looked up %d keys, added %d, replaced %d; want 0, 300, 0", fp.looked, fp.added, fp.replaced)
	}
	e.exec(`UPDATE people SET seats = 2, updated_at = now() WHERE id <= 10`)
	e.exec(`INSERT INTO people VALUES (301, 'Org 301', NULL, 1, now())`)
	*fp = countingFingerprints{memFingerprints: memFingerprints{m: fp.m}}
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 11 || fp.looked != 11 || fp.added != 1 || fp.replaced != 10 {
		t.Fatalf("summary %+v; looked up %d keys, added %d, replaced %d; want 11, 1, 10", sum, fp.looked, fp.added, fp.replaced)
	}
	e.checkFake()
}

// A batch in which no row can be sent still moves the checkpoint and
// records every row as a reject.
func TestAllInvalidBatchCommitsRejects(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 30) g`)
	f, findings := mapping.Parse("t.yaml", []byte(`syncs:
  - name: people
    source: { table: people, key: [id], cursor: updated_at }
    target: { object: contact }
    batch_size: 10
    properties:
      email: { column: email, required: true }
`))
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	m, _ := f.Sync("people")
	sum, err := e.syncer(m).Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Invalid != 30 || sum.Batches != 3 || e.fake.Stats().Requests != 0 {
		t.Fatalf("summary %+v, requests %d: want 30 invalid in 3 committed batches, no request", sum, e.fake.Stats().Requests)
	}
	st, err := e.store.Load(ctx, "people")
	if err != nil || st.Position.Key[0] != "30" {
		t.Fatalf("checkpoint %+v (err %v): want the 30th row", st.Position, err)
	}
	n, err := e.store.CountRejects(ctx, "people")
	if err != nil || n != 30 {
		t.Fatalf("%d rejects (err %v), want 30", n, err)
	}
}

// Rejected rows are re-sent on request once their cause is fixed (here: the
// workspace learned the slug), without moving the checkpoint.
func TestRetryRejects(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{KnownSlugs: map[string][]string{"organization": {"external_id", "name", "seats"}}})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, CASE WHEN g % 10 = 0 THEN 'x' || g || '@example.com' END, 1,
		timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(1, 100) g`)
	// email is omitted when NULL, so only the 10 rows with an email use the unknown slug.
	f, findings := mapping.Parse("t.yaml", []byte(`syncs:
  - name: people
    source: { table: people, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id }
    batch_size: 100
    properties:
      external_id: id
      name: name
      seats: seats
      email: { column: email, omit_null: true }
`))
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	m, _ := f.Sync("people")
	sum, err := e.syncer(m).Once(ctx)
	if err != nil || sum.Rejected != 10 {
		t.Fatalf("summary %+v (err %v): want 10 rejected", sum, err)
	}
	before, err := e.store.Load(ctx, "people")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := e.store.Rejects(ctx, "people", 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]string, len(rs))
	for i, r := range rs {
		keys[i] = r.RowKey
	}
	keys = append(keys, []string{"999999"}) // a row deleted since: ignored

	// The cause is fixed: a fresh fake that knows every slug (records are
	// compared by what arrives there).
	e.fake.Reset()
	fixed := prismtest.New(prismtest.Options{})
	srv := httptest.NewServer(fixed)
	defer srv.Close()
	sy := e.syncer(m)
	sy.API = e.client(t, srv.URL, 0)
	sum, err = sy.Retry(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 10 || sum.Created != 10 || sum.Rejected != 0 {
		t.Fatalf("retry summary %+v: want the 10 rows created", sum)
	}
	if n, _ := e.store.CountRejects(ctx, "people"); n != 0 {
		t.Fatalf("%d rejects left after a successful retry", n)
	}
	after, err := e.store.Load(ctx, "people")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Position.Equal(before.Position) {
		t.Fatalf("retry moved the checkpoint: %v -> %v", before.Position, after.Position)
	}
	if n := len(fixed.Records("organization")); n != 10 {
		t.Fatalf("fixed API holds %d records, want 10", n)
	}
}

// The same race with an integer cursor fed by a sequence: a transaction
// takes its version number, later ones take larger numbers and commit
// first. The pass must not move past the open transaction's number.
func TestLateCommitIntegerCursor(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(`CREATE SEQUENCE people_version`)
	e.exec(`CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, email text, seats integer,
		version bigint NOT NULL DEFAULT nextval('people_version'))`)
	e.exec(`INSERT INTO people (id, name, seats) SELECT g, 'Org ' || g, 0 FROM generate_series(1, 100) g`)
	f, findings := mapping.Parse("t.yaml", []byte(`syncs:
  - name: people
    source: { table: people, key: [id], cursor: version }
    target: { object: organization, dedupe_by: external_id, update_existing: true }
    batch_size: 50
    properties: { external_id: id, name: name, email: email, seats: seats }
`))
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	m, _ := f.Sync("people")
	sy := e.syncer(m)
	if sum, err := sy.Once(ctx); err != nil || sum.Rows != 100 {
		t.Fatalf("first pass %+v, err %v", sum, err)
	}

	late, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if _, err := late.Exec(ctx, `UPDATE people SET seats = 555, version = nextval('people_version') WHERE id = 5`); err != nil {
		t.Fatal(err)
	}
	e.exec(`UPDATE people SET seats = 1, version = nextval('people_version') WHERE id BETWEEN 10 AND 19`)
	sum, err := sy.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 0 {
		t.Fatalf("pass read %d rows numbered after the open transaction's; the guard should hold them back", sum.Rows)
	}
	// A one-shot run in a fresh process (no marks) waits, then says why it
	// read nothing instead of exiting successfully.
	oneShot := e.syncer(m)
	oneShot.GuardWait, oneShot.Sleep = 300*time.Millisecond, nil
	if _, err := oneShot.Once(ctx); !errors.Is(err, connector.ErrHeldBack) {
		t.Fatalf("one-shot pass with a transaction open: %v, want ErrHeldBack", err)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if sum, err = sy.Once(ctx); err != nil || sum.Rows != 11 {
		t.Fatalf("after the commit: summary %+v, err %v; want the late row and the 10 behind it", sum, err)
	}
	e.checkFake()
}
