package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// schemaDB returns the DSN of a fresh database holding testdata/NAME.
func schemaDB(t *testing.T, name string) string {
	t.Helper()
	dsn := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sql, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(sql)); err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return dsn
}

// noAPI is an API endpoint that fails the test on any request: validate and
// preview must never talk to the CRM.
func noAPI(t *testing.T) string {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no requests expected", http.StatusTeapot)
	}))
	t.Cleanup(func() {
		srv.Close()
		if n := hits.Load(); n > 0 {
			t.Errorf("the API received %d requests; want none", n)
		}
	})
	return srv.URL
}

func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = Run(ctx, args, envconfig.MapLookuper(env), &out, &errb)
	return out.String(), errb.String(), err
}

func TestValidateLive(t *testing.T) {
	dsn := schemaDB(t, "validate_schema.sql")
	api := noAPI(t)
	env := func(mapping string) map[string]string {
		// No MICRO_API_KEY or MICRO_TEAM_ID: validate must not need them.
		return map[string]string{"DATABASE_URL": dsn, "MAPPING_FILE": filepath.Join("testdata", mapping), "MICRO_BASE_URL": api}
	}

	t.Run("good", func(t *testing.T) {
		out, _, err := runCmd(t, env("validate_good.yaml"), "validate")
		if err != nil {
			t.Fatalf("validate: %v\n%s", err, out)
		}
		want := filepath.Join("testdata", "validate_good.yaml") + ": 1 syncs OK against the source (0 warnings)\n"
		if out != want {
			t.Errorf("output:\n%s\nwant:\n%s", out, want)
		}
	})

	t.Run("bad", func(t *testing.T) {
		out, _, err := runCmd(t, env("validate_bad.yaml"), "validate")
		if code := exitCode(err); code != exitUsage {
			t.Fatalf("exit %d (%v), want %d", code, err, exitUsage)
		}
		f := filepath.Join("testdata", "validate_bad.yaml")
		want := []string{
			f + `:11:7: sync people: property score: column "score" not found (have: id, email, updated_at)`,
			f + `:15:12: warning: sync visits: source.key: (person) is not covered by a unique index or constraint on public.visits; rows with equal (cursor, key) values can be skipped at a page boundary (add a primary key or a unique index)`,
			f + `:15:13: warning: sync visits: source.key: column "person" is nullable; a row whose key is NULL stops the sync (add NOT NULL to public.visits)`,
			f + `:16:15: warning: sync visits: source.cursor: column "at" is timestamp without time zone; the commit horizon compares it as UTC, so it must hold UTC times (timestamptz avoids this)`,
			f + `:16:15: sync visits: source.cursor: column "at" is NULL in 1 row; that row is never synced (fill it and add NOT NULL, or coalesce it in a query)`,
			f + `:16:15: warning: sync visits: source.cursor: no index on public.visits starts with (at, person), so every page may scan the table; create one with: CREATE INDEX CONCURRENTLY ON "public"."visits" ("at", "person");`,
		}
		if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
		}
		if !strings.Contains(err.Error(), "2 errors against the source") {
			t.Errorf("error %q does not count the errors", err)
		}
	})

	t.Run("file only", func(t *testing.T) {
		e := env("validate_bad.yaml")
		delete(e, "DATABASE_URL")
		out, _, err := runCmd(t, e, "validate")
		if err != nil {
			t.Fatalf("validate without DATABASE_URL: %v", err)
		}
		if !strings.Contains(out, "file checks only") {
			t.Errorf("output does not say the source was not checked:\n%s", out)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		e := env("validate_good.yaml")
		e["DATABASE_URL"] = "postgres://someone:SECRET-PW@127.0.0.1:1/app?connect_timeout=2"
		out, errOut, err := runCmd(t, e, "validate")
		if code := exitCode(err); code != exitUnreachable {
			t.Fatalf("exit %d (%v), want %d", code, err, exitUnreachable)
		}
		if strings.Contains(out+errOut+err.Error(), "SECRET-PW") {
			t.Errorf("the password leaked: %v", err)
		}
	})
}
