package connector_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/mapping"
)

// updated_at comes from a sequence of past seconds, so every change is
// after the last one and below any commit horizon; a soft delete moves
// the cursor like any other change.
const deletesSchema = `
CREATE SEQUENCE tick;
CREATE FUNCTION tick() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '2026-01-01' + nextval('tick') * interval '1 second' $$;
CREATE TABLE members (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	deleted_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT tick());`

func deletesMapping(t *testing.T, target string) *mapping.Sync {
	t.Helper()
	y := `syncs:
  - name: members
    source: { table: public.members, key: [id], cursor: updated_at, deleted: deleted_at }
    target:
      object: contact
      dedupe_by: external_id
` + target + `    batch_size: 10000
    properties:
      external_id: { column: id, type: string, required: true }
      name: name
      status: { value: active }
`
	f, fs := mapping.Parse("deletes.yaml", []byte(y))
	if fs.HasErrors() {
		t.Fatal(fs)
	}
	return f.Syncs[0]
}

func newDeletesEnv(t *testing.T, rows int) *env {
	t.Helper()
	e := newEnv(t, prismtest.Options{})
	e.exec(deletesSchema)
	e.exec(`INSERT INTO members (id, name) SELECT i, 'm' || i FROM generate_series(1, $1) AS i`, rows)
	return e
}

func (e *env) pass(s *mapping.Sync) connector.Summary {
	e.t.Helper()
	sum, err := e.syncer(s).Once(context.Background())
	if err != nil {
		e.t.Fatalf("pass: %v", err)
	}
	return sum
}

// live returns the external_ids of the live contacts, sorted, failing on
// a key that has two live records.
func (e *env) live() []string {
	e.t.Helper()
	var out []string
	for _, r := range e.fake.Records("contact") {
		k := fmt.Sprint(r.Properties["external_id"])
		if slices.Contains(out, k) {
			e.t.Errorf("two live records for key %s", k)
		}
		out = append(out, k)
	}
	// Numeric order: shorter decimal strings first, then by text.
	slices.SortFunc(out, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return out
}

func keys(ids ...int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprint(id)
	}
	return out
}

