package prismtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestAuthAndRouting(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	okBody := `{"objects":[]}`
	cases := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"ok", importReq("organization", okBody), 200, ""},
		{"missing key", req{path: "/v2/prism/" + team + "/organization/import", apiKey: ptr(""), body: okBody}, 401, "unauthorized"},
		{"wrong key", req{path: "/v2/prism/" + team + "/organization/import", apiKey: ptr("nope"), body: okBody}, 403, "forbidden"},
		{"wrong team", req{path: "/v2/prism/other-team/organization/import", body: okBody}, 403, "forbidden"},
		{"missing key beats wrong team", req{path: "/v2/prism/other/organization/import", apiKey: ptr(""), body: okBody}, 401, "unauthorized"},
		{"bad object type", importReq("company", okBody), 400, "invalid_object_type"},
		{"GET on import", req{method: "GET", path: "/v2/prism/" + team + "/organization/import"}, 405, "method_not_allowed"},
		{"POST on poll", req{method: "POST", path: "/v2/prism/" + team + "/imports/abc", body: "{}"}, 405, "method_not_allowed"},
		{"unknown path", req{method: "GET", path: "/v2/prism/" + team + "/organization"}, 404, "not_found"},
		{"outside prism", req{method: "GET", path: "/v1/whatever"}, 404, "not_found"},
		{"unknown job", pollReq("00000000-0000-0000-0000-000000000000"), 404, "not_found"},
	}
	for _, ot := range []string{"organization", "contact", "identity", "deal", "action", "document", "engagement"} {
		cases = append(cases, struct {
			name   string
			r      req
			status int
			code   string
		}{"object " + ot, importReq(ot, okBody), 200, ""})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.mustDo(tc.r)
			if rep.status != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", rep.status, tc.status, rep.body)
			}
			rid := rep.header.Get("x-request-id")
			if !strings.HasPrefix(rid, "req_") {
				t.Errorf("x-request-id = %q, want req_ prefix", rid)
			}
			if tc.code == "" {
				return
			}
			m := rep.json(t)
			if m["code"] != tc.code {
				t.Errorf("code = %v, want %s", m["code"], tc.code)
			}
			if m["request_id"] != rid {
				t.Errorf("request_id = %v, want header value %s", m["request_id"], rid)
			}
			if msg, _ := m["message"].(string); msg == "" || strings.Contains(msg, key) {
				t.Errorf("message %q empty or leaks the key", msg)
			}
		})
	}
}

func TestZeroOptionsAcceptAnyKeyAndTeam(t *testing.T) {
	ts := prismtest.NewServer(t, prismtest.Options{})
	body := strings.NewReader(`{"objects":[{"default":{"name":"a"}}]}`)
	r, _ := http.NewRequest("POST", ts.ImportURL("any-team", "deal"), body)
	r.Header.Set("x-api-key", "whatever")
	resp, err := ts.Client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ts.Count("deal") != 1 {
		t.Fatalf("count = %d", ts.Count("deal"))
	}
	r, _ = http.NewRequest("POST", ts.ImportURL("any-team", "deal"), strings.NewReader(`{"objects":[]}`))
	resp, err = ts.Client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no key: status %d, want 401", resp.StatusCode)
	}
}

