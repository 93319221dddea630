package prism

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestImportSync(t *testing.T) {
	s := newServer(t, reply(200, syncOK, "x-request-id", "req-1"))
	var infos []RequestInfo
	c, clk, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.OnRequest = func(_ context.Context, i RequestInfo) { infos = append(infos, i) }
	})
	body := testBody()
	job, err := c.Import(context.Background(), "organization", "key-1", body)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v2/prism/"+testTeam+"/organization/import" {
		t.Errorf("request = %s %s", r.Method, r.Path)
	}
	for h, want := range map[string]string{
		"X-Api-Key": testKey, "Idempotency-Key": "key-1",
		"Content-Type": "application/json", "User-Agent": "prismsync/test",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if !bytes.Equal(r.Body, body) {
		t.Errorf("body sent = %s, want %s", r.Body, body)
	}
	if job.ID != "" || job.Status != StatusComplete || job.Total != 2 || job.Succeeded != 2 || job.RequestID != "req-1" {
		t.Errorf("job = %+v", job)
	}
	if len(job.Results) != 2 || job.Results[1].ID != "b2" || !job.Results[1].Updated || !job.Results[0].Created {
		t.Errorf("results = %+v", job.Results)
	}
	if len(clk.Sleeps()) != 0 {
		t.Errorf("slept %v on a sync import", clk.Sleeps())
	}
	if len(infos) != 1 || infos[0].Op != "import" || infos[0].Status != 200 || infos[0].Attempt != 1 || infos[0].Err != nil {
		t.Errorf("OnRequest infos = %+v", infos)
	}
	// Waiting on a finished job costs nothing.
	same, err := c.Wait(context.Background(), job)
	if err != nil || same != job || len(s.requests()) != 1 {
		t.Errorf("Wait on terminal job: %v, %d requests", err, len(s.requests()))
	}
}

func TestImportAsyncWait(t *testing.T) {
	const jobPath = "/v2/prism/" + testTeam + "/imports/job-42"
	processing := `{"job_id":"job-42","status":"processing","total":2,"processed":1}`
	s := newServer(t,
		// Location points elsewhere on purpose: the body's job_id wins.
		reply(202, `{"job_id":"job-42","status":"processing","total":2}`, "Location", "/v2/prism/x/imports/WRONG"),
		reply(200, processing),
		reply(200, processing),
		reply(503, `{"message":"busy"}`), // a transient poll failure is retried inside Job
		reply(200, processing),
		reply(200, processing),
		reply(200, `{"job_id":"job-42","status":"complete","total":2,"results":[
			{"input_index":1,"id":"b","created":true},{"input_index":0,"id":"a","existing":true}],
			"expires_at":"2026-06-08T12:00:00Z"}`),
	)
	var infos []RequestInfo
	c, clk, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.FirstPoll = time.Second
		cfg.MaxPollInterval = 5 * time.Second
		cfg.BackoffBase = 100 * time.Millisecond
		cfg.OnRequest = func(_ context.Context, i RequestInfo) { infos = append(infos, i) }
	})
	job, err := c.Import(context.Background(), "organization", "key-async", testBody())
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if job.ID != "job-42" || job.Status != StatusProcessing || job.Terminal() {
		t.Fatalf("job = %+v", job)
	}
	done, err := c.Wait(context.Background(), job)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if done.Status != StatusComplete || done.Polls != 6 {
		t.Errorf("done = status %q polls %d, want complete 6", done.Status, done.Polls)
	}
	if !done.ExpiresAt.Equal(time.Date(2026, 6, 8, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("ExpiresAt = %v", done.ExpiresAt)
	}
	sleeps := clk.Sleeps()
	// Poll delays 1s, 2s, 4s, then the retry backoff of the 503 (75-100ms), then 5s (cap), 5s.
	if len(sleeps) != 6 || sleeps[0] != time.Second || sleeps[1] != 2*time.Second || sleeps[2] != 4*time.Second ||
		sleeps[3] < 75*time.Millisecond || sleeps[3] > 100*time.Millisecond ||
		sleeps[4] != 5*time.Second || sleeps[5] != 5*time.Second {
		t.Errorf("sleeps = %v", sleeps)
	}
	for i, r := range s.requests()[1:] {
		if r.Method != http.MethodGet || r.Path != jobPath || r.Header.Get("X-Api-Key") != testKey {
			t.Errorf("poll %d = %s %s", i, r.Method, r.Path)
		}
		if r.Header.Get("Idempotency-Key") != "" || len(r.Body) != 0 {
			t.Errorf("poll %d carries idempotency key or body", i)
		}
	}
	polls := 0
	for _, i := range infos {
		if i.Op == "poll" {
			polls++
		}
	}
	if polls != 6 {
		t.Errorf("OnRequest saw %d polls, want 6", polls)
	}
	rows, err := done.RowResults(2)
	if err != nil || rows[0].ID != "a" || rows[1].ID != "b" {
		t.Errorf("RowResults = %+v, %v", rows, err)
	}
}

