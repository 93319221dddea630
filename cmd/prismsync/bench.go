package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtemp"
	"github.com/prismsync/prismsync/mapping"
)

const benchHelp = `Usage: prismsync bench [flags]

Measures prismsync on this machine: starts a throwaway PostgreSQL, seeds a
10-column table, measures COPY ... TO STDOUT as the machine's ceiling, serves
the fake Micro import API from a separate process on loopback, syncs the
table with the real engine and client, and prints rows/s, peak RSS and the
API requests spent. Nothing leaves this machine.

Flags:
  --rows N            rows to seed (default 1000000)
  --batch N           batch_size of the sync, 1..10000 (default 5000)
  --inflight N        MAX_INFLIGHT: batches in flight at once (default 4)
  --latency D         how long each async job stays "processing" in the fake
                      (e.g. 1s); adds the latency-bound ceiling to the report
  --first-poll D      the client's FirstPoll (default: the client's 2s; with
                      --latency, latency/4 so a 1s job is not polled at 2s)
  --max-poll D        the client's MaxPollInterval (default: the client's 30s)
  --rate-limit R      client-side requests/second; -1 = off
                      (default: the client's 10/s)
  --sync-threshold N  imports of fewer objects complete synchronously in the
                      fake, without a poll (default 100, the threshold Micro
                      documented until 2026-05-20; today's is not published)
  --profile DIR       write cpu.pprof and allocs.pprof of the sync phase to DIR
`

// benchFakeAPICommand is the hidden subcommand the bench re-executes itself
// with, so the fake API's memory (it keeps every record) is not counted in
// prismsync's peak RSS and its CPU shows up separately.
const benchFakeAPICommand = "bench-fake-api"

// benchConfig is what one bench run does; flags fill it.
type benchConfig struct {
	Rows      int
	Batch     int
	Inflight  int
	Latency   time.Duration // fake's JobDuration
	FirstPoll time.Duration // 0: client default (or Latency/4 with Latency)
	MaxPoll   time.Duration // 0: client default
	RateLimit float64       // 0: client default; <0: off
	Threshold int           // fake's SyncThreshold
	Profile   string        // directory for pprof files; "" = none

	// fakeCommand builds the command that serves the fake API; nil re-executes
	// this binary. Tests point it at the test binary.
	fakeCommand func(ctx context.Context, args []string) (*exec.Cmd, error)
	// progress receives one line per phase; nil discards.
	progress io.Writer
}

// benchReport is what one run measured.
type benchReport struct {
	Config benchConfig

	SeedDuration time.Duration
	SeedLoad     string

	CopyRows     int64
	CopyBytes    int64
	CopyDuration time.Duration
	CopyLoad     string

	Summary      connector.Summary
	SyncLoad     string
	MaxRSSBefore int64 // bytes, peak RSS before the sync phase
	MaxRSS       int64 // bytes, peak RSS of this process at the end
	SyncCPU      time.Duration
	// PeakLiveHeap is the largest heap left live after a GC during the
	// sync: what the engine holds, without the GC's headroom (GOGC) that
	// RSS also contains.
	PeakLiveHeap int64
	// PostgresCPU is the CPU time of the throwaway cluster's processes
	// during the sync (0 when /proc cannot tell).
	PostgresCPU time.Duration

	Requests    int64 // HTTP attempts counted by prism.Config.OnRequest
	Imports     int64
	Polls       int64
	AsyncJobs   int64 // imports answered 202
	Retries     int64 // attempts after the first of one request
	FailedCalls int64 // attempts without a 2xx answer
	// BatchTime is the mean time from POST to a completed job, over batches.
	BatchTime time.Duration

	FirstPoll, MaxPoll time.Duration // effective client settings
	RateLimit          float64       // effective, <0 = off

	Fake    fakeStats
	FakeCPU time.Duration
	FakeRSS int64
}

// fakeStats is what the fake API process reports when it exits.
type fakeStats struct {
	Requests     int `json:"requests"`
	Imports      int `json:"imports"`
	AsyncImports int `json:"async_imports"`
	Polls        int `json:"polls"`
	Rows         int `json:"rows"`
	Creates      int `json:"creates"`
	Records      int `json:"records"`
}

