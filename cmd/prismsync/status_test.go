package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/internal/pgtest"
)

const statusMapping = `syncs:
  - name: people
    source: { table: people, key: [id], cursor: updated_at }
    target: { object: contact, dedupe_by: ext }
    properties:
      ext: id
  - name: never
    source: { table: deals, key: [id], cursor: id }
    target: { object: deal, dedupe_by: ext }
    properties:
      ext: id
`

// seedStatus gives a store two syncs in the states status must show.
func seedStatus(t *testing.T, s checkpoint.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	cursor := now.Add(-90 * time.Minute).UTC().Format("2006-01-02 15:04:05.999999-07")
	mustT(t, s.Commit(ctx, "people", "k1", checkpoint.Position{Cursor: cursor, Key: []string{"42"}}, "fp",
		[]checkpoint.Reject{{RowKey: []string{"7"}, Code: "invalid_value", Message: "bad"}, {RowKey: []string{"8"}, Code: "x"},
			{RowKey: []string{"9"}, Code: "missing_reference", WaitSync: "companies", WaitKey: []string{"3"}, FirstSeen: now.Add(-25 * time.Hour)},
			{RowKey: []string{"10"}, Code: "missing_reference", WaitSync: "companies", WaitKey: []string{"4"}, FirstSeen: now.Add(-time.Hour)}}, nil))
	mustT(t, s.Journal(ctx, checkpoint.Batch{Sync: "people", Key: "k2", Attempt: 1, Body: []byte("{}"), Object: "contact"}))
	mustT(t, s.RecordRun(ctx, "people", checkpoint.Run{Started: now.Add(-10 * time.Minute), Finished: now.Add(-9 * time.Minute),
		Error: "sync people: import job j1 failed: boom", Rows: 500, Sent: 0}, 10))
	mustT(t, s.Commit(ctx, "gone", "k1", checkpoint.Position{Cursor: "17", Key: []string{"17"}}, "fp", nil, nil))
	mustT(t, s.RecordRun(ctx, "gone", checkpoint.Run{Started: now.Add(-time.Hour), Finished: now.Add(-time.Hour + 2*time.Second), OK: true, Rows: 5, Sent: 5}, 10))
	mustT(t, s.AddRequests(ctx, budget.Month(now), 412))
	mustT(t, s.SaveTurn(ctx, checkpoint.Turn{Sync: "people", LastSend: now.Add(-10 * time.Minute), LastCost: 1}))
	mustT(t, s.SaveTurn(ctx, checkpoint.Turn{Sync: "gone", WaitingSince: now.Add(-5 * time.Minute), WaitingRows: 7,
		HeldAt: now.Add(-time.Minute), Interval: 5 * time.Minute}))
}

