package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// statementLog records every statement a pool sends, with its arguments,
// batched or not.
type statementLog struct {
	mu    sync.Mutex
	stmts []loggedStatement
}

type loggedStatement struct {
	sql  string
	args []any
}

func (l *statementLog) add(sql string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stmts = append(l.stmts, loggedStatement{sql, args})
}

func (l *statementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL, d.Args)
	return ctx
}

func (l *statementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *statementLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	for _, q := range d.Batch.QueuedQueries {
		l.add(q.SQL, q.Arguments)
	}
	return ctx
}

func (l *statementLog) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (l *statementLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// take returns the distinct statements logged since the last take, in the
// order they were first sent.
func (l *statementLog) take() []loggedStatement {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[string]bool)
	var out []loggedStatement
	for _, s := range l.stmts {
		if !seen[s.sql] {
			seen[s.sql] = true
			out = append(out, s)
		}
	}
	l.stmts = nil
	return out
}

// runPerBatch calls every store method a pass runs per batch or per pass,
// with a batch of 1,000 keys, and returns the statements they sent.
func runPerBatch(t *testing.T, s *PGStore, log *statementLog) []loggedStatement {
	t.Helper()
	ctx := context.Background()
	log.take()
	const sync = "orgs"
	keys := make([][]string, 1000)
	sums := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = []string{fmt.Sprint(2_000_000 + i)}
		sums[i] = sum16("plan", i)
	}
	sums[0] = nil // the delete of an empty sum, too
	_, err := s.Load(ctx, sync)
	must(t, err)
	_, err = s.Pending(ctx, sync)
	must(t, err)
	b := Batch{Sync: sync, Key: "plan-batch", Attempt: 1, From: pos("a", "1"), To: pos("b", "2"),
		Rows: len(keys), Body: []byte(`{"objects":[]}`), Object: "organization", RowKeys: keys}
	must(t, s.Journal(ctx, b))
	must(t, s.SetJobID(ctx, sync, b.Key, "job-1"))
	_, err = s.Fingerprints(ctx, sync, keys)
	must(t, err)
	must(t, s.SaveFingerprints(ctx, sync, keys, sums))
	_, err = s.HasFingerprints(ctx, sync)
	must(t, err)
	fresh := make([][]string, len(keys)-1)
	for i := range fresh {
		fresh[i] = []string{fmt.Sprint(3_000_000 + i)}
	}
	must(t, s.AddFingerprints(ctx, sync, fresh, sums[1:]))
	must(t, s.Commit(ctx, sync, b.Key, b.To, "fp", []Reject{{Sync: sync, RowKey: []string{"7"}, Code: "x", Message: "m"}}, keys))
	must(t, s.Drop(ctx, sync, "gone"))
	// Records of a sync others link to (the relink statement) and of one
	// nobody links to, and the lookups of a pass with links.
	recs := make([]Record, len(keys))
	for i, k := range keys {
		recs[i] = Record{RowKey: k, ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}
	}
	must(t, s.CommitRecords(ctx, sync, b.Key, b.To, "fp", nil, nil, Ledger{Records: recs, Referrers: []string{"people"}}))
	newRecs := make([]Record, len(recs))
	for i := range newRecs {
		newRecs[i] = Record{RowKey: []string{fmt.Sprint(4_000_000 + i)}, ID: recs[i].ID}
	}
	must(t, s.CommitRecords(ctx, sync, b.Key, b.To, "fp", nil, nil, Ledger{Records: newRecs, Fresh: true}))
	must(t, s.CommitRecords(ctx, "people", "k", pos("c", "3"), "fp",
		[]Reject{{RowKey: []string{"8"}, Code: "missing_reference", WaitSync: sync, WaitKey: []string{"9"}}}, nil, Ledger{Records: recs[:10]}))
	refs := make([]RecordRef, len(keys))
	for i, k := range keys {
		refs[i] = RecordRef{Sync: sync, RowKey: k}
	}
	_, err = s.RecordIDs(ctx, refs)
	must(t, err)
	// A sync with deletes looks up its rows' records per batch. (Reconcile's
	// LedgerPage and CountRecords walk a range of the key by design, once
	// per reconcile, not per batch.)
	_, err = s.RecordStates(ctx, sync, keys)
	must(t, err)
	_, err = s.Deferred(ctx, "people")
	must(t, err)
	rl, err := s.Relinks(ctx, "people")
	must(t, err)
	must(t, s.DropRelinks(ctx, "people", rl))
	must(t, s.RecordRun(ctx, sync, Run{Started: time.Now(), Finished: time.Now(), OK: true}, 1000))
	_, _, err = s.LastRun(ctx, sync)
	must(t, err)
	must(t, s.AddRequests(ctx, "2026-11", 1))
	_, _, err = s.TakeRequests(ctx, "2026-11", 3, 1000)
	must(t, err)
	_, err = s.Requests(ctx, "2026-11")
	must(t, err)
	must(t, s.SaveTurn(ctx, Turn{Sync: sync, LastSend: time.Now(), LastCost: 1, Interval: time.Minute}))
	_, err = s.Turns(ctx)
	must(t, err)
	return log.take()
}

