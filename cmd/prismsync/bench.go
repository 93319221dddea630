package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/bench"
)

const benchHelp = `Usage: prismsync bench [flags]

Measures prismsync on this machine: starts a throwaway PostgreSQL, seeds a
table, measures COPY ... TO STDOUT as the machine's ceiling, serves the fake
Micro import API from a separate process on loopback, syncs the table with
the real engine and client, and prints rows/s, the CPU of prismsync, of
PostgreSQL and of the fake per row, peak RSS and the API requests spent.
Nothing leaves this machine.

Flags:
  --table wide|narrow wide (default): ten columns of mixed types, with the
                      index on (updated_at, id). narrow: issue 12's job, five
                      columns (external_id, email, plan, score, active), no
                      index on (updated_at, id), change fingerprints on as
                      FINGERPRINTS=true, and unless given otherwise --batch
                      1000 --sync-threshold 1001 --rate-limit -1 (every
                      batch answered at once, no client-side limit)
  --index             create the index on (updated_at, id) (default: wide
                      yes, narrow no); --index=false for none
  --fingerprints      change fingerprints in the checkpoint store (default:
                      wide no, narrow yes)
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

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, help, err := benchConfig(args, stdout, stderr)
	if help || err != nil {
		return err
	}
	c.Progress = stderr
	c.OpenPool = openPool // the daemon's pool settings, and its exit codes
	c.NewLogger = func(w io.Writer) *slog.Logger { return newLogger(w, "warn", "auto") }
	rep, err := bench.Run(ctx, c, stderr)
	if errors.Is(err, bench.ErrNoPostgres) {
		return &unreachableError{err}
	}
	if err != nil {
		return err
	}
	rep.Print(stdout)
	return nil
}

// benchConfig reads bench's flags; help is true when --help was printed.
func benchConfig(args []string, stdout, stderr io.Writer) (c bench.Config, help bool, err error) {
	fs := newFlagSet("bench", benchHelp, stdout, stderr)
	fs.IntVar(&c.Rows, "rows", 1_000_000, "rows to seed")
	fs.IntVar(&c.Batch, "batch", 5000, "batch size")
	fs.IntVar(&c.Inflight, "inflight", 4, "batches in flight")
	fs.DurationVar(&c.Latency, "latency", 0, "async job duration in the fake")
	fs.DurationVar(&c.FirstPoll, "first-poll", 0, "client FirstPoll")
	fs.DurationVar(&c.MaxPoll, "max-poll", 0, "client MaxPollInterval")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "client rate limit, requests/s; -1 = off")
	fs.IntVar(&c.Threshold, "sync-threshold", prismtest.DefaultSyncThreshold, "fake's sync/async threshold, objects")
	fs.StringVar(&c.Profile, "profile", "", "directory for pprof files")
	fs.StringVar(&c.Table, "table", bench.Wide, "wide or narrow")
	fs.BoolVar(&c.Index, "index", true, "index on (updated_at, id)")
	fs.BoolVar(&c.Fingerprints, "fingerprints", false, "change fingerprints")
	fs.BoolVar(&c.Statements, "statements", false, "report PostgreSQL's top statements of the sync (pg_stat_statements)")
	if help, err := fs.parse(args); help || err != nil {
		return c, help, err
	}
	if c.Table == bench.Narrow {
		// The job's own defaults, for the flags not given.
		given := make(map[string]bool)
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, set := range map[string]func(){
			"batch":          func() { c.Batch = 1000 },
			"sync-threshold": func() { c.Threshold = 1001 },
			"rate-limit":     func() { c.RateLimit = -1 },
			"index":          func() { c.Index = false },
			"fingerprints":   func() { c.Fingerprints = true },
		} {
			if !given[name] {
				set()
			}
		}
	}
	switch {
	case c.Table != bench.Wide && c.Table != bench.Narrow:
		err = fmt.Errorf("bench: --table %q: want %s or %s", c.Table, bench.Wide, bench.Narrow)
	case c.Rows < 1:
		err = errors.New("bench: --rows must be at least 1")
	case c.Batch < 1 || c.Batch > 10000:
		err = errors.New("bench: --batch must be 1..10000 (the mapping's batch_size range)")
	case c.Inflight < 1:
		err = errors.New("bench: --inflight must be at least 1")
	case c.Threshold < 1:
		err = errors.New("bench: --sync-threshold must be at least 1")
	case c.Latency < 0 || c.FirstPoll < 0 || c.MaxPoll < 0:
		err = errors.New("bench: durations must not be negative")
	}
	if err != nil {
		return c, false, &usageError{err}
	}
	return c, false, nil
}

// runBenchFakeAPI is the hidden command bench re-executes this binary with
// to serve the fake API from a process of its own.
func runBenchFakeAPI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := bench.ServeFakeAPI(ctx, args, stdin, stdout, stderr)
	if errors.Is(err, bench.ErrUsage) {
		return &usageError{err}
	}
	return err
}
