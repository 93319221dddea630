package checkpoint

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// The engine looks a batch's links up at once: one statement, however many
// keys and syncs.
func TestPostgresRecordIDsOneStatement(t *testing.T) {
	ctx := context.Background()
	var c queryCounter
	s := openTraced(t, &c)
	const n = 10_000
	recs := make([]Record, n)
	refs := make([]RecordRef, 0, 2*n)
	for i := range recs {
		recs[i] = Record{RowKey: []string{fmt.Sprint(i)}, ID: uuidN(i)}
		refs = append(refs, ref("orgs", fmt.Sprint(i)), ref("people", fmt.Sprint(i)))
	}
	must(t, s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Records: recs, Referrers: []string{"people"}}))
	c.take()
	got, err := s.RecordIDs(ctx, refs)
	must(t, err)
	if q := c.take(); len(q) != 1 {
		t.Errorf("RecordIDs of %d keys sent %d statements, want 1:\n%s", len(refs), len(q), strings.Join(q, "\n---\n"))
	}
	for i := range n {
		if got[2*i] != uuidN(i) || got[2*i+1] != "" {
			t.Fatalf("RecordIDs[%d] = %q %q", i, got[2*i], got[2*i+1])
		}
	}
}

// The ledger is written in the commit's transaction: a commit that fails
// leaves no record behind.
func TestPostgresLedgerIsInTheCommit(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	s, err := Open(ctx, "postgres", dsn)
	must(t, err)
	defer s.Close()
	must(t, s.CommitRecords(ctx, "orgs", "k0", pos("0"), "", nil, nil, Ledger{Records: []Record{{RowKey: []string{"1"}, ID: uuidN(1)}}}))
	pgExec(t, dsn, `
		CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'boom'; END $$;
		CREATE TRIGGER boom BEFORE INSERT ON prismsync.rejects FOR EACH ROW EXECUTE FUNCTION public.boom();`)
	err = s.CommitRecords(ctx, "orgs", "k1", pos("1"), "", []Reject{{RowKey: []string{"9"}, Code: "c"}}, nil,
		Ledger{Referrers: []string{"people"}, Records: []Record{{RowKey: []string{"1"}, ID: uuidN(2)}, {RowKey: []string{"2"}, ID: uuidN(3)}}})
	if err == nil {
		t.Fatal("commit succeeded despite the failing trigger")
	}
	wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("orgs", "2")}, []string{uuidN(1), ""})
	if rl, err := s.Relinks(ctx, "people"); err != nil || len(rl) != 0 {
		t.Errorf("a failed commit queued relinks: %v, %v", rl, err)
	}
	if st, _ := s.Load(ctx, "orgs"); !st.Position.Equal(pos("0")) {
		t.Errorf("a failed commit moved the position to %v", st.Position)
	}
}

// recordRowCost fills a fresh store with n records of a one-column bigint
// key (text "1".."n"), committed batch at a time in the given order, and
// returns pg_total_relation_size('prismsync.records') / n.
func recordRowCost(t *testing.T, sync string, n, batch int, shuffle bool) float64 {
	return storageCost(t, "records", n, batch, shuffle, func(s Store, ids []int) error {
		recs := make([]Record, 0, len(ids))
		for _, id := range ids {
			recs = append(recs, Record{RowKey: []string{fmt.Sprint(id)}, ID: uuidN(id)})
		}
		return s.CommitRecords(context.Background(), sync, "b", pos("1"), "", nil, nil, Ledger{Records: recs})
	})
}

// TestPostgresRecordStorageCost measures the ledger's size per row that
// doc.go quotes, beside the fingerprints', and fails if a change makes a
// row much dearer than documented.
func TestPostgresRecordStorageCost(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 100,000 rows per case")
	}
	const n = 100_000
	for _, tc := range []struct {
		name    string
		sync    string
		batch   int
		shuffle bool
	}{
		{"Batches5000InKeyOrder", "orgs", 5000, false},
		{"Batches5000Shuffled", "orgs", 5000, true},
		{"Batches5000ShuffledLongSyncName", "organizations_from_erp_eu", 5000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			per := recordRowCost(t, tc.sync, n, tc.batch, tc.shuffle)
			t.Logf("sync %q, %d records committed %d per batch, shuffled=%v: %.1f bytes/row (pg_total_relation_size/%d)",
				tc.sync, n, tc.batch, tc.shuffle, per, n)
			if per > 200 {
				t.Errorf("%.1f bytes per record, documented as about 100-160", per)
			}
		})
	}
}
