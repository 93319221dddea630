package prismtest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestStatsLogAndReset(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 2})
	e.mustDo(withKey(importReq("contact", `{"objects":[{"default":{"email":"a"}}]}`), "k1"))
	e.mustDo(withKey(importReq("contact", `{"objects":[{"default":{"email":"a"}}]}`), "k1")) // replay
	e.mustDo(withKey(importReq("contact", `{"objects":[{"default":{"email":"b"}}]}`), "k1")) // 409
	j := e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"a"}},{"default":{"email":"c"}}],"options":{"dedupe_by":"email"}}`)).job(t)
	e.mustDo(pollReq(*j.JobID))
	e.mustDo(pollReq("nope"))

	st := e.ts.Stats()
	want := map[string][2]int{
		"Requests":      {st.Requests, 6},
		"Imports":       {st.Imports, 2},
		"SyncImports":   {st.SyncImports, 1},
		"AsyncImports":  {st.AsyncImports, 1},
		"JobsCompleted": {st.JobsCompleted, 1},
		"Rows":          {st.Rows, 3},
		"Creates":       {st.Creates, 2},
		"Skips":         {st.Skips, 1},
		"Replays":       {st.Replays, 1},
		"Conflicts":     {st.Conflicts, 1},
		"Polls":         {st.Polls, 1},
		"import 200":    {st.ByKindStatus[prismtest.KindStatus{Kind: prismtest.KindImport, Status: 200}], 2},
		"import 202":    {st.ByKindStatus[prismtest.KindStatus{Kind: prismtest.KindImport, Status: 202}], 1},
		"poll 404":      {st.ByKindStatus[prismtest.KindStatus{Kind: prismtest.KindPoll, Status: 404}], 1},
		"by kind poll":  {st.ByKind[prismtest.KindPoll], 2},
		"by status 409": {st.ByStatus[409], 1},
		"job polls":     {st.JobPolls[*j.JobID], 1},
	}
	for name, v := range want {
		if v[0] != v[1] {
			t.Errorf("%s = %d, want %d", name, v[0], v[1])
		}
	}
	log := e.ts.Log()
	if len(log) != 6 {
		t.Fatalf("log %d entries", len(log))
	}
	statuses := []int{200, 200, 409, 202, 200, 404}
	for i, l := range log {
		if l.Status != statuses[i] || !strings.HasPrefix(l.RequestID, "req_") || l.Time.IsZero() {
			t.Errorf("log[%d] = %+v", i, l)
		}
	}
	if !log[1].Replay || log[0].IdempotencyKey != "k1" || log[3].JobID != *j.JobID || log[3].Objects != 2 || log[4].Kind != prismtest.KindPoll {
		t.Errorf("log details: %+v", log)
	}
	// Mutating returned values must not touch the fake.
	recs := e.ts.Records("contact")
	recs[0].Properties["email"] = "mutated"
	st.JobPolls[*j.JobID] = 99
	if e.ts.Records("contact")[0].Properties["email"] != "a" || e.ts.Stats().JobPolls[*j.JobID] != 1 {
		t.Error("inspection returned shared state")
	}

	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultStatus})
	e.ts.Reset()
	if e.ts.Count("contact") != 0 || e.ts.Stats().Requests != 0 || len(e.ts.Log()) != 0 || e.ts.PendingFaults() != 0 {
		t.Error("Reset left state behind")
	}
	if _, ok := e.ts.Job(*j.JobID); ok {
		t.Error("Reset left jobs")
	}
	// The key is free again after Reset.
	if rep := e.mustDo(withKey(importReq("contact", `{"objects":[{"default":{"email":"b"}}]}`), "k1")); rep.status != 200 || rep.header.Get("idempotent-replay") != "" {
		t.Errorf("after reset: %d %v", rep.status, rep.header)
	}
	if e.ts.Records("nothing") != nil || e.ts.Find("nothing", "a", "b") != nil {
		t.Error("unknown object type returned records")
	}
}

func TestKeyNeverLogged(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.mustDo(importReq("deal", `{"objects":[]}`))
	bad := importReq("deal", `{}`)
	bad.apiKey = ptr("sk_live_leaky")
	rep := e.mustDo(bad)
	if strings.Contains(string(rep.body), "sk_live_leaky") || strings.Contains(fmt.Sprintf("%+v", e.ts.Log()), key) {
		t.Error("API key leaked into a response or the log")
	}
}

func TestConcurrentDedupe(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 10})
	hc := &http.Client{} // keep-alive here: concurrency, not faults, is under test
	const workers, batches = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				// Every worker sends the same 15 emails, some sync (5), some async (15).
				n := 5
				if (w+b)%2 == 0 {
					n = 15
				}
				body := fmt.Sprintf(`{"objects":%s,"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}`, objects(n))
				r, _ := http.NewRequest("POST", e.ts.ImportURL(team, "contact"), strings.NewReader(body))
				r.Header.Set("x-api-key", key)
				r.Header.Set("Idempotency-Key", fmt.Sprintf("w%d-b%d", w, b))
				resp, err := hc.Do(r)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 202 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
				}
				_ = e.ts.Stats() // inspection racing with requests
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.ts.Count("contact"); n != 15 {
		t.Errorf("records %d, want 15 (dedupe must hold under concurrency)", n)
	}
}

func TestNewServerCleanupReleasesHungRequests(t *testing.T) {
	done := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		ts := prismtest.NewServer(t, prismtest.Options{})
		ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultHang})
		r, _ := http.NewRequest("GET", ts.JobURL("t", "j"), nil)
		r.Header.Set("x-api-key", "k")
		go func() {
			resp, err := ts.Client.Do(r)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitFor(t, func() bool { return ts.PendingFaults() == 0 })
	}) // cleanup must not block on the hung handler
	select {
	case err := <-done:
		if err == nil {
			t.Error("hung request got a response")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hung request not released by cleanup")
	}
}

// TestTwentyThousandRows is the engine's end-to-end scale: it must stay fast
// with dedupe on (no O(n^2) lookups).
func TestTwentyThousandRows(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	hc := &http.Client{}
	start := time.Now()
	for round := range 2 {
		for b := range 200 {
			var sb strings.Builder
			sb.WriteString(`{"objects":[`)
			for i := range 100 {
				if i > 0 {
					sb.WriteString(",")
				}
				fmt.Fprintf(&sb, `{"default":{"ext":%d,"name":"n%d"}}`, b*100+i, round)
			}
			sb.WriteString(`],"options":{"dedupe_by":"ext","update_existing":true}}`)
			r, _ := http.NewRequest("POST", e.ts.ImportURL(team, "contact"), strings.NewReader(sb.String()))
			r.Header.Set("x-api-key", key)
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 202 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	st := e.ts.Stats()
	if st.Creates != 20000 || st.Updates != 20000 || e.ts.Count("contact") != 20000 {
		t.Errorf("creates %d updates %d count %d", st.Creates, st.Updates, e.ts.Count("contact"))
	}
	if r := e.ts.Find("contact", "ext", 19999); len(r) != 1 || r[0].Properties["name"] != "n1" || r[0].Updates != 1 {
		t.Errorf("last record %+v", r)
	}
	t.Logf("40,000 rows in %v", time.Since(start))
}

func TestCloseCutsLatencyShort(t *testing.T) {
	e := newEnv(t, prismtest.Options{Latency: time.Hour})
	e.ts.Close()
	if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 200 {
		t.Fatalf("status %d", rep.status)
	}
}
