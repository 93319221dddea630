package prismtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func recordPath(parts ...string) string {
	return "/v2/prism/" + team + "/" + strings.Join(parts, "/")
}

type batchReply struct {
	Results []struct {
		ID     *string  `json:"id"`
		Status string   `json:"status"`
		Error  *wireErr `json:"error"`
	} `json:"results"`
	Summary struct{ Total, Succeeded, Failed int } `json:"summary"`
}

func decodeBatch(t *testing.T, r reply) batchReply {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var b batchReply
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return b
}

// TestBatchDeleteAndRestore: deleted records are kept and marked, matched
// by no dedupe (an import creates a new one), listed by Deleted; an id
// that is not live is a per-item not_found; restore brings one back into
// the dedupe index; DELETE by id deletes one; batches take at most 100.
func TestBatchDeleteAndRestore(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	body := `{"objects":[{"default":{"email":"a@x"}},{"default":{"email":"b@x"}}],"options":{"dedupe_by":"email"}}`
	e.mustDo(importReq("contact", body))
	recs := e.ts.Records("contact")
	a, b := recs[0].ID, recs[1].ID
	del := withKey(req{path: recordPath("contact", "batch", "delete"), body: fmt.Sprintf(`{"ids":[%q,"00000000-0000-4000-8000-000000000001"]}`, a)}, "del-1")
	got := decodeBatch(t, e.mustDo(del))
	if got.Summary.Total != 2 || got.Summary.Succeeded != 1 || got.Results[0].Status != "ok" ||
		got.Results[1].Status != "error" || got.Results[1].Error.Code != "not_found" {
		t.Errorf("batch/delete answer %+v; want a ok, the unknown id not_found", got)
	}
	// Same key, same body: replayed, not deleted twice.
	if r := e.mustDo(del); r.header.Get("idempotent-replay") != "true" {
		t.Errorf("resend not replayed: %v", r.header)
	}
	if st := e.ts.Stats(); st.Deletes != 1 || st.BatchDeletes != 1 || st.Replays != 1 {
		t.Errorf("stats deletes %d batch deletes %d replays %d; want 1 1 1", st.Deletes, st.BatchDeletes, st.Replays)
	}
	if e.ts.Count("contact") != 1 || len(e.ts.Deleted("contact")) != 1 || e.ts.Deleted("contact")[0].ID != a {
		t.Fatalf("live %d, deleted %v", e.ts.Count("contact"), e.ts.Deleted("contact"))
	}
	// Deleted again: not found.
	again := decodeBatch(t, e.mustDo(req{path: recordPath("contact", "batch", "delete"), body: fmt.Sprintf(`{"ids":[%q]}`, a)}))
	if again.Results[0].Error == nil || again.Results[0].Error.Code != "not_found" {
		t.Errorf("deleting a deleted record: %+v; want not_found", again)
	}
	// Dedupe does not match the deleted record: a new one is created.
	e.mustDo(importReq("contact", body))
	if n := len(e.ts.Find("contact", "email", "a@x")); n != 1 || e.ts.Stats().Creates != 3 {
		t.Errorf("import after delete: %d live a@x, %d creates; want 1 new record", n, e.ts.Stats().Creates)
	}
	// Restore brings the old one back: now dedupe sees two.
	if r := e.mustDo(req{path: recordPath("contact", a, "restore")}); r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	if n := len(e.ts.Find("contact", "email", "a@x")); n != 2 || e.ts.Stats().Restores != 1 {
		t.Errorf("after restore: %d live a@x; want 2", n)
	}
	// DELETE by id, then 404 for it.
	if r := e.mustDo(req{method: http.MethodDelete, path: recordPath("contact", b)}); r.status != http.StatusOK {
		t.Errorf("DELETE by id: %d %s", r.status, r.body)
	}
	if r := e.mustDo(req{method: http.MethodDelete, path: recordPath("contact", b)}); r.status != http.StatusNotFound {
		t.Errorf("DELETE of a deleted record: %d; want 404", r.status)
	}
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", a)
	}
	if r := e.mustDo(req{path: recordPath("contact", "batch", "delete"), body: `{"ids":[` + strings.Join(ids, ",") + `]}`}); r.status != http.StatusBadRequest || r.code(t) != "too_many_items" {
		t.Errorf("101 ids: %d %s; want 400 too_many_items", r.status, r.body)
	}
}

// TestBatchUpdate patches live records by id, item by item.
func TestBatchUpdate(t *testing.T) {
	e := newEnv(t, prismtest.Options{})
	e.mustDo(importReq("contact", `{"objects":[{"default":{"email":"a@x","status":"active"}}]}`))
	a := e.ts.Records("contact")[0].ID
	got := decodeBatch(t, e.mustDo(req{path: recordPath("contact", "batch", "update"),
		body: fmt.Sprintf(`{"items":[{"id":%q,"default":{"status":"archived"}},{"id":"00000000-0000-4000-8000-000000000001","default":{}}]}`, a)}))
	if got.Summary.Succeeded != 1 || got.Results[1].Error == nil || got.Results[1].Error.Code != "not_found" {
		t.Errorf("batch/update answer %+v", got)
	}
	if r, _ := e.ts.Record("contact", a); r.Properties["status"] != "archived" || r.Properties["email"] != "a@x" {
		t.Errorf("patched record %v; want status archived, email kept", r.Properties)
	}
}
