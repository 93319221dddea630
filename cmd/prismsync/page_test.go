package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// GET / on the ops endpoint is the status page, read from the store; the
// rest of the endpoint is telemetry's, as before; no secret reaches the
// page even when an error carried one.
func TestOpsServesTheStatusPage(t *testing.T) {
	a, store := fileApp(t, "127.0.0.1:0")
	a.cfg.APIKey = "sekrit-key-4711"
	a.syncs = []*mapping.Sync{{Name: "people"}, {Name: "never"}}
	ctx := context.Background()
	now := time.Now()
	mustT(t, store.Commit(ctx, "people", "k1", checkpoint.Position{Cursor: "42", Key: []string{"42"}}, "fp",
		[]checkpoint.Reject{{RowKey: []string{"7"}, Code: "c"}}, nil))
	for i, err := range []string{"", "sync people: import: 401 for key sekrit-key-4711", "sync people: <b>boom</b>"} {
		r := checkpoint.Run{Started: now.Add(time.Duration(i) * time.Minute), Finished: now.Add(time.Duration(i)*time.Minute + time.Second),
			OK: err == "", Error: err, Rows: 10 * (i + 1), Sent: 10 * (i + 1), Requests: 2}
		mustT(t, store.RecordRun(ctx, "people", r, 100))
	}
	o, err := startOps(ctx, a, opsOptions{endpoint: true, env: noEnv})
	mustT(t, err)
	defer o.stop()
	code, body := httpGet(t, "http://"+o.addr+"/")
	if code != 200 {
		t.Fatalf("GET / = %d\n%s", code, body)
	}
	for _, want := range []string{`data-sync="people" data-state="failing"`, "failing ×2", `data-sync="never" data-state="never"`,
		"42 [42]", "&lt;b&gt;boom&lt;/b&gt;", `data-pass="people#3"`, `data-pass="people#1"`, "[redacted]", `http-equiv="refresh"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "sekrit-key-4711") || strings.Contains(body, "<b>boom") {
		t.Error("the page shows a secret or unescaped markup")
	}
	if code, _ := httpGet(t, "http://"+o.addr+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d next to the page", code)
	}
	if code, _ := httpGet(t, "http://"+o.addr+"/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
}
