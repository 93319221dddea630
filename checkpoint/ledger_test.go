package checkpoint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// uuidN is a canonical UUID for test record n.
func uuidN(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func wantRecordIDs(t *testing.T, s Store, refs []RecordRef, want []string) {
	t.Helper()
	got, err := s.RecordIDs(context.Background(), refs)
	must(t, err)
	if !slices.Equal(got, want) {
		t.Errorf("RecordIDs = %q, want %q", got, want)
	}
}

func ref(sync string, key ...string) RecordRef { return RecordRef{Sync: sync, RowKey: key} }

// testLedger is the conformance suite of the record ledger, deferred rows
// and relinks.
func testLedger(t *testing.T, h harness) {
	ctx := context.Background()

	t.Run("DeletedAndArchivedMarks", func(t *testing.T) { testLedgerMarks(t, h) })

	t.Run("RecordsAreCommittedWithTheBatch", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		must(t, s.Journal(ctx, batch("orgs", "b1", Position{}, pos("3"), "body")))
		must(t, s.CommitRecords(ctx, "orgs", "b1", pos("3"), "fp", nil, nil, Ledger{Records: []Record{
			{RowKey: []string{"1"}, ID: uuidN(1)},
			{RowKey: []string{"a,b"}, ID: uuidN(2)},
			{RowKey: []string{"a", "b"}, ID: uuidN(3)},
			{RowKey: []string{"nul\x00", "\xff"}, ID: uuidN(4)},
		}}))
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		p, err := s.Pending(ctx, "orgs")
		must(t, err)
		if !st.Position.Equal(pos("3")) || len(p) != 0 {
			t.Errorf("the commit did not move the position or drop the journal entry: %+v, %d pending", st, len(p))
		}
		refs := []RecordRef{ref("orgs", "1"), ref("orgs", "a,b"), ref("orgs", "a", "b"), ref("orgs", "nul\x00", "\xff"),
			ref("orgs", "2"), ref("contacts", "1"), ref("orgs", "1")}
		want := []string{uuidN(1), uuidN(2), uuidN(3), uuidN(4), "", "", uuidN(1)}
		wantRecordIDs(t, s, refs, want)
		wantRecordIDs(t, s, nil, []string{})
		// A commit without a ledger keeps what is there.
		must(t, s.Commit(ctx, "orgs", "b2", pos("4"), "fp", []Reject{
			{RowKey: []string{"5"}, Code: "missing_reference", WaitSync: "companies", WaitKey: []string{"eu", "7"}}}, nil))
		must(t, s.CommitRecords(ctx, "companies", "b", pos("1"), "fp", nil, nil, Ledger{Referrers: []string{"orgs"}, Records: []Record{{RowKey: []string{"1"}, ID: uuidN(5)}}}))
		must(t, s.CommitRecords(ctx, "companies", "b", pos("1"), "fp", nil, nil, Ledger{Referrers: []string{"orgs"}, Records: []Record{{RowKey: []string{"1"}, ID: uuidN(6)}}}))
		must(t, s.Close())

		s2 := h.openStore(t, loc, nil)
		wantRecordIDs(t, s2, refs, want)
		d, err := s2.Deferred(ctx, "orgs")
		must(t, err)
		if len(d) != 1 || d[0].WaitSync != "companies" || !slices.Equal(d[0].WaitKey, []string{"eu", "7"}) {
			t.Errorf("deferred rows after reopening: %+v", d)
		}
		rl, err := s2.Relinks(ctx, "orgs")
		must(t, err)
		if len(rl) != 1 || rl[0].RefSync != "companies" || !slices.Equal(rl[0].RowKey, []string{"1"}) {
			t.Errorf("relinks after reopening: %+v", rl)
		}
	})

	// Fresh is a hint: a key the ledger holds after all (a row deleted in
	// Micro and live again, a backfill of the same sync) is replaced as by
	// an upsert, its mark cleared and its referrers relinked, and the rest
	// of the commit still happens once.
	t.Run("FreshHintIsChecked", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.CommitRecords(ctx, "orgs", "b1", pos("1"), "", nil, nil, Ledger{Fresh: true, Records: []Record{
			{RowKey: []string{"1"}, ID: uuidN(1)}, {RowKey: []string{"2"}, ID: uuidN(2)}}}))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("orgs", "2")}, []string{uuidN(1), uuidN(2)})
		must(t, s.CommitRecords(ctx, "orgs", "b2", pos("2"), "", nil, nil, Ledger{Deleted: [][]string{{"2"}}}))
		must(t, s.Journal(ctx, batch("orgs", "b3", pos("2"), pos("3"), "body")))
		must(t, s.CommitRecords(ctx, "orgs", "b3", pos("3"), "", []Reject{{RowKey: []string{"7"}, Code: "c"}}, nil,
			Ledger{Fresh: true, Referrers: []string{"people"}, Records: []Record{
				{RowKey: []string{"2"}, ID: uuidN(3)}, {RowKey: []string{"4"}, ID: uuidN(4)}}}))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("orgs", "2"), ref("orgs", "4")}, []string{uuidN(1), uuidN(3), uuidN(4)})
		states, err := s.RecordStates(ctx, "orgs", [][]string{{"2"}})
		must(t, err)
		if len(states) != 1 || states[0].State != "" {
			t.Errorf("record of row 2 after it came back: %+v, want live", states)
		}
		rl, err := s.Relinks(ctx, "people")
		must(t, err)
		if len(rl) != 1 || !slices.Equal(rl[0].RowKey, []string{"2"}) {
			t.Errorf("relinks after the replaced id: %+v, want row 2", rl)
		}
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		p, err := s.Pending(ctx, "orgs")
		must(t, err)
		n, err := s.CountRejects(ctx, "orgs")
		must(t, err)
		if !st.Position.Equal(pos("3")) || len(p) != 0 || n != 1 {
			t.Errorf("after the commit: position %v, %d pending, %d rejects; want 3, 0, 1", st.Position, len(p), n)
		}
	})

	t.Run("LaterIDReplaces", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.CommitRecords(ctx, "orgs", "b1", pos("1"), "", nil, nil, Ledger{Records: []Record{
			{RowKey: []string{"1"}, ID: uuidN(1)}, {RowKey: []string{"1"}, ID: uuidN(2)}}}))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1")}, []string{uuidN(2)})
		must(t, s.CommitRecords(ctx, "orgs", "b2", pos("2"), "", nil, nil, Ledger{Records: []Record{{RowKey: []string{"1"}, ID: uuidN(3)}}}))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1")}, []string{uuidN(3)})
	})

	t.Run("NotAUUIDIsRefused", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		for _, id := range []string{"", "42", "00000000-0000-4000-8000-00000000000A", "{" + uuidN(1) + "}"} {
			err := s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Records: []Record{{RowKey: []string{"1"}, ID: id}}})
			if err == nil || !strings.Contains(err.Error(), "is not a UUID") {
				t.Errorf("id %q: %v", id, err)
			}
		}
		if st, err := s.Load(ctx, "orgs"); err != nil || st.Exists {
			t.Errorf("a refused commit moved the position: %+v, %v", st, err)
		}
	})

	// A backfill commits under SYNC~backfill; its rows are still SYNC's.
	t.Run("StateNameRecordsBelongToTheSync", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.CommitRecords(ctx, "orgs~backfill", "b", pos("1"), "", nil, nil, Ledger{Records: []Record{{RowKey: []string{"1"}, ID: uuidN(1)}}}))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("orgs~backfill", "1")}, []string{uuidN(1), ""})
	})

	t.Run("ManyInOneCall", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		const n = 10_000
		var recs []Record
		var refs []RecordRef
		var want []string
		for i := range n {
			recs = append(recs, Record{RowKey: []string{fmt.Sprint(i)}, ID: uuidN(i)})
			refs = append(refs, ref("orgs", fmt.Sprint(n-1-i)), ref("orgs", fmt.Sprint(n+i)))
			want = append(want, uuidN(n-1-i), "")
		}
		must(t, s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Records: recs}))
		wantRecordIDs(t, s, refs, want)
	})

	t.Run("ReplacedIDsQueueRelinks", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		commit := func(id int, referrers ...string) {
			t.Helper()
			must(t, s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Referrers: referrers, Records: []Record{
				{RowKey: []string{"1"}, ID: uuidN(id)}, {RowKey: []string{"2"}, ID: uuidN(100 + id)}}}))
		}
		relinks := func(sync string) []string {
			t.Helper()
			rs, err := s.Relinks(ctx, sync)
			must(t, err)
			var out []string
			for _, r := range rs {
				out = append(out, fmt.Sprintf("%s%q@%s", r.RefSync, r.RowKey, r.Since.Format("15:04:05")))
			}
			return out
		}
		commit(1, "people", "deals") // new records: nothing to relink
		commit(1, "people", "deals") // the same ids: nothing either
		if got := relinks("people"); len(got) != 0 {
			t.Fatalf("relinks without a replaced id: %v", got)
		}
		t0 := stamp(clock.Now())
		must(t, s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Referrers: []string{"people", "deals", "people"},
			Records: []Record{{RowKey: []string{"1"}, ID: uuidN(2)}}}))
		at := t0.Format("15:04:05")
		for _, sync := range []string{"people", "deals"} {
			if got, want := relinks(sync), []string{`orgs["1"]@` + at}; !slices.Equal(got, want) {
				t.Errorf("relinks of %s = %v, want %v", sync, got, want)
			}
		}
		if got := relinks("orgs"); len(got) != 0 {
			t.Errorf("relinks of the referenced sync itself: %v", got)
		}
		queued, err := s.Relinks(ctx, "people")
		must(t, err)
		if len(queued) != 1 || !queued[0].Since.Equal(t0) {
			t.Fatalf("relink = %+v, want since %s", queued, t0)
		}
		// Replaced again meanwhile: dropping what was read keeps the newer one.
		clock.Advance(time.Minute)
		t1 := stamp(clock.Now())
		commit(3, "people")
		if got, want := relinks("people"), []string{`orgs["1"]@` + t1.Format("15:04:05"), `orgs["2"]@` + t1.Format("15:04:05")}; !slices.Equal(got, want) {
			t.Errorf("relinks after a second replacement = %v, want %v", got, want)
		}
		must(t, s.DropRelinks(ctx, "people", queued))
		if got := relinks("people"); len(got) != 2 {
			t.Errorf("dropping the older relink removed the newer one: %v", got)
		}
		now, err := s.Relinks(ctx, "people")
		must(t, err)
		must(t, s.DropRelinks(ctx, "people", now))
		must(t, s.DropRelinks(ctx, "people", nil))
		if got := relinks("people"); len(got) != 0 {
			t.Errorf("relinks after dropping them: %v", got)
		}
		if got := relinks("deals"); len(got) != 1 {
			t.Errorf("deals' relinks are its own: %v", got)
		}
		// A replaced id without referrers queues nothing.
		commit(4)
		if got := relinks("people"); len(got) != 0 {
			t.Errorf("relinks without referrers: %v", got)
		}
	})

	t.Run("ForgetClearsRecordsAndRelinks", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		for _, id := range []int{1, 2} {
			must(t, s.CommitRecords(ctx, "orgs", "b", pos("1"), "", nil, nil, Ledger{Referrers: []string{"people"},
				Records: []Record{{RowKey: []string{"1"}, ID: uuidN(id)}}}))
		}
		must(t, s.CommitRecords(ctx, "people", "b", pos("1"), "", nil, nil, Ledger{Records: []Record{{RowKey: []string{"1"}, ID: uuidN(9)}}}))
		must(t, s.Forget(ctx, "people"))
		if rs, err := s.Relinks(ctx, "people"); err != nil || len(rs) != 0 {
			t.Errorf("relinks of a forgotten sync: %v, %v", rs, err)
		}
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("people", "1")}, []string{uuidN(2), ""})
		must(t, s.Forget(ctx, "orgs"))
		wantRecordIDs(t, s, []RecordRef{ref("orgs", "1")}, []string{""})
	})

	t.Run("DeferredRows", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		t0 := stamp(clock.Now())
		must(t, s.Commit(ctx, "people", "b1", pos("1"), "", []Reject{
			{RowKey: []string{"1"}, Code: "missing_reference", Message: "waits for companies [7]", WaitSync: "companies", WaitKey: []string{"7"}},
			{RowKey: []string{"2"}, Code: "invalid_value", Message: "bad email"},
			{RowKey: []string{"3"}, Code: "missing_reference", Message: "waits", WaitSync: "companies", WaitKey: []string{"eu", "8"}},
		}, nil))
		clock.Advance(time.Hour)
		t1 := stamp(clock.Now())
		must(t, s.Commit(ctx, "people~backfill", "b2", pos("2"), "", []Reject{
			// Still waiting, now for another row: the wait goes on.
			{RowKey: []string{"1"}, Code: "missing_reference", Message: "waits for companies [9]", WaitSync: "companies", WaitKey: []string{"9"}},
			// Refused before, now waiting: a new wait.
			{RowKey: []string{"2"}, Code: "missing_reference", Message: "waits", WaitSync: "companies", WaitKey: []string{"1"}},
			{RowKey: []string{"4"}, Code: "missing_reference", Message: "waits", WaitSync: "deals", WaitKey: []string{"1"}},
		}, nil))
		must(t, s.Commit(ctx, "orgs", "b3", pos("1"), "", []Reject{
			{RowKey: []string{"1"}, Code: "missing_reference", Message: "waits", WaitSync: "x", WaitKey: []string{"1"}}}, nil))

		type row struct {
			key, wait string
			attempts  int
			first     time.Time
		}
		deferred := func() []row {
			t.Helper()
			rs, err := s.Deferred(ctx, "people")
			must(t, err)
			var out []row
			for _, r := range rs {
				if !r.Deferred() || r.Sync != "people" || r.Code != "missing_reference" {
					t.Errorf("Deferred returned %+v", r)
				}
				out = append(out, row{strings.Join(r.RowKey, ","), r.WaitSync + KeyTextForTest(r.WaitKey), r.Attempts, r.FirstSeen})
			}
			return out
		}
		want := []row{{"1", "companies[9]", 2, t0}, {"3", "companies[eu 8]", 1, t0}, {"2", "companies[1]", 1, t1}, {"4", "deals[1]", 1, t1}}
		if got := deferred(); !slices.Equal(got, want) {
			t.Errorf("Deferred =\n%v\nwant\n%v", got, want)
		}
		for sync, n := range map[string]int{"": 5, "people": 4, "orgs": 1, "none": 0} {
			if got, err := s.CountDeferred(ctx, sync); err != nil || got != n {
				t.Errorf("CountDeferred(%q) = %d, %v; want %d", sync, got, err, n)
			}
		}
		if n, err := s.CountRejects(ctx, "people"); err != nil || n != 4 {
			t.Errorf("CountRejects counts deferred rows too: %d, %v", n, err)
		}
		// Delivered: the wait ends. Refused while waiting: a new story.
		clock.Advance(time.Hour)
		t2 := stamp(clock.Now())
		must(t, s.Commit(ctx, "people", "b4", pos("3"), "", []Reject{{RowKey: []string{"3"}, Code: "invalid_reference", Message: "gone"}}, [][]string{{"1"}}))
		if got, want := deferred(), []row{{"2", "companies[1]", 1, t1}, {"4", "deals[1]", 1, t1}}; !slices.Equal(got, want) {
			t.Errorf("Deferred after delivery =\n%v\nwant\n%v", got, want)
		}
		rs, err := s.Rejects(ctx, "people", 0)
		must(t, err)
		var refused []string
		for _, r := range rs {
			if !r.Deferred() {
				refused = append(refused, fmt.Sprintf("%s %s %d %s", strings.Join(r.RowKey, ","), r.Code, r.Attempts, r.FirstSeen.Sub(t2)))
				if r.WaitSync != "" || r.WaitKey != nil {
					t.Errorf("a refused row keeps its wait: %+v", r)
				}
			}
		}
		if want := []string{"3 invalid_reference 1 0s"}; !slices.Equal(refused, want) {
			t.Errorf("refused rows = %v, want %v", refused, want)
		}
		// A deferral needs both halves.
		for _, bad := range []Reject{{RowKey: []string{"9"}, Code: "c", WaitSync: "x"}, {RowKey: []string{"9"}, Code: "c", WaitKey: []string{"1"}}} {
			if err := s.Commit(ctx, "people", "b5", pos("4"), "", []Reject{bad}, nil); err == nil {
				t.Errorf("commit of %+v succeeded", bad)
			}
		}
	})
}

