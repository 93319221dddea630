package prismtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestStatusFaults(t *testing.T) {
	date := t0.Add(time.Minute).Format(http.TimeFormat)
	cases := []struct {
		name       string
		fault      prismtest.Fault
		status     int
		code       string
		retryAfter string
		header     [2]string
	}{
		{"429 seconds", prismtest.Fault{Kind: prismtest.FaultStatus, Status: 429, RetryAfter: "2"}, 429, "rate_limited", "2", [2]string{}},
		{"429 http-date", prismtest.Fault{Kind: prismtest.FaultStatus, Status: 429, RetryAfter: date}, 429, "rate_limited", date, [2]string{}},
		{"default 503", prismtest.Fault{Kind: prismtest.FaultStatus}, 503, "service_unavailable", "", [2]string{}},
		{"500 with code and header", prismtest.Fault{Kind: prismtest.FaultStatus, Status: 500, Code: "boom",
			Header: http.Header{"X-Should-Retry": {"true"}}}, 500, "boom", "", [2]string{"x-should-retry", "true"}},
		{"504", prismtest.Fault{Kind: prismtest.FaultStatus, Status: 504}, 504, "gateway_timeout", "", [2]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, prismtest.Options{})
			e.ts.InjectFault(tc.fault)
			r := importReq("deal", `{"objects":[{"default":{"a":1}}]}`)
			rep := e.mustDo(r)
			if rep.status != tc.status || rep.code(t) != tc.code || rep.header.Get("Retry-After") != tc.retryAfter {
				t.Fatalf("got %d %s Retry-After=%q", rep.status, rep.body, rep.header.Get("Retry-After"))
			}
			if tc.header[0] != "" && rep.header.Get(tc.header[0]) != tc.header[1] {
				t.Errorf("header %s = %q", tc.header[0], rep.header.Get(tc.header[0]))
			}
			if n := e.ts.Count("deal"); n != 0 {
				t.Errorf("fault applied the import: %d records", n)
			}
			// Consumed once: the retry succeeds.
			if rep := e.mustDo(r); rep.status != 200 {
				t.Errorf("retry %d", rep.status)
			}
			if st := e.ts.Stats(); st.Faults != 1 || e.ts.PendingFaults() != 0 {
				t.Errorf("faults %d pending %d", st.Faults, e.ts.PendingFaults())
			}
		})
	}
}

func TestFaultQueueOrderAndMatch(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	onlyPolls := func(ri prismtest.RequestInfo) bool { return ri.Kind == prismtest.KindPoll }
	e.ts.InjectFault(
		prismtest.Fault{Kind: prismtest.FaultStatus, Status: 503, Match: onlyPolls},
		prismtest.Fault{Kind: prismtest.FaultStatus, Status: 500},
		prismtest.Fault{Kind: prismtest.FaultStatus, Status: 502},
	)
	imp := importReq("deal", `{"objects":[]}`)
	if rep := e.mustDo(imp); rep.status != 500 {
		t.Fatalf("first import: %d (poll-only fault must be skipped)", rep.status)
	}
	if rep := e.mustDo(imp); rep.status != 502 {
		t.Fatalf("second import: %d", rep.status)
	}
	j := e.mustDo(imp).job(t)
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 503 {
		t.Fatalf("poll: %d", rep.status)
	}
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
		t.Fatalf("second poll: %d", rep.status)
	}
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultStatus})
	e.ts.ClearFaults()
	if e.ts.PendingFaults() != 0 {
		t.Error("ClearFaults left faults")
	}
}