// sqlLiteral renders a statement argument as a literal of the parameter's
// type, for EXECUTE (EXPLAIN cannot take parameters of its own).
func sqlLiteral(t *testing.T, m *pgtype.Map, oid uint32, arg any) string {
	t.Helper()
	if arg == nil {
		return "NULL"
	}
	buf, err := m.Encode(oid, pgtype.TextFormatCode, arg, nil)
	if err != nil {
		t.Fatalf("encode %T for OID %d: %v", arg, oid, err)
	}
	if buf == nil {
		return "NULL"
	}
	return "'" + strings.ReplaceAll(string(buf), "'", "''") + "'"
}

// planNode is the part of EXPLAIN (FORMAT JSON) the check reads.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// Scans a statement may make of a table without a condition on every key
// column: the journal and rejects of one sync (few rows: in-flight batches,
// rejected rows), and every sync's budget turn.
var prefixScans = map[string]string{
	"journal":      "sync = $1", // Pending lists the sync's in-flight batches
	"rejects":      "sync = $1", // a commit looks for the sync's rejects among its rows
	"budget_turns": "",          // Turns reads one row per sync
	// The last passes of a sync (LIMIT) and the range retention deletes:
	// both bounded by HISTORY_KEEP, never the whole history.
	"run_history": "sync = $1",
	"relinks":     "sync = $1", // a sync's queued relinks, few and consumed each pass
}

// keyColumns are the primary-key columns an index scan must constrain,
// table by table, unless the table is in prefixScans.
var keyColumns = map[string][]string{
	"positions":      {"sync"},
	"sync_history":   {"sync"},
	"journal":        {"sync", "batch_key"},
	"rejects":        {"sync", "row_key"},
	"runs":           {"sync"},
	"request_counts": {"month"},
	"fingerprints":   {"sync", "row_key"},
	"budget_turns":   {"sync"},
	"run_history":    {"sync", "seq"},
	"records":        {"sync", "row_key"},
	"relinks":        {"sync", "ref_sync", "row_key"},
}

// checkPlan fails unless every read of a store table in the plan goes
// through its index with the table's key: no sequential or bitmap scan, no
// scan of all of a sync's fingerprints.
func checkPlan(t *testing.T, what, sql string, n planNode) {
	t.Helper()
	if cols, ours := keyColumns[n.Relation]; ours {
		switch n.NodeType {
		case "ModifyTable":
			// INSERT ... ON CONFLICT finds conflicts through the
			// arbiter index; UPDATE and DELETE read through their own
			// child scans, checked below.
		case "Index Scan", "Index Only Scan":
			if prefix, ok := prefixScans[n.Relation]; ok && strings.Contains(n.IndexCond, prefix) {
				break
			}
			if sql == qHasFingerprints { // EXISTS: stops at the first index entry
				break
			}
			for _, c := range cols {
				if !strings.Contains(n.IndexCond, "("+c+" = ") {
					t.Errorf("%s: %s reads %s by %s without %s in its condition (%q):\n%s",
						what, n.NodeType, n.Relation, n.Index, c, n.IndexCond, sql)
				}
			}
		default:
			t.Errorf("%s: %s on %s; want an index lookup:\n%s", what, n.NodeType, n.Relation, sql)
		}
	}
	for _, c := range n.Plans {
		checkPlan(t, what, sql, c)
	}
}