func runBench(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if cmd == benchFakeAPICommand {
		return runBenchFakeAPI(ctx, args, stdin, stdout, stderr)
	}
	fs := newFlagSet("bench", benchHelp, stderr)
	var c benchConfig
	fs.IntVar(&c.Rows, "rows", 1_000_000, "rows to seed")
	fs.IntVar(&c.Batch, "batch", 5000, "batch size")
	fs.IntVar(&c.Inflight, "inflight", 4, "batches in flight")
	fs.DurationVar(&c.Latency, "latency", 0, "async job duration in the fake")
	fs.DurationVar(&c.FirstPoll, "first-poll", 0, "client FirstPoll")
	fs.DurationVar(&c.MaxPoll, "max-poll", 0, "client MaxPollInterval")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "client rate limit, requests/s; -1 = off")
	fs.IntVar(&c.Threshold, "sync-threshold", prismtest.DefaultSyncThreshold, "fake's sync/async threshold, objects")
	fs.StringVar(&c.Profile, "profile", "", "directory for pprof files")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return &usageError{fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))}
	case c.Rows < 1:
		return &usageError{errors.New("bench: --rows must be at least 1")}
	case c.Batch < 1 || c.Batch > 10000:
		return &usageError{errors.New("bench: --batch must be 1..10000 (the mapping's batch_size range)")}
	case c.Inflight < 1:
		return &usageError{errors.New("bench: --inflight must be at least 1")}
	case c.Threshold < 1:
		return &usageError{errors.New("bench: --sync-threshold must be at least 1")}
	case c.Latency < 0 || c.FirstPoll < 0 || c.MaxPoll < 0:
		return &usageError{errors.New("bench: durations must not be negative")}
	}
	c.progress = stderr
	rep, err := bench(ctx, c, stderr)
	if err != nil {
		return err
	}
	rep.print(stdout)
	return nil
}