func TestDropBeforeRead(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultDropBeforeRead})
	r := withKey(importReq("deal", `{"objects":[{"default":{"a":1}}]}`), "k")
	if rep := e.do(r); rep.err == nil {
		t.Fatalf("want a transport error, got %d", rep.status)
	}
	if n := e.ts.Count("deal"); n != 0 {
		t.Fatalf("dropped request applied: %d", n)
	}
	rep := e.mustDo(r)
	if rep.status != 200 || rep.header.Get("idempotent-replay") != "" {
		t.Fatalf("retry %d replay=%q", rep.status, rep.header.Get("idempotent-replay"))
	}
	st := e.ts.Stats()
	if st.Dropped != 1 || st.ByKindStatus[prismtest.KindStatus{Kind: prismtest.KindImport, Status: 0}] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestDropAfterApplyThenReplay(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultDropAfterApply})
	r := withKey(importReq("deal", `{"objects":[{"default":{"a":1}}]}`), "k")
	if rep := e.do(r); rep.err == nil {
		t.Fatalf("want a transport error, got %d", rep.status)
	}
	if n := e.ts.Count("deal"); n != 1 {
		t.Fatalf("records %d, want the import applied", n)
	}
	rep := e.mustDo(r)
	if rep.status != 200 || rep.header.Get("idempotent-replay") != "true" {
		t.Fatalf("retry %d replay=%q", rep.status, rep.header.Get("idempotent-replay"))
	}
	if j := rep.job(t); !j.Results[0].Created {
		t.Errorf("replayed result %+v", j.Results[0])
	}
	if n := e.ts.Count("deal"); n != 1 {
		t.Errorf("records %d after replay", n)
	}
}

func TestMalformedResponse(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultMalformed})
	r := withKey(importReq("deal", `{"objects":[{"default":{"a":1}}]}`), "k")
	rep := e.mustDo(r)
	var v any
	if rep.status != 200 || json.Unmarshal(rep.body, &v) == nil {
		t.Fatalf("want 200 with broken JSON, got %d %q", rep.status, rep.body)
	}
	if rep := e.mustDo(r); rep.header.Get("idempotent-replay") != "true" || json.Unmarshal(rep.body, &v) != nil {
		t.Fatalf("replay %q %s", rep.header.Get("idempotent-replay"), rep.body)
	}
	if n := e.ts.Count("deal"); n != 1 {
		t.Errorf("records %d", n)
	}
}

func TestHangUntilClientGivesUp(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultHang})
	ctx, cancel := context.WithCancel(context.Background())
	hr, _ := http.NewRequestWithContext(ctx, "POST", e.ts.ImportURL(team, "deal"), strings.NewReader(`{"objects":[{"default":{}}]}`))
	hr.Header.Set("x-api-key", key)
	done := make(chan error, 1)
	go func() {
		resp, err := e.hc.Do(hr)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Wait until the fault has fired, then give up like a client timeout.
	waitFor(t, func() bool { return e.ts.PendingFaults() == 0 })
	select {
	case err := <-done:
		t.Fatalf("request returned while hung: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return e.ts.Stats().Requests == 1 })
	if n := e.ts.Count("deal"); n != 0 {
		t.Errorf("hung request applied: %d", n)
	}
}

func TestHangReleasedByClose(t *testing.T) {
	s := prismtest.New(prismtest.Options{})
	s.InjectFault(prismtest.Fault{Kind: prismtest.FaultHang})
	ts := httptestServer(t, s)
	hr, _ := http.NewRequest("POST", ts+"/v2/prism/t/deal/import", strings.NewReader(`{"objects":[]}`))
	hr.Header.Set("x-api-key", "k")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultTransport.RoundTrip(hr)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, func() bool { return s.PendingFaults() == 0 })
	s.Close()
	if err := <-done; err == nil {
		t.Fatal("want a dropped connection after Close")
	}
}

func TestDelayAndLatencyHonourCancellation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  prismtest.Options
		fault *prismtest.Fault
	}{
		{"latency", prismtest.Options{Latency: time.Hour}, nil},
		{"delay fault", prismtest.Options{}, &prismtest.Fault{Kind: prismtest.FaultDelay, Delay: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			if tc.fault != nil {
				e.ts.InjectFault(*tc.fault)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			hr, _ := http.NewRequestWithContext(ctx, "POST", e.ts.ImportURL(team, "deal"), strings.NewReader(`{"objects":[{}]}`))
			hr.Header.Set("x-api-key", key)
			start := time.Now()
			_, err := e.hc.Do(hr)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("wait ignored cancellation")
			}
			waitFor(t, func() bool { return e.ts.Stats().Requests == 1 })
			if n := e.ts.Count("deal"); n != 0 {
				t.Errorf("cancelled request applied: %d", n)
			}
		})
	}
}

func TestShortDelayServesNormally(t *testing.T) {
	e := newEnv(t, prismtest.Options{Latency: time.Millisecond})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultDelay, Delay: time.Millisecond})
	if rep := e.mustDo(importReq("deal", `{"objects":[{}]}`)); rep.status != 200 {
		t.Fatalf("status %d", rep.status)
	}
}

