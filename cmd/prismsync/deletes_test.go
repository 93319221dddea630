package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
)

const deletesYAML = `syncs:
  - name: people
    source: { table: public.people, key: [id], cursor: updated_at, deleted: deleted_at }
    target: { object: contact, dedupe_by: external_id, on_delete: delete }
    reconcile: "@daily"
    properties:
      external_id: { column: id, type: string, required: true }
      name: name
`

// TestReconcileCommand: once delivers, a soft delete leaves Micro with the
// next once, reconcile --dry-run lists a hard delete and sends nothing,
// reconcile deletes it; an emptied table is refused (exit 1, nothing sent)
// until --yes; history and status count the deletes.
func TestReconcileCommand(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE SEQUENCE tick;
		CREATE TABLE people (id int PRIMARY KEY, name text, deleted_at timestamptz,
			updated_at timestamptz NOT NULL DEFAULT timestamptz '2026-01-01' + nextval('tick') * interval '1 second');
		INSERT INTO people (id, name) SELECT g, 'p' || g FROM generate_series(1, 20) g;`)
	mf := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mf, []byte(deletesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := prismtest.New(prismtest.Options{})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close)
	env := map[string]string{
		"DATABASE_URL": dsn, "MICRO_API_KEY": "k", "MICRO_TEAM_ID": uuid.NewString(),
		"MICRO_BASE_URL": srv.URL, "MAPPING_FILE": mf, "LOG_FORMAT": "json",
	}
	run := func(args ...string) (string, string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := Run(ctx, args, envconfig.MapLookuper(env), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}
	mustRun("once")
	exec(`UPDATE people SET deleted_at = now(), updated_at = updated_at + interval '1 hour' WHERE id = 5`)
	mustRun("once")
	if n := fake.Count("contact"); n != 19 {
		t.Fatalf("%d contacts after the soft delete; want 19", n)
	}
	exec(`DELETE FROM people WHERE id = 7`)
	before := fake.Stats().Requests
	out := mustRun("reconcile", "--dry-run")
	if out != "people\t7\n" || fake.Stats().Requests != before {
		t.Errorf("dry run printed %q and made %d requests; want the key 7 and none", out, fake.Stats().Requests-before)
	}
	mustRun("reconcile", "--sync", "people")
	if n := fake.Count("contact"); n != 18 {
		t.Errorf("%d contacts after reconcile; want 18", n)
	}

	exec(`DELETE FROM people`)
	before = fake.Stats().Requests
	_, errOut, err := run("reconcile")
	if code := exitCode(err); code != exitFailure || !strings.Contains(errOut+err.Error(), "MAX_DELETE_SHARE") {
		t.Errorf("reconcile of an emptied table: exit %d, %v; want 1 and the guard's reason", code, err)
	}
	if fake.Count("contact") != 18 || fake.Stats().Requests != before {
		t.Errorf("the refused reconcile changed Micro: %d contacts, %d requests", fake.Count("contact"), fake.Stats().Requests-before)
	}
	mustRun("reconcile", "--yes")
	if n := fake.Count("contact"); n != 0 {
		t.Errorf("%d contacts after reconcile --yes; want 0", n)
	}

	var hist []struct {
		Result string         `json:"result"`
		Rows   map[string]int `json:"rows"`
	}
	if err := json.Unmarshal([]byte(mustRun("history", "--json")), &hist); err != nil {
		t.Fatal(err)
	}
	deleted, failed := 0, 0
	for _, h := range hist {
		deleted += h.Rows["deleted"]
		if h.Result == "failed" {
			failed++
		}
	}
	if deleted != 20 || failed != 1 {
		t.Errorf("history counts %d deletes and %d failed passes; want 20 (1 + 1 + 18) and the refusal", deleted, failed)
	}
	if out := mustRun("status"); !strings.Contains(out, "18 deleted") {
		t.Errorf("status does not show the last run's deletes:\n%s", out)
	}

	// CLI manners: help on stdout, stray arguments exit 2.
	if out := mustRun("reconcile", "--help"); !strings.Contains(out, "--dry-run") || !strings.Contains(out, "MAX_DELETE_SHARE") {
		t.Errorf("help: %s", out)
	}
	if _, _, err := run("reconcile", "people"); exitCode(err) != exitUsage {
		t.Errorf("a stray argument: %v (exit %d); want 2", err, exitCode(err))
	}
}