func TestImportAsyncLocationOnlyAndLearning(t *testing.T) {
	s := newServer(t,
		reply(202, `{"status":"processing","total":150}`, "Location", "/v2/prism/"+testTeam+"/imports/from%2Dloc", "Retry-After", "3"),
		reply(200, `{"job_id":"from-loc","status":"processing","total":150}`),
		reply(200, `{"job_id":"from-loc","status":"failed","total":150,"error":{"code":"internal","message":"worker died"}}`),
		reply(202, `{"job_id":"second","status":"processing","total":150}`),
		reply(200, `{"job_id":"second","status":"complete","total":0}`),
		reply(202, `{"job_id":"third","status":"processing","total":300}`),
		reply(200, `{"job_id":"third","status":"processing","total":300}`),
		reply(200, `{"job_id":"third","status":"complete","total":0}`),
	)
	c, clk, _ := newTestClient(t, s, func(cfg *Config) { cfg.FirstPoll = time.Second; cfg.MaxPollInterval = 30 * time.Second })
	ctx := context.Background()
	job, err := c.Import(ctx, "contact", "k1", testBody())
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != "from-loc" {
		t.Fatalf("job id from Location = %q", job.ID)
	}
	done, err := c.Wait(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	// A job-level failure is a result, not a transport error.
	var je *JobError
	if done.Status != StatusFailed || !errors.As(done.Err(), &je) || je.Code != "internal" {
		t.Errorf("failed job = %+v, err %v", done, done.Err())
	}
	if _, err := done.RowResults(150); err == nil || !strings.Contains(err.Error(), "worker died") {
		t.Errorf("RowResults on failed job: %v", err)
	}
	// First poll honoured the 202's Retry-After (3s > FirstPoll), then 2s.
	if got := clk.Sleeps(); len(got) != 2 || got[0] != 3*time.Second || got[1] != 2*time.Second {
		t.Errorf("sleeps = %v", got)
	}
	// The first job of 150 rows took 5s; the next one of the same size is
	// first polled after exactly that.
	job2, err := c.Import(ctx, "contact", "k2", testBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, job2); err != nil {
		t.Fatal(err)
	}
	if got := clk.Sleeps(); len(got) != 3 || got[2] != 5*time.Second {
		t.Errorf("sleeps = %v, want learned first poll 5s", got)
	}
	// That poll found it done, so the estimate comes down by 10% of the
	// sample: (5s + 4.5s)/2 per 150 rows. A job twice the size waits twice
	// as long (9.5s); when it is still running, the next poll comes 1/8 of
	// that later instead of doubling.
	job3, err := c.Import(ctx, "contact", "k3", testBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, job3); err != nil {
		t.Fatal(err)
	}
	if got := clk.Sleeps(); len(got) != 5 || got[3] != 9500*time.Millisecond || got[4] != 9500*time.Millisecond/8 {
		t.Errorf("sleeps = %v, want 9.5s then 1.1875s", got)
	}
}

// With sub-second created_at/updated_at on a finished job, the next job's
// first poll comes at the server's own duration (plus 2%), however late the
// poll that found the first one done; whole-second stamps are ignored.
func TestLearningFromServerTimestamps(t *testing.T) {
	stamps := func(created, updated string) string {
		return `,"created_at":"` + created + `","updated_at":"` + updated + `"`
	}
	s := newServer(t,
		reply(202, `{"job_id":"a","status":"processing","total":100}`),
		reply(200, `{"job_id":"a","status":"processing","total":100}`),
		reply(200, `{"job_id":"a","status":"complete","total":0`+stamps("2026-01-01T00:00:00.250Z", "2026-01-01T00:00:01.750Z")+`}`),
		reply(202, `{"job_id":"b","status":"processing","total":200}`),
		reply(200, `{"job_id":"b","status":"complete","total":0`+stamps("2026-01-01T00:00:00Z", "2026-01-01T00:00:09Z")+`}`),
		reply(202, `{"job_id":"c","status":"processing","total":100}`),
		reply(200, `{"job_id":"c","status":"complete","total":0}`),
	)
	c, clk, _ := newTestClient(t, s, func(cfg *Config) { cfg.FirstPoll = time.Second; cfg.MaxPollInterval = 30 * time.Second })
	ctx := context.Background()
	for _, key := range []string{"k1", "k2", "k3"} {
		job, err := c.Import(ctx, "contact", key, testBody())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	// Job a: unknown yet, so 1s, then 2s (found done 3s in, though it ran
	// 1.5s). Job b (200 rows): 2 × 1.53s. Its whole-second stamps say 9s but
	// are not used: the poll found it done at once, so job c (100 rows)
	// waits (1.53s + 0.9 × 3.06s/2)/2.
	want := []time.Duration{time.Second, 2 * time.Second, 3060 * time.Millisecond, 1454 * time.Millisecond}
	got := clk.Sleeps()
	if len(got) != len(want) {
		t.Fatalf("sleeps = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sleep %d = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

// The first poll is timed from the 202, as durations are learned: time the
// caller spends between Import and Wait is not added to the wait.
func TestFirstPollCountsFromThe202(t *testing.T) {
	s := newServer(t,
		reply(202, `{"job_id":"a","status":"processing","total":100}`),
		reply(200, `{"job_id":"a","status":"complete","total":0,"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:01.500Z"}`),
		reply(202, `{"job_id":"b","status":"processing","total":100}`),
		reply(200, `{"job_id":"b","status":"complete","total":0}`),
	)
	c, clk, _ := newTestClient(t, s, func(cfg *Config) { cfg.FirstPoll = 2 * time.Second })
	ctx := context.Background()
	a, err := c.Import(ctx, "contact", "k1", testBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, a); err != nil {
		t.Fatal(err)
	}
	b, err := c.Import(ctx, "contact", "k2", testBody())
	if err != nil {
		t.Fatal(err)
	}
	clk.mu.Lock()
	clk.now = clk.now.Add(400 * time.Millisecond) // e.g. recording the job id
	clk.mu.Unlock()
	if _, err := c.Wait(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Job a ran 1.5s by its stamps: b is due 1.53s after its 202, 400ms of
	// which had passed when Wait began.
	if got := clk.Sleeps(); len(got) != 2 || got[1] != 1130*time.Millisecond {
		t.Errorf("sleeps = %v, want [2s 1.13s]", got)
	}
}

func TestRetries(t *testing.T) {
	clkStart := newFakeClock().Now()
	tests := []struct {
		name      string
		first     http.HandlerFunc
		wantSleep func(time.Duration) bool
	}{
		{"429 Retry-After seconds", reply(429, `{"code":"rate_limited"}`, "Retry-After", "7"),
			func(d time.Duration) bool { return d == 7*time.Second }},
		{"429 Retry-After HTTP date", reply(429, ``, "Retry-After", clkStart.Add(12*time.Second).Format(http.TimeFormat)),
			func(d time.Duration) bool { return d == 12*time.Second }},
		{"429 retry-after-ms wins", reply(429, ``, "retry-after-ms", "1500", "Retry-After", "9"),
			func(d time.Duration) bool { return d == 1500*time.Millisecond }},
		{"503 backoff", reply(503, `<html>bad gateway</html>`),
			func(d time.Duration) bool { return d >= 375*time.Millisecond && d <= 500*time.Millisecond }},
		{"408", reply(408, ``),
			func(d time.Duration) bool { return d >= 375*time.Millisecond && d <= 500*time.Millisecond }},
		{"connection reset", resetConn,
			func(d time.Duration) bool { return d >= 375*time.Millisecond && d <= 500*time.Millisecond }},
		{"truncated JSON on 200", reply(200, `{"job_id":null,"status":"comp`),
			func(d time.Duration) bool { return d >= 375*time.Millisecond && d <= 500*time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.first, reply(200, syncOK, "idempotent-replay", "true"))
			var statuses []int
			c, clk, logs := newTestClient(t, s, func(cfg *Config) {
				cfg.OnRequest = func(_ context.Context, i RequestInfo) { statuses = append(statuses, i.Status) }
			})
			body := testBody()
			job, err := c.Import(context.Background(), "organization", "same-key", body)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if !job.Replayed || job.Status != StatusComplete {
				t.Errorf("job = %+v", job)
			}
			reqs := s.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			for i, r := range reqs {
				if r.Header.Get("Idempotency-Key") != "same-key" {
					t.Errorf("attempt %d key = %q", i, r.Header.Get("Idempotency-Key"))
				}
				if !bytes.Equal(r.Body, body) {
					t.Errorf("attempt %d body differs: %s", i, r.Body)
				}
			}
			if got := clk.Sleeps(); len(got) != 1 || !tt.wantSleep(got[0]) {
				t.Errorf("sleeps = %v", got)
			}
			if len(statuses) != 2 || statuses[1] != 200 {
				t.Errorf("OnRequest statuses = %v", statuses)
			}
			if !strings.Contains(logs.String(), "retrying") {
				t.Errorf("no retry warning logged:\n%s", logs)
			}
		})
	}
}

func TestBackoffGrowsAndGivesUp(t *testing.T) {
	s := newServer(t, reply(500, ``), reply(502, ``), reply(503, ``), reply(504, `{"message":"upstream"}`, "x-request-id", "r-9"))
	c, clk, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.MaxAttempts = 4
		cfg.BackoffBase = time.Second
		cfg.BackoffMax = 3 * time.Second
	})
	_, err := c.Import(context.Background(), "organization", "k", testBody())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 504 || ae.RequestID != "r-9" {
		t.Fatalf("err = %v", err)
	}
	if IsPermanent(err) || !ae.Temporary() {
		t.Errorf("exhausted 5xx must not be permanent: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "prism: import: giving up after 4 attempts: HTTP 504") || strings.Count(err.Error(), "prism:") != 1 {
		t.Errorf("err = %v, want the operation named once, then the last answer", err)
	}
	sleeps := clk.Sleeps()
	bounds := [][2]time.Duration{{750 * time.Millisecond, time.Second}, {1500 * time.Millisecond, 2 * time.Second}, {2250 * time.Millisecond, 3 * time.Second}}
	if len(sleeps) != 3 {
		t.Fatalf("sleeps = %v", sleeps)
	}
	for i, b := range bounds {
		if sleeps[i] < b[0] || sleeps[i] > b[1] {
			t.Errorf("sleep %d = %v, want in %v", i, sleeps[i], b)
		}
	}
}

func TestMaxElapsedAndRetryAfterCap(t *testing.T) {
	t.Run("max elapsed", func(t *testing.T) {
		s := newServer(t, reply(429, ``, "Retry-After", "40"), reply(429, ``, "Retry-After", "40"))
		c, clk, _ := newTestClient(t, s, func(cfg *Config) { cfg.MaxElapsed = time.Minute })
		_, err := c.Import(context.Background(), "organization", "k", testBody())
		if err == nil || !strings.Contains(err.Error(), "would exceed") {
			t.Fatalf("err = %v", err)
		}
		if len(s.requests()) != 2 || len(clk.Sleeps()) != 1 {
			t.Errorf("requests %d sleeps %v", len(s.requests()), clk.Sleeps())
		}
	})
	t.Run("retry-after above cap", func(t *testing.T) {
		s := newServer(t, reply(429, `{"message":"monthly quota exceeded"}`, "Retry-After", "86400"))
		c, clk, _ := newTestClient(t, s)
		_, err := c.Import(context.Background(), "organization", "k", testBody())
		var ae *APIError
		if !errors.As(err, &ae) || ae.RetryAfter != 24*time.Hour {
			t.Fatalf("err = %v", err)
		}
		if len(clk.Sleeps()) != 0 {
			t.Errorf("slept %v", clk.Sleeps())
		}
	})
	t.Run("x-should-retry false", func(t *testing.T) {
		s := newServer(t, reply(503, ``, "x-should-retry", "false"))
		c, _, _ := newTestClient(t, s)
		if _, err := c.Import(context.Background(), "organization", "k", testBody()); err == nil {
			t.Fatal("want error")
		}
		if len(s.requests()) != 1 {
			t.Errorf("%d requests", len(s.requests()))
		}
	})
}

func TestNoRetryOnClientErrors(t *testing.T) {
	tests := []struct {
		name                         string
		status                       int
		body                         string
		header                       []string
		wantConflict, wantTooLarge   bool
		wantUnauthorized             bool // cmd adds the hint naming its variables
		wantEndpoint                 bool
		wantInMsg, wantCode, wantReq string
	}{
		{name: "400", status: 400, body: `{"code":"invalid_property","message":"unknown slug foo","request_id":"r1","errors":[{"field":"objects[0].default.foo","message":"unknown property"}]}`,
			wantInMsg: "objects[0].default.foo: unknown property", wantCode: "invalid_property", wantReq: "r1"},
		{name: "401", status: 401, body: `{"message":"missing api key"}`, header: []string{"x-request-id", "hdr-2"},
			wantInMsg: "no or empty API key", wantReq: "hdr-2", wantUnauthorized: true},
		{name: "403", status: 403, body: `{"code":"forbidden","message":"no access","request_id":null}`,
			wantInMsg: "API key invalid, revoked or without access to this team", wantCode: "forbidden", wantUnauthorized: true},
		{name: "404", status: 404, body: `not found`, wantInMsg: "the team id and the object type", wantEndpoint: true},
		{name: "409 mismatch by code", status: 409, body: `{"code":"idempotency_key_mismatch","message":"different body"}`,
			wantConflict: true, wantInMsg: "mint a new key", wantCode: CodeIdempotencyKeyMismatch},
		{name: "409 stale by message", status: 409, body: `{"message":"Idempotency key is stale"}`,
			wantConflict: true, wantInMsg: "older than 24h"},
		{name: "409 other conflict", status: 409, body: `{"code":"multiple_matches","message":"3 records match"}`,
			wantInMsg: "3 records match", wantCode: "multiple_matches"},
		{name: "413", status: 413, body: `<html>Request Entity Too Large</html>`, wantTooLarge: true, wantInMsg: "smaller batches"},
		{name: "400 too large", status: 400, body: `{"message":"Request body too large"}`, wantTooLarge: true},
		{name: "422", status: 422, body: `{"error":{"code":"unprocessable","message":"bad"}}`, wantCode: "unprocessable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, reply(tt.status, tt.body, tt.header...))
			c, clk, _ := newTestClient(t, s)
			_, err := c.Import(context.Background(), "organization", "k", testBody())
			if err == nil {
				t.Fatal("want error")
			}
			if n := len(s.requests()); n != 1 || len(clk.Sleeps()) != 0 {
				t.Errorf("%d requests, sleeps %v; want exactly one attempt", n, clk.Sleeps())
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Op != "import" {
				t.Fatalf("err = %#v", err)
			}
			if !IsPermanent(err) {
				t.Error("IsPermanent = false")
			}
			if IsIdempotencyConflict(err) != tt.wantConflict {
				t.Errorf("IsIdempotencyConflict = %v", !tt.wantConflict)
			}
			if IsTooLarge(err) != tt.wantTooLarge {
				t.Errorf("IsTooLarge = %v", !tt.wantTooLarge)
			}
			if IsUnauthorized(err) != tt.wantUnauthorized {
				t.Errorf("IsUnauthorized = %v", !tt.wantUnauthorized)
			}
			if IsEndpointNotFound(err) != tt.wantEndpoint {
				t.Errorf("IsEndpointNotFound = %v", !tt.wantEndpoint)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q lacks %q", err, tt.wantInMsg)
			}
			if want := fmt.Sprintf("prism: import: HTTP %d", tt.status); !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "prism:") != 1 {
				t.Errorf("error %q does not start with %q, or names prism twice", err, want)
			}
			if ae.Code != tt.wantCode || ae.RequestID != tt.wantReq {
				t.Errorf("code %q request id %q", ae.Code, ae.RequestID)
			}
			if ae.Body == "" {
				t.Error("raw body not kept")
			}
			if errors.Is(err, ErrJobNotFound) {
				t.Error("import error matches ErrJobNotFound")
			}
		})
	}
}

func TestPollNotFound(t *testing.T) {
	s := newServer(t, reply(404, `{"code":"not_found","message":"import job not found"}`))
	c, _, _ := newTestClient(t, s)
	_, err := c.Wait(context.Background(), &Job{ID: "gone", Status: StatusProcessing})
	if !errors.Is(err, ErrJobNotFound) || !IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	if len(s.requests()) != 1 {
		t.Errorf("%d requests", len(s.requests()))
	}
}

func TestJobEscapesID(t *testing.T) {
	s := newServer(t, reply(200, `{"job_id":"a/b c","status":"complete","total":0}`))
	c, _, _ := newTestClient(t, s)
	j, err := c.Job(context.Background(), "a/b c")
	if err != nil {
		t.Fatal(err)
	}
	if p := s.requests()[0].Path; p != "/v2/prism/"+testTeam+"/imports/a%2Fb%20c" {
		t.Errorf("path = %s", p)
	}
	if j.Polls != 1 {
		t.Errorf("Polls = %d", j.Polls)
	}
}

func TestUnexpectedResponseIsPermanent(t *testing.T) {
	s := newServer(t, reply(200, `{"ok":true}`))
	c, _, _ := newTestClient(t, s)
	_, err := c.Import(context.Background(), "organization", "k", testBody())
	if !errors.Is(err, ErrUnexpectedResponse) || !IsPermanent(err) || len(s.requests()) != 1 {
		t.Fatalf("err = %v, %d requests", err, len(s.requests()))
	}
	s2 := newServer(t, reply(202, `{"status":"processing","total":3}`))
	c2, _, _ := newTestClient(t, s2)
	if _, err := c2.Import(context.Background(), "organization", "k", testBody()); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("202 without id: %v", err)
	}
}

func TestAPIKeyNeverLeaks(t *testing.T) {
	echo := `{"code":"bad_key","message":"key ` + testKey + ` is revoked","errors":[{"field":"` + testKey + `","message":"x"}]}`
	s := newServer(t,
		reply(403, echo),
		reply(503, echo), reply(503, echo), // retried, then give up
	)
	c, _, logs := newTestClient(t, s, func(cfg *Config) { cfg.MaxAttempts = 2 })
	_, err1 := c.Import(context.Background(), "organization", "k1", testBody())
	_, err2 := c.Import(context.Background(), "organization", "k2", testBody())
	for _, err := range []error{err1, err2} {
		if err == nil {
			t.Fatal("want error")
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error leaks key: %v", err)
		}
		var ae *APIError
		if errors.As(err, &ae) && (strings.Contains(ae.Body, testKey) || strings.Contains(ae.Message, testKey)) {
			t.Errorf("APIError fields leak key: %+v", ae)
		}
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("logs leak key:\n%s", logs)
	}
	// Config validation errors must not echo it either.
	if _, err := New(Config{APIKey: testKey, TeamID: "nope"}); err == nil || strings.Contains(err.Error(), testKey) {
		t.Errorf("New error = %v", err)
	}
}

func TestRedirectToOtherHostRefused(t *testing.T) {
	other := newServer(t) // must never be hit: no steps
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL+"/steal", http.StatusTemporaryRedirect)
	})
	c, _, _ := newTestClient(t, s)
	_, err := c.Import(context.Background(), "organization", "k", testBody())
	if err == nil || !strings.Contains(err.Error(), "refusing redirect") {
		t.Fatalf("err = %v", err)
	}
	if len(other.requests()) != 0 || len(s.requests()) != 1 {
		t.Errorf("other host got %d requests, origin %d", len(other.requests()), len(s.requests()))
	}
}

