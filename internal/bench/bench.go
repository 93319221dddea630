package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtemp"
	"github.com/prismsync/prismsync/mapping"
)

// Kinds of failure the caller tells apart with errors.Is (prismsync maps
// them to exit codes); an error of a kind reads as the error it marks.
var (
	// ErrUsage marks a bad argument to the fake API process.
	ErrUsage = errors.New("bench: bad argument")
	// ErrNoPostgres marks a throwaway PostgreSQL that could not start.
	ErrNoPostgres = errors.New("bench: no PostgreSQL")
)

type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// FakeAPICommand is the hidden subcommand the bench re-executes its binary
// with, so the fake API's memory (it keeps every record) is not counted in
// prismsync's peak RSS and its CPU shows up separately.
const FakeAPICommand = "bench-fake-api"

// Config is what one bench run does; prismsync bench's flags fill it.
type Config struct {
	Rows      int
	Batch     int
	Inflight  int
	Latency   time.Duration // fake's JobDuration
	FirstPoll time.Duration // 0: client default (or Latency/4 with Latency)
	MaxPoll   time.Duration // 0: client default
	RateLimit float64       // 0: client default; <0: off
	Threshold int           // fake's SyncThreshold
	Profile   string        // directory for pprof files; "" = none

	// Table is what is synced: Wide (the default) or Narrow.
	Table string
	// Index creates the index on (updated_at, id) the sync reads in the
	// order of; without it PostgreSQL sorts the window.
	Index bool
	// Fingerprints turns the engine's change fingerprints on, kept in the
	// checkpoint store, as FINGERPRINTS=true does.
	Fingerprints bool
	// Statements loads pg_stat_statements into the throwaway cluster and
	// reports the statements of the sync phase that took PostgreSQL the
	// most time: where its share of the CPU goes.
	Statements bool

	// Progress receives one line per phase; nil discards.
	Progress io.Writer

	// OpenPool opens the source pool; nil opens one with the session
	// settings the engine needs (connector.ConfigurePool). prismsync passes
	// the daemon's own, so the bench reads as the daemon does.
	OpenPool func(ctx context.Context, dsn string) (*pgxpool.Pool, error)
	// NewLogger builds the engine's and the client's logger on w (stderr,
	// made safe for the writes of the fake's output); nil logs warnings as
	// slog text.
	NewLogger func(w io.Writer) *slog.Logger
	// FakeCommand builds the command that serves the fake API; nil
	// re-executes this binary with FakeAPICommand, which the binary must
	// route to ServeFakeAPI. Tests point it at the test binary.
	FakeCommand func(ctx context.Context, args []string) (*exec.Cmd, error)
}

// Report is what one run measured.
type Report struct {
	Config Config

	// Statements are the sync phase's top statements (with
	// Config.Statements), most time first.
	Statements []Statement

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
	// FirstBatch is the time from the start of the pass to the first
	// commit: it includes settling the journal, describing the source and,
	// without an index, the sort of the window.
	FirstBatch time.Duration
	// BatchGaps are the times between one batch's commit and the next's,
	// sorted: a stall anywhere in the pipeline (a query, a store write, the
	// API) shows in the largest.
	BatchGaps []time.Duration
	// CopyPostgresCPU is the cluster's CPU time during the COPY.
	CopyPostgresCPU time.Duration

	FirstPoll, MaxPoll time.Duration // effective client settings
	RateLimit          float64       // effective, <0 = off

	Fake    FakeStats
	FakeCPU time.Duration
	FakeRSS int64
}

// FakeStats is what the fake API process reports when it exits.
type FakeStats struct {
	Requests     int `json:"requests"`
	Imports      int `json:"imports"`
	AsyncImports int `json:"async_imports"`
	Polls        int `json:"polls"`
	Rows         int `json:"rows"`
	Creates      int `json:"creates"`
	Records      int `json:"records"`
}

// Run runs the whole measurement, writing progress, the engine's warnings
// and the fake's stderr to stderr. Errors name the phase that failed; one
// that wraps ErrNoPostgres means this machine cannot run the bench.
func Run(ctx context.Context, c Config, stderr io.Writer) (*Report, error) {
	if c.Threshold == 0 { // a config built in code rather than from flags
		c.Threshold = prismtest.DefaultSyncThreshold
	}
	tab, err := tableOf(c.Table)
	if err != nil {
		return nil, err
	}
	if c.OpenPool == nil {
		c.OpenPool = openPool
	}
	if c.NewLogger == nil {
		c.NewLogger = newLogger
	}
	rep := &Report{Config: c}
	// The fake's stderr is copied by an exec goroutine while the logger and
	// progress lines write too; a *os.File copes, a buffer would not.
	if _, ok := stderr.(*os.File); !ok {
		lw := &lockedWriter{w: stderr}
		if c.Progress == stderr {
			c.Progress = lw
		}
		stderr = lw
	}
	progress := func(format string, args ...any) {
		if c.Progress != nil {
			fmt.Fprintf(c.Progress, "bench: "+format+"\n", args...)
		}
	}
	log := c.NewLogger(stderr)

	progress("starting a throwaway PostgreSQL")
	var opts pgtemp.Options
	if c.Statements {
		opts.Settings = map[string]string{"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
	}
	cluster, err := pgtemp.Start(ctx, opts)
	if err != nil {
		return nil, &kindError{ErrNoPostgres, err}
	}
	defer cluster.Stop()
	dsn, err := cluster.CreateDB(ctx, "bench")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	pool, err := c.OpenPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()

	progress("seeding %d rows of the %s table", c.Rows, tab.name)
	start := time.Now()
	if err := tab.seed(ctx, pool, c.Rows, c.Index); err != nil {
		return nil, err
	}
	rep.SeedDuration = time.Since(start)
	rep.SeedLoad = loadAverage()

	progress("measuring COPY ... TO STDOUT")
	if err := measureCopy(ctx, dsn, tab.copy, pool, rep); err != nil {
		return nil, err
	}
	rep.CopyLoad = loadAverage()

	progress("starting the fake API process")
	fake, err := startFakeAPI(ctx, c, stderr)
	if err != nil {
		return nil, err
	}
	defer fake.kill()

	mf, findings := mapping.Parse("bench-mapping.yaml", []byte(tab.mapping(c.Batch)))
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
	if c.Fingerprints {
		sy.Fingerprints = store
	}

	stopProfile, err := startProfile(c.Profile)
	if err != nil {
		return nil, err
	}
	progress("syncing %d rows (batch %d, inflight %d)", c.Rows, c.Batch, c.Inflight)
	rep.MaxRSSBefore, _ = maxRSS()
	if c.Statements {
		if err := resetStatements(ctx, pool); err != nil {
			return nil, err
		}
	}
	pg0, pgErr := clusterCPU(ctx, pool)
	stopHeap := watchHeap(c.Profile)
	cpu0 := cpuTime()
	obs.start()
	sum, err := sy.Once(ctx)
	rep.SyncCPU = cpuTime() - cpu0
	if pg1, err := clusterCPU(ctx, pool); err == nil && pgErr == nil {
		rep.PostgresCPU = pg1 - pg0
	}
	if c.Statements && err == nil {
		if rep.Statements, err = topStatements(ctx, pool, 10); err != nil {
			return nil, err
		}
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
	rep.FirstBatch, rep.BatchGaps = obs.gapsAfterFirst()

	progress("stopping the fake API")
	if err := fake.stop(rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// openPool is Config.OpenPool's default.
func openPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	connector.ConfigurePool(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return pool, nil
}

// newLogger is Config.NewLogger's default.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// lockedWriter serializes writes to a writer that is not safe for them.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