// TestSoftDelete: a row whose deleted_at is set is deleted in Micro by the
// next pass, in the same pass as the page's other changes; undeleted, it
// is created again (Micro's dedupe does not match the deleted record), so
// exactly one live record is left; the ledger follows in the commit.
func TestSoftDelete(t *testing.T) {
	e := newDeletesEnv(t, 5)
	s := deletesMapping(t, "")
	if s.Target.OnDelete != mapping.OnDeleteDelete {
		t.Fatalf("on_delete = %q; want the default delete", s.Target.OnDelete)
	}
	e.pass(s)
	if got := e.live(); !slices.Equal(got, keys(1, 2, 3, 4, 5)) {
		t.Fatalf("live after the first pass = %v", got)
	}
	before := e.fake.Stats()
	// One page: an update and two deletes.
	e.exec(`UPDATE members SET name = 'renamed', updated_at = tick() WHERE id = 1`)
	e.exec(`UPDATE members SET deleted_at = now(), updated_at = tick() WHERE id IN (2, 4)`)
	sum := e.pass(s)
	st := e.fake.Stats()
	if sum.Deleted != 2 || st.Deletes-before.Deletes != 2 || st.BatchDeletes-before.BatchDeletes != 1 {
		t.Errorf("deleted %d (fake: %d in %d requests); want 2 in one batch/delete", sum.Deleted, st.Deletes-before.Deletes, st.BatchDeletes-before.BatchDeletes)
	}
	if got := e.live(); !slices.Equal(got, keys(1, 3, 5)) {
		t.Errorf("live after the deletes = %v; want 1 3 5", got)
	}
	if rs := e.fake.Find("contact", "name", "renamed"); len(rs) != 1 {
		t.Errorf("the update in the same page was not applied: %v", rs)
	}
	if n := len(e.fake.Deleted("contact")); n != 2 {
		t.Errorf("the fake keeps %d deleted records; want 2", n)
	}
	states, err := e.store.RecordStates(context.Background(), "members", [][]string{{"2"}, {"3"}})
	if err != nil {
		t.Fatal(err)
	}
	if states[0].State != checkpoint.StateDeleted || states[1].State != checkpoint.StateLive {
		t.Errorf("ledger states = %v; want row 2 deleted, row 3 live", states)
	}
	// Nothing changed: nothing sent, even for the rows still deleted.
	before = e.fake.Stats()
	if sum := e.pass(s); sum.Deleted != 0 || e.fake.Stats().Requests != before.Requests {
		t.Errorf("an idle pass deleted %d and made %d requests", sum.Deleted, e.fake.Stats().Requests-before.Requests)
	}
	// Touched while deleted: still nothing to send.
	e.exec(`UPDATE members SET name = 'ghost', updated_at = tick() WHERE id = 2`)
	before = e.fake.Stats()
	if sum := e.pass(s); sum.Deleted != 0 || e.fake.Stats().Requests != before.Requests {
		t.Errorf("a pass over a row deleted before made %d requests", e.fake.Stats().Requests-before.Requests)
	}

	// Undelete row 2.
	e.exec(`UPDATE members SET deleted_at = NULL, updated_at = tick() WHERE id = 2`)
	sum = e.pass(s)
	if sum.Restored != 1 || sum.Created != 1 {
		t.Errorf("undelete: restored %d, created %d; want 1 and 1", sum.Restored, sum.Created)
	}
	if got := e.live(); !slices.Equal(got, keys(1, 2, 3, 5)) {
		t.Errorf("live after the undelete = %v; want 1 2 3 5", got)
	}
	states, err = e.store.RecordStates(context.Background(), "members", [][]string{{"2"}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := e.fake.Find("contact", "external_id", "2"); len(rs) != 1 || states[0] != (checkpoint.RecordState{ID: rs[0].ID}) {
		t.Errorf("ledger %v, fake %v; want the new live record", states, rs)
	}
}

// TestSoftDeleteArchive: with on_delete: archive the record stays and gets
// the archive properties (one batch/update); undeleted, the import's
// dedupe finds and updates it: still one live record.
func TestSoftDeleteArchive(t *testing.T) {
	e := newDeletesEnv(t, 3)
	s := deletesMapping(t, "      on_delete: archive\n      archive:\n        status: { value: archived }\n")
	e.pass(s)
	e.exec(`UPDATE members SET deleted_at = now(), updated_at = tick() WHERE id = 2`)
	before := e.fake.Stats()
	sum := e.pass(s)
	st := e.fake.Stats()
	if sum.Archived != 1 || sum.Deleted != 0 || st.BatchUpdates-before.BatchUpdates != 1 || st.Deletes != 0 {
		t.Errorf("archived %d deleted %d, fake batch/updates %d deletes %d; want one archive, no delete",
			sum.Archived, sum.Deleted, st.BatchUpdates-before.BatchUpdates, st.Deletes)
	}
	rs := e.fake.Find("contact", "external_id", "2")
	if len(rs) != 1 || rs[0].Properties["status"] != "archived" {
		t.Fatalf("archived record = %v; want status archived", rs)
	}
	id := rs[0].ID
	// Archived already: touching the row sends nothing.
	e.exec(`UPDATE members SET name = 'x', updated_at = tick() WHERE id = 2`)
	before = e.fake.Stats()
	e.pass(s)
	if n := e.fake.Stats().Requests - before.Requests; n != 0 {
		t.Errorf("a pass over an archived row made %d requests", n)
	}
	e.exec(`UPDATE members SET deleted_at = NULL, updated_at = tick() WHERE id = 2`)
	sum = e.pass(s)
	rs = e.fake.Find("contact", "external_id", "2")
	if sum.Restored != 1 || len(rs) != 1 || rs[0].ID != id || rs[0].Properties["status"] != "active" {
		t.Errorf("undelete: restored %d, records %v; want the same record active again", sum.Restored, rs)
	}
	if got := e.live(); !slices.Equal(got, keys(1, 2, 3)) {
		t.Errorf("live = %v", got)
	}
}

// TestReconcileHardDelete: rows deleted from the table are found by
// reconcile and deleted in Micro; rows that never reached Micro need
// nothing (no request); a second reconcile finds nothing.
func TestReconcileHardDelete(t *testing.T) {
	e := newDeletesEnv(t, 30)
	s := deletesMapping(t, "")
	e.pass(s)
	// 31 never reached Micro: inserted and deleted between passes.
	e.exec(`INSERT INTO members (id, name) VALUES (31, 'never')`)
	e.exec(`DELETE FROM members WHERE id IN (3, 17, 31)`)
	before := e.fake.Stats()
	var listed []string
	sum, err := e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{DryRun: true,
		Gone: func(k []string) { listed = append(listed, k[0]) }})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, []string{"17", "3"}) || sum.Gone != 2 || e.fake.Stats().Requests != before.Requests {
		t.Errorf("dry run listed %v (gone %d) and made %d requests; want 3 and 17, no request", listed, sum.Gone, e.fake.Stats().Requests-before.Requests)
	}
	sum, err = e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := e.fake.Stats()
	if sum.Deleted != 2 || st.Requests-before.Requests != 1 || st.Deletes != 2 {
		t.Errorf("reconcile deleted %d with %d requests (fake deletes %d); want 2 in 1", sum.Deleted, st.Requests-before.Requests, st.Deletes)
	}
	if got := e.live(); len(got) != 28 || slices.Contains(got, "3") || slices.Contains(got, "17") {
		t.Errorf("live = %v", got)
	}
	sum, err = e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{})
	if err != nil || sum.Gone != 0 || e.fake.Stats().Requests != st.Requests {
		t.Errorf("second reconcile: gone %d, err %v, %d requests; want nothing", sum.Gone, err, e.fake.Stats().Requests-st.Requests)
	}
	// The row comes back: a new record, counted as restored.
	e.exec(`INSERT INTO members (id, name) VALUES (3, 'back')`)
	if sum := e.pass(s); sum.Restored != 1 {
		t.Errorf("re-inserted row: restored %d; want 1", sum.Restored)
	}
}

