package checkpoint

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// The last run an older schema kept becomes pass 1 of the history, and
// numbering goes on from there.
func TestPostgresHistoryMigration(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	migrateTo(t, dsn, 5)
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	pgExec(t, dsn, `INSERT INTO prismsync.runs VALUES ('orgs', $1, $2, false, 'boom', 500, 480)`, at, at.Add(time.Minute))

	s, err := Open(ctx, "postgres", dsn)
	must(t, err)
	defer s.Close()
	r, ok, err := s.LastRun(ctx, "orgs")
	must(t, err)
	if !ok || r.Seq != 1 || r.OK || r.Error != "boom" || r.Rows != 500 || r.Sent != 480 || !r.Started.Equal(at) {
		t.Fatalf("last run after the migration = %+v, %v", r, ok)
	}
	must(t, s.RecordRun(ctx, "orgs", Run{OK: true}, 1000))
	if r, _, _ := s.LastRun(ctx, "orgs"); r.Seq != 2 || !r.OK {
		t.Errorf("next run = %+v, want Seq 2", r)
	}
}

// Recording a pass is one statement whose cost does not grow with the
// history: with 1,000 passes kept and thousands recorded (autovacuum off,
// so every deleted pass stays a dead tuple), it reads the same few buffers
// as it did at the start. A retention that deleted "every seq below the
// bound" would walk all of those dead index entries.
func TestPostgresHistoryCost(t *testing.T) {
	if testing.Short() {
		t.Skip("records 4,000 passes")
	}
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	s, err := Open(ctx, "postgres", dsn)
	must(t, err)
	defer s.Close()
	pg := s.(*PGStore)
	pgExec(t, dsn, `ALTER TABLE prismsync.run_history SET (autovacuum_enabled = false)`)
	const keep = 1000
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	run := Run{Started: at, Finished: at.Add(41 * time.Second), OK: true, Rows: 500, Sent: 498, Created: 400, Updated: 98,
		Unchanged: 2, Requests: 3, Checkpoint: pos("2026-11-02 09:59:59.123456+00", "4711"),
		Error: ""}

	// buffers explains one RecordRun (rolled back) and returns the shared
	// buffers it touched.
	buffers := func() int {
		t.Helper()
		least := -1
		for range 3 { // the first may count planning's catalog reads
			tx, err := pg.pool.Begin(ctx)
			must(t, err)
			var plan []map[string]any
			must(t, tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+recordRunSQL, recordRunArgs("people", normRun(run), keep)...).Scan(&plan))
			must(t, tx.Rollback(ctx))
			top := plan[0]["Plan"].(map[string]any)
			if n := int(top["Shared Hit Blocks"].(float64) + top["Shared Read Blocks"].(float64)); least < 0 || n < least {
				least = n
			}
		}
		return least
	}
	record := func(n int) time.Duration {
		start := time.Now()
		for range n {
			must(t, s.RecordRun(ctx, "people", run, keep))
		}
		return time.Since(start) / time.Duration(n)
	}
	perPass := record(keep + 5)
	early := buffers()
	perPassLater := record(3000)
	late := buffers()
	var kept, dead int
	must(t, pg.pool.QueryRow(ctx, `SELECT count(*) FROM prismsync.run_history WHERE sync = 'people'`).Scan(&kept))
	must(t, pg.pool.QueryRow(ctx, `SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'prismsync.run_history'::regclass`).Scan(&dead))
	var size int64
	must(t, pg.pool.QueryRow(ctx, `SELECT pg_total_relation_size('prismsync.run_history')`).Scan(&size))
	t.Logf("RecordRun: %v per pass over the first %d, %v over the next 3000; %d shared buffers per pass with %d kept, %d with %d dead tuples; table + index %d kB",
		perPass.Round(time.Microsecond), keep+5, perPassLater.Round(time.Microsecond), early, kept, late, dead, size/1024)
	if kept != keep {
		t.Errorf("%d passes kept, want %d", kept, keep)
	}
	// About ten: the runs row and its index, the new row and its index
	// entry, the one deleted row and its index entry.
	if early > 16 || late > 16 {
		t.Errorf("a pass touched %d buffers after 1,000 passes, %d after 4,000: retention walks the history", early, late)
	}
}