func checkStatusJSON(t *testing.T, out []byte) {
	t.Helper()
	var rep struct {
		Month        string `json:"month"`
		Requests     int    `json:"requests_this_month"`
		MonthlyLimit int    `json:"monthly_request_limit"`
		Budget       struct {
			Used, Limit, Left, Reserve int
			Pace                       float64    `json:"pace_seconds"`
			LastSend                   *time.Time `json:"last_send"`
			NextSend                   *time.Time `json:"next_send"`
			Projected                  int        `json:"projected_month_end"`
			Waiting                    []struct {
				Sync string
				Rows int
			}
		} `json:"budget"`
		Syncs []struct {
			Name       string `json:"name"`
			InMapping  bool   `json:"in_mapping"`
			Checkpoint *struct {
				Cursor     string   `json:"cursor"`
				Key        []string `json:"key"`
				Batches    int      `json:"batches"`
				AgeSeconds *float64 `json:"age_seconds"`
			} `json:"checkpoint"`
			LastRun *struct {
				OK       bool    `json:"ok"`
				Error    string  `json:"error"`
				Rows     int     `json:"rows"`
				Duration float64 `json:"duration_seconds"`
			} `json:"last_run"`
			InFlight        int `json:"in_flight_batches"`
			Rejected        int `json:"rejected_rows"`
			Deferred        int `json:"deferred_rows"`
			DeferredTooLong []struct {
				RowKey   []string `json:"row_key"`
				WaitSync string   `json:"waits_for_sync"`
				WaitKey  []string `json:"waits_for_key"`
			} `json:"deferred_too_long"`
		} `json:"syncs"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if rep.Requests != 412 || rep.MonthlyLimit != 1000 || rep.Month != budget.Month(time.Now()) {
		t.Errorf("header = %+v", rep)
	}
	// The pace depends on the time left in the month: only its
	// consistency with the other figures is checked here (budget's own
	// tests pin the formula).
	b := rep.Budget
	if b.Used != 412 || b.Limit != 1000 || b.Left != 588 || b.Reserve != 50 || b.Pace <= 0 || b.LastSend == nil || b.NextSend == nil ||
		b.NextSend.Sub(*b.LastSend).Seconds() < b.Pace-1 || b.NextSend.Sub(*b.LastSend).Seconds() > b.Pace+1 || b.Projected != 950 ||
		len(b.Waiting) != 1 || b.Waiting[0].Sync != "gone" || b.Waiting[0].Rows != 7 {
		t.Errorf("budget = %+v\n%s", b, out)
	}
	if len(rep.Syncs) != 3 {
		t.Fatalf("syncs = %d, want people, never, gone:\n%s", len(rep.Syncs), out)
	}
	p, n, g := rep.Syncs[0], rep.Syncs[1], rep.Syncs[2]
	if p.Name != "people" || !p.InMapping || p.Checkpoint == nil || p.Checkpoint.Key[0] != "42" || p.Checkpoint.Batches != 1 ||
		p.Checkpoint.AgeSeconds == nil || *p.Checkpoint.AgeSeconds < 89*60 || *p.Checkpoint.AgeSeconds > 100*60 ||
		p.LastRun == nil || p.LastRun.OK || !strings.Contains(p.LastRun.Error, "boom") || p.LastRun.Rows != 500 ||
		p.LastRun.Duration != 60 || p.InFlight != 1 || p.Rejected != 2 || p.Deferred != 2 ||
		len(p.DeferredTooLong) != 1 || p.DeferredTooLong[0].RowKey[0] != "9" || p.DeferredTooLong[0].WaitSync != "companies" || p.DeferredTooLong[0].WaitKey[0] != "3" {
		t.Errorf("people = %+v\n%s", p, out)
	}
	if n.Name != "never" || !n.InMapping || n.Checkpoint != nil || n.LastRun != nil || n.InFlight != 0 {
		t.Errorf("never = %+v", n)
	}
	if g.Name != "gone" || g.InMapping || g.Checkpoint == nil || g.Checkpoint.AgeSeconds != nil || g.LastRun == nil || !g.LastRun.OK {
		t.Errorf("gone = %+v", g)
	}
}

func TestStatusFileStoreNextToDaemon(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.json")
	mf := filepath.Join(dir, "mapping.yaml")
	mustT(t, os.WriteFile(mf, []byte(statusMapping), 0o600))
	// The "daemon" keeps the store (and its lock) open throughout.
	s, err := checkpoint.OpenFile(path)
	mustT(t, err)
	defer s.Close()
	seedStatus(t, s, time.Now())
	env := envconfig.MapLookuper(map[string]string{"CHECKPOINT_STORE": "file:" + path, "MAPPING_FILE": mf})

	var out, errOut bytes.Buffer
	mustT(t, Run(context.Background(), []string{"status", "--json"}, env, &out, &errOut))
	checkStatusJSON(t, out.Bytes())

	out.Reset()
	mustT(t, Run(context.Background(), []string{"status"}, env, &out, &errOut))
	table := out.String()
	for _, want := range []string{"SYNC", "people", "[42]", "1h30m", "FAILED: sync people: import job j1 failed: boom",
		"never", "(start)", "gone (not in mapping)", "ok: 5 rows, 5 sent in 2s", "API requests in ", "412 of 1000 used, 588 left (50 of them the reserve)",
		"Partial batches: one send every ", "projected 950 requests", "Waiting for its turn: gone, 7 rows since ",
		"DEFERRED", "people row [9] waits for the Micro record of companies row [3]"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	out.Reset()
	mustT(t, Run(context.Background(), []string{"status", "--sync", "gone", "--json"}, env, &out, &errOut))
	if strings.Count(out.String(), `"name"`) != 1 {
		t.Errorf("--sync gone printed:\n%s", out.String())
	}
	err = Run(context.Background(), []string{"status", "--sync", "nope"}, env, &out, &errOut)
	if exitCode(err) != exitUsage {
		t.Errorf("--sync nope: %v (exit %d)", err, exitCode(err))
	}
	err = Run(context.Background(), []string{"status"}, envconfig.MapLookuper(map[string]string{
		"CHECKPOINT_STORE": "file:" + filepath.Join(dir, "absent.json"), "MAPPING_FILE": mf}), &out, &errOut)
	if err != nil || !strings.Contains(errOut.String(), "file "+filepath.Join(dir, "absent.json")) || !strings.Contains(errOut.String(), "does not exist yet") {
		t.Errorf("status with no checkpoint file: %v (exit %d)\n%s", err, exitCode(err), errOut.String())
	}
}

func TestStatusPostgresStore(t *testing.T) {
	dsn := pgtest.NewDB(t)
	ctx := context.Background()
	s, err := checkpoint.Open(ctx, "postgres", dsn)
	mustT(t, err)
	defer s.Close()
	seedStatus(t, s, time.Now())
	mf := filepath.Join(t.TempDir(), "mapping.yaml")
	mustT(t, os.WriteFile(mf, []byte(statusMapping), 0o600))
	var out, errOut bytes.Buffer
	err = Run(ctx, []string{"status", "--json"}, envconfig.MapLookuper(map[string]string{"DATABASE_URL": dsn, "MAPPING_FILE": mf}), &out, &errOut)
	mustT(t, err)
	checkStatusJSON(t, out.Bytes())

	// A database prismsync never ran against has no store to show; status
	// says so, shows the mapping's syncs as never run, and leaves the
	// database as it was.
	fresh := pgtest.NewDB(t)
	out.Reset()
	errOut.Reset()
	err = Run(ctx, []string{"status"}, envconfig.MapLookuper(map[string]string{"DATABASE_URL": fresh, "MAPPING_FILE": mf}), &out, &errOut)
	if err != nil || !strings.Contains(errOut.String(), "no schema prismsync in DATABASE_URL") || !strings.Contains(out.String(), "never") {
		t.Errorf("status on a fresh database: %v (exit %d)\n%s%s", err, exitCode(err), out.String(), errOut.String())
	}
	if schemaExists(t, fresh) {
		t.Error("status created schema prismsync")
	}

	// Without DATABASE_URL the postgres store cannot be found: a usage error.
	err = Run(ctx, []string{"status"}, envconfig.MapLookuper(map[string]string{"MAPPING_FILE": mf}), &out, &errOut)
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("status without DATABASE_URL: %v (exit %d)", err, exitCode(err))
	}
}
