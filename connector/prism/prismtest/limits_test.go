package prismtest_test

import (
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestRatePerSecond(t *testing.T) {
	e := newEnv(t, prismtest.Options{RatePerSecond: 3, SyncThreshold: -1})
	j := e.mustDo(importReq("deal", `{"objects":[]}`)).job(t)
	// Polls count too: two more fill the window.
	for range 2 {
		if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
			t.Fatalf("poll %d", rep.status)
		}
	}
	e.clock.Advance(400 * time.Millisecond)
	rep := e.mustDo(pollReq(*j.JobID))
	if rep.status != 429 || rep.code(t) != "rate_limited" || rep.header.Get("Retry-After") != "1" {
		t.Fatalf("4th request: %d %s Retry-After=%q", rep.status, rep.body, rep.header.Get("Retry-After"))
	}
	e.clock.Advance(600 * time.Millisecond)
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
		t.Fatalf("after a second: %d", rep.status)
	}
	// Sliding: the two polls at t0 have expired too, so one more fits...
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
		t.Fatalf("second after a second: %d", rep.status)
	}
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
		t.Fatalf("third after a second: %d", rep.status)
	}
	// ...but not a fourth within the same second.
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 429 {
		t.Fatalf("fourth after a second: %d", rep.status)
	}
	if st := e.ts.Stats(); st.RateLimited != 2 || st.ByKindStatus[prismtest.KindStatus{Kind: prismtest.KindPoll, Status: 429}] != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestMonthlyLimit(t *testing.T) {
	clock := prismtest.NewClock(time.Date(2026, 6, 30, 23, 59, 0, 0, time.UTC))
	e := newEnv(t, prismtest.Options{MonthlyLimit: 2, Now: clock.Now})
	e.mustDo(importReq("deal", `{"objects":[]}`))
	e.mustDo(pollReq("missing")) // a 404 poll still counts
	rep := e.mustDo(importReq("deal", `{"objects":[]}`))
	if rep.status != 429 || rep.code(t) != "monthly_limit_exceeded" || rep.header.Get("Retry-After") != "60" {
		t.Fatalf("3rd request: %d %s Retry-After=%q", rep.status, rep.body, rep.header.Get("Retry-After"))
	}
	// Refused requests do not eat next month's quota; the counter resets.
	clock.Advance(time.Minute)
	for i := range 2 {
		if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 200 {
			t.Fatalf("july request %d: %d", i, rep.status)
		}
	}
	if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 429 {
		t.Fatalf("july 3rd: %d", rep.status)
	}
}

func TestUnauthenticatedRequestsDoNotCount(t *testing.T) {
	e := newEnv(t, prismtest.Options{MonthlyLimit: 1})
	bad := importReq("deal", `{"objects":[]}`)
	bad.apiKey = ptr("wrong")
	for range 3 {
		e.mustDo(bad)
	}
	if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 200 {
		t.Fatalf("status %d", rep.status)
	}
}