// migrateTo builds schema prismsync at version v, as a prismsync of that
// version left it.
func migrateTo(t *testing.T, dsn string, v int) {
	t.Helper()
	pgExec(t, dsn, `CREATE SCHEMA prismsync;
		CREATE TABLE prismsync.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	for i := range v {
		pgExec(t, dsn, migrations[i])
		pgExec(t, dsn, `INSERT INTO prismsync.schema_version (version) VALUES ($1)`, i+1)
	}
}

// The file store's history is a file of its own, appended to, compacted
// when it holds twice what is kept, read back past a torn last line; the
// last runs an older version kept in the document become pass 1.
func TestFileHistoryFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	w, err := OpenFile(path)
	must(t, err)
	must(t, w.Commit(ctx, "orgs", "k", pos("1"), "fp", nil, nil))
	docBefore, err := os.ReadFile(path)
	must(t, err)
	for i := range 300 {
		must(t, w.RecordRun(ctx, "orgs", Run{OK: true, Rows: i}, 50))
		lines := countLines(t, historyPath(path))
		if lines > 2*50+historySlack {
			t.Fatalf("after %d passes the history file has %d lines (50 kept)", i+1, lines)
		}
	}
	docAfter, err := os.ReadFile(path)
	must(t, err)
	if string(docBefore) != string(docAfter) {
		t.Error("recording passes rewrote the checkpoint document")
	}
	must(t, w.Close())

	// A crash cut the last append short.
	f, err := os.OpenFile(historyPath(path), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(`{"sync":"orgs","seq":301,"ok":tr`)
	must(t, err)
	must(t, f.Close())
	s, err := OpenFile(path)
	must(t, err)
	rs, err := s.History(ctx, "orgs", 0)
	must(t, err)
	if len(rs) != 50 || rs[0].Seq != 300 || rs[0].Rows != 299 || rs[49].Seq != 251 {
		t.Fatalf("history after a torn line: %d runs, newest %+v", len(rs), rs[0])
	}
	must(t, s.RecordRun(ctx, "orgs", Run{OK: true, Rows: 300}, 50))
	must(t, s.Close())
	s, err = OpenFile(path)
	must(t, err)
	if r, _, _ := s.LastRun(ctx, "orgs"); r.Seq != 301 || r.Rows != 300 {
		t.Errorf("run after the torn line = %+v", r)
	}
	must(t, s.Close())

	// An older version kept the last run in the document's "runs".
	old := filepath.Join(t.TempDir(), "old.json")
	doc := `{"version": 1, "positions": {}, "history": {}, "journal": {}, "rejects": {},
		"runs": {"orgs": {"started": "2026-11-02T10:00:00Z", "finished": "2026-11-02T10:01:00Z", "ok": true, "rows": 5, "sent": 4}}}`
	must(t, os.WriteFile(old, []byte(doc), 0o600))
	r, err := OpenReadOnly(ctx, "file:"+old, "")
	must(t, err)
	if run, ok, _ := r.LastRun(ctx, "orgs"); !ok || run.Seq != 1 || run.Rows != 5 {
		t.Errorf("read-only view of an older document: last run %+v, %v", run, ok)
	}
	must(t, r.Close())
	if _, err := os.Stat(historyPath(old)); !os.IsNotExist(err) {
		t.Errorf("the read-only open wrote the history file: %v", err)
	}
	s, err = OpenFile(old)
	must(t, err)
	defer s.Close()
	must(t, s.Commit(ctx, "orgs", "k", pos("1"), "fp", nil, nil)) // rewrites the document
	must(t, s.RecordRun(ctx, "orgs", Run{OK: false, Error: "boom"}, 10))
	rs, err = s.History(ctx, "orgs", 0)
	must(t, err)
	if len(rs) != 2 || rs[1].Seq != 1 || rs[1].Rows != 5 || rs[0].Seq != 2 {
		t.Errorf("history of an upgraded file: %v", runIDs(rs))
	}
	data, err := os.ReadFile(old)
	must(t, err)
	var d map[string]json.RawMessage
	must(t, json.Unmarshal(data, &d))
	if _, ok := d["runs"]; ok {
		t.Errorf("the document still holds \"runs\" after the history took them: %s", d["runs"])
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return strings.Count(string(data), "\n")
}