// TestReconcileGuard: an emptied table would delete every record; the
// guard refuses, sends nothing and says why; --yes goes ahead.
func TestReconcileGuard(t *testing.T) {
	e := newDeletesEnv(t, 40)
	s := deletesMapping(t, "")
	e.pass(s)
	e.exec(`DELETE FROM members`)
	before := e.fake.Stats()
	_, err := e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{})
	var dse *connector.DeleteShareError
	var perm *connector.PermanentError
	if !errors.As(err, &dse) || !errors.As(err, &perm) || dse.Gone != 40 || dse.Records != 40 {
		t.Fatalf("reconcile of an emptied table: %v; want a permanent DeleteShareError for 40 of 40", err)
	}
	if !strings.Contains(err.Error(), "nothing was deleted") || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("the refusal does not say what happened and what to do: %v", err)
	}
	if n := e.fake.Stats().Requests - before.Requests; n != 0 || e.fake.Count("contact") != 40 {
		t.Errorf("refused reconcile made %d requests, %d records left; want none and 40", n, e.fake.Count("contact"))
	}
	// 4 of 40 is exactly the share allowed (not more): it goes.
	e.exec(`INSERT INTO members (id, name) SELECT i, 'm' || i FROM generate_series(5, 40) AS i`)
	if sum, err := e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{}); err != nil || sum.Deleted != 4 {
		t.Fatalf("reconcile of 4 of 40: %v, deleted %d", err, sum.Deleted)
	}
	e.exec(`DELETE FROM members`)
	sum, err := e.syncer(s).Reconcile(context.Background(), connector.ReconcileOptions{Yes: true})
	if err != nil || sum.Deleted != 36 || e.fake.Count("contact") != 0 {
		t.Errorf("reconcile --yes: %v, deleted %d, %d left; want 36 deleted", err, sum.Deleted, e.fake.Count("contact"))
	}
}

// lostAnswer sends delete batches and then fails as a process killed
// before it read the answer would: Micro applied the batch, the engine
// never learned it.
type lostAnswer struct{ connector.API }

func (a lostAnswer) BatchDelete(ctx context.Context, object, key string, body []byte) ([]prism.ItemResult, bool, error) {
	if _, _, err := a.API.BatchDelete(ctx, object, key, body); err != nil {
		return nil, false, err
	}
	return nil, false, errors.New("killed before the answer was read")
}

