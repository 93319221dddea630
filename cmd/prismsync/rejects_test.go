package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"
)

func TestRejectsListAndRetry(t *testing.T) {
	ctx := context.Background()
	env, fake := onceEnv(t, "right-key")
	lookup := envconfig.MapLookuper(env)
	// Five titles the mapping refuses (required value missing).
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE items SET title = NULL WHERE id <= 5`); err != nil {
		t.Fatal(err)
	}
	writeMapping(t, env["MAPPING_FILE"], "      title: { column: title, required: true }\n")
	if err := Run(ctx, []string{"once"}, lookup, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Run(ctx, []string{"rejects", "--json"}, lookup, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var rs []rejectJSON
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("rejects --json: %v\n%s", err, out.String())
	}
	if len(rs) != 5 || rs[0].Code != "missing_required" || rs[0].Sync != "items" {
		t.Fatalf("rejects: %+v", rs)
	}

	// Fixed in the source, then retried: the rows arrive, the rejects go.
	if _, err := conn.Exec(ctx, `UPDATE items SET title = 'fixed' WHERE id <= 5`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Run(ctx, []string{"rejects", "--retry"}, lookup, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "5 created") || !strings.Contains(out.String(), "0 rejects left") {
		t.Fatalf("retry output: %s", out.String())
	}
	if n := len(fake.Records("deal")); n != 250 {
		t.Fatalf("fake holds %d deals, want 250", n)
	}
	out.Reset()
	if err := Run(ctx, []string{"rejects"}, lookup, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "no rejected rows") {
		t.Fatalf("rejects after retry: %v %q", err, out.String())
	}
}

// writeMapping replaces onceEnv's title property by line.
func writeMapping(t *testing.T, path, line string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "      title: title\n", line, 1)
	if s == string(b) {
		t.Fatal("mapping fixture changed; update writeMapping")
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
