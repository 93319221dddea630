package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"
)

// Every pass of once lands in the history with its counts, the requests
// the API saw and the checkpoint it left; HISTORY_KEEP bounds it.
func TestHistoryRecordsEveryPass(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	env["MICRO_POLL_MIN"] = "10ms"
	env["HISTORY_KEEP"] = "2"
	lookup := envconfig.MapLookuper(env)
	history := func(args ...string) []historyJSON {
		t.Helper()
		var out bytes.Buffer
		mustT(t, Run(ctx, append([]string{"history", "--json"}, args...), lookup, &out, &bytes.Buffer{}))
		var hs []historyJSON
		if err := json.Unmarshal(out.Bytes(), &hs); err != nil {
			t.Fatalf("history --json: %v\n%s", err, out.String())
		}
		return hs
	}
	if hs := history(); len(hs) != 0 {
		t.Fatalf("history before any pass: %+v", hs)
	}

	mustT(t, Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}))
	hs := history()
	if len(hs) != 1 {
		t.Fatalf("history after one pass: %+v", hs)
	}
	h := hs[0]
	if h.Sync != "items" || h.Pass != 1 || !h.OK || h.Result != "ok" || h.Rows.Read != 250 || h.Rows.Sent != 250 ||
		h.Rows.Created != 250 || h.Requests != fake.Stats().Requests || h.Requests == 0 ||
		h.Cursor == nil || h.Cursor.Cursor != "2026-09-08" || len(h.Cursor.Key) != 1 || h.Cursor.Key[0] != "250" ||
		!h.Finished.After(h.Started) {
		t.Errorf("first pass: %+v (the API saw %d requests)", h, fake.Stats().Requests)
	}

	// Ten rows change; a pass with nothing to do costs nothing.
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	mustT(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `UPDATE items SET title = 'new', changed = date '2026-12-01' WHERE id <= 10`)
	mustT(t, err)
	before := fake.Stats().Requests
	mustT(t, Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}))
	mustT(t, Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}))
	hs = history()
	if len(hs) != 2 || hs[0].Pass != 3 || hs[1].Pass != 2 {
		t.Fatalf("HISTORY_KEEP=2 after three passes: %+v", hs)
	}
	if hs[1].Rows.Read != 10 || hs[1].Rows.Updated != 10 || hs[1].Requests != fake.Stats().Requests-before {
		t.Errorf("second pass: %+v (the API saw %d requests)", hs[1], fake.Stats().Requests-before)
	}
	if hs[0].Rows.Read != 0 || hs[0].Requests != 0 {
		t.Errorf("idle pass: %+v", hs[0])
	}
	if got := history("--sync", "items", "--limit", "1"); len(got) != 1 || got[0].Pass != 3 {
		t.Errorf("--limit 1: %+v", got)
	}
	if got := history("--sync", "other"); len(got) != 0 {
		t.Errorf("--sync other: %+v", got)
	}

	var out bytes.Buffer
	mustT(t, Run(ctx, []string{"history"}, lookup, &out, &bytes.Buffer{}))
	for _, want := range []string{"SYNC", "REQUESTS", "items", "#3", "#2", "2026-12-01 [10]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("history table lacks %q:\n%s", want, out.String())
		}
	}
}

// A failed pass is recorded with its error, as the operator read it.
func TestHistoryRecordsFailures(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "wrong-key")
	lookup := envconfig.MapLookuper(env)
	if err := Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("once with a wrong key succeeded")
	}
	var out bytes.Buffer
	mustT(t, Run(ctx, []string{"history", "--json"}, lookup, &out, &bytes.Buffer{}))
	var hs []historyJSON
	mustT(t, json.Unmarshal(out.Bytes(), &hs))
	// Batches in flight may each have been refused before the pass
	// stopped: the history counts what the API saw, at least one.
	sent := fake.Stats().Requests
	if len(hs) != 1 || hs[0].OK || hs[0].Result != "failed" || !strings.Contains(hs[0].Error, "check MICRO_API_KEY") ||
		sent < 1 || hs[0].Requests != sent {
		t.Errorf("failed pass: %+v (the API saw %d requests)", hs, sent)
	}
	if strings.Contains(out.String(), "wrong-key") {
		t.Errorf("the history holds the API key:\n%s", out.String())
	}
}
