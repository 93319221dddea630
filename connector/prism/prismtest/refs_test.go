package prismtest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func TestRefProperties(t *testing.T) {
	e := newEnv(t, prismtest.Options{Refs: map[string]map[string]prismtest.RefProperty{
		"contact": {
			"organization": {Object: "organization"},
			"orgs":         {Object: "organization", Multi: true},
		},
	}})
	rep := e.mustDo(importReq("organization", `{"objects":[{"default":{"name":"a"}},{"default":{"name":"b"}}]}`))
	orgs := rep.job(t).Results
	a, b := *orgs[0].ID, *orgs[1].ID
	if !e.ts.Delete("organization", b) || e.ts.Delete("organization", b) {
		t.Fatal("Delete deletes a live record once")
	}
	person := e.mustDo(importReq("contact", `{"objects":[{"default":{"name":"p"}}]}`)).job(t).Results[0]

	cases := []struct {
		name, value string
		code        string // "" for accepted
		msg         string
	}{
		{"an organization", `"` + a + `"`, "", ""},
		{"null clears", `null`, "", ""},
		{"a deleted organization", `"` + b + `"`, "invalid_reference", `property "organization": "` + b + `" is not the id of an existing organization record`},
		{"a record of another type", `"` + *person.ID + `"`, "invalid_reference", "is not the id of an existing organization record"},
		{"not a uuid", `"42"`, "invalid_reference", `"42" is not the id`},
		{"upper-case uuid", `"` + strings.ToUpper(a) + `"`, "invalid_reference", "is not the id"},
		{"a number", `42`, "invalid_reference", `property "organization": must be a record id`},
		{"an array on a single ref", `["` + a + `"]`, "invalid_reference", "must be one record id, not an array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"objects":[{"default":{"name":"x","organization":%s}},{"default":{"name":"y"}}]}`, tc.value)
			res := e.mustDo(importReq("contact", body)).job(t).Results
			if len(res) != 2 || res[1].Error != nil {
				t.Fatalf("results %+v: the row without a link must go through", res)
			}
			switch {
			case tc.code == "" && res[0].Error != nil:
				t.Fatalf("refused: %+v", res[0].Error)
			case tc.code != "" && (res[0].Error == nil || res[0].Error.Code != tc.code || !strings.Contains(res[0].Error.Message, tc.msg)):
				t.Fatalf("got %+v, want %s containing %q", res[0].Error, tc.code, tc.msg)
			case tc.code != "" && res[0].ID != nil:
				t.Errorf("a refused row has id %v", *res[0].ID)
			}
		})
	}

	multi := []struct {
		value string
		ok    bool
	}{
		{`["` + a + `"]`, true},
		{`[]`, true},
		{`null`, true},
		{`"` + a + `"`, false},
		{`["` + a + `","` + b + `"]`, false},
		{`["` + a + `",null]`, false},
	}
	for _, m := range multi {
		res := e.mustDo(importReq("contact", `{"objects":[{"default":{"orgs":`+m.value+`}}]}`)).job(t).Results
		if got := res[0].Error == nil; got != m.ok {
			t.Errorf("orgs %s: accepted %v, want %v (%+v)", m.value, got, m.ok, res[0].Error)
		}
	}

	// Refs are checked as a job's rows are applied: a record deleted while
	// the job was processing no longer counts.
	e2 := newEnv(t, prismtest.Options{SyncThreshold: -1, JobDuration: time.Second, Refs: map[string]map[string]prismtest.RefProperty{
		"organization": {"parent": {Object: "organization"}}}})
	first := e2.mustDo(importReq("organization", `{"objects":[{"default":{"name":"root"}}]}`)).job(t)
	e2.clock.Advance(time.Second)
	root := *e2.mustDo(pollReq(*first.JobID)).job(t).Results[0].ID
	job := e2.mustDo(importReq("organization", `{"objects":[{"default":{"name":"leaf","parent":"`+root+`"}}]}`)).job(t)
	e2.ts.Delete("organization", root)
	e2.clock.Advance(time.Second)
	if res := e2.mustDo(pollReq(*job.JobID)).job(t).Results; res[0].Error == nil || res[0].Error.Code != "invalid_reference" {
		t.Errorf("a job applied after its parent was deleted: %+v", res[0])
	}
	e3 := newEnv(t, prismtest.Options{Refs: map[string]map[string]prismtest.RefProperty{"organization": {"parent": {Object: "organization"}}}})
	made := e3.mustDo(importReq("organization", `{"objects":[{"default":{"name":"root"}}]}`)).job(t).Results[0]
	e3.ts.Delete("organization", *made.ID)
	res := e3.mustDo(importReq("organization", `{"objects":[{"default":{"name":"again"}},{"default":{"parent":"`+*made.ID+`"}}]}`)).job(t).Results
	if res[1].Error == nil {
		t.Errorf("a link to a deleted record was accepted: %+v", res[1])
	}
	if e3.ts.Stats().RowErrors != 1 {
		t.Errorf("row errors = %d", e3.ts.Stats().RowErrors)
	}
}

func TestDeletedRecordsAreGone(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	body := `{"objects":[{"default":{"external_id":"1","name":"a"}}],"options":{"dedupe_by":"external_id","update_existing":true}}`
	first := *e.mustDo(importReq("organization", body)).job(t).Results[0].ID
	if !e.ts.Delete("organization", first) {
		t.Fatal("not deleted")
	}
	if e.ts.Count("organization") != 0 || len(e.ts.Records("organization")) != 0 || len(e.ts.Find("organization", "external_id", "1")) != 0 {
		t.Error("a deleted record is still listed")
	}
	if _, ok := e.ts.Record("organization", first); ok {
		t.Error("Record finds a deleted record")
	}
	// Dedupe no longer finds it: the same import creates a new record.
	res := e.mustDo(importReq("organization", body)).job(t).Results[0]
	if !res.Created || *res.ID == first {
		t.Errorf("re-import after delete: %+v", res)
	}
	if e.ts.Count("organization") != 1 {
		t.Errorf("count = %d", e.ts.Count("organization"))
	}
	if e.ts.Delete("organization", "not-a-uuid") || e.ts.Delete("contact", *res.ID) {
		t.Error("Delete of an unknown record")
	}
}
