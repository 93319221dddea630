package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/internal/statuspage"
)

// withStatusPage serves the status page at GET / and everything else
// (/healthz, /readyz, /metrics) from rest, telemetry's handler.
func withStatusPage(a *app, rest http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", statuspage.Handler(a.statusPage, statuspage.Options{Logger: a.log}))
	mux.Handle("/", rest)
	return mux
}

// pagePasses is how many of the last passes the page lists, and how far
// back a sync's failures in a row are counted.
const (
	pagePasses   = 20
	pageFailures = 50
)

// statusPage reads what the status page shows from the store, which every
// replica shares, so each shows the same page. Text that leaves the
// process goes through the redactor.
func (a *app) statusPage(ctx context.Context) (statuspage.Page, error) {
	redact := a.cfg.redactor()
	now := time.Now()
	snap, err := a.budget.Snapshot(ctx)
	if err != nil {
		return statuspage.Page{}, fmt.Errorf("checkpoint store unreachable: %s", redact(err.Error()))
	}
	mapped := make([]string, len(a.syncs))
	for i, s := range a.syncs {
		mapped[i] = s.Name
	}
	rep, err := collectStatus(ctx, a.store, mapped, "", snap, now, a.cfg.DeferWarnAfter)
	if err != nil {
		return statuspage.Page{}, fmt.Errorf("read the checkpoint store: %s", redact(err.Error()))
	}
	page := statuspage.Page{GeneratedAt: now, Version: version()}
	for _, s := range rep.Syncs {
		runs, err := a.store.History(ctx, s.Name, pageFailures)
		if err != nil {
			return statuspage.Page{}, fmt.Errorf("read the run history: %s", redact(err.Error()))
		}
		row := statuspage.Sync{Name: s.Name, InMapping: s.InMapping, State: statuspage.Never, InFlight: s.InFlight,
			Rejected: s.Rejected, Deferred: s.Deferred, CheckpointError: redact(s.CheckpointError)}
		if cp := s.Checkpoint; cp != nil {
			row.Checkpoint = cp.Cursor
			if len(cp.Key) > 0 {
				row.Checkpoint += " [" + strings.Join(cp.Key, ",") + "]"
			}
			if cp.AgeSeconds != nil {
				row.CheckpointAge, row.HasAge = time.Duration(*cp.AgeSeconds*float64(time.Second)), true
			}
		}
		if len(runs) > 0 {
			last := pagePass(runs[0], redact)
			row.LastPass, row.State = &last, runState(runs[0])
			for _, r := range runs {
				if r.OK || r.Budget {
					break
				}
				row.FailedPasses++
			}
		}
		page.Syncs = append(page.Syncs, row)
	}
	b := rep.Budget
	page.Budget = statuspage.Budget{Month: rep.Month, Used: b.Used, Limit: b.Limit, Left: b.Left, Reserve: b.Reserve,
		Pace: time.Duration(b.PaceSeconds) * time.Second, Projected: b.Projected,
		LastSend: orZero(b.LastSend), NextSend: orZero(b.NextSend), RunsOut: orZero(b.RunsOut)}
	for _, w := range b.Waiting {
		page.Budget.Waiting = append(page.Budget.Waiting, statuspage.WaitingSync{Sync: w.Sync, Since: w.Since, Rows: w.Rows})
	}
	runs, err := a.store.History(ctx, "", pagePasses)
	if err != nil {
		return statuspage.Page{}, fmt.Errorf("read the run history: %s", redact(err.Error()))
	}
	for _, r := range runs {
		page.Passes = append(page.Passes, pagePass(r, redact))
	}
	return page, nil
}

func pagePass(r checkpoint.Run, redact func(string) string) statuspage.Pass {
	return statuspage.Pass{Sync: r.Sync, Seq: r.Seq, Started: r.Started, Finished: r.Finished, Result: runResult(r),
		Error: redact(r.Error), Rows: r.Rows, Sent: r.Sent, Created: r.Created, Updated: r.Updated, Existing: r.Existing,
		Unchanged: r.Unchanged, Invalid: r.Invalid, Rejected: r.Rejected, Deferred: r.Deferred, Requests: r.Requests}
}

// orZero is the time t points to, or the zero time.
func orZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
