package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/internal/alert"
	"github.com/prismsync/prismsync/internal/sdnotify"
	"github.com/prismsync/prismsync/internal/telemetry"
)

// Intervals of the ops goroutines. The request count and the syncs' state
// are re-read from the store because other replicas change them too.
const (
	storeRefresh   = 30 * time.Second
	storeOpTimeout = 10 * time.Second
)

// opsOptions says what startOps starts besides the run-record writer and
// the refresh of the store-fed gauges.
type opsOptions struct {
	// endpoint serves the status page (/), /healthz, /readyz and /metrics
	// on HTTP_ADDR (empty disables it). A one-shot run serves none.
	endpoint bool
	// env reads sd_notify's NOTIFY_SOCKET and WATCHDOG_USEC (os.LookupEnv).
	env func(string) (string, bool)
	// progress, when set, is the scheduler's heartbeat: WATCHDOG=1 is
	// sent only while it beat within WatchdogSec (and while draining
	// after the first signal, which SHUTDOWN_TIMEOUT bounds).
	progress *sdnotify.Progress
}

// ops is what startOps started.
type ops struct {
	addr string // bound address of the HTTP endpoint; "" when none
	stop func() // ends the goroutines and flushes run records; idempotent
}

// startOps starts what operators and service managers watch while syncs
// run: the HTTP endpoint, sd_notify READY=1 (so call it once the syncs are
// about to start), STOPPING=1 when ctx ends, WATCHDOG=1 pings, and a writer
// that records each pass the app's observer saw in the checkpoint store for
// "prismsync status". It reads the app (the metrics and observer newApp
// built) and changes nothing in it.
//
// The endpoint keeps answering after ctx ends (while in-flight batches
// drain, /readyz says "shutting down"); stop ends it and flushes pending run
// records, so call it after the syncs have stopped.
func startOps(ctx context.Context, a *app, opt opsOptions) (*ops, error) {
	// A listener that fails is a configuration problem (port taken, bad
	// address) reported before anything else starts.
	var ln net.Listener
	if opt.endpoint && a.cfg.HTTPAddr != "" {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", a.cfg.HTTPAddr)
		if err != nil {
			return nil, &usageError{fmt.Errorf("HTTP_ADDR %s: %w", a.cfg.HTTPAddr, err)}
		}
		ln = l
	}

	// The ops goroutines outlive ctx (the first signal) until stop: the
	// endpoint must keep answering while batches drain.
	opsCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	o := &ops{}

	// The store-fed gauges are read once before the endpoint serves, so the
	// first scrape shows the store's values rather than zeros.
	refreshBudget(ctx, a)
	refreshSyncs(ctx, a)
	if ln != nil {
		o.addr = ln.Addr().String()
		h := withStatusPage(a, a.metrics.Handler(func(rctx context.Context) error { return a.ready(ctx, rctx) }))
		wg.Go(func() {
			if err := telemetry.ServeListener(opsCtx, ln, h); err != nil {
				a.log.Error("ops endpoint stopped", "err", err)
			}
		})
		a.log.Info("ops endpoint listening", "addr", o.addr, "paths", "/ /healthz /readyz /metrics")
	}

	wg.Go(func() { recordRuns(opsCtx, a) })
	if n := a.observer.alerts; n != nil {
		sctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
		seedAlerts(sctx, a, n)
		cancel()
		wg.Go(func() { n.Run(opsCtx) })
		a.log.Info("alerts on state changes", "webhook", alert.HostOf(a.cfg.AlertWebhookURL))
	}
	wg.Go(func() { refreshFromStore(opsCtx, a) })

	n := sdnotify.FromEnv(opt.env)
	if n.Enabled() {
		if err := n.Notify(ctx, sdnotify.Ready, fmt.Sprintf("STATUS=running %d sync(s)", len(a.syncs))); err != nil {
			a.log.Warn("sd_notify READY failed", "err", err)
		}
		if interval, ok := sdnotify.WatchdogInterval(opt.env); ok {
			wg.Go(func() {
				alive := func() bool {
					if ctx.Err() == nil && !opt.progress.Within(interval) {
						a.log.Warn("the scheduler made no progress within the watchdog interval; not pinging systemd", "interval", interval)
						return false
					}
					return true
				}
				n.RunWatchdog(opsCtx, interval, alive, func(err error) { a.log.Warn("sd_notify WATCHDOG failed", "err", err) })
			})
		}
	}
	var stopping sync.Once
	notifyStopping := func() {
		stopping.Do(func() {
			if err := n.Notify(context.Background(), sdnotify.Stopping, "STATUS=draining in-flight batches"); err != nil {
				a.log.Warn("sd_notify STOPPING failed", "err", err)
			}
		})
	}
	wg.Go(func() {
		select {
		case <-ctx.Done():
			notifyStopping()
		case <-opsCtx.Done():
		}
	})

	var once sync.Once
	o.stop = func() {
		once.Do(func() {
			notifyStopping()
			cancel()
			wg.Wait()
		})
	}
	return o, nil
}

