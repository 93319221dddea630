package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
)

// previewEnv is a database with 12 rows, a mapping with batch_size 4 and a
// checkpoint after row 2. Row 5 has no email (required) and row 8 repeats
// row 7's email in another case (dedupe_by email, case-insensitive).
func previewEnv(t *testing.T) (env map[string]string, dsn string) {
	t.Helper()
	dsn = pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		CREATE TABLE items (id int PRIMARY KEY, title text, email text, score float8, changed date NOT NULL);
		CREATE INDEX ON items (changed, id);
		INSERT INTO items SELECT g, 'item ' || g, 'user' || g || '@example.com', g / 2.0, date '2026-01-01' + g
		FROM generate_series(1, 12) g;
		UPDATE items SET email = NULL WHERE id = 5;
		UPDATE items SET email = 'User7@Example.com' WHERE id = 8;
		UPDATE items SET score = 'NaN' WHERE id = 9;
		CREATE FUNCTION zap() RETURNS boolean LANGUAGE sql AS 'DELETE FROM items RETURNING true';`); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mf, []byte(`syncs:
  - name: items
    source: { table: items, key: [id], cursor: changed }
    target: { object: contact, dedupe_by: email, case_insensitive: true }
    batch_size: 4
    properties:
      ext: {column: id, type: string}
      email: {column: email, transform: [lower], required: true}
      title: title
      score: score
`), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(ctx, "postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Commit(ctx, "items", "", checkpoint.Position{Cursor: "2026-01-03", Key: []string{"2"}}, "fp", nil, nil); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"DATABASE_URL": dsn, "MAPPING_FILE": mf, "MICRO_BASE_URL": noAPI(t)}, dsn
}

func loadState(t *testing.T, dsn string) checkpoint.State {
	t.Helper()
	ctx := context.Background()
	store, err := checkpoint.Open(ctx, "postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st, err := store.Load(ctx, "items")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPreviewAfterCheckpoint(t *testing.T) {
	env, dsn := previewEnv(t)
	before := loadState(t, dsn)
	out, errOut, err := runCmd(t, env, "preview", "--sync", "items", "--limit", "8")
	if err != nil {
		t.Fatalf("preview: %v\n%s", err, errOut)
	}
	want := `{"objects":[{"default":{"ext":"3","email":"user3@example.com","title":"item 3","score":1.5}},{"default":{"ext":"4","email":"user4@example.com","title":"item 4","score":2}},{"default":{"ext":"6","email":"user6@example.com","title":"item 6","score":3}}],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}
{"objects":[{"default":{"ext":"7","email":"user7@example.com","title":"item 7","score":3.5}},{"default":{"ext":"9","email":"user9@example.com","title":"item 9","score":null}},{"default":{"ext":"10","email":"user10@example.com","title":"item 10","score":5}}],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	for _, line := range []string{
		`sync items: 8 rows after the checkpoint cursor="2026-01-03" key=["2"]: 6 in 2 request(s) to POST /v2/prism/{teamId}/contact/import, 2 invalid (nothing was sent)`,
		`row (id=5): invalid: property email: required value is NULL or empty (missing_required)`,
		`row (id=8): invalid: email value "user7@example.com" already appears in this batch; the row is retried when it changes again (duplicate_in_batch)`,
		`row (id=9): warning: property score: NaN sent as null (non_finite_number)`,
	} {
		if !strings.Contains(errOut, line+"\n") {
			t.Errorf("stderr lacks %q:\n%s", line, errOut)
		}
	}
	if after := loadState(t, dsn); !after.Position.Equal(before.Position) || after.Batches != before.Batches || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("checkpoint changed: before %+v, after %+v", before, after)
	}
}

