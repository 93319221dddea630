package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// schemaExists reports whether schema prismsync exists in the database.
func schemaExists(t *testing.T, dsn string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	mustT(t, err)
	defer conn.Close(ctx)
	var n int
	mustT(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'prismsync'`).Scan(&n))
	return n > 0
}

// readerDSN creates a role that may only read the database at dsn
// (prismsync's schema and the source table) and returns its DSN.
func readerDSN(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	mustT(t, err)
	defer conn.Close(ctx)
	role := "reader_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	var db string
	mustT(t, conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db))
	r, d := pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize()
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'reader';
		GRANT CONNECT ON DATABASE %s TO %s;
		GRANT USAGE ON SCHEMA prismsync TO %s;
		GRANT SELECT ON ALL TABLES IN SCHEMA prismsync TO %s;
		GRANT SELECT ON items TO %s`, r, d, r, r, r, r))
	mustT(t, err)
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %s`, r, r)) //nolint:errcheck // best effort
	})
	u, err := url.Parse(dsn)
	mustT(t, err)
	u.User = url.UserPassword(role, "reader")
	return u.String()
}

// status, history, rejects and preview read: with no store they say so
// and create none, a role that may only read runs them all, and a dropped
// schema stays dropped. preview shows what the fingerprints would skip.
func TestReadCommandsNeverWrite(t *testing.T) {
	ctx := context.Background()
	env, _ := onceEnv(t, "right-key")
	dsn := env["DATABASE_URL"]
	read := func(env map[string]string) {
		t.Helper()
		for _, args := range [][]string{
			{"status"}, {"status", "--json"}, {"history"}, {"history", "--json"}, {"rejects"}, {"rejects", "--json"},
			{"preview", "--sync", "items", "--limit", "3"},
		} {
			out, errOut, err := runArgs(t, env, args...)
			if err != nil {
				t.Errorf("%v: %v\n%s%s", args, err, out, errOut)
			}
		}
	}
	out, errOut, err := runArgs(t, env, "status")
	if err != nil || !strings.Contains(errOut, "checkpoint store does not exist yet") || !strings.Contains(out, "items") ||
		!strings.Contains(out, "never") {
		t.Errorf("status with no store: %v\n%s%s", err, out, errOut)
	}
	out, _, err = runArgs(t, env, "rejects")
	if err != nil || !strings.Contains(out, "no rejected rows: the checkpoint store does not exist yet") {
		t.Errorf("rejects with no store: %v %q", err, out)
	}
	read(env)
	if schemaExists(t, dsn) {
		t.Fatal("a read command created schema prismsync")
	}

	if _, _, err := runArgs(t, env, "once"); err != nil {
		t.Fatal(err)
	}
	reader := make(map[string]string, len(env))
	for k, v := range env {
		reader[k] = v
	}
	reader["DATABASE_URL"] = readerDSN(t, dsn)
	read(reader)

	// Everything was sent: fingerprints skip every row, until one changes.
	conn, err := pgx.Connect(ctx, dsn)
	mustT(t, err)
	defer conn.Close(ctx)
	out, errOut, err = runArgs(t, reader, "preview", "--sync", "items", "--where", "id <= 5")
	if err != nil || out != "" || strings.Count(errOut, "unchanged: Micro already has this object") != 5 || !strings.Contains(errOut, "5 unchanged") {
		t.Errorf("preview of unchanged rows: %v\nstdout %q\n%s", err, out, errOut)
	}
	_, err = conn.Exec(ctx, `UPDATE items SET title = 'changed' WHERE id = 2`)
	mustT(t, err)
	out, errOut, err = runArgs(t, reader, "preview", "--sync", "items", "--where", "id <= 5")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"changed"`) || !strings.Contains(errOut, "4 unchanged") ||
		strings.Contains(errOut, "(id=2): unchanged") {
		t.Errorf("preview with one changed row: %v\nstdout %q\n%s", err, out, errOut)
	}
	env["FINGERPRINTS"] = "false"
	if out, _, _ := runArgs(t, env, "preview", "--sync", "items", "--where", "id <= 5"); strings.Count(out, "\n") != 1 || strings.Count(out, `{"default"`) != 5 {
		t.Errorf("preview with FINGERPRINTS=false skipped rows: %q", out)
	}
	delete(env, "FINGERPRINTS")

	// The schema dropped behind prismsync's back stays dropped.
	_, err = conn.Exec(ctx, `DROP SCHEMA prismsync CASCADE`)
	mustT(t, err)
	read(env)
	if schemaExists(t, dsn) {
		t.Error("a read command re-created the dropped schema prismsync")
	}
}