func TestFailJob(t *testing.T) {
	cases := []struct {
		name    string
		applied int
		records int
	}{
		{"nothing applied", 0, 0},
		{"prefix applied", 2, 2},
		{"all applied", -1, 5},
		{"more than rows", 99, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, prismtest.Options{SyncThreshold: -1})
			e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultFailJob, Code: "worker_crashed", Message: "lambda died", AppliedRows: tc.applied})
			// A sync import would not consume it; with SyncThreshold -1 all are jobs.
			rep := e.mustDo(importReq("deal", `{"objects":`+objects(5)+`}`))
			if rep.status != 202 {
				t.Fatalf("status %d", rep.status)
			}
			j := e.mustDo(pollReq(*rep.job(t).JobID)).job(t)
			if j.Status != "failed" || j.Error == nil || j.Error.Code != "worker_crashed" || j.Error.Message != "lambda died" || j.Results != nil {
				t.Fatalf("job %+v", j)
			}
			if j.Processed != tc.records || j.Total != 5 {
				t.Errorf("processed %d total %d", j.Processed, j.Total)
			}
			if n := e.ts.Count("deal"); n != tc.records {
				t.Errorf("records %d, want %d", n, tc.records)
			}
			if st := e.ts.Stats(); st.JobsFailed != 1 {
				t.Errorf("JobsFailed %d", st.JobsFailed)
			}
		})
	}
}

func TestFailJobSkipsSyncImports(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 3})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultFailJob})
	if rep := e.mustDo(importReq("deal", `{"objects":`+objects(2)+`}`)); rep.status != 200 {
		t.Fatalf("sync %d", rep.status)
	}
	if e.ts.PendingFaults() != 1 {
		t.Fatal("sync import consumed the job fault")
	}
	j := e.mustDo(importReq("deal", `{"objects":`+objects(3)+`}`)).job(t)
	got := e.mustDo(pollReq(*j.JobID)).job(t)
	if got.Status != "failed" || got.Error.Code != "import_failed" {
		t.Fatalf("job %+v", got)
	}
}

func TestExpireJobFault(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultExpireJob})
	j := e.mustDo(importReq("deal", `{"objects":[]}`)).job(t) // imports skip it
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 404 {
		t.Fatalf("poll %d", rep.status)
	}
	if info, _ := e.ts.Job(*j.JobID); !info.Expired {
		t.Error("job not marked expired")
	}
}

func TestErrorAfterApplyOnPoll(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	j := e.mustDo(importReq("deal", `{"objects":[]}`)).job(t)
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultErrorAfterApply})
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 500 {
		t.Fatalf("poll %d", rep.status)
	}
}

func TestRandomFaults(t *testing.T) {
	run := func(seed int64) []prismtest.FaultKind {
		e := newEnv(t, prismtest.Options{FaultRate: 0.5, Seed: seed})
		var kinds []prismtest.FaultKind
		for range 40 {
			e.do(importReq("deal", `{"objects":[{}]}`))
		}
		for _, l := range e.ts.Log() {
			kinds = append(kinds, l.Fault)
		}
		return kinds
	}
	a, b := run(7), run(7)
	if strings.Join(kindStrings(a), ",") != strings.Join(kindStrings(b), ",") {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	faulted, distinct := 0, map[prismtest.FaultKind]bool{}
	for _, k := range a {
		if k != "" {
			faulted++
			distinct[k] = true
		}
	}
	if faulted < 8 || faulted > 32 || len(distinct) < 3 {
		t.Errorf("rate 0.5: %d of 40 faulted, %d kinds", faulted, len(distinct))
	}
	if c := run(8); strings.Join(kindStrings(a), ",") == strings.Join(kindStrings(c), ",") {
		t.Errorf("different seeds gave identical fault sequences")
	}
}

func TestRandomFaultsCustomPool(t *testing.T) {
	e := newEnv(t, prismtest.Options{FaultRate: 1, RandomFaults: []prismtest.Fault{{Kind: prismtest.FaultStatus, Status: 418}}})
	for range 5 {
		if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 418 {
			t.Fatalf("status %d", rep.status)
		}
	}
}

func kindStrings(ks []prismtest.FaultKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}
