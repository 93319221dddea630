package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
)

// onceEnv sets up a database with a small table, a mapping file and a fake API.
func onceEnv(t *testing.T, apiKey string) (map[string]string, *prismtest.Server) {
	t.Helper()
	dsn := pgtest.NewDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, title text, changed date NOT NULL);
		INSERT INTO items SELECT g, 'item ' || g, date '2026-01-01' + g FROM generate_series(1, 250) g`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mf := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(mf, []byte(`syncs:
  - name: items
    source: { table: items, key: [id], cursor: changed }
    target: { object: deal, dedupe_by: ext }
    batch_size: 100
    properties:
      ext: id
      title: title
`), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := prismtest.New(prismtest.Options{APIKey: "right-key"})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close)
	return map[string]string{
		"DATABASE_URL": dsn, "MICRO_API_KEY": apiKey, "MICRO_TEAM_ID": uuid.NewString(),
		"MICRO_BASE_URL": srv.URL, "MAPPING_FILE": mf, "LOG_FORMAT": "json",
	}, fake
}

func TestOnceExitCodes(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		env, fake := onceEnv(t, "right-key")
		var stderr bytes.Buffer
		err := Run(context.Background(), []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &stderr)
		if code := exitCode(err); code != exitOK {
			t.Fatalf("exit %d (%v); log:\n%s", code, err, stderr.String())
		}
		if n := len(fake.Records("deal")); n != 250 {
			t.Fatalf("fake holds %d deals, want 250", n)
		}
		if !strings.Contains(stderr.String(), `"msg":"pass done"`) || !strings.Contains(stderr.String(), `"unchanged":0`) {
			t.Errorf("no per-pass summary line with the unchanged count in the log:\n%s", stderr.String())
		}
	})
	t.Run("bad key", func(t *testing.T) {
		env, fake := onceEnv(t, "wrong-key-SECRET")
		var stderr bytes.Buffer
		err := Run(context.Background(), []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &stderr)
		if code := exitCode(err); code != exitFailure {
			t.Fatalf("exit %d, want %d (%v)", code, exitFailure, err)
		}
		if !strings.Contains(err.Error(), "MICRO_API_KEY") {
			t.Errorf("error does not tell the operator what to fix: %v", err)
		}
		if strings.Contains(err.Error()+stderr.String(), "SECRET") {
			t.Errorf("the API key leaked into the error or the log")
		}
		if n := len(fake.Records("deal")); n != 0 {
			t.Fatalf("fake holds %d deals after a refused key", n)
		}
	})
	t.Run("unknown sync", func(t *testing.T) {
		env, _ := onceEnv(t, "right-key")
		err := Run(context.Background(), []string{"once", "--sync", "nope"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &bytes.Buffer{})
		if code := exitCode(err); code != exitUsage {
			t.Fatalf("exit %d, want %d (%v)", code, exitUsage, err)
		}
	})
}

// The definition of done: `prismsync once` against the fake with
// 20,000 rows leaves every row there exactly once and exits 0.
func TestOnce20000Rows(t *testing.T) {
	env, fake := onceEnv(t, "right-key")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Many rows share each date: keyset paging must split them by id.
	if _, err := conn.Exec(ctx, `INSERT INTO items SELECT g, 'item ' || g, date '2026-01-01' + g % 97
		FROM generate_series(251, 20000) g`); err != nil {
		t.Fatal(err)
	}
	env["MICRO_POLL_MIN"] = "10ms"   // the fake finishes jobs at once; do not wait 2 s per poll
	env["MICRO_RATE_LIMIT"] = "1000" // 400 requests at the real 10/s would take 40 s
	var stderr bytes.Buffer
	err = Run(ctx, []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &stderr)
	if code := exitCode(err); code != exitOK {
		t.Fatalf("exit %d (%v)\n%s", code, err, stderr.String())
	}
	seen := map[string]int{}
	for _, r := range fake.Records("deal") {
		seen[fmt.Sprint(r.Properties["ext"])]++
	}
	if len(seen) != 20000 {
		t.Fatalf("fake holds %d distinct rows, want 20000", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("row %s is in the fake %d times", id, n)
		}
	}
	if st := fake.Stats(); st.Creates != 20000 {
		t.Fatalf("fake created %d records, want 20000", st.Creates)
	}
}

// Every request once makes is counted in the store for the monthly budget
// (and `status`), polls included.
func TestOnceCountsRequestsInTheStore(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	env["MICRO_POLL_MIN"] = "10ms"
	if err := Run(ctx, []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(ctx, "postgres", env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n, err := store.Requests(ctx, budget.Month(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if want := fake.Stats().Requests; n != want || n == 0 {
		t.Fatalf("store counted %d requests this month, the API saw %d", n, want)
	}
}

// once stops with exit 4 when the month's budget is spent, says what waits
// and when sending resumes, and loses nothing: with budget again, the rest
// arrives, each row once.
func TestOnceExitsFourWhenTheBudgetIsSpent(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	env["MICRO_POLL_MIN"] = "10ms"
	env["MICRO_MONTHLY_REQUESTS"] = "5" // three batches of 100 jobs need at least six
	var stderr bytes.Buffer
	err := Run(ctx, []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &stderr)
	if code := exitCode(err); code != exitBudget {
		t.Fatalf("exit %d (%v), want %d; log:\n%s", code, err, exitBudget, stderr.String())
	}
	sent := len(fake.Records("deal"))
	if sent == 0 || sent == 250 || fake.Stats().Requests > 5 {
		t.Fatalf("%d of 250 rows sent in %d requests: want some, not all, within 5", sent, fake.Stats().Requests)
	}
	want := fmt.Sprintf("%d rows still wait, nothing is lost. Sending resumes", 250-sent)
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "MICRO_MONTHLY_REQUESTS") {
		t.Errorf("stderr does not say what waits and when it resumes (%q):\n%s", want, stderr.String())
	}
	env["MICRO_MONTHLY_REQUESTS"] = "1000" // the budget is raised (or the month turned)
	if err := Run(ctx, []string{"once"}, envconfig.MapLookuper(env), &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("once with budget again: %v\n%s", err, stderr.String())
	}
	seen := map[string]int{}
	for _, r := range fake.Records("deal") {
		seen[fmt.Sprint(r.Properties["ext"])]++
	}
	if len(seen) != 250 || len(fake.Records("deal")) != 250 {
		t.Fatalf("after the budget was raised: %d distinct rows in %d records, want 250 once each", len(seen), len(fake.Records("deal")))
	}
}

// A run where one sync ran out of budget and another failed otherwise exits
// as the other failure; budget alone exits 4.
func TestExitCodeOfMixedFailures(t *testing.T) {
	spent := fmt.Errorf("sync a: %w", &budget.ExhaustedError{Month: "2026-12", Used: 5, Limit: 5})
	other := fmt.Errorf("sync b: %w", &unreachableError{errors.New("store down")})
	for _, tc := range []struct {
		err  error
		want int
	}{
		{spent, exitBudget},
		{fmt.Errorf("1 of 2 syncs failed: %w", errors.Join(spent)), exitBudget},
		{fmt.Errorf("2 of 2 syncs failed: %w", errors.Join(spent, spent)), exitBudget},
		{fmt.Errorf("2 of 2 syncs failed: %w", errors.Join(spent, other)), exitUnreachable},
		{fmt.Errorf("2 of 2 syncs failed: %w", errors.Join(spent, errors.New("boom"))), exitFailure},
		{explain(spent), exitBudget},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
