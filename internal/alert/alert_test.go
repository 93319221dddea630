package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a loopback webhook: it answers with the next status of
// script (200 when the script is done) and hands every body it received to
// got.
type receiver struct {
	mu     sync.Mutex
	script []int
	got    chan Event
	bodies []string
}

func newReceiver(t *testing.T, script ...int) (*receiver, string) {
	r := &receiver{script: script, got: make(chan Event, 100)}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL + "/hooks/T0KEN-secret?token=s3cret"
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	code := http.StatusOK
	if len(r.script) > 0 {
		code, r.script = r.script[0], r.script[1:]
	}
	r.bodies = append(r.bodies, string(body))
	r.mu.Unlock()
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		code = http.StatusBadRequest
	}
	w.WriteHeader(code)
	if code == http.StatusOK {
		var ev Event
		if err := json.Unmarshal(body, &ev); err == nil {
			r.got <- ev
		}
	}
}

func (r *receiver) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-r.got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no alert arrived")
		return Event{}
	}
}

// noWait records the backoff instead of waiting it.
type noWait struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *noWait) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func start(t *testing.T, o Options) *Notifier {
	t.Helper()
	n := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

func pass(sync, state string, minute int) Pass {
	p := Pass{Sync: sync, State: state, At: t0.Add(time.Duration(minute) * time.Minute), Message: "sync " + sync + " is " + state}
	if state == Failing {
		p.Error = "sync " + sync + ": import: 503"
	}
	return p
}

// One event per change of state, recovery included; repeated passes in
// the same state send nothing; each sync has its own state.
func TestEdgeTriggered(t *testing.T) {
	r, url := newReceiver(t)
	n := start(t, Options{URL: url, Host: "h1", Version: "v1"})
	for i, st := range []string{Healthy, Failing, Failing, Failing, Healthy, Healthy, Budget, Budget, Healthy} {
		n.Observe(pass("people", st, i))
	}
	n.Observe(pass("orgs", Failing, 20))
	want := []struct {
		sync, state, previous string
		minute, failed        int
	}{
		{"people", Failing, Healthy, 1, 1},
		{"people", Healthy, Failing, 4, 0},
		{"people", Budget, Healthy, 6, 0},
		{"people", Healthy, Budget, 8, 0},
		{"orgs", Failing, Healthy, 20, 1},
	}
	for _, w := range want {
		ev := r.next(t)
		if ev.Sync != w.sync || ev.State != w.state || ev.Previous != w.previous || !ev.At.Equal(t0.Add(time.Duration(w.minute)*time.Minute)) ||
			ev.FailedPasses != w.failed || ev.Host != "h1" || ev.Version != "v1" || ev.Message == "" {
			t.Errorf("event %+v, want %+v", ev, w)
		}
		if w.state == Failing && !strings.Contains(ev.Error, "503") {
			t.Errorf("failing event without its error: %+v", ev)
		}
	}
	// Nothing else: a later change arrives next, not a repeat.
	n.Observe(pass("orgs", Healthy, 21))
	if ev := r.next(t); ev.Sync != "orgs" || ev.State != Healthy {
		t.Errorf("after the expected events came %+v", ev)
	}
}

// A seeded state counts as the one before: after a restart a sync still
// failing sends nothing, one that recovers says so.
func TestSeed(t *testing.T) {
	r, url := newReceiver(t)
	n := start(t, Options{URL: url})
	n.Seed("people", Failing)
	n.Seed("orgs", Failing)
	n.Observe(pass("people", Failing, 1))
	n.Observe(pass("orgs", Healthy, 2))
	if ev := r.next(t); ev.Sync != "orgs" || ev.State != Healthy || ev.Previous != Failing {
		t.Errorf("first event %+v, want orgs healthy after failing", ev)
	}
}

// 5xx, 429 and network errors are retried with doubling backoff, the same
// event each time and delivered once; other 4xx are not retried.
func TestRetries(t *testing.T) {
	r, url := newReceiver(t, 503, 429, 500)
	s := &noWait{}
	n := start(t, Options{URL: url, Sleep: s.sleep})
	n.Observe(pass("people", Failing, 1))
	ev := r.next(t)
	if ev.State != Failing {
		t.Fatalf("delivered %+v", ev)
	}
	r.mu.Lock()
	bodies := r.bodies
	r.mu.Unlock()
	if len(bodies) != 4 || bodies[0] != bodies[3] {
		t.Errorf("%d attempts, want 4 with the same body:\n%s", len(bodies), strings.Join(bodies, "\n"))
	}
	s.mu.Lock()
	if got := s.delays; len(got) != 3 || got[0] != time.Second || got[1] != 2*time.Second || got[2] != 4*time.Second {
		t.Errorf("backoff %v, want 1s 2s 4s", got)
	}
	s.mu.Unlock()

	r2, url2 := newReceiver(t, 404)
	s2 := &noWait{}
	n2 := start(t, Options{URL: url2, Sleep: s2.sleep})
	n2.Observe(pass("people", Failing, 1))
	n2.Observe(pass("people", Healthy, 2))
	if ev := r2.next(t); ev.State != Healthy {
		t.Errorf("after a 404 the next event is %+v", ev)
	}
	s2.mu.Lock()
	if len(s2.delays) != 0 {
		t.Errorf("a 404 was retried: %v", s2.delays)
	}
	s2.mu.Unlock()

	// Attempts are bounded.
	r3, url3 := newReceiver(t, 503, 503, 503, 503, 503)
	s3 := &noWait{}
	n3 := start(t, Options{URL: url3, Sleep: s3.sleep, MaxAttempts: 3})
	n3.Observe(pass("people", Failing, 1)) // three 503s: given up
	n3.Observe(pass("people", Healthy, 2)) // two 503s, then delivered
	if ev := r3.next(t); ev.State != Healthy {
		t.Errorf("after giving up, delivered %+v", ev)
	}
	s3.mu.Lock()
	if len(s3.delays) != 4 {
		t.Errorf("backoff %v, want 1s 2s for each event", s3.delays)
	}
	s3.mu.Unlock()
}

// A pass never waits for the webhook: with the receiver hanging, Observe
// returns at once, and a full queue drops (and counts) changes instead.
func TestObserveNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	n := start(t, Options{URL: srv.URL, QueueSize: 4, FlushTimeout: time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			st := Healthy
			if i%2 == 0 {
				st = Failing
			}
			n.Observe(pass("people", st, i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe blocked behind a hanging webhook")
	}
	if n.Dropped() < 1000-4-1 {
		t.Errorf("%d changes dropped, want all but the queue's 4 and the one in flight", n.Dropped())
	}
}

// Secrets are redacted before they are queued; errors while delivering
// name the webhook by its host only.
func TestNoSecrets(t *testing.T) {
	r, url := newReceiver(t)
	n := start(t, Options{URL: url, Redact: func(s string) string { return strings.ReplaceAll(s, "hunter2", "[redacted]") }})
	n.Observe(Pass{Sync: "people", State: Failing, At: t0, Message: "sync people failed: password hunter2", Error: "auth hunter2"})
	ev := r.next(t)
	if strings.Contains(ev.Message+ev.Error, "hunter2") || !strings.Contains(ev.Error, "[redacted]") {
		t.Errorf("event carries the secret: %+v", ev)
	}
	_, err := New(Options{URL: "http://127.0.0.1:1/hooks/T0KEN?token=s3cret"}).attempt(context.Background(), ev)
	if err == nil || strings.Contains(err.Error(), "T0KEN") || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("delivery error %v, want the host without path or query", err)
	}
}

// What is queued when Run stops still gets its attempt: a one-shot run's
// last change is not lost.
func TestFlushOnStop(t *testing.T) {
	r, url := newReceiver(t)
	n := New(Options{URL: url})
	n.Observe(pass("people", Failing, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Run(ctx) // returns after the flush
	if ev := r.next(t); ev.State != Failing {
		t.Errorf("flushed %+v", ev)
	}
}

// A delivery under way when Run stops is let finish, not cut short and
// sent again by the flush: the receiver gets the change once.
func TestStopDuringDelivery(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release
		}
	}))
	defer srv.Close()
	n := New(Options{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	n.Observe(pass("people", Failing, 1))
	<-entered
	cancel()
	close(release)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if requests != 1 {
		t.Errorf("the receiver got %d requests for one change", requests)
	}
}