func TestBadBodies(t *testing.T) {
	e := newEnv(t, prismtest.Options{MaxBodyBytes: 1 << 10, KnownSlugs: map[string][]string{"contact": {"email", "name"}}})
	cases := []struct {
		name   string
		object string
		body   string
		status int
		code   string
	}{
		{"malformed json", "organization", `{"objects":[`, 400, "invalid_request"},
		{"not an object", "organization", `[1,2]`, 400, "invalid_request"},
		{"empty body", "organization", ``, 400, "invalid_request"},
		{"trailing data", "organization", `{"objects":[]} {}`, 400, "invalid_request"},
		{"missing objects", "organization", `{"options":{}}`, 400, "invalid_request"},
		{"null objects", "organization", `{"objects":null}`, 400, "invalid_request"},
		{"objects not array", "organization", `{"objects":{}}`, 400, "invalid_request"},
		{"object not object", "organization", `{"objects":[1]}`, 400, "invalid_request"},
		{"default not object", "organization", `{"objects":[{"default":[1]}]}`, 400, "invalid_request"},
		{"list not object", "organization", `{"objects":[{"default":{},"list":"x"}]}`, 400, "invalid_request"},
		{"unknown top field", "organization", `{"objects":[],"Options":{}}`, 400, "invalid_request"},
		{"wrong-case field", "organization", `{"Objects":[]}`, 400, "invalid_request"},
		{"legacy id field", "organization", `{"objects":[{"id":"x","default":{}}]}`, 400, "invalid_request"},
		{"unknown option", "organization", `{"objects":[],"options":{"case_insensitive":true}}`, 400, "invalid_request"},
		{"options not object", "organization", `{"objects":[],"options":[]}`, 400, "invalid_request"},
		{"multi-slug dedupe", "organization", `{"objects":[],"options":{"dedupe_by":["a","b"]}}`, 400, "compound_dedupe_unsupported"},
		{"empty dedupe array", "organization", `{"objects":[],"options":{"dedupe_by":[]}}`, 400, "invalid_request"},
		{"empty dedupe slug", "organization", `{"objects":[],"options":{"dedupe_by":""}}`, 400, "invalid_request"},
		{"numeric dedupe", "organization", `{"objects":[],"options":{"dedupe_by":3}}`, 400, "invalid_request"},
		{"non-bool caseInsensitive", "organization", `{"objects":[],"options":{"caseInsensitive":"yes"}}`, 400, "invalid_request"},
		{"non-bool update_existing", "organization", `{"objects":[],"options":{"update_existing":1}}`, 400, "invalid_request"},
		{"bad list_id", "organization", `{"objects":[],"options":{"list_id":"not-a-uuid"}}`, 400, "invalid_request"},
		{"list_id vs crm_id", "organization", `{"objects":[],"options":{"list_id":"6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a","crm_id":"7f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a"}}`, 400, "invalid_request"},
		{"unknown dedupe slug", "contact", `{"objects":[],"options":{"dedupe_by":"phone"}}`, 400, "unknown_property"},
		{"too large", "organization", `{"objects":[{"default":{"x":"` + strings.Repeat("a", 2000) + `"}}]}`, 413, "payload_too_large"},
		{"ok: dedupe array of one", "organization", `{"objects":[],"options":{"dedupe_by":["email"]}}`, 200, ""},
		{"ok: nulls everywhere", "organization", `{"objects":[{"default":null,"list":null}],"options":{"dedupe_by":null,"list_id":null}}`, 200, ""},
		{"ok: all known options", "organization", `{"objects":[],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true,"list_id":"6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a","crm_id":"6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a","create_missing_options":true,"require_list_stage":false}}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.mustDo(importReq(tc.object, tc.body))
			if rep.status != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", rep.status, tc.status, rep.body)
			}
			if tc.code != "" {
				if got := rep.code(t); got != tc.code {
					t.Errorf("code = %q, want %q", got, tc.code)
				}
			}
		})
	}
	if n := e.ts.Count("organization"); n != 1 {
		t.Errorf("records = %d, want 1 (only the null-default object)", n)
	}
}

func TestSyncImport(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	rep := e.mustDo(importReq("contact", `{"objects":[
		{"default":{"email":"a@x.test","age":41,"vip":true,"tags":["x","y"],"note":null,"big":12345678901234567890}},
		{"default":{"email":"b@x.test"},"list":{"stage":"lead"}}
	],"options":{"list_id":"6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a"}}`))
	if rep.status != 200 {
		t.Fatalf("status %d: %s", rep.status, rep.body)
	}
	if loc := rep.header.Get("Location"); loc != "" {
		t.Errorf("sync import has Location %q", loc)
	}
	if ct := rep.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	raw := rep.json(t)
	if v, ok := raw["job_id"]; !ok || v != nil {
		t.Errorf("job_id = %v (present %v), want explicit null", v, ok)
	}
	j := rep.job(t)
	if j.Status != "complete" || j.Total != 2 || j.Processed != 2 || j.Succeeded != 2 || j.Failed != 0 {
		t.Errorf("job = %+v", j)
	}
	if j.CreatedAt != "2026-06-10T12:00:00.000Z" || j.UpdatedAt == "" {
		t.Errorf("timestamps %q %q", j.CreatedAt, j.UpdatedAt)
	}
	if len(j.Results) != 2 {
		t.Fatalf("results %d", len(j.Results))
	}
	for i, r := range j.Results {
		if r.InputIndex == nil || *r.InputIndex != i || r.ID == nil || !r.Created || r.Existing || r.Updated || r.Error != nil {
			t.Errorf("result %d = %+v", i, r)
		}
	}
	recs := e.ts.Records("contact")
	if len(recs) != 2 {
		t.Fatalf("records %d", len(recs))
	}
	p := recs[0].Properties
	if recs[0].ID != *j.Results[0].ID || p["email"] != "a@x.test" || p["vip"] != true || p["note"] != nil {
		t.Errorf("record 0 = %+v", recs[0])
	}
	if n, ok := p["big"].(interface{ String() string }); !ok || n.String() != "12345678901234567890" {
		t.Errorf("big number = %#v, want exact json.Number", p["big"])
	}
	if tags, _ := p["tags"].([]any); len(tags) != 2 {
		t.Errorf("tags = %#v", p["tags"])
	}
	if string(recs[1].List) != `{"stage":"lead"}` || recs[1].ListID != "6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a" {
		t.Errorf("record 1 list = %s / %s", recs[1].List, recs[1].ListID)
	}
	if _, ok := e.ts.Record("contact", recs[1].ID); !ok {
		t.Error("Record by id not found")
	}
	// Sync imports are never pollable.
	if rep := e.mustDo(pollReq("null")); rep.status != 404 {
		t.Errorf("poll of sync import: %d", rep.status)
	}
	st := e.ts.Stats()
	if st.Imports != 1 || st.SyncImports != 1 || st.Creates != 2 || st.Rows != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmptyImportHasEmptyResults(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	rep := e.mustDo(importReq("deal", `{"objects":[]}`))
	if !strings.Contains(string(rep.body), `"results":[]`) {
		t.Errorf("body %s lacks results: []", rep.body)
	}
}

func TestRowErrors(t *testing.T) {
	e := newEnv(t, prismtest.Options{KnownSlugs: map[string][]string{"contact": {"email", "name", "addr"}}})
	rep := e.mustDo(importReq("contact", `{"objects":[
		{"default":{"email":"a@x.test"}},
		{"default":{"email":"b@x.test","addr":{"city":"Oslo"}}},
		{"default":{"email":"c@x.test","phone":"123"}},
		{"default":{"email":"d@x.test","name":[["nested"]]}},
		{"default":{"email":"e@x.test","name":[{"o":1}]}},
		{"default":{"email":"f@x.test","name":["ok",1,true,null]}}
	]}`))
	j := rep.job(t)
	if rep.status != 200 || j.Status != "complete" || j.Succeeded != 2 || j.Failed != 4 || j.Processed != 6 {
		t.Fatalf("status %d job %+v", rep.status, j)
	}
	wantCodes := []string{"", "invalid_value", "unknown_property", "invalid_value", "invalid_value", ""}
	for i, r := range j.Results {
		got := ""
		if r.Error != nil {
			got = r.Error.Code
			if r.Error.Message == "" || r.ID != nil || r.Created {
				t.Errorf("row %d error result = %+v", i, r)
			}
		}
		if got != wantCodes[i] {
			t.Errorf("row %d code %q, want %q", i, got, wantCodes[i])
		}
	}
	if n := e.ts.Count("contact"); n != 2 {
		t.Errorf("records %d, want 2", n)
	}
	// KnownSlugs only restricts the types it names.
	rep = e.mustDo(importReq("deal", `{"objects":[{"default":{"anything":1}}]}`))
	if j := rep.job(t); j.Failed != 0 {
		t.Errorf("deal import failed rows: %+v", j)
	}
	if st := e.ts.Stats(); st.RowErrors != 4 {
		t.Errorf("RowErrors %d", st.RowErrors)
	}
}

func TestDedupe(t *testing.T) {
	type row struct{ created, existing, updated bool }
	cases := []struct {
		name    string
		seed    string // first import
		body    string // second import
		want    []row
		records int
		check   func(t *testing.T, recs []prismtest.Record)
	}{
		{
			name:    "no dedupe always creates",
			seed:    `{"objects":[{"default":{"email":"a@x.test"}}]}`,
			body:    `{"objects":[{"default":{"email":"a@x.test"}},{"default":{"email":"a@x.test"}}]}`,
			want:    []row{{created: true}, {created: true}},
			records: 3,
		},
		{
			name:    "match is skipped by default",
			seed:    `{"objects":[{"default":{"email":"a@x.test","name":"A"}}]}`,
			body:    `{"objects":[{"default":{"email":"a@x.test","name":"B"}},{"default":{"email":"b@x.test"}}],"options":{"dedupe_by":"email"}}`,
			want:    []row{{existing: true}, {created: true}},
			records: 2,
			check: func(t *testing.T, recs []prismtest.Record) {
				if recs[0].Properties["name"] != "A" || recs[0].Updates != 0 || recs[0].Matches != 1 {
					t.Errorf("skipped record changed: %+v", recs[0])
				}
			},
		},
		{
			name:    "update_existing patches",
			seed:    `{"objects":[{"default":{"email":"a@x.test","name":"A","city":"Oslo"}}]}`,
			body:    `{"objects":[{"default":{"email":"a@x.test","name":"B","city":null}}],"options":{"dedupe_by":"email","update_existing":true}}`,
			want:    []row{{existing: true, updated: true}},
			records: 1,
			check: func(t *testing.T, recs []prismtest.Record) {
				p := recs[0].Properties
				if p["name"] != "B" || p["city"] != nil || recs[0].Updates != 1 {
					t.Errorf("patched record: %+v", recs[0])
				}
			},
		},
		{
			name:    "case-sensitive by default",
			seed:    `{"objects":[{"default":{"email":"A@X.test"}}]}`,
			body:    `{"objects":[{"default":{"email":"a@x.test"}}],"options":{"dedupe_by":"email"}}`,
			want:    []row{{created: true}},
			records: 2,
		},
		{
			name:    "caseInsensitive matches",
			seed:    `{"objects":[{"default":{"email":"A@X.test"}}]}`,
			body:    `{"objects":[{"default":{"email":"a@x.TEST"}}],"options":{"dedupe_by":["email"],"caseInsensitive":true}}`,
			want:    []row{{existing: true}},
			records: 1,
		},
		{
			name:    "same request: later row matches earlier",
			seed:    `{"objects":[]}`,
			body:    `{"objects":[{"default":{"email":"a@x.test","n":1}},{"default":{"email":"a@x.test","n":2}}],"options":{"dedupe_by":"email","update_existing":true}}`,
			want:    []row{{created: true}, {existing: true, updated: true}},
			records: 1,
			check: func(t *testing.T, recs []prismtest.Record) {
				if n := recs[0].Properties["n"]; n == nil || n.(interface{ String() string }).String() != "2" {
					t.Errorf("n = %v, want 2", n)
				}
			},
		},
		{
			name:    "numbers and strings share keys",
			seed:    `{"objects":[{"default":{"ext_id":42}}]}`,
			body:    `{"objects":[{"default":{"ext_id":"42"}},{"default":{"ext_id":43}}],"options":{"dedupe_by":"ext_id"}}`,
			want:    []row{{existing: true}, {created: true}},
			records: 2,
		},
		{
			name:    "missing or null value never matches",
			seed:    `{"objects":[{"default":{"name":"x"}},{"default":{"email":null}}]}`,
			body:    `{"objects":[{"default":{"name":"y"}},{"default":{"email":null}}],"options":{"dedupe_by":"email"}}`,
			want:    []row{{created: true}, {created: true}},
			records: 4,
		},
		{
			name:    "first created record wins among duplicates",
			seed:    `{"objects":[{"default":{"email":"a","n":1}},{"default":{"email":"a","n":2}}]}`,
			body:    `{"objects":[{"default":{"email":"a"}}],"options":{"dedupe_by":"email"}}`,
			want:    []row{{existing: true}},
			records: 2,
			check: func(t *testing.T, recs []prismtest.Record) {
				if recs[0].Matches != 1 || recs[1].Matches != 0 {
					t.Errorf("matches %d %d", recs[0].Matches, recs[1].Matches)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, prismtest.Options{})
			if rep := e.mustDo(importReq("contact", tc.seed)); rep.status != 200 {
				t.Fatalf("seed: %d %s", rep.status, rep.body)
			}
			seedIDs := map[string]bool{}
			for _, r := range e.ts.Records("contact") {
				seedIDs[r.ID] = true
			}
			rep := e.mustDo(importReq("contact", tc.body))
			if rep.status != 200 {
				t.Fatalf("import: %d %s", rep.status, rep.body)
			}
			j := rep.job(t)
			if len(j.Results) != len(tc.want) {
				t.Fatalf("results %d, want %d", len(j.Results), len(tc.want))
			}
			for i, w := range tc.want {
				r := j.Results[i]
				if r.Created != w.created || r.Existing != w.existing || r.Updated != w.updated || r.ID == nil {
					t.Errorf("row %d = %+v, want %+v", i, r, w)
				}
				if w.existing && i == 0 && !seedIDs[*r.ID] {
					t.Errorf("row %d matched %s, not a seeded record", i, *r.ID)
				}
			}
			recs := e.ts.Records("contact")
			if len(recs) != tc.records {
				t.Fatalf("records %d, want %d", len(recs), tc.records)
			}
			if tc.check != nil {
				tc.check(t, recs)
			}
		})
	}
}

func TestDedupeIndexFollowsUpdates(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	// Build both indexes, then change the case of the key through a
	// case-insensitive update: the case-sensitive index must follow.
	e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"a@x"}}],"options":{"dedupe_by":"email"}}`))
	e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"A@X"}}],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}`))
	rep := e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"A@X"}},{"default":{"email":"a@x"}}],"options":{"dedupe_by":"email"}}`))
	j := rep.job(t)
	if !j.Results[0].Existing || !j.Results[1].Created {
		t.Errorf("results %+v %+v", j.Results[0], j.Results[1])
	}
	if got := e.ts.Find("contact", "email", "A@X"); len(got) != 1 {
		t.Errorf("Find A@X = %d records", len(got))
	}
	if got := e.ts.Find("contact", "email", "a@x"); len(got) != 1 {
		t.Errorf("Find a@x = %d records", len(got))
	}
	e.mustDo(importReq("deal", `{"objects":[{"default":{"ext":7}}]}`))
	if got := e.ts.Find("deal", "ext", 7); len(got) != 1 {
		t.Errorf("Find 7 = %d records", len(got))
	}
}

