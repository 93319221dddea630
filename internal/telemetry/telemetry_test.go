package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newMetrics(t *testing.T, opts Options) (*Metrics, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)}
	opts.Now = c.Now
	opts.NoProcessMetrics = true
	return New(opts), c
}

// value returns the value of the series name{labels} (counter, gauge, or a
// histogram's sample count), failing the test if it is absent.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	v, ok := lookup(t, m, name, labels...)
	if !ok {
		t.Fatalf("series %s%v not found", name, labels)
	}
	return v
}

func lookup(t *testing.T, m *Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			if len(mt.GetLabel()) != len(want) {
				continue
			}
			for _, lp := range mt.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return metricValue(mt), true
		}
	}
	return 0, false
}

func metricValue(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.Counter.GetValue()
	case mt.Gauge != nil:
		return mt.Gauge.GetValue()
	case mt.Histogram != nil:
		return float64(mt.Histogram.GetSampleCount())
	}
	return 0
}

func TestBatchAndPassCounters(t *testing.T) {
	m, c := newMetrics(t, Options{})
	m.BatchDone("people", connector.BatchReport{Rows: 10, Invalid: 2, Unchanged: 7, Created: 6, Updated: 2, Existing: 1, Rejected: 1,
		Async: true, Polls: 3, Outcome: "complete", Duration: 2 * time.Second, Attempts: 2})
	m.BatchDone("people", connector.BatchReport{Rows: 5, Created: 5, Outcome: "complete", Duration: time.Second, Attempts: 1})
	m.BatchDone("people", connector.BatchReport{Rows: 4, Outcome: "error", Attempts: 1})
	// A page of only invalid rows sends nothing: no job.
	m.BatchDone("people", connector.BatchReport{Invalid: 3, Outcome: "complete"})
	m.BatchDone("orgs", connector.BatchReport{Rows: 1, Updated: 1, Outcome: "complete", Attempts: 1})
	m.InFlight("people", 2)
	m.PassFinished(connector.Summary{Sync: "people", Duration: 3 * time.Second}, nil)
	c.Set(c.Now().Add(time.Minute))
	m.PassFinished(connector.Summary{Sync: "people"}, errors.New("boom"))

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"prismsync_rows_read_total", []string{"sync", "people"}, 10 + 2 + 7 + 5 + 4 + 3},
		{"prismsync_rows_sent_total", []string{"sync", "people"}, 15},
		{"prismsync_rows_created_total", []string{"sync", "people"}, 11},
		{"prismsync_rows_updated_total", []string{"sync", "people"}, 2},
		{"prismsync_rows_skipped_unchanged_total", []string{"sync", "people"}, 7},
		{"prismsync_rows_matched_existing_total", []string{"sync", "people"}, 1},
		{"prismsync_rows_invalid_total", []string{"sync", "people"}, 5},
		{"prismsync_rows_rejected_total", []string{"sync", "people"}, 1},
		{"prismsync_rows_updated_total", []string{"sync", "orgs"}, 1},
		{"prismsync_batches_total", []string{"sync", "people", "outcome", "complete"}, 3},
		{"prismsync_batches_total", []string{"sync", "people", "outcome", "error"}, 1},
		{"prismsync_jobs_total", []string{"sync", "people", "outcome", "complete"}, 2},
		{"prismsync_jobs_total", []string{"sync", "people", "outcome", "failed"}, 1},
		{"prismsync_jobs_total", []string{"sync", "people", "outcome", "error"}, 1},
		{"prismsync_job_duration_seconds", []string{"sync", "people", "mode", "async"}, 1},
		{"prismsync_job_duration_seconds", []string{"sync", "people", "mode", "sync"}, 2},
		{"prismsync_job_poll_requests", []string{"sync", "people"}, 3},
		{"prismsync_inflight_batches", []string{"sync", "people"}, 2},
		{"prismsync_passes_total", []string{"sync", "people", "result", "ok"}, 1},
		{"prismsync_passes_total", []string{"sync", "people", "result", "failed"}, 1},
		{"prismsync_pass_duration_seconds", []string{"sync", "people"}, 2},
		{"prismsync_consecutive_failed_passes", []string{"sync", "people"}, 1},
		{"prismsync_last_success_timestamp_seconds", []string{"sync", "people"}, float64(time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC).Unix())},
		{"prismsync_last_pass_timestamp_seconds", []string{"sync", "people"}, float64(time.Date(2026, 11, 30, 23, 1, 0, 0, time.UTC).Unix())},
	} {
		if got := value(t, m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The polls histogram recorded 3 polls in one observation.
	fams, _ := m.Registry().Gather()
	for _, f := range fams {
		if f.GetName() != "prismsync_job_poll_requests" {
			continue
		}
		for _, mt := range f.GetMetric() {
			if mt.GetLabel()[0].GetValue() == "people" && mt.GetHistogram().GetSampleSum() != 3 {
				t.Errorf("job_poll_requests sum = %v, want 3", mt.GetHistogram().GetSampleSum())
			}
		}
	}
}

func TestRequests(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	people := connector.WithSyncName(context.Background(), "people")
	orgs := connector.WithSyncName(context.Background(), "orgs")
	m.ObserveRequest(people, prism.RequestInfo{Op: "import", Status: 202, Attempt: 1, Duration: 50 * time.Millisecond})
	m.ObserveRequest(people, prism.RequestInfo{Op: "import", Status: 429, Attempt: 1})
	m.ObserveRequest(people, prism.RequestInfo{Op: "import", Status: 202, Attempt: 2})
	m.ObserveRequest(people, prism.RequestInfo{Op: "poll", Status: 0, Err: errors.New("reset"), Attempt: 1})
	m.ObserveRequest(people, prism.RequestInfo{Op: "poll", Status: 200, Attempt: 2})
	m.ObserveRequest(orgs, prism.RequestInfo{Op: "import", Status: 202, Attempt: 1})
	m.ObserveRequest(context.Background(), prism.RequestInfo{Op: "poll", Status: 200, Attempt: 1})
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"prismsync_api_requests_total", []string{"sync", "people", "op", "import", "code", "202"}, 2},
		{"prismsync_api_requests_total", []string{"sync", "people", "op", "import", "code", "429"}, 1},
		{"prismsync_api_requests_total", []string{"sync", "people", "op", "poll", "code", "error"}, 1},
		{"prismsync_api_requests_total", []string{"sync", "people", "op", "poll", "code", "200"}, 1},
		{"prismsync_api_requests_total", []string{"sync", "orgs", "op", "import", "code", "202"}, 1},
		{"prismsync_api_requests_total", []string{"sync", "", "op", "poll", "code", "200"}, 1},
		{"prismsync_api_retries_total", []string{"sync", "people", "op", "import"}, 1},
		{"prismsync_api_retries_total", []string{"sync", "people", "op", "poll"}, 1},
		{"prismsync_api_request_duration_seconds", []string{"sync", "people", "op", "import"}, 3},
		{"prismsync_api_request_duration_seconds", []string{"sync", "orgs", "op", "import"}, 1},
	} {
		if got := value(t, m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// The budget gauges show the store's count (every replica) and the plan.
func TestBudgetGauges(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	next := time.Date(2026, 12, 11, 3, 40, 0, 500_000_000, time.UTC)
	m.SetBudget(Budget{Used: 412, Limit: 1000, Reserve: 50, Pace: 81 * time.Minute, NextSend: next, Projected: 950})
	for name, want := range map[string]float64{
		"prismsync_budget_used_requests":               412,
		"prismsync_budget_limit_requests":              1000,
		"prismsync_budget_reserve_requests":            50,
		"prismsync_budget_pace_seconds":                81 * 60,
		"prismsync_budget_next_send_timestamp_seconds": float64(next.UnixMilli()) / 1000,
		"prismsync_budget_projected_requests":          950,
	} {
		if got := value(t, m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	m.SetBudget(Budget{Used: 3})
	if got := value(t, m, "prismsync_budget_next_send_timestamp_seconds"); got != 0 {
		t.Errorf("next send without a limit = %v, want 0", got)
	}
}

// The checkpoint's cursor comes from the store: every replica shows the
// same, whichever ran the sync.
func TestCheckpointAge(t *testing.T) {
	m, c := newMetrics(t, Options{})
	now := c.Now()
	m.AddSyncs("ts", "int", "never")
	m.SetSyncStates([]SyncState{{Sync: "ts", Cursor: "2026-11-30 22:50:00.5+00"}, {Sync: "int", Cursor: "12345"}})
	if got := value(t, m, "prismsync_checkpoint_age_seconds", "sync", "ts"); got != 599.5 {
		t.Errorf("age = %v, want 599.5", got)
	}
	if got := value(t, m, "prismsync_checkpoint_cursor_timestamp_seconds", "sync", "ts"); got != float64(now.Unix()-600)+0.5 {
		t.Errorf("cursor time = %v", got)
	}
	c.Set(now.Add(time.Hour))
	if got := value(t, m, "prismsync_checkpoint_age_seconds", "sync", "ts"); got != 4199.5 {
		t.Errorf("age an hour later = %v, want 4199.5 (computed at scrape time)", got)
	}
	for _, s := range []string{"int", "never"} {
		for _, name := range []string{"prismsync_checkpoint_age_seconds", "prismsync_checkpoint_cursor_timestamp_seconds"} {
			if _, ok := lookup(t, m, name, "sync", s); ok {
				t.Errorf("sync %s has %s, but it has no time-typed cursor", s, name)
			}
		}
	}
	// A pass does not move the cursor: only the store does.
	m.PassFinished(connector.Summary{Sync: "ts", Position: checkpoint.Position{Cursor: "2026-12-01 00:00:00+00", Key: []string{"9"}},
		HorizonLag: 90 * time.Second}, nil)
	if got := value(t, m, "prismsync_checkpoint_age_seconds", "sync", "ts"); got != 4199.5 {
		t.Errorf("age after a pass = %v, want the store's 4199.5", got)
	}
	if got := value(t, m, "prismsync_commit_horizon_lag_seconds", "sync", "ts"); got != 90 {
		t.Errorf("horizon lag = %v", got)
	}
	// A sync the store no longer has (forgotten) has no checkpoint.
	m.SetSyncStates(nil)
	if _, ok := lookup(t, m, "prismsync_checkpoint_age_seconds", "sync", "ts"); ok {
		t.Error("a forgotten checkpoint still has an age")
	}
}

// Right after AddSyncs every per-sync series exists at 0, so rate(),
// increase() and absent() work from a restart on.
func TestSeriesExistFromStart(t *testing.T) {
	m := New(Options{NoProcessMetrics: true, Version: "v1.2.3", Commit: "abc123"})
	m.AddSyncs("people", "orgs")
	perSync := map[string][][]string{
		"prismsync_rows_read_total": {nil}, "prismsync_rows_sent_total": {nil}, "prismsync_rows_created_total": {nil},
		"prismsync_rows_updated_total": {nil}, "prismsync_rows_skipped_unchanged_total": {nil},
		"prismsync_rows_matched_existing_total": {nil}, "prismsync_rows_invalid_total": {nil}, "prismsync_rows_rejected_total": {nil},
		"prismsync_batches_total":        {{"outcome", "complete"}, {"outcome", "failed"}, {"outcome", "error"}, {"outcome", "nothing_to_send"}},
		"prismsync_jobs_total":           {{"outcome", "complete"}, {"outcome", "failed"}, {"outcome", "error"}},
		"prismsync_passes_total":         {{"result", "ok"}, {"result", "failed"}},
		"prismsync_job_duration_seconds": {{"mode", "sync"}, {"mode", "async"}},
		"prismsync_job_poll_requests":    {nil}, "prismsync_pass_duration_seconds": {nil},
		"prismsync_api_requests_total":           {{"op", "import", "code", "200"}, {"op", "import", "code", "202"}, {"op", "poll", "code", "200"}},
		"prismsync_api_retries_total":            {{"op", "import"}, {"op", "poll"}},
		"prismsync_api_request_duration_seconds": {{"op", "import"}, {"op", "poll"}},
		"prismsync_inflight_batches":             {nil}, "prismsync_consecutive_failed_passes": {nil},
		"prismsync_last_success_timestamp_seconds": {nil}, "prismsync_last_pass_timestamp_seconds": {nil},
		"prismsync_commit_horizon_lag_seconds": {nil}, "prismsync_schedule_interval_seconds": {nil},
		"prismsync_rejected_rows": {nil}, "prismsync_deferred_rows": {nil},
		"prismsync_rows_deleted_total": {nil}, "prismsync_rows_archived_total": {nil}, "prismsync_rows_restored_total": {nil},
	}
	for name, sets := range perSync {
		for _, sync := range []string{"people", "orgs"} {
			for _, extra := range sets {
				labels := append([]string{"sync", sync}, extra...)
				if got := value(t, m, name, labels...); got != 0 {
					t.Errorf("%s%v = %v at start, want 0", name, labels, got)
				}
			}
		}
	}
	// Nothing else has a sync label yet; the checkpoint appears once the
	// store has one.
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "prismsync_build_info" {
			continue
		}
		if _, ok := perSync[f.GetName()]; !ok && len(f.GetMetric()) > 0 && len(f.GetMetric()[0].GetLabel()) > 0 {
			t.Errorf("unexpected per-sync family %s at start", f.GetName())
		}
	}
	if got := value(t, m, "prismsync_build_info", "version", "v1.2.3", "commit", "abc123", "go_version", runtime.Version()); got != 1 {
		t.Errorf("build_info = %v", got)
	}
	if got := value(t, New(Options{NoProcessMetrics: true}), "prismsync_build_info",
		"version", "unknown", "commit", "unknown", "go_version", runtime.Version()); got != 1 {
		t.Errorf("build_info without a version = %v", got)
	}
}

// The store's state is the same on every replica; the last pass and the
// last success only move forward, whoever reports them.
func TestSyncStatesFromStore(t *testing.T) {
	m, c := newMetrics(t, Options{})
	m.AddSyncs("people", "orgs")
	t0 := c.Now()
	m.SetSyncStates([]SyncState{
		{Sync: "people", Cursor: "2026-11-30 22:00:00+00", LastPass: t0.Add(-time.Minute), LastSuccess: t0.Add(-time.Minute), Rejects: 4, Deferred: 2},
		{Sync: "orgs", LastPass: t0.Add(-2 * time.Minute)}, // failed; its last success is unknown
		{Sync: "people~backfill", Cursor: "2026-01-01", Rejects: 9},
		{Sync: "gone", Rejects: 1},
	})
	for _, tc := range []struct {
		name, sync string
		want       float64
	}{
		{"prismsync_rejected_rows", "people", 4},
		{"prismsync_deferred_rows", "people", 2},
		{"prismsync_last_pass_timestamp_seconds", "people", unix(t0.Add(-time.Minute))},
		{"prismsync_last_success_timestamp_seconds", "people", unix(t0.Add(-time.Minute))},
		{"prismsync_last_pass_timestamp_seconds", "orgs", unix(t0.Add(-2 * time.Minute))},
		{"prismsync_last_success_timestamp_seconds", "orgs", 0},
		{"prismsync_rejected_rows", "orgs", 0},
	} {
		if got := value(t, m, tc.name, "sync", tc.sync); got != tc.want {
			t.Errorf("%s{sync=%s} = %v, want %v", tc.name, tc.sync, got, tc.want)
		}
	}
	for _, s := range []string{"people~backfill", "gone"} {
		if _, ok := lookup(t, m, "prismsync_rejected_rows", "sync", s); ok {
			t.Errorf("state %q the mapping does not name got a series", s)
		}
	}
	// This process's pass is newer than the snapshot; an older snapshot
	// read afterwards does not move the times back.
	c.Set(t0.Add(time.Minute))
	m.PassFinished(connector.Summary{Sync: "orgs"}, nil)
	m.SetSyncStates([]SyncState{{Sync: "orgs", LastPass: t0.Add(-2 * time.Minute)}})
	for _, name := range []string{"prismsync_last_pass_timestamp_seconds", "prismsync_last_success_timestamp_seconds"} {
		if got := value(t, m, name, "sync", "orgs"); got != unix(t0.Add(time.Minute)) {
			t.Errorf("%s{sync=orgs} = %v, want this process's pass", name, got)
		}
	}
	// A failed pass moves the last pass, not the last success.
	c.Set(t0.Add(2 * time.Minute))
	m.PassFinished(connector.Summary{Sync: "orgs"}, errors.New("database gone"))
	if got := value(t, m, "prismsync_last_pass_timestamp_seconds", "sync", "orgs"); got != unix(t0.Add(2*time.Minute)) {
		t.Errorf("last pass = %v", got)
	}
	if got := value(t, m, "prismsync_last_success_timestamp_seconds", "sync", "orgs"); got != unix(t0.Add(time.Minute)) {
		t.Errorf("last success after a failed pass = %v", got)
	}
	m.SetSchedule("orgs", 5*time.Minute)
	if got := value(t, m, "prismsync_schedule_interval_seconds", "sync", "orgs"); got != 300 {
		t.Errorf("schedule = %v", got)
	}
}

func TestParseCursorTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-03-04 05:06:07.123456+00", time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC), true},
		{"2026-03-04 05:06:07+00", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"2026-03-04 07:06:07+02", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"2026-03-04 10:36:07+05:30", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"2026-03-04 05:06:07.5", time.Date(2026, 3, 4, 5, 6, 7, 5e8, time.UTC), true},
		{"2026-03-04T05:06:07Z", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"2026-03-04", time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), true},
		{"12345", time.Time{}, false},
		{"123.45", time.Time{}, false},
		{"", time.Time{}, false},
		{"infinity", time.Time{}, false},
	} {
		got, ok := ParseCursorTime(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseCursorTime(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestReadinessThreshold(t *testing.T) {
	m, _ := newMetrics(t, Options{FailThreshold: 3})
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	fail := func(sync string) {
		m.PassFinished(connector.Summary{Sync: sync}, fmt.Errorf("sync %s: database gone", sync))
	}

	if code, _ := get(t, srv.URL+"/readyz"); code != 200 {
		t.Fatalf("fresh /readyz = %d", code)
	}
	fail("people")
	fail("people")
	fail("orgs")
	if code, body := get(t, srv.URL+"/readyz"); code != 200 {
		t.Fatalf("/readyz after 2 failures (threshold 3) = %d %s", code, body)
	}
	fail("people")
	code, body := get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "sync people failed 3 passes in a row") ||
		!strings.Contains(body, "database gone") || strings.Contains(body, "orgs") {
		t.Fatalf("/readyz after 3 failures = %d %q", code, body)
	}
	if f := m.Failing(); len(f) != 1 || f[0].Sync != "people" || f[0].Failures != 3 {
		t.Errorf("Failing = %+v", f)
	}
	// Liveness does not depend on the syncs: restarting would not help.
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d while a sync is failing", code)
	}
	// One success resets the count.
	m.PassFinished(connector.Summary{Sync: "people"}, nil)
	if code, body := get(t, srv.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz after a success = %d %s", code, body)
	}
	if got := value(t, m, "prismsync_consecutive_failed_passes", "sync", "people"); got != 0 {
		t.Errorf("consecutive failures after success = %v", got)
	}
}

func TestReadyCheckFunc(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	var mu sync.Mutex
	var checkErr error
	var sawDeadline bool
	srv := httptest.NewServer(m.Handler(func(ctx context.Context) error {
		_, sawDeadline = ctx.Deadline()
		mu.Lock()
		defer mu.Unlock()
		return checkErr
	}))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	if !sawDeadline {
		t.Error("the check ran without a deadline")
	}
	mu.Lock()
	checkErr = errors.Join(errors.New("source database unreachable"), errors.New("checkpoint store unreachable"))
	mu.Unlock()
	code, body := get(t, srv.URL+"/readyz")
	if code != 503 || !strings.Contains(body, "  source database unreachable\n  checkpoint store unreachable") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
	if code, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m := New(Options{}) // with the Go and process collectors
	m.AddSyncs("people")
	m.SetSyncStates([]SyncState{{Sync: "people", Cursor: "2026-01-01"}})
	m.BatchDone("people", connector.BatchReport{Rows: 7, Created: 7, Outcome: "complete", Attempts: 1})
	m.ObserveRequest(connector.WithSyncName(context.Background(), "people"), prism.RequestInfo{Op: "import", Status: 200, Attempt: 1})
	m.PassFinished(connector.Summary{Sync: "people"}, nil)
	m.SetBudget(Budget{Used: 1, Limit: 1000})
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`prismsync_rows_sent_total{sync="people"} 7`,
		`prismsync_api_requests_total{code="200",op="import",sync="people"} 1`,
		`prismsync_budget_used_requests 1`,
		`prismsync_checkpoint_age_seconds{sync="people"} `,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Our own registry, not the global one: a second instance must not
	// panic on duplicate registration.
	_ = New(Options{})
}

func TestConcurrentUse(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			sync := fmt.Sprintf("s%d", i%3)
			for j := range 50 {
				m.BatchDone(sync, connector.BatchReport{Rows: 1, Created: 1, Outcome: "complete", Attempts: 1})
				m.InFlight(sync, j%4)
				m.ObserveRequest(connector.WithSyncName(context.Background(), sync), prism.RequestInfo{Op: "import", Status: 200, Attempt: 1})
				var err error
				if j%2 == 0 {
					err = errors.New("x")
				}
				m.PassFinished(connector.Summary{Sync: sync, Position: checkpoint.Position{Cursor: "2026-01-01", Key: []string{"1"}}}, err)
				if j%10 == 0 {
					m.SetBudget(Budget{Used: j, Limit: 1000})
					m.AddSyncs(sync)
					m.SetSyncStates([]SyncState{{Sync: sync, Cursor: "2026-01-01", LastPass: time.Now(), Rejects: j}})
					m.Failing()
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if code, _ := get(t, srv.URL+"/metrics"); code != 200 {
				t.Errorf("/metrics = %d", code)
			}
		}
	})
	wg.Wait()
	for sync, want := range map[string]float64{"s0": 150, "s1": 150, "s2": 100} {
		if got := value(t, m, "prismsync_api_requests_total", "sync", sync, "op", "import", "code", "200"); got != want {
			t.Errorf("requests of %s = %v, want %v", sync, got, want)
		}
	}
}

func TestServeShutsDownWithContext(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, m.Handler(nil)) }()
	if code, _ := get(t, "http://"+addr+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeListener after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return after its context ended")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func FuzzParseCursorTime(f *testing.F) {
	for _, s := range []string{"2026-03-04 05:06:07.123456+00", "2026-03-04 10:36:07+05:30", "2026-03-04 05:06:07.5",
		"2026-03-04T05:06:07Z", "2026-03-04", "12345", "", "infinity", "-infinity"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseCursorTime(s)
		if !ok && !got.IsZero() {
			t.Errorf("ParseCursorTime(%q) = %v with ok=false", s, got)
		}
	})
}

// TestDeleteCounters: delete and archive batches count records, not rows
// read or sent; restores come with the import batch that restored them.
func TestDeleteCounters(t *testing.T) {
	m := New(Options{NoProcessMetrics: true})
	m.AddSyncs("people")
	m.BatchDone("people", connector.BatchReport{Kind: "delete", Rows: 3, Deleted: 3, Outcome: "complete"})
	m.BatchDone("people", connector.BatchReport{Kind: "archive", Rows: 2, Archived: 2, Outcome: "complete"})
	m.BatchDone("people", connector.BatchReport{Rows: 4, Created: 4, Restored: 1, Outcome: "complete"})
	for name, want := range map[string]float64{
		"prismsync_rows_deleted_total": 3, "prismsync_rows_archived_total": 2, "prismsync_rows_restored_total": 1,
		"prismsync_rows_read_total": 4, "prismsync_rows_sent_total": 4,
	} {
		if got := value(t, m, name, "sync", "people"); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
}