// TestPreviewMatchesEngine compares preview's bodies byte for byte with the
// bodies a real pass then sends.
func TestPreviewMatchesEngine(t *testing.T) {
	env, _ := previewEnv(t)
	out, errOut, err := runCmd(t, env, "preview", "--sync", "items", "--limit", "10")
	if err != nil {
		t.Fatalf("preview: %v\n%s", err, errOut)
	}
	previewed := strings.Split(strings.TrimSuffix(out, "\n"), "\n")

	fake := prismtest.New(prismtest.Options{})
	t.Cleanup(fake.Close)
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			mu.Lock()
			sent = append(sent, string(body))
			mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env["MICRO_BASE_URL"] = srv.URL
	env["MICRO_API_KEY"] = "k"
	env["MICRO_TEAM_ID"] = uuid.NewString()
	env["MAX_INFLIGHT"] = "1"
	env["LOG_FORMAT"] = "json"
	if _, errOut, err := runCmd(t, env, "once", "--sync", "items"); err != nil {
		t.Fatalf("once: %v\n%s", err, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	// Rows 3..12 in pages of 4: the engine sends three requests; preview
	// with --limit 10 covers the same rows.
	if len(sent) != len(previewed) {
		t.Fatalf("engine sent %d requests, preview showed %d:\nsent:\n%s\npreview:\n%s", len(sent), len(previewed), strings.Join(sent, "\n"), out)
	}
	for i := range sent {
		if sent[i] != previewed[i] {
			t.Errorf("request %d differs:\nengine:  %s\npreview: %s", i+1, sent[i], previewed[i])
		}
	}
}

func TestPreviewWhere(t *testing.T) {
	env, dsn := previewEnv(t)
	before := loadState(t, dsn)

	t.Run("selects rows regardless of the checkpoint", func(t *testing.T) {
		out, errOut, err := runCmd(t, env, "preview", "--sync", "items", "--where", "id IN (1, 5)")
		if err != nil {
			t.Fatalf("preview: %v\n%s", err, errOut)
		}
		want := `{"objects":[{"default":{"ext":"1","email":"user1@example.com","title":"item 1","score":0.5}}],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}` + "\n"
		if out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
		if !strings.Contains(errOut, "2 rows matching --where") || !strings.Contains(errOut, "row (id=5): invalid: property email") {
			t.Errorf("stderr:\n%s", errOut)
		}
	})
	t.Run("bad SQL is a usage error", func(t *testing.T) {
		_, _, err := runCmd(t, env, "preview", "--sync", "items", "--where", "nope = 1")
		if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), `column "nope" does not exist`) {
			t.Fatalf("exit %d, err %v", code, err)
		}
	})
	t.Run("cannot write", func(t *testing.T) {
		_, _, err := runCmd(t, env, "preview", "--sync", "items", "--where", "zap()")
		if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "read-only transaction") {
			t.Fatalf("exit %d, err %v", code, err)
		}
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 12 {
			t.Fatalf("items has %d rows (%v), want 12", n, err)
		}
	})
	t.Run("nothing matches", func(t *testing.T) {
		out, errOut, err := runCmd(t, env, "preview", "--sync", "items", "--where", "false")
		if err != nil || out != "" || !strings.Contains(errOut, "nothing would be sent") {
			t.Fatalf("err %v, stdout %q, stderr %q", err, out, errOut)
		}
	})
	if after := loadState(t, dsn); !after.Position.Equal(before.Position) || after.Batches != before.Batches {
		t.Errorf("checkpoint changed: before %+v, after %+v", before, after)
	}
}

func TestPreviewFileStoreUntouched(t *testing.T) {
	env, _ := previewEnv(t)
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	env["CHECKPOINT_STORE"] = "file:" + path
	out, errOut, err := runCmd(t, env, "preview", "--sync", "items", "--limit", "1")
	if err != nil {
		t.Fatalf("preview: %v\n%s", err, errOut)
	}
	// No file yet: from the start, and the file is not created.
	if !strings.Contains(out, `"ext":"1"`) {
		t.Errorf("stdout does not start at row 1:\n%s", out)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("preview created the checkpoint file (stat: %v)", err)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("preview created the lock file (stat: %v)", err)
	}
}

func TestPreviewUsage(t *testing.T) {
	for _, args := range [][]string{
		{"preview"},
		{"preview", "--sync", "items", "--limit", "0"},
		{"preview", "--sync", "items", "id = 1"},
		{"preview", "--sync", "nope"},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "MAPPING_FILE": filepath.Join("testdata", "validate_good.yaml")}
		if _, _, err := runCmd(t, env, args...); exitCode(err) != exitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, exitCode(err), err, exitUsage)
		}
	}
	out, errOut, err := runCmd(t, nil, "preview", "--help")
	if err != nil || errOut != "" || !strings.Contains(out, "Examples:") {
		t.Errorf("--help: err %v, stdout:\n%s", err, out)
	}
	if _, _, err := runCmd(t, map[string]string{"MAPPING_FILE": "x.yaml"}, "preview", "--sync", "x"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("without DATABASE_URL: %v", err)
	}
}

// A sync that does not fit its source is explained like validate does, at
// the line to fix, and is a usage error.
func TestPreviewExplainsMismatch(t *testing.T) {
	dsn := schemaDB(t, "validate_schema.sql")
	env := map[string]string{"DATABASE_URL": dsn, "MAPPING_FILE": filepath.Join("testdata", "validate_bad.yaml"), "MICRO_BASE_URL": noAPI(t)}
	out, errOut, err := runCmd(t, env, "preview", "--sync", "people")
	if code := exitCode(err); code != exitUsage {
		t.Fatalf("exit %d (%v), want %d", code, err, exitUsage)
	}
	want := filepath.Join("testdata", "validate_bad.yaml") + `:11:7: sync people: property score: column "score" not found (have: id, email, updated_at)`
	if out != "" || !strings.Contains(errOut, want+"\n") {
		t.Errorf("stdout %q, stderr:\n%s\nwant line:\n%s", out, errOut, want)
	}
}