func TestAsyncImportLifecycle(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 3, JobDuration: time.Minute})
	rep := e.mustDo(importReq("organization", `{"objects":`+objects(3)+`}`))
	if rep.status != 202 {
		t.Fatalf("status %d: %s", rep.status, rep.body)
	}
	j := rep.job(t)
	if j.JobID == nil || j.Status != "processing" || j.Total != 3 || j.Processed != 0 || j.Results != nil {
		t.Fatalf("202 job = %+v", j)
	}
	if strings.Contains(string(rep.body), `"results"`) {
		t.Errorf("processing job carries results: %s", rep.body)
	}
	if want := "/v2/prism/" + team + "/imports/" + *j.JobID; rep.header.Get("Location") != want {
		t.Errorf("Location = %q, want %q", rep.header.Get("Location"), want)
	}
	if j.ExpiresAt != "2026-06-17T12:00:00.000Z" {
		t.Errorf("expires_at = %q", j.ExpiresAt)
	}
	// Effects are applied when the job completes, not before.
	if n := e.ts.Count("organization"); n != 0 {
		t.Fatalf("records before completion: %d", n)
	}
	poll := e.mustDo(pollReq(*j.JobID))
	if pj := poll.job(t); poll.status != 200 || pj.Status != "processing" {
		t.Fatalf("early poll %d %+v", poll.status, pj)
	}
	e.clock.Advance(time.Minute)
	poll = e.mustDo(pollReq(*j.JobID))
	pj := poll.job(t)
	if poll.status != 200 || pj.Status != "complete" || pj.Processed != 3 || pj.Succeeded != 3 || len(pj.Results) != 3 {
		t.Fatalf("late poll %d %+v", poll.status, pj)
	}
	if *pj.JobID != *j.JobID || pj.UpdatedAt != "2026-06-10T12:01:00.000Z" {
		t.Errorf("job id %s updated_at %s", *pj.JobID, pj.UpdatedAt)
	}
	for i, r := range pj.Results {
		if *r.InputIndex != i || !r.Created || r.ID == nil {
			t.Errorf("result %d %+v", i, r)
		}
	}
	if n := e.ts.Count("organization"); n != 3 {
		t.Fatalf("records after completion: %d", n)
	}
	info, ok := e.ts.Job(*j.JobID)
	if !ok || info.Polls != 2 || info.Status != "complete" {
		t.Errorf("job info %+v", info)
	}
	st := e.ts.Stats()
	if st.Polls != 2 || st.JobPolls[*j.JobID] != 2 || st.AsyncImports != 1 || st.JobsCompleted != 1 {
		t.Errorf("stats %+v", st)
	}
	// Retained for JobTTL (7 days) from creation.
	e.clock.Advance(7*24*time.Hour - time.Minute - time.Second)
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 200 {
		t.Errorf("poll just before expiry: %d", rep.status)
	}
	e.clock.Advance(time.Second)
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 404 || rep.code(t) != "not_found" {
		t.Errorf("poll after expiry: %d %s", rep.status, rep.body)
	}
}

