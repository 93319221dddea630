package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/internal/sdnotify"
	"github.com/prismsync/prismsync/mapping"
)

const runHelp = `Usage: prismsync run

Runs every sync on its cron schedule (the mapping's schedule, else
SYNC_SCHEDULE) until SIGINT or SIGTERM. Each sync makes a first pass at
start, and never overlaps itself: a tick that finds the previous pass still
running is skipped. On the first signal prismsync stops scheduling and gives
the in-flight batch SHUTDOWN_TIMEOUT to finish (abandoning it otherwise,
without advancing the checkpoint), then exits 0. A second signal exits at once.

Example:
  DATABASE_URL=postgres://... MICRO_API_KEY=... MICRO_TEAM_ID=... prismsync run
`

func runDaemon(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", runHelp, stdout, stderr)
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	a, err := newApp(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	// The watchdog pings only while the scheduler dispatches its jobs: a
	// heartbeat job of its own, every few seconds, well within WatchdogSec.
	hb := heartbeat{every: 5 * time.Second, progress: sdnotify.NewProgress(time.Now)}
	if interval, ok := sdnotify.WatchdogInterval(os.LookupEnv); ok {
		hb.every = min(hb.every, interval/4)
	}
	o, err := startOps(ctx, a, opsOptions{endpoint: true, env: os.LookupEnv, progress: hb.progress})
	if err != nil {
		return err
	}
	defer o.stop()
	reconcile := func(ctx context.Context, sy *connector.Syncer) (connector.Summary, bool, error) {
		// The daemon never passes --yes: a refusal is logged, marks the
		// sync failing, and waits for an operator.
		return a.runReconcile(ctx, sy, connector.ReconcileOptions{})
	}
	return daemon(ctx, a.log, a.cfg.ShutdownTimeout, a.syncs, a.syncer, a.runPass, reconcile, hb)
}

// heartbeat is the scheduler's proof of progress for the watchdog: a job
// the scheduler runs every so often, and each sync's tick, beat progress.
type heartbeat struct {
	every    time.Duration
	progress *sdnotify.Progress // nil: no heartbeat
}

func (h heartbeat) beat() {
	if h.progress != nil {
		h.progress.Beat()
	}
}

// every is a cron schedule of a fixed period; cron's own rounds to seconds.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// passFunc runs one pass of a sync; held is false when another replica
// holds the sync's lease.
type passFunc func(ctx context.Context, sy *connector.Syncer) (sum connector.Summary, held bool, err error)

// daemon schedules each sync until ctx ends. Work gets its own context, which
// is cancelled only SHUTDOWN_TIMEOUT after ctx ends, so an in-flight batch
// can finish and commit.
//
// Syncs pass in rounds: the first pass of every sync at start, then one
// round per tick of each schedule for the syncs that share it. A round runs
// the syncs level by level (mapping.Levels), the syncs of a level side by
// side: a sync others link to passes before them, so their links find the
// records it just committed.
//
// A sync with a reconcile: schedule also reconciles on it (nil reconcile:
// never), under the same lock as its passes, so the two never overlap.
func daemon(ctx context.Context, log *slog.Logger, grace time.Duration, syncs []*mapping.Sync, newSyncer func(*mapping.Sync) *connector.Syncer, runPass, reconcile passFunc, hb heartbeat) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopping := make(chan struct{})

	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	c := cron.New(cron.WithParser(parser))
	var wg sync.WaitGroup
	passes := make(map[*mapping.Sync]func(), len(syncs))
	bySchedule := map[string][]*mapping.Sync{}
	var specs []string
	for _, s := range syncs {
		sched, err := parser.Parse(s.Schedule)
		if err != nil {
			return &usageError{fmt.Errorf("sync %s: schedule %q: %w", s.Name, s.Schedule, err)}
		}
		sy := newSyncer(s)
		sy.Stopping = stopping
		// The daemon plans: partial batches wait for their turn in the
		// month's budget (explicit commands never do).
		sy.Paced, sy.Interval = true, interval(sched, time.Now())
		var mu sync.Mutex
		passes[s] = func() {
			hb.beat()
			if !mu.TryLock() {
				log.Warn("previous pass still running; skipping this tick", "sync", s.Name)
				return
			}
			defer mu.Unlock()
			select {
			case <-stopping:
				return
			default:
			}
			sum, held, err := runPass(work, sy)
			if !held && err == nil {
				// Another replica runs this sync; it takes over when that
				// one dies (its lease ends with its connection).
				log.Debug("sync held by another replica; skipping this tick", "sync", s.Name)
				return
			}
			logSummary(log, sum, err)
		}
		if s.Reconcile != "" && reconcile != nil {
			rsched, err := parser.Parse(s.Reconcile)
			if err != nil {
				return &usageError{fmt.Errorf("sync %s: reconcile %q: %w", s.Name, s.Reconcile, err)}
			}
			c.Schedule(rsched, cron.FuncJob(func() {
				hb.beat()
				select {
				case <-stopping:
					return
				default:
				}
				mu.Lock() // after the pass under way, never beside it
				defer mu.Unlock()
				sum, held, err := reconcile(work, sy)
				if !held && err == nil {
					return
				}
				if err != nil {
					log.Error("reconcile failed", "sync", s.Name, "gone", sum.Gone, "deleted", sum.Deleted, "err", err)
					return
				}
				log.Info("reconcile done", "sync", s.Name, "gone", sum.Gone, "deleted", sum.Deleted, "archived", sum.Archived, "batches", sum.Batches)
			}))
		}
		if _, ok := bySchedule[s.Schedule]; !ok {
			specs = append(specs, s.Schedule)
		}
		bySchedule[s.Schedule] = append(bySchedule[s.Schedule], s)
	}
	if hb.progress != nil && hb.every > 0 {
		c.Schedule(every(hb.every), cron.FuncJob(hb.beat))
	}
	round := func(ss []*mapping.Sync) {
		for _, level := range mapping.Levels(ss) {
			var lw sync.WaitGroup
			for _, s := range level {
				lw.Go(passes[s])
			}
			lw.Wait()
		}
	}
	for _, spec := range specs {
		sched, _ := parser.Parse(spec) // parsed above
		group := bySchedule[spec]
		c.Schedule(sched, cron.FuncJob(func() { round(group) }))
	}
	wg.Go(func() { round(syncs) })
	c.Start()
	log.Info("prismsync running", "syncs", len(syncs), "version", version())

	<-ctx.Done()
	log.Info("signal received: no new passes; waiting for in-flight batches", "timeout", grace)
	close(stopping)
	cronDone := c.Stop()
	allDone := make(chan struct{})
	go func() { wg.Wait(); <-cronDone.Done(); close(allDone) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-allDone:
	case <-timer.C:
		log.Warn("shutdown timeout: abandoning in-flight batches (the journal settles them on next start)")
		cancelWork()
		<-allDone
	}
	log.Info("prismsync stopped")
	return nil
}

// interval is the time between two runs of sched around now.
func interval(sched cron.Schedule, now time.Time) time.Duration {
	next := sched.Next(now)
	return sched.Next(next).Sub(next)
}
