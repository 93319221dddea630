package main

// The crash test of issue 4: the real binary, a real PostgreSQL, the fake API
// with random faults, a writer that keeps changing rows, and SIGKILL at
// random moments, many times. Afterwards a fault-free `prismsync once`
// catches up and every row must be in the fake exactly once with its latest
// values, with zero duplicate creations and zero idempotency conflicts.
//
// CI runs 15 kills per variant (about half a minute each). A soak runs the
// kill loop for as long as asked:
//
//	PRISMSYNC_SOAK=30m go test -run TestCrashKillLoop -timeout 0 ./cmd/prismsync/
//
// Every run logs its seed; PRISMSYNC_CRASH_SEED=<seed> replays the same
// fault and kill schedule (the interleaving with the daemon's own timing
// still varies).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
)

// binary builds prismsync into dir the first time it is called: subtests
// that are skipped (no PostgreSQL) never pay for the build.
type binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func (b *binary) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("go tool not found: %w", err)
			return
		}
		b.path = filepath.Join(b.dir, "prismsync")
		// The test runs in the package directory, so "." is this command.
		out, err := exec.Command(goTool, "build", "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("go build: %v", b.err)
	}
	return b.path
}

// faultGate injects a random transient fault into a share of the requests,
// drawn from its own seeded source, and can be switched off for the final
// catch-up (Options.FaultRate cannot be changed on a running fake).
type faultGate struct {
	fake *prismtest.Server
	rate float64
	on   atomic.Bool

	mu   sync.Mutex
	rng  *rand.Rand
	pool []prismtest.Fault
}

func (g *faultGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.on.Load() {
		g.mu.Lock()
		hit := g.rng.Float64() < g.rate
		f := g.pool[g.rng.IntN(len(g.pool))]
		g.mu.Unlock()
		if hit {
			// Aim the fault at this very request: one key (or one job's poll
			// path) is never in flight twice at once.
			method, path, key := r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")
			f.Match = func(ri prismtest.RequestInfo) bool {
				return ri.Method == method && ri.Path == path && ri.IdempotencyKey == key
			}
			g.fake.InjectFault(f)
		}
	}
	g.fake.ServeHTTP(w, r)
}

// crashWorld is one variant's database, fake API and configuration.
type crashWorld struct {
	t      *testing.T
	pool   *pgxpool.Pool
	fake   *prismtest.Server
	gate   *faultGate
	env    []string
	logDir string
	dedupe bool
}

// fatalf ends the test for a wrong end state.
func (w *crashWorld) fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf(format, args...)
}

const crashKey = "crash-test-key"