// bench runs the whole measurement. Errors name the phase that failed.
func bench(ctx context.Context, c benchConfig, stderr io.Writer) (*benchReport, error) {
	if c.Threshold == 0 { // a config built in code rather than from flags
		c.Threshold = prismtest.DefaultSyncThreshold
	}
	rep := &benchReport{Config: c}
	// The fake's stderr is copied by an exec goroutine while the logger and
	// progress lines write too; a *os.File copes, a buffer would not.
	if _, ok := stderr.(*os.File); !ok {
		lw := &lockedWriter{w: stderr}
		if c.progress == stderr {
			c.progress = lw
		}
		stderr = lw
	}
	progress := func(format string, args ...any) {
		if c.progress != nil {
			fmt.Fprintf(c.progress, "bench: "+format+"\n", args...)
		}
	}
	log := newLogger(stderr, "warn", "auto")

	progress("starting a throwaway PostgreSQL")
	cluster, err := pgtemp.Start(ctx, pgtemp.Options{})
	if err != nil {
		return nil, &unreachableError{err}
	}
	defer cluster.Stop()
	dsn, err := cluster.CreateDB(ctx, "bench")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	pool, err := openPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()

	progress("seeding %d rows", c.Rows)
	start := time.Now()
	if err := seedBenchTable(ctx, pool, c.Rows); err != nil {
		return nil, err
	}
	rep.SeedDuration = time.Since(start)
	rep.SeedLoad = loadAverage()

	progress("measuring COPY ... TO STDOUT")
	if err := measureCopy(ctx, dsn, rep); err != nil {
		return nil, err
	}
	rep.CopyLoad = loadAverage()

	progress("starting the fake API process")
	fake, err := startFakeAPI(ctx, c, stderr)
	if err != nil {
		return nil, err
	}
	defer fake.kill()

	mf, findings := mapping.Parse("bench-mapping.yaml", []byte(benchMapping(c.Batch)))
	if findings.HasErrors() {
		return nil, fmt.Errorf("bench mapping: %w", findings)
	}
	ms, _ := mf.Sync("bench")
	store, err := checkpoint.Open(ctx, "postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("bench: checkpoint store: %w", err)
	}
	defer store.Close()

	rep.FirstPoll, rep.MaxPoll, rep.RateLimit = c.FirstPoll, c.MaxPoll, c.RateLimit
	if rep.FirstPoll == 0 {
		rep.FirstPoll = prism.DefaultFirstPoll
		if c.Latency > 0 {
			// The client's 2s floor would double a 1s job: poll early and
			// let the client learn the job duration from there.
			rep.FirstPoll = min(prism.DefaultFirstPoll, max(c.Latency/4, 10*time.Millisecond))
		}
	}
	if rep.MaxPoll == 0 {
		rep.MaxPoll = prism.DefaultMaxPollInterval
	}
	if rep.RateLimit == 0 {
		rep.RateLimit = prism.DefaultRateLimit
	}
	var cnt requestCounter
	api, err := prism.New(prism.Config{
		BaseURL:         "http://" + fake.addr,
		APIKey:          "bench-" + uuid.NewString(),
		TeamID:          uuid.NewString(),
		RateLimit:       rep.RateLimit,
		FirstPoll:       rep.FirstPoll,
		MaxPollInterval: rep.MaxPoll,
		Logger:          log,
		OnRequest:       cnt.observe,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: client: %w", err)
	}
	var obs batchTimer
	sy := &connector.Syncer{
		Sync: ms, DB: pool, Store: store, API: api, Logger: log,
		MaxInflight: c.Inflight, Observer: &obs,
	}

	stopProfile, err := startProfile(c.Profile)
	if err != nil {
		return nil, err
	}
	progress("syncing %d rows (batch %d, inflight %d)", c.Rows, c.Batch, c.Inflight)
	rep.MaxRSSBefore, _ = maxRSS()
	pg0, pgErr := clusterCPU(ctx, pool)
	stopHeap := watchHeap(c.Profile)
	cpu0 := cpuTime()
	sum, err := sy.Once(ctx)
	rep.SyncCPU = cpuTime() - cpu0
	if pg1, err := clusterCPU(ctx, pool); err == nil && pgErr == nil {
		rep.PostgresCPU = pg1 - pg0
	}
	rep.PeakLiveHeap = stopHeap()
	rep.SyncLoad = loadAverage()
	rep.Summary = sum
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("bench: sync: %w", err)
	}
	if sum.Rows != c.Rows || sum.Sent != c.Rows {
		// Rates over a partial sync would be meaningless.
		return nil, fmt.Errorf("bench: the sync read %d and sent %d of %d rows", sum.Rows, sum.Sent, c.Rows)
	}
	rep.MaxRSS, _ = maxRSS()
	rep.Requests, rep.Imports, rep.Polls = cnt.total.Load(), cnt.imports.Load(), cnt.polls.Load()
	rep.AsyncJobs, rep.Retries, rep.FailedCalls = cnt.async.Load(), cnt.retries.Load(), cnt.failed.Load()
	rep.BatchTime = obs.mean()

	progress("stopping the fake API")
	if err := fake.stop(rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// benchMapping is ten properties over ten columns of mixed types; email
// goes through transforms as real mappings' do.
func benchMapping(batch int) string {
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

// seedBenchTable creates public.items and fills it with n rows generated in
// SQL. Keys and the sync index are built after the load (faster than
// maintaining them row by row); VACUUM ANALYZE sets hint bits and statistics
// so neither the COPY nor the sync pays for the first read of fresh tuples.
func seedBenchTable(ctx context.Context, pool *pgxpool.Pool, n int) error {
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
func measureCopy(ctx context.Context, dsn string, rep *benchReport) error {
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

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// requestCounter counts the client's HTTP attempts (prism.Config.OnRequest
// is called concurrently).
type requestCounter struct {
	total, imports, polls, async, retries, failed atomic.Int64
}

func (c *requestCounter) observe(ri prism.RequestInfo) {
	c.total.Add(1)
	switch ri.Op {
	case "import":
		c.imports.Add(1)
		if ri.Status == http.StatusAccepted {
			c.async.Add(1)
		}
	case "poll":
		c.polls.Add(1)
	}
	if ri.Attempt > 1 {
		c.retries.Add(1)
	}
	if ri.Status < 200 || ri.Status > 299 {
		c.failed.Add(1)
	}
}

// batchTimer is a connector.Observer that averages batch durations.
type batchTimer struct {
	mu    sync.Mutex
	n     int
	total time.Duration
}

func (b *batchTimer) PassFinished(connector.Summary, error) {}
func (b *batchTimer) InFlight(string, int)                  {}
func (b *batchTimer) BatchDone(_ string, r connector.BatchReport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.total += r.Duration
}

func (b *batchTimer) mean() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return 0
	}
	return b.total / time.Duration(b.n)
}

var _ connector.Observer = (*batchTimer)(nil)

// startProfile starts a CPU profile into dir and returns the function that
// stops it and writes the allocation profile next to it.
func startProfile(dir string) (func() error, error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: profile dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: profile: %w", err)
		}
		a, err := os.Create(filepath.Join(dir, "allocs.pprof"))
		if err != nil {
			return fmt.Errorf("bench: profile: %w", err)
		}
		if err := pprof.Lookup("allocs").WriteTo(a, 0); err != nil {
			a.Close()
			return fmt.Errorf("bench: profile: %w", err)
		}
		return a.Close()
	}, nil
}

// watchHeap samples the live heap (as of the last GC) until the returned
// function is called, which returns the peak. With a profile directory it
// also keeps the heap profile taken at the highest peak, which shows what
// the engine holds at its worst.
func watchHeap(dir string) func() int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak int64
	read := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		v := int64(sample[0].Value.Uint64())
		if v <= peak {
			return
		}
		peak = v
		if dir == "" {
			return
		}
		if f, err := os.Create(filepath.Join(dir, "heap.pprof")); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0) //nolint:errcheck // a diagnostic; the next peak rewrites it
			f.Close()
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak
	}
}