// TestDeleteReplayAfterCrash: the delete batch reached Micro but its answer
// never came back (the connection dropped after Micro applied it, and the
// process gave up before its commit). The next pass finds it in the
// journal and resends the same bytes under the same key: Micro replays its
// answer, nothing is deleted twice, and the ledger is committed.
func TestDeleteReplayAfterCrash(t *testing.T) {
	e := newDeletesEnv(t, 6)
	s := deletesMapping(t, "")
	e.pass(s)
	e.exec(`UPDATE members SET deleted_at = now(), updated_at = tick() WHERE id IN (1, 2, 3)`)
	sy := e.syncer(s)
	sy.API = lostAnswer{e.api} // the process dies once Micro has the request
	if _, err := sy.Once(context.Background()); err == nil {
		t.Fatal("the pass whose delete got no answer succeeded")
	}
	pending, err := e.store.Pending(context.Background(), "members")
	if err != nil || len(pending) != 1 || pending[0].Kind != checkpoint.KindDelete {
		t.Fatalf("journal after the crash: %v %v; want the delete batch", pending, err)
	}
	if st := e.fake.Stats(); st.Deletes != 3 || e.fake.Count("contact") != 3 {
		t.Fatalf("Micro applied %d deletes; want 3 (applied, answer lost)", st.Deletes)
	}
	sum := e.pass(s)
	st := e.fake.Stats()
	if st.Replays != 1 || st.Deletes != 3 || st.BatchDeletes != 1 || sum.Resumed != 1 || sum.Deleted != 3 {
		t.Errorf("resend: replays %d, deletes %d in %d executed batches, resumed %d, deleted %d; want a replay of the one batch",
			st.Replays, st.Deletes, st.BatchDeletes, sum.Resumed, sum.Deleted)
	}
	states, err := e.store.RecordStates(context.Background(), "members", [][]string{{"1"}, {"2"}, {"3"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if st.State != checkpoint.StateDeleted {
			t.Errorf("row %d: ledger state %q after the replay; want deleted", i+1, st.State)
		}
	}
	if p, _ := e.store.Pending(context.Background(), "members"); len(p) != 0 {
		t.Errorf("journal still holds %d batches", len(p))
	}
}

// TestTenThousandDeletes: 10,000 soft-deleted rows leave Micro in exactly
// 100 batch/delete requests of 100 ids, and nothing else.
func TestTenThousandDeletes(t *testing.T) {
	e := newDeletesEnv(t, 10000)
	s := deletesMapping(t, "")
	e.pass(s)
	if n := e.fake.Count("contact"); n != 10000 {
		t.Fatalf("%d records after the first pass", n)
	}
	e.exec(`UPDATE members SET deleted_at = now(), updated_at = tick()`)
	before := e.fake.Stats()
	sum := e.pass(s)
	st := e.fake.Stats()
	if n := st.Requests - before.Requests; n != 100 || st.ByKind[prismtest.KindBatchDelete]-before.ByKind[prismtest.KindBatchDelete] != 100 {
		t.Errorf("10,000 deletes took %d requests (%d batch/delete); want exactly 100", n, st.ByKind[prismtest.KindBatchDelete])
	}
	if sum.Deleted != 10000 || st.Deletes != 10000 || e.fake.Count("contact") != 0 {
		t.Errorf("deleted %d (fake %d), %d left", sum.Deleted, st.Deletes, e.fake.Count("contact"))
	}
	if n, err := e.store.CountRecords(context.Background(), "members"); err != nil || n != 0 {
		t.Errorf("ledger still counts %d live records (%v)", n, err)
	}
}

// TestDaemonRefusalStays: the daemon's syncer (Paced) never overrides the
// guard; after a refusal every pass fails with it, so readiness, status
// and alerts show the sync failing, until a reconcile passes the guard.
func TestDaemonRefusalStays(t *testing.T) {
	e := newDeletesEnv(t, 20)
	s := deletesMapping(t, "")
	sy := e.syncer(s)
	sy.Paced = true
	if _, err := sy.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM members`)
	if _, err := sy.Reconcile(context.Background(), connector.ReconcileOptions{}); err == nil {
		t.Fatal("the daemon's reconcile of an emptied table was not refused")
	}
	e.exec(`INSERT INTO members (id, name) VALUES (21, 'new')`)
	sum, err := sy.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "waiting for an operator") || sum.Created != 1 {
		t.Errorf("pass after the refusal: %v (created %d); want the new row sent and the pass failing with the refusal", err, sum.Created)
	}
	if e.fake.Count("contact") != 21 {
		t.Errorf("%d contacts; want 21 (nothing deleted)", e.fake.Count("contact"))
	}
	// The operator restores the table: the next reconcile passes and clears it.
	e.exec(`INSERT INTO members (id, name) SELECT i, 'm' || i FROM generate_series(1, 20) AS i`)
	if _, err := sy.Reconcile(context.Background(), connector.ReconcileOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sy.Once(context.Background()); err != nil {
		t.Errorf("pass after a reconcile within the guard: %v; want ok", err)
	}
}
