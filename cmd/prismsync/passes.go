package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
)

// passRecord is one pass as the run history and the alerts see it.
type passRecord struct {
	sync string
	run  checkpoint.Run
	err  error // explained; nil when the pass succeeded
}

// newPassRecord describes a pass of name that ran from start to end.
// The engine's summary does not know what the pass cost in requests: the
// meter counted that for the pass's context (countRequests).
func newPassRecord(name string, start, end time.Time, sum connector.Summary, requests int, err error) passRecord {
	r := checkpoint.Run{
		Started: start, Finished: end, OK: err == nil,
		Budget: sum.BudgetSpent || (err != nil && budgetOnly(err)),
		Rows:   sum.Rows, Sent: sum.Sent, Created: sum.Created, Updated: sum.Updated, Existing: sum.Existing,
		Unchanged: sum.Unchanged, Invalid: sum.Invalid, Rejected: sum.Rejected, Deferred: sum.Deferred,
		Deleted: sum.Deleted, Archived: sum.Archived, Restored: sum.Restored,
		Requests: requests, Checkpoint: sum.Position,
	}
	if err != nil {
		r.Error = err.Error()
	}
	return passRecord{sync: name, run: r, err: err}
}

// requestCount counts the API requests made under one context: the
// requests of one pass, however many goroutines the engine sends them from.
type requestCount struct{ n atomic.Int64 }

type requestCountKey struct{}

// countRequests returns a context whose API requests are counted in the
// returned requestCount.
func countRequests(ctx context.Context) (context.Context, *requestCount) {
	c := &requestCount{}
	return context.WithValue(ctx, requestCountKey{}, c), c
}

func (c *requestCount) load() int { return int(c.n.Load()) }

// countingMeter wraps the budget's meter (the client asks it before every
// HTTP attempt) so that each request that left this machine is also counted
// for the pass whose context it carries, exactly as the budget counts it.
func countingMeter(meter func(ctx context.Context) (func(int), error)) func(ctx context.Context) (func(int), error) {
	return func(ctx context.Context) (func(int), error) {
		done, err := meter(ctx)
		if err != nil {
			return nil, err
		}
		c, _ := ctx.Value(requestCountKey{}).(*requestCount)
		if c == nil {
			return done, nil
		}
		return func(wrote int) {
			c.n.Add(int64(wrote))
			done(wrote)
		}, nil
	}
}