// maxRSS is this process's peak resident set size in bytes. Linux reports
// ru_maxrss in KiB (macOS in bytes; the bench targets Linux).
func maxRSS() (int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return int64(ru.Maxrss) * 1024, nil
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clusterCPU is the CPU time the PostgreSQL cluster behind pool has used:
// the postmaster's own and its reaped children's (cutime, cstime) plus that
// of its live children (backends, walwriter, checkpointer...). Linux only.
func clusterCPU(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	var backend int
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return 0, fmt.Errorf("bench: backend pid: %w", err)
	}
	st, err := procStat(backend)
	if err != nil {
		return 0, err
	}
	postmaster := st[1] // ppid
	pm, err := procStat(postmaster)
	if err != nil {
		return 0, err
	}
	ticks := pm[11] + pm[12] + pm[13] + pm[14]
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == postmaster {
			continue
		}
		if st, err := procStat(pid); err == nil && st[1] == postmaster {
			ticks += st[11] + st[12]
		}
	}
	// /proc reports in USER_HZ, which Linux fixes at 100 for user space.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// procStat returns the numeric fields of /proc/PID/stat after the command
// name, indexed from the state field (0) on: 1 is ppid, 11..14 utime, stime,
// cutime, cstime.
func procStat(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The command name is in parentheses and may contain anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	out := make([]int, 15)
	for j := 1; j < 15; j++ {
		fmt.Sscanf(f[j], "%d", &out[j]) //nolint:errcheck // a malformed field counts as 0
	}
	return out, nil
}

// loadAverage is the 1/5/15-minute load average, because other work on the
// machine skews every figure the bench prints.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// fakeProcess is the fake API running in its own process.
type fakeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	lines chan string // stdout lines after the address
	done  chan error  // cmd.Wait's result
}

const (
	fakeListenPrefix = "prismsync-bench-fake-api listening on "
	fakeStatsPrefix  = "prismsync-bench-fake-api stats "
)

