package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
)

func TestBackfillKeepsLiveCheckpoint(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	lookup := envconfig.MapLookuper(env)
	if err := Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(ctx, "postgres", env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	live, err := store.Load(ctx, "items")
	if err != nil {
		t.Fatal(err)
	}
	before := fake.Stats().Rows

	// Not on a terminal: refuses without --yes, sends nothing.
	err = Run(ctx, []string{"backfill", "--sync", "items"}, lookup, &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != exitUsage || fake.Stats().Rows != before {
		t.Fatalf("backfill without --yes: err %v, rows sent %d", err, fake.Stats().Rows-before)
	}

	// Nothing changed since the live sync sent every row: change
	// fingerprints make a plain backfill send nothing at all.
	requests := fake.Stats().Requests
	if err := Run(ctx, []string{"backfill", "--sync", "items", "--yes"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got := fake.Stats().Requests - requests; got != 0 {
		t.Fatalf("backfill of unchanged rows made %d requests, want 0", got)
	}

	var out bytes.Buffer
	err = Run(ctx, []string{"backfill", "--sync", "items", "--from", "2026-03-01", "--force", "--yes"}, lookup, &out, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// Rows with changed >= 2026-03-01: dates 2026-01-02 .. 2026-09-08, id = day offset.
	if sent := fake.Stats().Rows - before; sent != 250-58 {
		t.Fatalf("backfill sent %d objects, want %d (rows from 2026-03-01 on)", sent, 250-58)
	}
	if !strings.Contains(out.String(), "backfill of items done") {
		t.Errorf("no completion line: %q", out.String())
	}

	// The same forced backfill again: a deliberate resend, so Micro must
	// apply it again rather than replay its stored answers.
	sent := fake.Stats().Rows
	if err := Run(ctx, []string{"backfill", "--sync", "items", "--from", "2026-03-01", "--force", "--yes"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if st := fake.Stats(); st.Rows-sent != 250-58 || st.Replays != 0 {
		t.Fatalf("second backfill: %d objects applied, %d replays; want %d applied, no replay", st.Rows-sent, st.Replays, 250-58)
	}
	if n := len(fake.Records("deal")); n != 250 {
		t.Fatalf("fake holds %d deals after backfill, want 250 (dedupe_by matched, no new records)", n)
	}
	after, err := store.Load(ctx, "items")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Position.Equal(live.Position) || after.Batches != live.Batches {
		t.Fatalf("live checkpoint moved: %+v -> %+v", live, after)
	}
	bf, err := store.Load(ctx, "items~backfill")
	if err != nil {
		t.Fatal(err)
	}
	if bf.Exists {
		t.Fatalf("finished backfill left its position behind: %+v", bf)
	}
}

// backfill --dry-run prints what the backfill would cost against the month's
// budget and sends nothing; a real backfill prints the same estimate first.
func TestBackfillDryRunEstimates(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	env["MICRO_MONTHLY_REQUESTS"] = "20"
	env["MICRO_BUDGET_RESERVE"] = "5"
	lookup := envconfig.MapLookuper(env)
	var out bytes.Buffer
	if err := Run(ctx, []string{"backfill", "--sync", "items", "--dry-run"}, lookup, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// 250 rows in batches of 100: 3 batches of POST + 2 polls before any
	// job was seen.
	for _, want := range []string{"backfill of items: 250 rows in 3 batches of up to 100: at most 9 requests",
		"0 of 20 requests are used, 15 left beyond the reserve of 5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if fake.Stats().Requests != 0 {
		t.Fatalf("a dry run made %d requests", fake.Stats().Requests)
	}
	env["MICRO_MONTHLY_REQUESTS"] = "10"
	out.Reset()
	if err := Run(ctx, []string{"backfill", "--sync", "items", "--dry-run"}, lookup, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "more than the budget beyond the reserve") || !strings.Contains(out.String(), "exit code 4") {
		t.Errorf("a backfill over the budget beyond the reserve does not say so:\n%s", out.String())
	}
}
