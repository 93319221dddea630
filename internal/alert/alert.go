package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// The states of a sync.
const (
	Healthy = "healthy" // its last pass succeeded
	Failing = "failing" // its last pass failed
	Budget  = "budget"  // the month's request budget stopped it or holds its rows
)

// Event is the JSON body POSTed to the webhook. Fields may be added, never
// renamed or removed.
type Event struct {
	Sync     string    `json:"sync"`
	State    string    `json:"state"`    // healthy, failing or budget
	Previous string    `json:"previous"` // the state before this change
	Message  string    `json:"message"`  // one line for a person
	At       time.Time `json:"at"`       // when the pass that changed it ended
	Error    string    `json:"error,omitempty"`
	// FailedPasses is the number of failed passes in a row (failing).
	FailedPasses int    `json:"failed_passes,omitempty"`
	Host         string `json:"host,omitempty"`
	Version      string `json:"version,omitempty"`
}

// Pass is what Observe is told after each pass of a sync.
type Pass struct {
	Sync  string
	State string // Healthy, Failing or Budget
	At    time.Time
	// Message says what happened, Error the error (redacted by Observe).
	Message, Error string
}

// Options configure a Notifier. URL is required.
type Options struct {
	URL    string
	Client *http.Client // default: a client with a 10 s timeout
	Logger *slog.Logger // default discards
	// Redact removes secrets from messages before they are queued.
	Redact func(string) string
	// Sleep waits between attempts (tests record the delays instead);
	// default a timer that ends early with ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxAttempts per event (default 8); QueueSize (default 64).
	MaxAttempts int
	QueueSize   int
	// FlushTimeout bounds the delivery of what is queued when Run's
	// context ends (default 5 s).
	FlushTimeout  time.Duration
	Host, Version string
}

// Notifier turns passes into state changes and delivers them.
type Notifier struct {
	o       Options
	queue   chan Event
	dropped atomic.Int64

	mu     sync.Mutex
	state  map[string]string
	failed map[string]int
}

// New returns a Notifier for o.URL.
func New(o Options) *Notifier {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.MaxAttempts < 1 {
		o.MaxAttempts = 8
	}
	if o.QueueSize < 1 {
		o.QueueSize = 64
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 5 * time.Second
	}
	return &Notifier{o: o, queue: make(chan Event, o.QueueSize), state: map[string]string{}, failed: map[string]int{}}
}

// Seed sets the state a sync is known to be in (read from the store at
// start, so a restart neither repeats a failure nor misses the recovery)
// without sending anything.
func (n *Notifier) Seed(sync, state string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state[sync] = state
}

// Observe records the state a pass left its sync in and queues an event
// when that state differs from the one before (a sync never seen counts as
// healthy). It never blocks: with the queue full the event is dropped and
// counted (Dropped). A nil Notifier ignores everything.
func (n *Notifier) Observe(p Pass) {
	if n == nil {
		return
	}
	n.mu.Lock()
	prev, ok := n.state[p.Sync]
	if !ok {
		prev = Healthy
	}
	n.state[p.Sync] = p.State
	if p.State == Failing {
		n.failed[p.Sync]++
	} else {
		n.failed[p.Sync] = 0
	}
	failed := n.failed[p.Sync]
	n.mu.Unlock()
	if p.State == prev {
		return
	}
	ev := Event{Sync: p.Sync, State: p.State, Previous: prev, Message: n.o.Redact(p.Message), At: p.At.UTC(),
		Error: n.o.Redact(p.Error), Host: n.o.Host, Version: n.o.Version}
	if p.State == Failing {
		ev.FailedPasses = failed
	}
	select {
	case n.queue <- ev:
	default:
		n.dropped.Add(1)
		n.o.Logger.Warn("alert queue full; dropping a state change", "sync", p.Sync, "state", p.State)
	}
}

// Dropped counts events dropped because the queue was full.
func (n *Notifier) Dropped() int64 { return n.dropped.Load() }

// Run delivers queued events in order until ctx ends, then gives what is
// still queued one attempt each within FlushTimeout.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case ev := <-n.queue:
			if !n.deliver(ctx, ev) {
				n.flush(ctx, &ev)
				return
			}
		case <-ctx.Done():
			n.flush(ctx, nil)
			return
		}
	}
}

// flush sends pending (an event whose retries ctx cut short, if any) and
// the queue, one attempt each, within FlushTimeout.
func (n *Notifier) flush(ctx context.Context, pending *Event) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.o.FlushTimeout)
	defer cancel()
	if pending != nil {
		if retry, err := n.attempt(fctx, *pending); err != nil {
			n.o.Logger.Warn("alert not delivered before shutdown", "sync", pending.Sync, "state", pending.State, "retryable", retry, "err", err)
		}
	}
	for {
		select {
		case ev := <-n.queue:
			if fctx.Err() != nil {
				n.o.Logger.Warn("alert not delivered before shutdown", "sync", ev.Sync, "state", ev.State)
				continue
			}
			if retry, err := n.attempt(fctx, ev); err != nil {
				n.o.Logger.Warn("alert not delivered before shutdown", "sync", ev.Sync, "state", ev.State, "retryable", retry, "err", err)
			}
		default:
			return
		}
	}
}

// deliver sends ev, retrying with backoff. It returns false when ctx ended
// before ev was delivered or given up on.
func (n *Notifier) deliver(ctx context.Context, ev Event) bool {
	// An attempt under way when ctx ends is not cut short (its answer
	// would be lost, and the flush would send the event twice); it gets
	// FlushTimeout more to finish.
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(n.o.FlushTimeout, cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	defer stop()
	delay := time.Second
	for attempt := 1; ; attempt++ {
		retry, err := n.attempt(actx, ev)
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case !retry || attempt >= n.o.MaxAttempts:
			n.o.Logger.Warn("alert not delivered; giving up", "sync", ev.Sync, "state", ev.State, "attempts", attempt, "err", err)
			return true
		}
		n.o.Logger.Debug("alert delivery failed; retrying", "sync", ev.Sync, "attempt", attempt, "in", delay, "err", err)
		if n.o.Sleep(ctx, delay) != nil {
			return false
		}
		delay = min(2*delay, 5*time.Minute)
	}
}

// attempt POSTs ev once; retry says whether another attempt may work.
func (n *Notifier) attempt(ctx context.Context, ev Event) (retry bool, err error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.o.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("alert: webhook %s: %w", hostOf(n.o.URL), errors.Unwrap(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "prismsync/"+n.o.Version)
	resp, err := n.o.Client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, fmt.Errorf("alert: webhook %s: %w", hostOf(n.o.URL), err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drained for keep-alive only
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("alert: webhook %s answered %s", hostOf(n.o.URL), resp.Status)
	default:
		return false, fmt.Errorf("alert: webhook %s answered %s", hostOf(n.o.URL), resp.Status)
	}
}

// hostOf names a webhook by scheme and host: its path or query may be a
// secret (many services put the token there).
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// HostOf is hostOf for callers that log the webhook.
func HostOf(raw string) string { return hostOf(raw) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