func startFakeAPI(ctx context.Context, c benchConfig, stderr io.Writer) (*fakeProcess, error) {
	args := []string{"--addr", "127.0.0.1:0", "--job-duration", c.Latency.String(), "--sync-threshold", strconv.Itoa(c.Threshold)}
	newCmd := c.fakeCommand
	if newCmd == nil {
		newCmd = func(ctx context.Context, args []string) (*exec.Cmd, error) {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("bench: find own executable: %w", err)
			}
			return exec.CommandContext(ctx, exe, append([]string{benchFakeAPICommand}, args...)...), nil
		}
	}
	cmd, err := newCmd(ctx, args)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: fake API: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: fake API: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start fake API: %w", err)
	}
	p := &fakeProcess{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		// Other output (a test binary's "=== RUN") is skipped: only the
		// prefixed lines are the protocol.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, fakeListenPrefix); ok {
				addr <- a
			} else if strings.HasPrefix(line, fakeStatsPrefix) {
				p.lines <- line
			}
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case p.addr = <-addr:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("bench: fake API exited before listening: %v", err)
	case <-timer.C:
		p.kill()
		return nil, errors.New("bench: fake API did not report its address within 30s")
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// stop closes the fake's stdin (its signal to exit), reads the statistics
// it prints on the way out and its resource usage.
func (p *fakeProcess) stop(rep *benchReport) error {
	p.stdin.Close()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.lines = nil // wait for done
				continue
			}
			js := strings.TrimPrefix(line, fakeStatsPrefix)
			if err := json.Unmarshal([]byte(js), &rep.Fake); err != nil {
				return fmt.Errorf("bench: fake API stats: %w", err)
			}
		case err := <-p.done:
			p.done = nil
			if err != nil {
				return fmt.Errorf("bench: fake API: %w", err)
			}
			if st := p.cmd.ProcessState; st != nil {
				rep.FakeCPU = st.UserTime() + st.SystemTime()
				if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
					rep.FakeRSS = int64(ru.Maxrss) * 1024
				}
			}
			return nil
		case <-timer.C:
			p.kill()
			return errors.New("bench: fake API did not exit within 60s of its stdin closing")
		}
	}
}

func (p *fakeProcess) kill() {
	if p.cmd.ProcessState == nil && p.cmd.Process != nil {
		p.cmd.Process.Kill() //nolint:errcheck // best effort; it may have exited
	}
}

// runBenchFakeAPI serves prismtest on a loopback address until stdin
// closes. The parent holds the only write end of that pipe, so the fake also
// exits when the parent dies, however it dies.
func runBenchFakeAPI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(benchFakeAPICommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	jobDuration := fs.Duration("job-duration", 0, "how long async jobs stay processing")
	threshold := fs.Int("sync-threshold", prismtest.DefaultSyncThreshold, "imports with fewer objects run synchronously")
	if err := fs.Parse(args); err != nil {
		return &usageError{err}
	}
	if err := checkLoopback(*addr); err != nil {
		return &usageError{err}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("bench fake API: listen: %w", err)
	}
	fake := prismtest.New(prismtest.Options{SyncThreshold: *threshold, JobDuration: *jobDuration})
	defer fake.Close()
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintln(stdout, fakeListenPrefix+ln.Addr().String())

	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin) //nolint:errcheck // EOF or error: either way the parent is gone
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("bench fake API: serve: %w", err)
	}
	srv.Close()
	st := fake.Stats()
	js, err := json.Marshal(fakeStats{
		Requests: st.Requests, Imports: st.Imports, AsyncImports: st.AsyncImports, Polls: st.Polls,
		Rows: st.Rows, Creates: st.Creates, Records: fake.Count("organization"),
	})
	if err != nil {
		return fmt.Errorf("bench fake API: stats: %w", err)
	}
	fmt.Fprintln(stdout, fakeStatsPrefix+string(js))
	return nil
}

func gogc() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return "100"
}

// checkLoopback refuses any address but a loopback one: the fake accepts
// any API key and must never be reachable from the network.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: the fake API listens on loopback only (127.0.0.1 or [::1])", addr)
	}
	return nil
}

