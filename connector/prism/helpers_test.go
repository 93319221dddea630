package prism

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

const (
	testTeam = "3f2c1a9e-0b7d-4c55-9e1a-7a1d2b3c4d5e"
	testKey  = "sk-live-TOPSECRET-0123456789"
)

// recorded is one request as the test server saw it.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// server is a hand-written scripted API: each request consumes the next
// step; running out of steps fails the test (an unexpected extra request).
type server struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []recorded
	steps []http.HandlerFunc
}

func newServer(t *testing.T, steps ...http.HandlerFunc) *server {
	t.Helper()
	s := &server{t: t, steps: steps}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{r.Method, r.URL.EscapedPath(), r.Header.Clone(), body})
	var step http.HandlerFunc
	if len(s.steps) > 0 {
		step, s.steps = s.steps[0], s.steps[1:]
	}
	s.mu.Unlock()
	if step == nil {
		s.t.Errorf("unexpected request %d: %s %s", len(s.reqs), r.Method, r.URL.Path)
		http.Error(w, `{"code":"test","message":"no more steps"}`, http.StatusTeapot)
		return
	}
	step(w, r)
}

func (s *server) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// reply answers with status, JSON body and header pairs.
func reply(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// resetConn drops the TCP connection without an answer.
func resetConn(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	_ = conn.Close()
}

// fakeClock makes Sleep instant and records the requested delays; time
// advances by exactly what was slept.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestClient builds a client against s with a fake clock, no rate limit,
// debug logs captured in the returned buffer, and cfg tweaks applied.
func newTestClient(t *testing.T, s *server, tweak ...func(*Config)) (*Client, *fakeClock, *syncBuffer) {
	t.Helper()
	clk := newFakeClock()
	logs := &syncBuffer{}
	cfg := Config{
		BaseURL:   s.srv.URL,
		APIKey:    testKey,
		TeamID:    testTeam,
		RateLimit: -1,
		Sleep:     clk.Sleep,
		Now:       clk.Now,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		UserAgent: "prismsync/test",
	}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clk, logs
}

func testBody() []byte {
	return appendImportBody(nil, [][]byte{
		[]byte(`{"default":{"name":"Acme","domain":"acme.test"}}`),
		[]byte(`{"default":{"name":"Globex","domain":"globex.test"}}`),
	}, ImportOptions{DedupeBy: "domain", CaseInsensitive: true})
}

const syncOK = `{"job_id":null,"status":"complete","total":2,"processed":2,"succeeded":2,"failed":0,
"results":[{"input_index":0,"id":"a1","created":true,"existing":false},
{"input_index":1,"id":"b2","created":false,"existing":true,"updated":true}],"some_new_field":{"x":1}}`