// explainPrepared checks the generic plan of each prepared statement.
func explainPrepared(t *testing.T, conn *pgx.Conn, what string, names []string, stmts []loggedStatement, descs [][]uint32) {
	t.Helper()
	ctx := context.Background()
	for i, st := range stmts {
		lits := make([]string, len(st.args))
		for j, a := range st.args {
			lits[j] = sqlLiteral(t, conn.TypeMap(), descs[i][j], a)
		}
		sql := "EXPLAIN (FORMAT JSON) EXECUTE " + names[i]
		if len(lits) > 0 {
			sql += "(" + strings.Join(lits, ", ") + ")"
		}
		var out string
		if err := conn.QueryRow(ctx, sql, pgx.QueryExecModeSimpleProtocol).Scan(&out); err != nil {
			t.Fatalf("%s: explain %s: %v", what, st.sql, err)
		}
		var plans []struct {
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
			t.Fatalf("%s: plan of %s: %v\n%s", what, st.sql, err, out)
		}
		checkPlan(t, what, st.sql, plans[0].Plan)
	}
}

// Every statement a pass runs against the store, per batch and per pass, is
// an index lookup whatever the statistics: on a fresh store whose tables
// were never analyzed, with its cached generic plans (made while the tables
// were empty) and with fresh ones at 1,000,000 fingerprints, 100,000
// rejects and a journal of 1,000 batches. PostgreSQL 15 has no EXPLAIN
// (GENERIC_PLAN), so each statement is prepared on a session with
// plan_cache_mode = force_generic_plan and explained through EXECUTE.
func TestPostgresStatementPlans(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	cfg, err := poolConfig(dsn, false)
	must(t, err)
	var log statementLog
	cfg.ConnConfig.Tracer = &log
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err)
	t.Cleanup(pool.Close)
	s, err := openPostgres(ctx, pool)
	must(t, err)
	for table := range keyColumns {
		// Nothing may analyze the tables behind the test's back.
		pgExec(t, dsn, `ALTER TABLE prismsync.`+table+` SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)`)
	}

	// A session like the store's own, whose prepared statements keep
	// generic plans.
	ecfg, err := poolConfig(dsn, false)
	must(t, err)
	conn, err := pgx.ConnectConfig(ctx, ecfg.ConnConfig)
	must(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	prepare := func(prefix string, stmts []loggedStatement) ([]string, [][]uint32) {
		var names []string
		var descs [][]uint32
		for i, st := range stmts {
			name := fmt.Sprintf("%s_%d", prefix, i)
			d, err := conn.Prepare(ctx, name, st.sql)
			if err != nil {
				t.Fatalf("prepare %s: %v", st.sql, err)
			}
			names, descs = append(names, name), append(descs, d.ParamOIDs)
		}
		return names, descs
	}

	empty := runPerBatch(t, s, &log)
	if len(empty) < 15 {
		t.Fatalf("only %d distinct statements logged; the tracer misses some", len(empty))
	}
	emptyNames, emptyDescs := prepare("empty", empty)
	explainPrepared(t, conn, "empty store", emptyNames, empty, emptyDescs)

	pgExec(t, dsn, `INSERT INTO prismsync.fingerprints (sync, row_key, sum)
		SELECT 'orgs', length(g::text) || ':' || g || ';', decode(md5(g::text), 'hex') FROM generate_series(1, 1000000) AS g`)
	pgExec(t, dsn, `INSERT INTO prismsync.rejects (sync, row_key, code, message, attempts, first_seen, last_seen)
		SELECT CASE WHEN g % 2 = 0 THEN 'orgs' ELSE 'other' END, ARRAY[g::text], 'c', 'm', 1, now(), now()
		FROM generate_series(1, 100000) AS g`)
	z, err := compress([]byte(`{"objects":[]}`))
	must(t, err)
	pgExec(t, dsn, `INSERT INTO prismsync.journal (sync, batch_key, attempt, from_cursor, from_key, to_cursor, to_key,
			row_count, body_gzip, object, job_id, created_at)
		SELECT 'orgs', 'k' || g, 1, '', '{}', '', '{}', 0, $1, 'organization', '', now() FROM generate_series(1, 1000) AS g`, z)
	var reltuples float64
	if err := conn.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'prismsync.fingerprints'::regclass`).Scan(&reltuples); err != nil {
		t.Fatal(err)
	}
	if reltuples != -1 {
		t.Fatalf("prismsync.fingerprints has reltuples %v: it was analyzed or vacuumed, and the test would prove nothing", reltuples)
	}
	explainPrepared(t, conn, "plans cached while empty, at 1M fingerprints", emptyNames, empty, emptyDescs)
	full := runPerBatch(t, s, &log)
	fullNames, fullDescs := prepare("full", full)
	explainPrepared(t, conn, "1M fingerprints", fullNames, full, fullDescs)
}