func TestKeyInUse(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s := newServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			reply(200, syncOK)(w, r)
		},
		reply(200, syncOK),
	)
	c, _, _ := newTestClient(t, s)
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { _, firstErr = c.Import(context.Background(), "organization", "dup", testBody()) })
	<-entered
	_, err := c.Import(context.Background(), "organization", "dup", testBody())
	if !errors.Is(err, ErrKeyInUse) {
		t.Errorf("concurrent same key: err = %v", err)
	}
	close(release)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	// Released after the first call returned.
	if _, err := c.Import(context.Background(), "organization", "dup", testBody()); err != nil {
		t.Errorf("reuse after completion: %v", err)
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	s := newServer(t, reply(503, ``))
	ctx, cancel := context.WithCancel(context.Background())
	c, _, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error { cancel(); return sleepCtx(ctx, time.Hour) }
	})
	_, err := c.Import(ctx, "organization", "k", testBody())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestRateLimiterAppliesToEveryRequest(t *testing.T) {
	s := newServer(t, reply(503, ``), reply(200, syncOK), reply(200, syncOK), reply(200, syncOK), reply(200, `{"job_id":"j","status":"complete","total":0}`))
	c, _, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.RateLimit = 1
		cfg.BackoffBase = time.Nanosecond
	})
	c.limiter = &windowLimiter{n: 1, per: 50 * time.Millisecond, now: time.Now} // 1 per 50 ms, to keep the test short
	ctx := context.Background()
	start := time.Now()
	for i := range 3 {
		if _, err := c.Import(ctx, "organization", IdempotencyKey("s", "p", nil, i), testBody()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Job(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	// Five requests (one a retry, one a poll), one per 50 ms, need at least 4 intervals.
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Errorf("5 requests took %v, limiter not applied to all of them", el)
	}
}

func TestNewValidation(t *testing.T) {
	ok := Config{APIKey: "k", TeamID: testTeam}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad team", func(c *Config) { c.TeamID = "team-1" }, "team id"},
		{"no key", func(c *Config) { c.APIKey = " " }, "API key is empty"},
		{"ftp url", func(c *Config) { c.BaseURL = "ftp://x" }, "http(s)"},
		{"no host", func(c *Config) { c.BaseURL = "https://" }, "http(s)"},
		{"relative", func(c *Config) { c.BaseURL = "developers.micro.so" }, "http(s)"},
		{"userinfo", func(c *Config) { c.BaseURL = "https://u:p@x" }, "credentials"},
		{"negative", func(c *Config) { c.BackoffMax = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	c, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if c.base.String() != defaultBaseURL || c.hc.Timeout != defaultTimeout || !strings.HasPrefix(c.userAgent, "prismsync/") {
		t.Errorf("defaults: base %s timeout %v ua %q", c.base, c.hc.Timeout, c.userAgent)
	}
}

func TestImportArgumentValidation(t *testing.T) {
	s := newServer(t)
	c, _, _ := newTestClient(t, s)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"object":    func() error { _, err := c.Import(ctx, "../x", "k", testBody()); return err },
		"empty key": func() error { _, err := c.Import(ctx, "deal", "", testBody()); return err },
		"long key":  func() error { _, err := c.Import(ctx, "deal", strings.Repeat("k", 256), testBody()); return err },
		"body":      func() error { _, err := c.Import(ctx, "deal", "k", []byte(`{"objects":[`)); return err },
		"job id":    func() error { _, err := c.Job(ctx, ""); return err },
	} {
		if call() == nil {
			t.Errorf("%s: want error", name)
		}
	}
	if len(s.requests()) != 0 {
		t.Errorf("invalid arguments reached the server")
	}
}

func TestBasePathPrefix(t *testing.T) {
	s := newServer(t, reply(200, syncOK))
	c, _, _ := newTestClient(t, s, func(cfg *Config) { cfg.BaseURL = s.srv.URL + "/proxy/" })
	if _, err := c.Import(context.Background(), "deal", "k", testBody()); err != nil {
		t.Fatal(err)
	}
	if p := s.requests()[0].Path; p != "/proxy/v2/prism/"+testTeam+"/deal/import" {
		t.Errorf("path = %s", p)
	}
}

// OnRequest gets the context each request was made with, retries and polls
// included, so a caller can tell requests apart by what it put in it.
func TestOnRequestGetsTheRequestContext(t *testing.T) {
	type key struct{}
	s := newServer(t,
		reply(503, `{"message":"busy"}`),
		reply(202, `{"job_id":"job-7","status":"processing","total":2}`),
		reply(200, `{"job_id":"job-7","status":"complete","total":2,"results":[]}`),
	)
	var mu sync.Mutex
	var seen []string
	c, _, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.OnRequest = func(ctx context.Context, i RequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			v, _ := ctx.Value(key{}).(string)
			seen = append(seen, fmt.Sprintf("%s#%d %s", i.Op, i.Attempt, v))
		}
	})
	job, err := c.Import(context.WithValue(context.Background(), key{}, "people"), "organization", "k", testBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(context.WithValue(context.Background(), key{}, "orgs"), job); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(seen, ", "), "import#1 people, import#2 people, poll#1 orgs"; got != want {
		t.Errorf("OnRequest saw %q, want %q", got, want)
	}
}