func (r *benchReport) print(w io.Writer) {
	c := r.Config
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	rate := func(n int64, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	s := r.Summary
	fmt.Fprintf(w, "prismsync bench: %d rows, batch %d, inflight %d, job latency %s, fake's sync threshold %d objects; %d CPUs, GOMAXPROCS %d, %s\n",
		c.Rows, c.Batch, c.Inflight, c.Latency, c.Threshold, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(w, "  seed           %d rows in %s                 (load avg %s)\n",
		c.Rows, r.SeedDuration.Round(time.Millisecond), r.SeedLoad)
	copyRate := rate(r.CopyRows, r.CopyDuration)
	fmt.Fprintf(w, "  COPY ceiling   %d rows, %s in %s = %.0f rows/s   (load avg %s)\n",
		r.CopyRows, mb(r.CopyBytes), r.CopyDuration.Round(time.Millisecond), copyRate, r.CopyLoad)
	e2e := rate(int64(s.Rows), s.Duration)
	ratio := 0.0
	if copyRate > 0 {
		ratio = e2e / copyRate
	}
	fmt.Fprintf(w, "  end to end     %d rows in %s = %.0f rows/s = %.3f of COPY   (load avg %s)\n",
		s.Rows, s.Duration.Round(time.Millisecond), e2e, ratio, r.SyncLoad)
	fmt.Fprintf(w, "                 sent %d · created %d · updated %d · invalid %d · rejected %d · batches %d · mean batch %s\n",
		s.Sent, s.Created, s.Updated, s.Invalid, s.Rejected, s.Batches, r.BatchTime.Round(time.Millisecond))
	polls := 0.0
	if r.AsyncJobs > 0 {
		polls = float64(r.Polls) / float64(r.AsyncJobs)
	}
	fmt.Fprintf(w, "  API requests   %d (%d imports, %d polls; %d async jobs, %.2f polls per async job; %d retries, %d non-2xx)\n",
		r.Requests, r.Imports, r.Polls, r.AsyncJobs, polls, r.Retries, r.FailedCalls)
	limit := "off"
	if r.RateLimit > 0 {
		limit = fmt.Sprintf("%g/s", r.RateLimit)
	}
	fmt.Fprintf(w, "  client         first poll %s, max poll interval %s, rate limit %s\n", r.FirstPoll, r.MaxPoll, limit)
	fmt.Fprintf(w, "  peak RSS       %s (prismsync's process only; %s before the sync phase). PostgreSQL and the fake API run in their own processes\n",
		mb(r.MaxRSS), mb(r.MaxRSSBefore))
	fmt.Fprintf(w, "  live heap      %s at most after a GC during the sync (GOGC %s lets the heap grow to about 1+GOGC/100 times that)\n",
		mb(r.PeakLiveHeap), gogc())
	perRow := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(1, s.Rows)) }
	fmt.Fprintf(w, "  CPU            prismsync %s in the sync phase (%.1f µs/row); PostgreSQL %s in the sync phase (%.1f µs/row); fake API %s over its life (%.1f µs/row, peak RSS %s)\n",
		r.SyncCPU.Round(time.Millisecond), perRow(r.SyncCPU), r.PostgresCPU.Round(time.Millisecond), perRow(r.PostgresCPU),
		r.FakeCPU.Round(time.Millisecond), perRow(r.FakeCPU), mb(r.FakeRSS))
	fmt.Fprintf(w, "  fake API saw   %d requests, %d imports (%d async), %d polls, %d objects, %d records stored\n",
		r.Fake.Requests, r.Fake.Imports, r.Fake.AsyncImports, r.Fake.Polls, r.Fake.Rows, r.Fake.Records)
	if r.AsyncJobs == 0 {
		// Synchronous imports wait for no poll: no latency bound applies.
		fmt.Fprintf(w, "  latency bound  none: every import completed synchronously (no job to wait for)\n")
		return
	}
	// Every job waits for its first poll: with an instant API that delay,
	// not the machine, bounds throughput.
	wait := max(c.Latency, r.FirstPoll)
	ceiling := float64(c.Inflight*c.Batch) / wait.Seconds()
	what := "job latency"
	if r.FirstPoll > c.Latency {
		what = "first poll delay"
	}
	fmt.Fprintf(w, "  latency bound  inflight × batch / %s = %d × %d / %s = %.0f rows/s; achieved %.0f%%\n",
		what, c.Inflight, c.Batch, wait, ceiling, 100*e2e/ceiling)
}