func TestAsyncDefaultsCompleteOnFirstPoll(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	rep := e.mustDo(importReq("contact", `{"objects":`+objects(100)+`}`))
	if rep.status != 202 {
		t.Fatalf("100 objects: status %d, want 202 (threshold 100)", rep.status)
	}
	j := rep.job(t)
	// With JobDuration 0 the job is due at once: the next request of any kind
	// sees it completed, so this sync import dedupes against its records.
	sync := e.mustDo(importReq("contact", `{"objects":`+objects(99)+`,"options":{"dedupe_by":"email"}}`))
	if sync.status != 200 {
		t.Fatalf("99 objects: status %d, want 200", sync.status)
	}
	for i, r := range sync.job(t).Results {
		if !r.Existing || r.Created {
			t.Fatalf("sync row %d = %+v, want existing", i, r)
		}
	}
	poll := e.mustDo(pollReq(*j.JobID)).job(t)
	if poll.Status != "complete" || len(poll.Results) != 100 {
		t.Fatalf("first poll %+v", poll.Status)
	}
	if n := e.ts.Count("contact"); n != 100 {
		t.Errorf("records %d", n)
	}
}

func TestJobEffectsVisibleToLaterRequests(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: 2})
	rep := e.mustDo(importReq("contact", `{"objects":`+objects(2)+`}`))
	if rep.status != 202 {
		t.Fatal(rep.status)
	}
	// Any later request observes the due job as completed.
	rep = e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"user1@x.test"}}],"options":{"dedupe_by":"email"}}`))
	if j := rep.job(t); !j.Results[0].Existing {
		t.Errorf("later import did not see the job's record: %+v", j.Results[0])
	}
}

func TestAlwaysAsync(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	if rep := e.mustDo(importReq("deal", `{"objects":[]}`)); rep.status != 202 {
		t.Fatalf("status %d", rep.status)
	}
}

func TestExpireJobHook(t *testing.T) {
	e := newEnv(t, prismtest.Options{SyncThreshold: -1})
	j := e.mustDo(importReq("deal", `{"objects":`+objects(2)+`}`)).job(t)
	if !e.ts.ExpireJob(*j.JobID) {
		t.Fatal("ExpireJob: not found")
	}
	if e.ts.ExpireJob("nope") {
		t.Error("ExpireJob(nope) = true")
	}
	if rep := e.mustDo(pollReq(*j.JobID)); rep.status != 404 {
		t.Errorf("poll of expired job: %d", rep.status)
	}
	if n := e.ts.Count("deal"); n != 2 {
		t.Errorf("expired job's effects: %d records, want 2", n)
	}
}

func TestOmitInputIndex(t *testing.T) {
	e := newEnv(t, prismtest.Options{OmitInputIndex: true})
	rep := e.mustDo(importReq("contact", `{"objects":`+objects(2)+`}`))
	if strings.Contains(string(rep.body), "input_index") {
		t.Errorf("body has input_index: %s", rep.body)
	}
	if j := rep.job(t); len(j.Results) != 2 {
		t.Errorf("results %d", len(j.Results))
	}
}

func TestDedupeIndexKeepsCreationOrder(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.mustDo(importReq("contact", `{"objects":[{"default":{"ext":1,"email":"y"}},{"default":{"ext":2,"email":"x"}}]}`))
	// Build the email index, then move the older record into the "x" bucket.
	e.mustDo(importReq("contact", `{"objects":[],"options":{"dedupe_by":"email"}}`))
	e.mustDo(importReq("contact", `{"objects":[{"default":{"ext":1,"email":"x"}}],"options":{"dedupe_by":"ext","update_existing":true}}`))
	recs := e.ts.Records("contact")
	j := e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"x"}},{"default":{"email":"y"}}],"options":{"dedupe_by":"email"}}`)).job(t)
	if *j.Results[0].ID != recs[0].ID {
		t.Errorf("matched %s, want the earliest record %s", *j.Results[0].ID, recs[0].ID)
	}
	if !j.Results[1].Created {
		t.Errorf("old value still indexed: %+v", j.Results[1])
	}
}
