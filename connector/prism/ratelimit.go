package prism

import (
	"context"
	"math"
	"sync"
	"time"
)

// windowLimiter lets at most n requests start in any window of length per:
// for the default 10/s, never an 11th request within one second of the
// 10th-last, which is the limit Micro documents.
//
// It replaced a token bucket (golang.org/x/time/rate). A token bucket holds
// to "n per second" in every window only with a burst of 1, which spaces all
// requests 100 ms apart: the POST that follows each poll (a job completes,
// its slot takes the next batch) then waited up to 100 ms, 5% of the
// throughput of a pipeline of 1 s jobs. A larger burst would allow up to
// burst+n requests within one second. The window allows bursts and keeps the
// documented count exactly.
type windowLimiter struct {
	n   int
	per time.Duration
	now func() time.Time

	mu   sync.Mutex
	last []time.Time // start times of the latest requests, at most n, oldest at next
	next int
}

// newRateLimiter returns a limiter for perSecond requests per second, or nil
// (no limit) for perSecond <= 0. A fractional rate is met with a longer
// window: 2.5/s is 2 per 800 ms, 0.5/s is 1 per 2 s.
func newRateLimiter(perSecond float64) *windowLimiter {
	if perSecond <= 0 || math.IsInf(perSecond, 1) {
		return nil
	}
	n := max(1, int(perSecond))
	per := time.Duration(float64(n) / perSecond * float64(time.Second))
	return &windowLimiter{n: n, per: per, now: time.Now}
}

// Wait blocks until a request may start, and counts it as started.
func (l *windowLimiter) Wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	for {
		d := l.reserve()
		if d <= 0 {
			return nil
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// reserve records a start now and returns 0, or returns how long to wait
// before the oldest of the last n starts leaves the window.
func (l *windowLimiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.last) < l.n {
		l.last = append(l.last, now)
		return 0
	}
	if d := l.last[l.next].Add(l.per).Sub(now); d > 0 {
		return d
	}
	l.last[l.next] = now
	l.next = (l.next + 1) % l.n
	return 0
}
