package prismtest_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestIdempotency(t *testing.T) {
	body := `{"objects":[{"default":{"email":"a@x.test"}}]}`
	other := `{"objects":[{"default":{"email":"b@x.test"}}]}`
	cases := []struct {
		name      string
		first     req
		advance   time.Duration
		second    req
		status    int
		code      string
		replay    bool
		records   int // organization records afterwards
		execution int // imports executed
	}{
		{"replay same request", withKey(importReq("organization", body), "k1"), 0,
			withKey(importReq("organization", body), "k1"), 200, "", true, 1, 1},
		{"replay just before 24h", withKey(importReq("organization", body), "k1"), 24*time.Hour - time.Second,
			withKey(importReq("organization", body), "k1"), 200, "", true, 1, 1},
		{"different body", withKey(importReq("organization", body), "k1"), 0,
			withKey(importReq("organization", other), "k1"), 409, "idempotency_key_mismatch", false, 1, 1},
		{"different path", withKey(importReq("organization", body), "k1"), 0,
			withKey(importReq("contact", body), "k1"), 409, "idempotency_key_mismatch", false, 1, 1},
		{"stale after 24h", withKey(importReq("organization", body), "k1"), 24 * time.Hour,
			withKey(importReq("organization", body), "k1"), 409, "idempotency_key_stale", false, 1, 1},
		{"stale even with other body", withKey(importReq("organization", body), "k1"), 25 * time.Hour,
			withKey(importReq("organization", other), "k1"), 409, "idempotency_key_stale", false, 1, 1},
		{"different keys both run", withKey(importReq("organization", body), "k1"), 0,
			withKey(importReq("organization", body), "k2"), 200, "", false, 2, 2},
		{"no key runs again", importReq("organization", body), 0,
			importReq("organization", body), 200, "", false, 2, 2},
		{"4xx is stored and replayed", withKey(importReq("organization", `{"objects":1}`), "k1"), 0,
			withKey(importReq("organization", `{"objects":1}`), "k1"), 400, "invalid_request", true, 0, 0},
		{"empty key", withKey(importReq("organization", body), ""), 0,
			withKey(importReq("organization", body), ""), 400, "invalid_idempotency_key", false, 0, 0},
		{"256-char key", withKey(importReq("organization", body), strings.Repeat("k", 256)), 0,
			withKey(importReq("organization", body), strings.Repeat("k", 256)), 400, "invalid_idempotency_key", false, 0, 0},
		{"255-char key ok", withKey(importReq("organization", body), strings.Repeat("k", 255)), 0,
			withKey(importReq("organization", body), strings.Repeat("k", 255)), 200, "", true, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, prismtest.Options{})
			first := e.mustDo(tc.first)
			e.clock.Advance(tc.advance)
			second := e.mustDo(tc.second)
			if second.status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", second.status, tc.status, second.body)
			}
			if tc.code != "" && second.code(t) != tc.code {
				t.Errorf("code = %q, want %q", second.code(t), tc.code)
			}
			if got := second.header.Get("idempotent-replay") == "true"; got != tc.replay {
				t.Errorf("idempotent-replay = %v, want %v", got, tc.replay)
			}
			if tc.replay && !bytes.Equal(first.body, second.body) {
				t.Errorf("replayed body differs:\n%s\n%s", first.body, second.body)
			}
			if n := e.ts.Count("organization"); n != tc.records {
				t.Errorf("records = %d, want %d", n, tc.records)
			}
			st := e.ts.Stats()
			if st.Imports != tc.execution {
				t.Errorf("imports executed = %d, want %d", st.Imports, tc.execution)
			}
			if tc.replay != (st.Replays == 1) {
				t.Errorf("Replays = %d", st.Replays)
			}
			if tc.status == 409 && st.Conflicts != 1 {
				t.Errorf("Conflicts = %d", st.Conflicts)
			}
		})
	}
}

func TestIdempotentReplayOfAsyncImport(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 2})
	r := withKey(importReq("contact", `{"objects":`+objects(2)+`}`), "batch-1")
	first := e.mustDo(r)
	e.mustDo(pollReq(*first.job(t).JobID)) // completes the job
	second := e.mustDo(r)
	if second.status != 202 || second.header.Get("idempotent-replay") != "true" {
		t.Fatalf("replay %d %v", second.status, second.header)
	}
	if second.header.Get("Location") != first.header.Get("Location") || *second.job(t).JobID != *first.job(t).JobID {
		t.Errorf("replay points at another job")
	}
	if n := e.ts.Count("contact"); n != 2 {
		t.Errorf("records %d", n)
	}
}

func TestIdempotencyKeyIgnoredOnPolls(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	j := e.mustDo(importReq("contact", `{"objects":[]}`)).job(t)
	p := pollReq(*j.JobID)
	p.idemKey = ptr("")
	if rep := e.mustDo(p); rep.status != 200 {
		t.Errorf("poll with empty key: %d", rep.status)
	}
}

func TestServerErrorIsNotStored(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.ts.InjectFault(prismtest.Fault{Kind: prismtest.FaultErrorAfterApply, Status: 502})
	r := withKey(importReq("contact", `{"objects":[{"default":{"email":"a"}}]}`), "k")
	if rep := e.mustDo(r); rep.status != 502 {
		t.Fatalf("first: %d", rep.status)
	}
	rep := e.mustDo(r)
	if rep.status != 200 || rep.header.Get("idempotent-replay") != "" {
		t.Fatalf("retry: %d replay=%q", rep.status, rep.header.Get("idempotent-replay"))
	}
	// The 5xx attempt had been applied, so without dedupe the retry duplicates.
	if n := e.ts.Count("contact"); n != 2 {
		t.Errorf("records %d, want 2", n)
	}
	// Now the key is claimed by the 200.
	if rep := e.mustDo(r); rep.header.Get("idempotent-replay") != "true" {
		t.Errorf("third attempt not replayed")
	}
}