func newCrashWorld(t *testing.T, dedupe, jobFaults bool, seed int64) *crashWorld {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `
		CREATE TABLE people (
			id         bigint PRIMARY KEY,
			name       text NOT NULL,
			seats      integer NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now()
		);
		CREATE INDEX ON people (updated_at, id);
		INSERT INTO people (id, name, seats, updated_at)
		SELECT g, 'org ' || g, 0, timestamptz '2026-01-01' + g * interval '1 second'
		FROM generate_series(1, 500) g;`); err != nil {
		t.Fatal(err)
	}

	// Batches of 40 become async jobs (202 + polls), the short last page of
	// a pass is imported synchronously: both paths get killed.
	fake := prismtest.New(prismtest.Options{APIKey: crashKey, SyncThreshold: 30})
	faults := prismtest.TransientFaults()
	if jobFaults {
		// Jobs that end "failed" having written nothing: re-sending them
		// under a new attempt must not duplicate anything, even without
		// dedupe_by. (A job that wrote some rows before failing is a
		// duplicate risk only dedupe_by can cover; that is not tested here.)
		for range 3 {
			faults = append(faults, prismtest.Fault{Kind: prismtest.FaultFailJob, AppliedRows: 0})
		}
	}
	gate := &faultGate{fake: fake, rate: 0.2, rng: rand.New(rand.NewPCG(uint64(seed), 1)), pool: faults}
	gate.on.Store(true)
	srv := httptest.NewServer(gate)
	// Release hung requests before the listener waits for its handlers.
	t.Cleanup(func() { fake.Close(); srv.Close() })

	dir := t.TempDir()
	target := "{ object: organization }"
	if dedupe {
		target = "{ object: organization, dedupe_by: external_id, update_existing: true }"
	}
	mf := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(mf, []byte(`syncs:
  - name: people
    source: { table: public.people, key: [id], cursor: updated_at }
    target: `+target+`
    batch_size: 40
    properties:
      external_id: id
      name: name
      seats: seats
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"DATABASE_URL=" + dsn,
		"MICRO_API_KEY=" + crashKey,
		"MICRO_TEAM_ID=" + uuid.NewString(),
		"MICRO_BASE_URL=" + srv.URL,
		"MAPPING_FILE=" + mf,
		"SYNC_SCHEDULE=@every 1s",
		"MICRO_POLL_MIN=50ms",
		"MICRO_POLL_MAX=200ms",
		"MICRO_RATE_LIMIT=1000",
		"MICRO_MONTHLY_REQUESTS=0",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"HTTP_ADDR=", // no ops server: many daemons in a row would fight for its port
		"SHUTDOWN_TIMEOUT=5s",
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return &crashWorld{t: t, pool: pool, fake: fake, gate: gate, env: env, logDir: dir, dedupe: dedupe}
}

// writer keeps changing the table until stop is closed: new rows always, and
// with dedupe_by updates of existing rows too. (Without dedupe_by every send
// of a row is a create, so an update would rightly become a second record;
// that variant proves the journal alone prevents duplicate sends.)
func (w *crashWorld) writer(ctx context.Context, rng *rand.Rand, stop <-chan struct{}, done chan<- error) {
	next := int64(501)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			done <- nil
			return
		case <-tick.C:
		}
		var err error
		if w.dedupe && rng.IntN(3) > 0 {
			id := rng.Int64N(next-1) + 1
			_, err = w.pool.Exec(ctx, `UPDATE people SET name = 'org ' || id || ' v' || $2::text, seats = seats + 1,
				updated_at = clock_timestamp() WHERE id = $1`, id, strconv.Itoa(rng.IntN(1_000_000)))
		} else {
			n := int64(1 + rng.IntN(5))
			_, err = w.pool.Exec(ctx, `INSERT INTO people (id, name, seats, updated_at)
				SELECT g, 'new ' || g, 1, clock_timestamp() FROM generate_series($1::bigint, $2::bigint) g`, next, next+n-1)
			next += n
		}
		if err != nil {
			done <- fmt.Errorf("writer: %w", err)
			return
		}
	}
}

// daemon starts `prismsync run` with its output appended to a log file.
func (w *crashWorld) start(bin string, args ...string) (*exec.Cmd, *os.File) {
	w.t.Helper()
	logf, err := os.OpenFile(filepath.Join(w.logDir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		w.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s %s at %s\n", filepath.Base(bin), strings.Join(args, " "), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, args...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		w.t.Fatal(err)
	}
	return cmd, logf
}

// logTail returns the end of the daemon log for failure messages.
func (w *crashWorld) logTail() string {
	b, _ := os.ReadFile(filepath.Join(w.logDir, "daemon.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// duplicates counts external_ids held by more than one record.
func (w *crashWorld) duplicates() (dups int, example string) {
	seen := map[string]int{}
	for _, r := range w.fake.Records("organization") {
		id := fmt.Sprint(r.Properties["external_id"])
		seen[id]++
		if seen[id] == 2 {
			dups++
			example = id
		}
	}
	return dups, example
}

func TestCrashKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds the binary and SIGKILLs it many times")
	}
	soak := time.Duration(0)
	if s := os.Getenv("PRISMSYNC_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("PRISMSYNC_SOAK=%q: %v", s, err)
		}
		soak = d
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("PRISMSYNC_CRASH_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PRISMSYNC_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with PRISMSYNC_CRASH_SEED=%d)", seed, seed)
	bin := &binary{dir: t.TempDir()}
	for _, v := range []struct {
		name      string
		dedupe    bool
		jobFaults bool // also let import jobs end "failed"
	}{
		{name: "plain creates", dedupe: false},
		{name: "dedupe_by", dedupe: true},
		// Found the bug where a re-sent attempt stayed journaled and its
		// rows were created twice.
		{name: "plain creates with failed jobs", jobFaults: true},
	} {
		t.Run(v.name, func(t *testing.T) {
			// pgtest.NewDB skips when there is no PostgreSQL; building the
			// binary first would be wasted then.
			w := newCrashWorld(t, v.dedupe, v.jobFaults, seed)
			crashLoop(t, w, bin.get(t), seed, soak)
		})
	}
}

func crashLoop(t *testing.T, w *crashWorld, bin string, seed int64, soak time.Duration) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go w.writer(ctx, rand.New(rand.NewPCG(uint64(seed), 3)), stop, writerDone)
	stopWriter := sync.OnceValue(func() error { close(stop); return <-writerDone })
	t.Cleanup(func() { stopWriter() })

	const ciKills = 15
	deadline := time.Now().Add(soak)
	kills := 0
	for soak > 0 && time.Now().Before(deadline) || soak == 0 && kills < ciKills {
		cmd, logf := w.start(bin, "run")
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		wait := time.Duration(50+rng.IntN(751)) * time.Millisecond
		timer := time.NewTimer(wait)
		select {
		case err := <-exited:
			timer.Stop()
			logf.Close()
			t.Fatalf("daemon exited on its own after less than %s (%v); log:\n%s", wait, err, w.logTail())
		case <-timer.C:
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		err := <-exited
		logf.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("daemon did not die of SIGKILL: %v; log:\n%s", err, w.logTail())
		}
		kills++
		// Invariant at every instant, not only at the end: no external_id
		// is ever held by two records.
		if n, ex := w.duplicates(); n > 0 {
			w.fatalf(t, "after kill %d: %d external_ids have several records (e.g. %s); log:\n%s", kills, n, ex, w.logTail())
		}
		select {
		case err := <-writerDone:
			t.Fatalf("writer stopped: %v", err)
		default:
		}
	}
	if err := stopWriter(); err != nil {
		t.Fatal(err)
	}
	w.gate.on.Store(false)
	st := w.fake.Stats()
	t.Logf("%d kills; fake saw %d requests, %d faults, %d replays, %d imports before the catch-up",
		kills, st.Requests, st.Faults, st.Replays, st.Imports)
	if st.Imports == 0 {
		t.Fatalf("the daemon never got an import through in %d runs; log:\n%s", kills, w.logTail())
	}

	// Catch up without faults: settle what the last kill left, send the rest.
	cmd, logf := w.start(bin, "once")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("still running after 2m: %w", <-exited)
	}
	logf.Close()
	if err != nil {
		w.fatalf(t, "final `prismsync once` failed: %v; log:\n%s", err, w.logTail())
	}
	w.check(t)
}

// check compares the fake with the table and the fake's counters with the
// number of rows.
func (w *crashWorld) check(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	want := map[string][2]string{}
	rows, err := w.pool.Query(ctx, `SELECT id, name, seats FROM people`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var name string
		var seats int32
		if err := rows.Scan(&id, &name, &seats); err != nil {
			t.Fatal(err)
		}
		want[strconv.FormatInt(id, 10)] = [2]string{name, strconv.Itoa(int(seats))}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	recs := w.fake.Records("organization")
	count := map[string]int{}
	var problems bytes.Buffer
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 10 {
			fmt.Fprintf(&problems, format+"\n", args...)
		}
	}
	for _, r := range recs {
		id := fmt.Sprint(r.Properties["external_id"])
		count[id]++
		wv, ok := want[id]
		if !ok {
			report("record %s has external_id %s, which is not in the table", r.ID, id)
			continue
		}
		got := [2]string{fmt.Sprint(r.Properties["name"]), fmt.Sprint(r.Properties["seats"])}
		if got != wv {
			report("external_id %s: fake has %v, table has %v", id, got, wv)
		}
	}
	for id, n := range count {
		if n > 1 {
			report("external_id %s has %d records", id, n)
		}
	}
	for id := range want {
		if count[id] == 0 {
			report("row %s never arrived", id)
		}
	}
	st := w.fake.Stats()
	if st.Creates != len(want) {
		report("fake counted %d creations for %d rows", st.Creates, len(want))
	}
	if st.Conflicts != 0 {
		report("fake answered %d idempotency conflicts (409), want 0", st.Conflicts)
	}
	var journal int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM prismsync.journal`).Scan(&journal); err != nil {
		t.Fatal(err)
	}
	if journal != 0 {
		report("the journal still holds %d batches after a clean `once`", journal)
	}
	t.Logf("%d rows, %d records, %d creates, %d updates, %d replays, %d requests in all",
		len(want), len(recs), st.Creates, st.Updates, st.Replays, st.Requests)
	if bad > 0 {
		w.fatalf(t, "%d problems, first ones:\n%s\ndaemon log tail:\n%s", bad, problems.String(), w.logTail())
	}
}