// KeyTextForTest writes a key as the tests compare it.
func KeyTextForTest(k []string) string { return fmt.Sprint(k) }

// testLedgerMarks: a delete commit marks records and drops their
// fingerprints with the batch; deleted records are no link targets, are
// left out of LedgerPage and CountRecords; a new record id makes the row
// live again; the journal keeps a batch's kind.
func testLedgerMarks(t *testing.T, h harness) {
	ctx := context.Background()
	s, err := h.open(t, h.newLoc(t))
	must(t, err)
	var recs []Record
	var keys [][]string
	for i := 1; i <= 5; i++ {
		recs = append(recs, Record{RowKey: []string{fmt.Sprint(i)}, ID: uuidN(i)})
		keys = append(keys, []string{fmt.Sprint(i)})
	}
	must(t, s.CommitRecords(ctx, "orgs", "", pos("5"), "fp", nil, nil, Ledger{Records: recs}))
	must(t, s.SaveFingerprints(ctx, "orgs", keys, [][]byte{{1}, {2}, {3}, {4}, {5}}))
	b := batch("orgs", "d1", pos("5"), pos("5"), `{"ids":[]}`)
	b.Kind = KindDelete
	must(t, s.Journal(ctx, b))
	p, err := s.Pending(ctx, "orgs")
	must(t, err)
	if len(p) != 1 || p[0].Kind != KindDelete {
		t.Fatalf("Pending = %+v; want one batch of kind delete", p)
	}
	must(t, s.CommitRecords(ctx, "orgs", "d1", pos("5"), "fp", nil, nil, Ledger{Deleted: keys[1:3], Archived: keys[3:4]}))
	states, err := s.RecordStates(ctx, "orgs", append(keys, []string{"9"}))
	must(t, err)
	want := []RecordState{{uuidN(1), ""}, {uuidN(2), StateDeleted}, {uuidN(3), StateDeleted}, {uuidN(4), StateArchived}, {uuidN(5), ""}, {}}
	if !slices.Equal(states, want) {
		t.Errorf("RecordStates = %v; want %v", states, want)
	}
	wantRecordIDs(t, s, []RecordRef{ref("orgs", "1"), ref("orgs", "2"), ref("orgs", "4")}, []string{uuidN(1), "", uuidN(4)})
	fps, err := s.Fingerprints(ctx, "orgs", keys)
	must(t, err)
	if fps[0] == nil || fps[1] != nil || fps[2] != nil || fps[3] != nil || fps[4] == nil {
		t.Errorf("fingerprints after the marks = %v; want those of rows 2, 3 and 4 dropped", fps)
	}
	n, err := s.CountRecords(ctx, "orgs")
	must(t, err)
	if n != 3 {
		t.Errorf("CountRecords = %d; want 3 (two deleted)", n)
	}
	// Paged one at a time, the ledger comes back whole and in order.
	var got []string
	after := ""
	for {
		page, err := s.LedgerPage(ctx, "orgs", after, 1)
		must(t, err)
		if len(page) == 0 {
			break
		}
		got = append(got, page[0].RowKey[0]+"="+page[0].State)
		after = page[0].After
	}
	if !slices.Equal(got, []string{"1=", "4=archived", "5="}) {
		t.Errorf("LedgerPage walk = %v; want 1, 4 (archived), 5", got)
	}
	// Re-created: live again under its new id.
	must(t, s.CommitRecords(ctx, "orgs", "", pos("6"), "fp", nil, nil, Ledger{Records: []Record{{RowKey: []string{"2"}, ID: uuidN(7)}}}))
	states, err = s.RecordStates(ctx, "orgs", keys[1:2])
	must(t, err)
	if states[0] != (RecordState{uuidN(7), ""}) {
		t.Errorf("re-created row = %v; want live under the new id", states[0])
	}
}