// ready is the /readyz check: the daemon is not shutting down and both
// databases answer. Errors name what is wrong without any DSN.
func (a *app) ready(daemon, ctx context.Context) error {
	if daemon.Err() != nil {
		return errors.New("shutting down")
	}
	var errs []error
	if a.pool != nil {
		if err := a.pool.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("source database unreachable: %w", err))
		}
	}
	if a.store != nil {
		if _, err := a.store.Requests(ctx, budget.Month(time.Now())); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint store unreachable: %w", err))
		}
	}
	return errors.Join(errs...)
}

// refreshFromStore keeps the gauges that describe shared state at the
// store's values, which every replica reads alike: the request budget and
// each sync's checkpoint, last pass and rejects. It reads them every
// storeRefresh and right after each pass of this process, and stores the
// request counts an outage of the store held back.
func refreshFromStore(ctx context.Context, a *app) {
	t := time.NewTicker(storeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.observer.passed:
		}
		refreshBudget(ctx, a)
		refreshSyncs(ctx, a)
	}
}

func refreshBudget(ctx context.Context, a *app) {
	if a.store == nil || a.budget == nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	a.budget.Flush(qctx)
	s, err := a.budget.Snapshot(qctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Debug("reading the request budget failed", "err", err)
		}
		return
	}
	a.metrics.SetBudget(telemetry.Budget{Used: s.Used, Limit: s.Limit, Reserve: s.Reserve, Pace: s.Pace, NextSend: s.NextSend, Projected: s.Projected})
}

// refreshSyncs sets each sync's checkpoint, last pass, last success and
// rejects from one read of the store. Only the last pass is stored, so the
// last success is known from the store while that pass succeeded; the
// gauge keeps the latest success seen.
func refreshSyncs(ctx context.Context, a *app) {
	if a.store == nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	overviews, err := a.store.Overviews(qctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Debug("reading the syncs' state failed", "err", err)
		}
		return
	}
	states := make([]telemetry.SyncState, 0, len(overviews))
	for _, o := range overviews {
		st := telemetry.SyncState{Sync: o.Sync, Cursor: o.Position.Cursor, Rejects: o.Rejects, Deferred: o.Deferred}
		if o.HasRun {
			st.LastPass = o.LastRun.Finished
			if o.LastRun.OK {
				st.LastSuccess = o.LastRun.Finished
			}
		}
		states = append(states, st)
	}
	a.metrics.SetSyncStates(states)
}

// recordRuns writes the passes the app's observer queued until ctx ends,
// then the ones still queued.
func recordRuns(ctx context.Context, a *app) {
	write := func(rr runRecord) {
		if a.store == nil {
			return
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeOpTimeout)
		defer cancel()
		if err := a.store.RecordRun(wctx, rr.sync, rr.run, a.cfg.HistoryKeep); err != nil {
			a.log.Warn("recording the pass for status failed", "sync", rr.sync, "err", err)
		}
	}
	for {
		select {
		case rr := <-a.observer.runs:
			write(rr)
		case <-ctx.Done():
			for {
				select {
				case rr := <-a.observer.runs:
					write(rr)
				default:
					return
				}
			}
		}
	}
}
