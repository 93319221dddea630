package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// harness adapts one Store implementation to the conformance suite. A
// location is a database DSN or a file path.
type harness struct {
	newLoc func(t *testing.T) string
	open   func(t *testing.T, loc string) (Store, error)
	// dropPosition deletes the position of sync behind the store's back
	// (no store is open on loc).
	dropPosition func(t *testing.T, loc, sync string)
	// setVersion marks loc as written by format version v (no store open).
	setVersion func(t *testing.T, loc string, v int)
	// openReadOnly opens loc with OpenReadOnly.
	openReadOnly func(t *testing.T, loc string) (Store, error)
}

// fakeClock is a settable clock; stores read it through their now field.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setClock(t *testing.T, s Store, c *fakeClock) {
	t.Helper()
	switch s := s.(type) {
	case *PGStore:
		s.now = c.Now
	case *FileStore:
		s.now = c.Now
	default:
		t.Fatalf("setClock: unknown store %T", s)
	}
}

// openStore opens a store on loc, sets its clock and closes it at the end.
func (h harness) openStore(t *testing.T, loc string, c *fakeClock) Store {
	t.Helper()
	s, err := h.open(t, loc)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if c != nil {
		setClock(t, s, c)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func pos(cursor string, key ...string) Position { return Position{Cursor: cursor, Key: key} }

func batch(sync, key string, from, to Position, body string) Batch {
	return Batch{Sync: sync, Key: key, Attempt: 1, From: from, To: to, Rows: 2, Body: []byte(body), Object: "organization", RowKeys: [][]string{{"1"}, {"2", "a,b"}},
		Held: []Reject{{Sync: sync, RowKey: []string{"3"}, Code: "invalid_value", Message: "m", Attempts: 1},
			{Sync: sync, RowKey: []string{"4"}, Code: "missing_reference", Message: "w", Attempts: 1, WaitSync: "companies", WaitKey: []string{"9"}}}}
}

// sameBatch compares the fields the store must round-trip.
func sameBatch(t *testing.T, got, want Batch) {
	t.Helper()
	if got.Sync != want.Sync || got.Key != want.Key || got.Attempt != want.Attempt || got.Rows != want.Rows ||
		got.Object != want.Object || got.JobID != want.JobID {
		t.Errorf("batch = %+v, want %+v", summary(got), summary(want))
	}
	if !got.From.Equal(want.From) || !got.To.Equal(want.To) {
		t.Errorf("batch %s positions = %v..%v, want %v..%v", want.Key, got.From, got.To, want.From, want.To)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("batch %s body = %d bytes %.40q, want %d bytes %.40q", want.Key, len(got.Body), got.Body, len(want.Body), want.Body)
	}
	// nil and empty are the same, for the list and for each key.
	if !slices.EqualFunc(got.RowKeys, want.RowKeys, func(a, b []string) bool { return slices.Equal(a, b) }) {
		t.Errorf("batch %s row keys = %q, want %q", want.Key, got.RowKeys, want.RowKeys)
	}
	if !slices.EqualFunc(got.Held, want.Held, func(a, b Reject) bool {
		return a.Sync == b.Sync && slices.Equal(a.RowKey, b.RowKey) && a.Code == b.Code && a.Message == b.Message &&
			a.Attempts == b.Attempts && a.WaitSync == b.WaitSync && slices.Equal(a.WaitKey, b.WaitKey)
	}) {
		t.Errorf("batch %s held rows = %+v, want %+v", want.Key, got.Held, want.Held)
	}
	if !want.CreatedAt.IsZero() && !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("batch %s created_at = %v, want %v", want.Key, got.CreatedAt, want.CreatedAt)
	}
}

func summary(b Batch) string {
	return fmt.Sprintf("{sync=%s key=%s attempt=%d rows=%d object=%s job=%s}", b.Sync, b.Key, b.Attempt, b.Rows, b.Object, b.JobID)
}

func keys(bs []Batch) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Key)
	}
	return out
}

// testStore is the conformance suite every Store implementation passes.
func testStore(t *testing.T, h harness) {
	ctx := context.Background()

	t.Run("Fresh", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		if st.Exists || !st.Position.IsZero() || st.Batches != 0 || st.Fingerprint != "" || !st.UpdatedAt.IsZero() {
			t.Errorf("fresh Load = %+v, want zero state", st)
		}
		p, err := s.Pending(ctx, "orgs")
		must(t, err)
		if len(p) != 0 {
			t.Errorf("fresh Pending = %v", keys(p))
		}
		rs, err := s.Rejects(ctx, "", 0)
		must(t, err)
		n, err := s.CountRejects(ctx, "")
		must(t, err)
		if len(rs) != 0 || n != 0 {
			t.Errorf("fresh rejects = %v, count %d", rs, n)
		}
		syncs, err := s.Syncs(ctx)
		must(t, err)
		if len(syncs) != 0 {
			t.Errorf("fresh Syncs = %v", syncs)
		}
	})

	t.Run("EmptyNamesRefused", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		if _, err := s.Load(ctx, ""); err == nil {
			t.Error("Load(\"\") succeeded")
		}
		if err := s.Journal(ctx, batch("", "k", Position{}, Position{}, "x")); err == nil {
			t.Error("Journal with empty sync succeeded")
		}
		if err := s.Journal(ctx, batch("orgs", "", Position{}, Position{}, "x")); err == nil {
			t.Error("Journal with empty key succeeded")
		}
		if err := s.Commit(ctx, "", "k", pos("1"), "", nil, nil); err == nil {
			t.Error("Commit with empty sync succeeded")
		}
	})

	t.Run("CommitAndLoad", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		must(t, s.Commit(ctx, "orgs", "k1", pos("2026-01-02 03:04:05.123456+00", "7", "a b"), "fp1", nil, nil))
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		want := State{Position: pos("2026-01-02 03:04:05.123456+00", "7", "a b"), Exists: true, Fingerprint: "fp1",
			Batches: 1, UpdatedAt: stamp(clock.Now())}
		if !st.Position.Equal(want.Position) || st.Exists != want.Exists || st.Fingerprint != want.Fingerprint ||
			st.Batches != want.Batches || !st.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("Load = %+v, want %+v", st, want)
		}
		if st.UpdatedAt.Location() != time.UTC {
			t.Errorf("UpdatedAt zone = %v, want UTC", st.UpdatedAt.Location())
		}

		clock.Advance(time.Minute)
		must(t, s.Commit(ctx, "orgs", "k2", pos("2026-01-03 00:00:00+00", "8", "c"), "fp2", nil, nil))
		st, err = s.Load(ctx, "orgs")
		must(t, err)
		if !st.Position.Equal(pos("2026-01-03 00:00:00+00", "8", "c")) || st.Batches != 2 || st.Fingerprint != "fp2" ||
			!st.UpdatedAt.Equal(stamp(clock.Now())) {
			t.Errorf("after second commit Load = %+v", st)
		}

		// A commit back to the zero position (e.g. a deliberate rewind) is
		// kept as such, and the sync still exists.
		must(t, s.Commit(ctx, "orgs", "k3", Position{}, "fp2", nil, nil))
		st, err = s.Load(ctx, "orgs")
		must(t, err)
		if !st.Exists || !st.Position.IsZero() || st.Position.Key != nil || st.Batches != 3 {
			t.Errorf("after commit to zero Load = %+v", st)
		}

		other, err := s.Load(ctx, "contacts")
		must(t, err)
		if other.Exists {
			t.Errorf("untouched sync exists: %+v", other)
		}
		must(t, s.Commit(ctx, "contacts", "c1", pos("5"), "", nil, nil))
		syncs, err := s.Syncs(ctx)
		must(t, err)
		if !slices.Equal(syncs, []string{"contacts", "orgs"}) {
			t.Errorf("Syncs = %v", syncs)
		}
	})

	t.Run("PositionValuesExact", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		// Text representations must come back byte for byte, including
		// whitespace, quotes, unicode and empty strings inside the key.
		p := pos(" 12.500 ", "", `a"b,c{}`, "ünï  cödé", "NULL", `\N`)
		must(t, s.Commit(ctx, "orgs", "k", p, "", nil, nil))
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		if !st.Position.Equal(p) {
			t.Errorf("position = %#v, want %#v", st.Position, p)
		}
	})

	t.Run("JournalPending", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		b1 := batch("orgs", "key-1", Position{}, pos("10", "1"), `{"objects":[1]}`)
		b2 := batch("orgs", "key-2", pos("10", "1"), pos("20", "2"), `{"objects":[2]}`)
		b3 := batch("orgs", "key-3", pos("20", "2"), pos("30", "3"), `{"objects":[3]}`)
		other := batch("contacts", "key-1", Position{}, pos("1"), `{"other":true}`)
		must(t, s.Journal(ctx, b1))
		clock.Advance(time.Second)
		must(t, s.Journal(ctx, b2))
		must(t, s.Journal(ctx, other))
		// Same clock reading as b2: insertion order breaks the tie.
		must(t, s.Journal(ctx, b3))

		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"key-1", "key-2", "key-3"}) {
			t.Fatalf("Pending = %v", keys(got))
		}
		b1.CreatedAt = stamp(newClock().Now())
		sameBatch(t, got[0], b1)
		sameBatch(t, got[1], b2)
		sameBatch(t, got[2], b3)
		if !got[1].CreatedAt.Equal(stamp(clock.Now())) || got[1].CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v (UTC)", got[1].CreatedAt, stamp(clock.Now()))
		}
		oc, err := s.Pending(ctx, "contacts")
		must(t, err)
		if len(oc) != 1 {
			t.Fatalf("Pending(contacts) = %v", keys(oc))
		}
		sameBatch(t, oc[0], other)

		// The store returns copies: changing them changes nothing stored.
		got[0].Body[0] = 'X'
		again, err := s.Pending(ctx, "orgs")
		must(t, err)
		sameBatch(t, again[0], b1)

		// Journaling a batch does not make a sync exist.
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		if st.Exists {
			t.Errorf("journal alone made the sync exist: %+v", st)
		}
	})

	t.Run("JournalExplicitCreatedAt", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), newClock())
		late := batch("orgs", "late", Position{}, pos("1"), "a")
		late.CreatedAt = time.Date(2030, 1, 1, 0, 0, 0, 999, time.FixedZone("X", 3600))
		early := batch("orgs", "early", Position{}, pos("1"), "b")
		early.CreatedAt = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		must(t, s.Journal(ctx, late))
		must(t, s.Journal(ctx, early))
		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"early", "late"}) {
			t.Fatalf("Pending = %v, want oldest CreatedAt first", keys(got))
		}
		if want := late.CreatedAt.UTC().Truncate(time.Microsecond); !got[1].CreatedAt.Equal(want) {
			t.Errorf("CreatedAt = %v, want %v", got[1].CreatedAt, want)
		}
	})

	t.Run("JournalReplace", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		b1 := batch("orgs", "a", Position{}, pos("1"), "first")
		b2 := batch("orgs", "b", pos("1"), pos("2"), "second")
		must(t, s.Journal(ctx, b1))
		clock.Advance(time.Second)
		must(t, s.Journal(ctx, b2))
		clock.Advance(time.Second)
		// A retry re-journals "a" with a new attempt and body: it replaces the
		// entry and keeps its place (and CreatedAt) ahead of "b".
		b1r := b1
		b1r.Attempt, b1r.Body, b1r.Rows, b1r.JobID = 2, []byte("first, retried"), 1, "job-9"
		must(t, s.Journal(ctx, b1r))
		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"a", "b"}) {
			t.Fatalf("Pending = %v", keys(got))
		}
		b1r.CreatedAt = stamp(newClock().Now())
		sameBatch(t, got[0], b1r)
	})

	t.Run("SetJobIDAndDrop", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.Journal(ctx, batch("orgs", "a", Position{}, pos("1"), "x")))
		must(t, s.Journal(ctx, batch("orgs", "b", pos("1"), pos("2"), "y")))
		must(t, s.SetJobID(ctx, "orgs", "b", "job-123"))
		err := s.SetJobID(ctx, "orgs", "nope", "job-1")
		if !errors.Is(err, ErrNotJournaled) {
			t.Errorf("SetJobID of unknown batch = %v, want ErrNotJournaled", err)
		}
		if err := s.SetJobID(ctx, "contacts", "b", "job-1"); !errors.Is(err, ErrNotJournaled) {
			t.Errorf("SetJobID of another sync's batch = %v, want ErrNotJournaled", err)
		}
		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if len(got) != 2 || got[0].JobID != "" || got[1].JobID != "job-123" {
			t.Fatalf("job ids after SetJobID: %+v", got)
		}

		must(t, s.Drop(ctx, "orgs", "a"))
		must(t, s.Drop(ctx, "orgs", "a")) // idempotent
		must(t, s.Drop(ctx, "orgs", "never"))
		got, err = s.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"b"}) || got[0].JobID != "job-123" {
			t.Fatalf("after Drop Pending = %+v", got)
		}
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		if st.Exists || st.Batches != 0 {
			t.Errorf("Drop advanced the sync: %+v", st)
		}
	})

	t.Run("CommitRemovesJournalEntry", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.Journal(ctx, batch("orgs", "a", Position{}, pos("1"), "x")))
		must(t, s.Journal(ctx, batch("orgs", "b", pos("1"), pos("2"), "y")))
		must(t, s.Journal(ctx, batch("contacts", "a", Position{}, pos("1"), "z")))
		must(t, s.Commit(ctx, "orgs", "a", pos("1"), "fp", nil, nil))
		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"b"}) {
			t.Errorf("Pending(orgs) after commit = %v", keys(got))
		}
		got, err = s.Pending(ctx, "contacts")
		must(t, err)
		if !slices.Equal(keys(got), []string{"a"}) {
			t.Errorf("commit of orgs/a touched contacts/a: Pending = %v", keys(got))
		}
		// A batch that was never journaled may still be committed.
		must(t, s.Commit(ctx, "orgs", "never-journaled", pos("3"), "fp", nil, nil))
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		if !st.Position.Equal(pos("3")) || st.Batches != 2 {
			t.Errorf("Load = %+v", st)
		}
	})

	t.Run("LargeBody", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		// Incompressible random bytes and a large compressible JSON body.
		rnd := make([]byte, 3<<20)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range rnd {
			rnd[i] = byte(r.Uint32())
		}
		var js bytes.Buffer
		js.WriteString(`{"objects":[`)
		for i := 0; js.Len() < 8<<20; i++ {
			if i > 0 {
				js.WriteByte(',')
			}
			fmt.Fprintf(&js, `{"default":{"name":"org %d","domain":"org%d.example"}}`, i, i)
		}
		js.WriteString(`]}`)
		must(t, s.Journal(ctx, Batch{Sync: "orgs", Key: "rnd", Body: rnd, From: Position{}, To: pos("1")}))
		must(t, s.Journal(ctx, Batch{Sync: "orgs", Key: "json", Body: js.Bytes(), From: pos("1"), To: pos("2")}))
		must(t, s.Journal(ctx, Batch{Sync: "orgs", Key: "empty", From: pos("2"), To: pos("2")}))
		got, err := s.Pending(ctx, "orgs")
		must(t, err)
		if len(got) != 3 {
			t.Fatalf("Pending = %v", keys(got))
		}
		if !bytes.Equal(got[0].Body, rnd) || !bytes.Equal(got[1].Body, js.Bytes()) || len(got[2].Body) != 0 {
			t.Errorf("bodies did not round-trip: %d/%d, %d/%d, %d bytes", len(got[0].Body), len(rnd), len(got[1].Body), js.Len(), len(got[2].Body))
		}
	})

	t.Run("Rejects", func(t *testing.T) {
		clock := newClock()
		s := h.openStore(t, h.newLoc(t), clock)
		t0 := stamp(clock.Now())
		must(t, s.Commit(ctx, "orgs", "b1", pos("10"), "fp", []Reject{
			{RowKey: []string{"1"}, Code: "invalid_value", Message: "bad domain", Payload: []byte(`{"d":1}`)},
			{RowKey: []string{"2"}, Code: "invalid_value", Message: "bad name"},
			{Sync: "ignored", RowKey: []string{"3"}, Code: "c", Message: "m"},
		}, nil))
		clock.Advance(time.Minute)
		t1 := stamp(clock.Now())
		must(t, s.Commit(ctx, "contacts", "c1", pos("5"), "fp", []Reject{
			{RowKey: []string{"1"}, Code: "dup", Message: "duplicate"},
		}, nil))
		clock.Advance(time.Minute)
		t2 := stamp(clock.Now())
		// Row 1 rejected again (new code/message/payload), row 2 now
		// accepted, row 4 new.
		must(t, s.Commit(ctx, "orgs", "b2", pos("20"), "fp", []Reject{
			{RowKey: []string{"1"}, Code: "missing_required", Message: "name required", Payload: []byte(`{"d":2}`)},
			{RowKey: []string{"4"}, Code: "x", Message: "y", Attempts: 3},
		}, [][]string{{"2"}, {"does-not-exist"}}))

		all, err := s.Rejects(ctx, "", 0)
		must(t, err)
		type row struct {
			sync, key, code, msg, payload string
			attempts                      int
			first, last                   time.Time
		}
		var gotRows []row
		for _, r := range all {
			gotRows = append(gotRows, row{r.Sync, strings.Join(r.RowKey, "|"), r.Code, r.Message, string(r.Payload), r.Attempts, r.FirstSeen, r.LastSeen})
		}
		wantRows := []row{
			{"orgs", "1", "missing_required", "name required", `{"d":2}`, 2, t0, t2},
			{"orgs", "4", "x", "y", "", 3, t2, t2},
			{"contacts", "1", "dup", "duplicate", "", 1, t1, t1},
			{"orgs", "3", "c", "m", "", 1, t0, t0},
		}
		if !slices.Equal(gotRows, wantRows) {
			t.Errorf("Rejects(all) =\n%v\nwant\n%v", gotRows, wantRows)
		}

		orgs, err := s.Rejects(ctx, "orgs", 0)
		must(t, err)
		if len(orgs) != 3 {
			t.Errorf("Rejects(orgs) = %d rows, want 3", len(orgs))
		}
		two, err := s.Rejects(ctx, "", 2)
		must(t, err)
		if len(two) != 2 || two[0].RowKey[0] != "1" || two[1].RowKey[0] != "4" {
			t.Errorf("Rejects(limit 2) = %+v", two)
		}
		for sync, want := range map[string]int{"": 4, "orgs": 3, "contacts": 1, "none": 0} {
			n, err := s.CountRejects(ctx, sync)
			must(t, err)
			if n != want {
				t.Errorf("CountRejects(%q) = %d, want %d", sync, n, want)
			}
		}
	})

	t.Run("RejectKeysAndText", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		// Composite keys that would collide if joined naively, and text
		// PostgreSQL cannot store as is (NUL, invalid UTF-8).
		must(t, s.Commit(ctx, "orgs", "b", pos("1"), "", []Reject{
			{RowKey: []string{"a,b"}, Code: "c\x00ode", Message: "bad \xff byte"},
			{RowKey: []string{"a", "b"}, Code: "c", Message: "m"},
			{RowKey: []string{"a", "b", ""}, Code: "c", Message: "m"},
		}, nil))
		n, err := s.CountRejects(ctx, "orgs")
		must(t, err)
		if n != 3 {
			t.Fatalf("CountRejects = %d, want 3 distinct keys", n)
		}
		must(t, s.Commit(ctx, "orgs", "b2", pos("2"), "", nil, [][]string{{"a", "b"}}))
		rs, err := s.Rejects(ctx, "orgs", 0)
		must(t, err)
		var ks []string
		for _, r := range rs {
			ks = append(ks, fmt.Sprintf("%q", r.RowKey))
			if r.RowKey[0] == "a,b" && (r.Code != "c\uFFFDode" || r.Message != "bad \uFFFD byte") {
				t.Errorf("text not cleaned: code %q message %q", r.Code, r.Message)
			}
		}
		slices.Sort(ks)
		if want := []string{`["a" "b" ""]`, `["a,b"]`}; !slices.Equal(ks, want) {
			t.Errorf("remaining keys = %v, want %v", ks, want)
		}
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		loc := h.newLoc(t)
		clock := newClock()
		s, err := h.open(t, loc)
		must(t, err)
		setClock(t, s, clock)
		must(t, s.Journal(ctx, batch("orgs", "k1", Position{}, pos("1", "a"), "body-1")))
		must(t, s.Journal(ctx, batch("orgs", "k2", pos("1", "a"), pos("2", "b"), "body-2")))
		must(t, s.SetJobID(ctx, "orgs", "k2", "job-2"))
		must(t, s.Commit(ctx, "orgs", "k1", pos("1", "a"), "fp", []Reject{{RowKey: []string{"9"}, Code: "c", Message: "m", Payload: []byte("p")}}, nil))
		must(t, s.Close())

		s2 := h.openStore(t, loc, nil)
		st, err := s2.Load(ctx, "orgs")
		must(t, err)
		if !st.Exists || !st.Position.Equal(pos("1", "a")) || st.Batches != 1 || st.Fingerprint != "fp" ||
			!st.UpdatedAt.Equal(stamp(clock.Now())) {
			t.Errorf("after reopen Load = %+v", st)
		}
		got, err := s2.Pending(ctx, "orgs")
		must(t, err)
		if len(got) != 1 {
			t.Fatalf("after reopen Pending = %v", keys(got))
		}
		want := batch("orgs", "k2", pos("1", "a"), pos("2", "b"), "body-2")
		want.JobID = "job-2"
		want.CreatedAt = stamp(clock.Now())
		sameBatch(t, got[0], want)
		rs, err := s2.Rejects(ctx, "orgs", 0)
		must(t, err)
		if len(rs) != 1 || rs[0].Code != "c" || string(rs[0].Payload) != "p" || rs[0].Attempts != 1 {
			t.Errorf("after reopen Rejects = %+v", rs)
		}
		// The journal's insertion order survives too.
		must(t, s2.Journal(ctx, batch("orgs", "k3", pos("2", "b"), pos("3", "c"), "body-3")))
		got, err = s2.Pending(ctx, "orgs")
		must(t, err)
		if !slices.Equal(keys(got), []string{"k2", "k3"}) {
			t.Errorf("Pending = %v", keys(got))
		}
	})

	t.Run("MissingCheckpoint", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		must(t, s.Commit(ctx, "orgs", "k1", pos("1"), "fp", nil, nil))
		must(t, s.Commit(ctx, "orgs", "k2", pos("2"), "fp", nil, nil))
		must(t, s.Commit(ctx, "contacts", "k1", pos("1"), "fp", nil, nil))
		must(t, s.Close())

		h.dropPosition(t, loc, "orgs")

		s2 := h.openStore(t, loc, nil)
		_, err = s2.Load(ctx, "orgs")
		if !errors.Is(err, ErrCheckpointMissing) {
			t.Fatalf("Load after losing the position = %v, want ErrCheckpointMissing", err)
		}
		var me *MissingCheckpointError
		if !errors.As(err, &me) || me.Sync != "orgs" || me.Commits != 2 {
			t.Errorf("error detail = %#v", me)
		}
		for _, want := range []string{`"orgs"`, "2 batch", "missing", "refusing", "Restore"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		// Other syncs are unaffected, and the lost sync is still listed.
		if st, err := s2.Load(ctx, "contacts"); err != nil || !st.Exists {
			t.Errorf("Load(contacts) = %+v, %v", st, err)
		}
		syncs, err := s2.Syncs(ctx)
		must(t, err)
		if !slices.Equal(syncs, []string{"contacts", "orgs"}) {
			t.Errorf("Syncs = %v", syncs)
		}

		// Forget is the deliberate restart.
		must(t, s2.Forget(ctx, "orgs"))
		st, err := s2.Load(ctx, "orgs")
		must(t, err)
		if st.Exists || !st.Position.IsZero() {
			t.Errorf("after Forget Load = %+v", st)
		}
	})

	t.Run("Forget", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.Journal(ctx, batch("orgs", "a", Position{}, pos("1"), "x")))
		must(t, s.Commit(ctx, "orgs", "z", pos("1"), "fp", []Reject{{RowKey: []string{"1"}, Code: "c"}}, nil))
		must(t, s.Commit(ctx, "contacts", "z", pos("1"), "fp", []Reject{{RowKey: []string{"1"}, Code: "c"}}, nil))
		must(t, s.Forget(ctx, "orgs"))
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		p, err := s.Pending(ctx, "orgs")
		must(t, err)
		n, err := s.CountRejects(ctx, "")
		must(t, err)
		syncs, err := s.Syncs(ctx)
		must(t, err)
		if st.Exists || len(p) != 0 || n != 1 || !slices.Equal(syncs, []string{"contacts"}) {
			t.Errorf("after Forget: state %+v, pending %d, rejects %d, syncs %v", st, len(p), n, syncs)
		}
	})

	// A backfill commits under "SYNC~backfill": its rejects belong to SYNC,
	// it resolves SYNC's rejects, and forgetting its position keeps them.
	t.Run("StateNameRejectsBelongToTheSync", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		must(t, s.Commit(ctx, "orgs", "a", pos("1"), "fp", []Reject{{RowKey: []string{"1"}, Code: "live"}}, nil))
		must(t, s.Commit(ctx, "orgs~backfill", "b", pos("2"), "fp", []Reject{{RowKey: []string{"2"}, Code: "backfill"}}, [][]string{{"1"}}))
		must(t, s.Forget(ctx, "orgs~backfill"))
		rs, err := s.Rejects(ctx, "orgs", 0)
		must(t, err)
		if len(rs) != 1 || rs[0].Code != "backfill" || rs[0].Sync != "orgs" {
			t.Fatalf("rejects of orgs = %+v, want only the backfill's row 2 (row 1 resolved by it)", rs)
		}
		if n, err := s.CountRejects(ctx, "orgs~backfill"); err != nil || n != 0 {
			t.Fatalf("rejects under the state name: %d, %v", n, err)
		}
		if st, err := s.Load(ctx, "orgs"); err != nil || !st.Position.Equal(pos("1")) {
			t.Fatalf("live position %+v, %v: the backfill must not move it", st.Position, err)
		}
	})

	// Overviews reads every sync's state at once: what the metrics of every
	// replica show.
	t.Run("Overviews", func(t *testing.T) {
		c := newClock()
		s := h.openStore(t, h.newLoc(t), c)
		if o, err := s.Overviews(ctx); err != nil || len(o) != 0 {
			t.Fatalf("fresh Overviews = %+v, %v", o, err)
		}
		committed := stamp(c.Now())
		must(t, s.Commit(ctx, "orgs", "k0", pos("2026-03-04 05:00:00+00", "1"), "fp",
			[]Reject{{RowKey: []string{"3"}, Code: "c"}, {RowKey: []string{"4"}, Code: "c"},
				{RowKey: []string{"6"}, Code: "missing_reference", WaitSync: "companies", WaitKey: []string{"1"}}}, nil))
		must(t, s.Journal(ctx, batch("orgs", "k1", pos("7"), pos("8"), "body")))
		ran := Run{Started: committed.Add(-time.Minute), Finished: committed, OK: true, Rows: 5, Sent: 4, Requests: 2, Deferred: 1,
			Checkpoint: pos("2026-03-04 05:00:00+00", "1")}
		must(t, s.RecordRun(ctx, "orgs", Run{OK: false}, 10))
		must(t, s.RecordRun(ctx, "orgs", ran, 10)) // the last one counts
		ran.Sync, ran.Seq = "orgs", 2
		failed := Run{Started: committed, Finished: committed.Add(time.Second), Error: "sync contacts: boom", Budget: true}
		must(t, s.RecordRun(ctx, "contacts", failed, 10))
		failed.Sync, failed.Seq = "contacts", 1
		c.Advance(time.Hour)
		must(t, s.Commit(ctx, "people~backfill", "b", pos("9", "2"), "fp", []Reject{{RowKey: []string{"5"}, Code: "c"}}, nil))
		got, err := s.Overviews(ctx)
		must(t, err)
		want := []Overview{
			{Sync: "contacts", LastRun: failed, HasRun: true},
			{Sync: "orgs", Position: pos("2026-03-04 05:00:00+00", "1"), Committed: committed, InFlight: 1, Rejects: 2, Deferred: 1, LastRun: ran, HasRun: true},
			{Sync: "people", Rejects: 1}, // a backfill's rejects belong to its sync
			{Sync: "people~backfill", Position: pos("9", "2"), Committed: committed.Add(time.Hour)},
		}
		if len(got) != len(want) {
			t.Fatalf("Overviews = %+v, want %+v", got, want)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Sync != w.Sync || !g.Position.Equal(w.Position) || !g.Committed.Equal(w.Committed) || g.InFlight != w.InFlight ||
				g.Rejects != w.Rejects || g.Deferred != w.Deferred || g.HasRun != w.HasRun || !sameRun(g.LastRun, w.LastRun) {
				t.Errorf("Overviews[%d] = %+v, want %+v", i, g, w)
			}
		}
		must(t, s.Forget(ctx, "orgs"))
		got, err = s.Overviews(ctx)
		must(t, err)
		if len(got) != 3 || got[1].Sync != "people" {
			t.Errorf("Overviews after Forget(orgs) = %+v", got)
		}
	})

	t.Run("UnsupportedVersion", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		must(t, s.Commit(ctx, "orgs", "k", pos("1"), "", nil, nil))
		must(t, s.Close())
		h.setVersion(t, loc, 99)
		s2, err := h.open(t, loc)
		if err == nil {
			s2.Close()
			t.Fatal("open of a newer format succeeded")
		}
		if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "99") {
			t.Errorf("open of a newer format = %v, want ErrUnsupportedVersion naming version 99", err)
		}
		if r, err := h.openReadOnly(t, loc); !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "99") {
			if r != nil {
				r.Close()
			}
			t.Errorf("read-only open of a newer format = %v, want ErrUnsupportedVersion naming version 99", err)
		}
	})

	t.Run("Runs", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		if _, ok, err := s.LastRun(ctx, "orgs"); err != nil || ok {
			t.Fatalf("fresh LastRun = %v, %v", ok, err)
		}
		if rs, err := s.History(ctx, "", 0); err != nil || len(rs) != 0 {
			t.Fatalf("fresh History = %v, %v", rs, err)
		}
		zone := time.FixedZone("X", 3600)
		first := Run{Started: time.Date(2026, 11, 2, 10, 0, 0, 999, zone), Finished: time.Date(2026, 11, 2, 10, 1, 0, 0, zone),
			OK: true, Rows: 500, Sent: 480, Created: 400, Updated: 70, Existing: 10, Unchanged: 15, Invalid: 3, Rejected: 2,
			Deferred: 4, Requests: 3, Checkpoint: pos("2026-11-02 09:59:00+00", "42", "a,b"),
			Sync: "ignored", Seq: 99} // the store names and numbers the run
		must(t, s.RecordRun(ctx, "orgs", first, 10))
		failed := Run{Started: time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC), Finished: time.Date(2026, 11, 2, 11, 0, 5, 0, time.UTC),
			Error: "sync orgs: database \x00 gone \xff", Rows: 3, Budget: true}
		must(t, s.RecordRun(ctx, "contacts", failed, 10))
		must(t, s.Close())

		s2 := h.openStore(t, loc, nil)
		got, ok, err := s2.LastRun(ctx, "orgs")
		must(t, err)
		want := first
		want.Sync, want.Seq, want.Started, want.Finished = "orgs", 1, stamp(first.Started), stamp(first.Finished)
		if !ok || !sameRun(got, want) || got.Started.Location() != time.UTC {
			t.Errorf("LastRun(orgs) after reopen = %+v, %v; want %+v", got, ok, want)
		}
		got, ok, err = s2.LastRun(ctx, "contacts")
		must(t, err)
		if !ok || got.OK || !got.Budget || got.Error != "sync orgs: database \uFFFD gone \uFFFD" || got.Rows != 3 ||
			got.Seq != 1 || !got.Checkpoint.IsZero() || got.Checkpoint.Key != nil {
			t.Errorf("LastRun(contacts) = %+v, %v", got, ok)
		}
		// Every pass is kept, numbered per sync; the last is LastRun.
		must(t, s2.RecordRun(ctx, "orgs", failed, 10))
		if got, _, _ := s2.LastRun(ctx, "orgs"); got.OK || got.Rows != 3 || got.Seq != 2 {
			t.Errorf("LastRun after a second RecordRun = %+v", got)
		}
		rs, err := s2.History(ctx, "orgs", 0)
		must(t, err)
		if len(rs) != 2 || rs[0].Seq != 2 || rs[1].Seq != 1 || !sameRun(rs[1], want) {
			t.Errorf("History(orgs) = %+v", rs)
		}
		// All syncs: newest first, then by name.
		all, err := s2.History(ctx, "", 0)
		must(t, err)
		if got := runIDs(all); !slices.Equal(got, []string{"contacts#1", "orgs#2", "orgs#1"}) {
			t.Errorf("History(all) = %v", got)
		}
		if got, _ := s2.History(ctx, "", 1); len(got) != 1 || got[0].Sync != "contacts" {
			t.Errorf("History(all, 1) = %v", runIDs(got))
		}
		// A run alone does not make a sync exist (it may never commit).
		if syncs, _ := s2.Syncs(ctx); len(syncs) != 0 {
			t.Errorf("Syncs = %v, want none (runs only)", syncs)
		}
		must(t, s2.Forget(ctx, "orgs"))
		if _, ok, _ := s2.LastRun(ctx, "orgs"); ok {
			t.Error("Forget kept the last run")
		}
		if rs, _ := s2.History(ctx, "orgs", 0); len(rs) != 0 {
			t.Errorf("Forget kept the history: %v", runIDs(rs))
		}
		if _, ok, _ := s2.LastRun(ctx, "contacts"); !ok {
			t.Error("Forget(orgs) removed the run of contacts")
		}
		// A forgotten sync starts its numbering over.
		must(t, s2.RecordRun(ctx, "orgs", first, 10))
		if got, _, _ := s2.LastRun(ctx, "orgs"); got.Seq != 1 {
			t.Errorf("first run after Forget has Seq %d, want 1", got.Seq)
		}
		if err := s2.RecordRun(ctx, "", first, 10); err == nil {
			t.Error("RecordRun with an empty sync name succeeded")
		}
		if err := s2.RecordRun(ctx, "orgs", first, 0); err == nil {
			t.Error("RecordRun keeping 0 runs succeeded")
		}
	})

	t.Run("HistoryRetention", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
		run := func(i int) Run {
			at := t0.Add(time.Duration(i) * time.Minute)
			return Run{Started: at, Finished: at.Add(time.Second), OK: i%3 != 0, Rows: i}
		}
		seqs := func(s Store, sync string) []int64 {
			t.Helper()
			rs, err := s.History(ctx, sync, 0)
			must(t, err)
			var out []int64
			for _, r := range rs {
				out = append(out, r.Seq)
				if r.Rows != int(r.Seq) {
					t.Fatalf("run %d holds the rows of run %d", r.Seq, r.Rows)
				}
			}
			return out
		}
		for i := 1; i <= 25; i++ {
			must(t, s.RecordRun(ctx, "orgs", run(i), 5))
			if i <= 3 {
				must(t, s.RecordRun(ctx, "contacts", run(i), 5))
			}
		}
		if got := seqs(s, "orgs"); !slices.Equal(got, []int64{25, 24, 23, 22, 21}) {
			t.Errorf("orgs keeps %v, want the last 5", got)
		}
		if got := seqs(s, "contacts"); !slices.Equal(got, []int64{3, 2, 1}) {
			t.Errorf("contacts keeps %v: another sync's retention must not touch it", got)
		}
		// Keeping fewer drops the excess at once; keeping more lets it grow.
		must(t, s.RecordRun(ctx, "orgs", run(26), 2))
		if got := seqs(s, "orgs"); !slices.Equal(got, []int64{26, 25}) {
			t.Errorf("after keep 2: %v", got)
		}
		for i := 27; i <= 30; i++ {
			must(t, s.RecordRun(ctx, "orgs", run(i), 4))
		}
		if got := seqs(s, "orgs"); !slices.Equal(got, []int64{30, 29, 28, 27}) {
			t.Errorf("after keep 4: %v", got)
		}
		if rs, _ := s.History(ctx, "orgs", 2); len(rs) != 2 || rs[0].Seq != 30 {
			t.Errorf("History(orgs, 2) = %v", runIDs(rs))
		}
		must(t, s.Close())
		s = h.openStore(t, loc, nil)
		if got := seqs(s, "orgs"); !slices.Equal(got, []int64{30, 29, 28, 27}) {
			t.Errorf("after reopen: %v", got)
		}
		// Numbering goes on after a reopen.
		must(t, s.RecordRun(ctx, "orgs", run(31), 4))
		if got := seqs(s, "orgs"); !slices.Equal(got, []int64{31, 30, 29, 28}) {
			t.Errorf("after reopen and one more: %v", got)
		}
	})

	t.Run("HistoryConcurrentWriters", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 10 {
					if err := s.RecordRun(ctx, "orgs", Run{OK: true, Rows: w*100 + i}, 25); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		rs, err := s.History(ctx, "orgs", 0)
		must(t, err)
		if len(rs) != 25 || rs[0].Seq != 40 || rs[24].Seq != 16 {
			t.Errorf("40 concurrent records kept %d runs, %v", len(rs), runIDs(rs))
		}
	})

	t.Run("Requests", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		if n, err := s.Requests(ctx, "2026-11"); err != nil || n != 0 {
			t.Fatalf("fresh Requests = %d, %v", n, err)
		}
		must(t, s.AddRequests(ctx, "2026-11", 5))
		must(t, s.AddRequests(ctx, "2026-11", 0))
		must(t, s.AddRequests(ctx, "2026-11", 37))
		must(t, s.AddRequests(ctx, "2026-12", 1))
		must(t, s.Close())
		s2 := h.openStore(t, loc, nil)
		for month, want := range map[string]int{"2026-11": 42, "2026-12": 1, "2027-01": 0} {
			n, err := s2.Requests(ctx, month)
			must(t, err)
			if n != want {
				t.Errorf("Requests(%s) after reopen = %d, want %d", month, n, want)
			}
		}
		for _, bad := range []string{"", "2026-1", "2026-13", "november", "2026-11-01"} {
			if err := s2.AddRequests(ctx, bad, 1); err == nil {
				t.Errorf("AddRequests(%q) succeeded", bad)
			}
			if _, err := s2.Requests(ctx, bad); err == nil {
				t.Errorf("Requests(%q) succeeded", bad)
			}
		}
		if err := s2.AddRequests(ctx, "2026-11", -1); err == nil {
			t.Error("AddRequests with a negative count succeeded")
		}
		// Concurrent adds are not lost.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					if err := s2.AddRequests(ctx, "2027-02", 1); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if n, _ := s2.Requests(ctx, "2027-02"); n != 80 {
			t.Errorf("Requests after 80 concurrent adds = %d", n)
		}
	})

	t.Run("TakeRequests", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		take := func(month string, n, limit, wantTotal int, wantOK bool) {
			t.Helper()
			total, ok, err := s.TakeRequests(ctx, month, n, limit)
			must(t, err)
			if total != wantTotal || ok != wantOK {
				t.Fatalf("TakeRequests(%s, %d, %d) = %d, %v; want %d, %v", month, n, limit, total, ok, wantTotal, wantOK)
			}
		}
		take("2026-12", 4, 3, 0, false) // does not fit an empty month: nothing stored
		take("2026-12", 3, 3, 3, true)
		take("2026-12", 1, 3, 3, false)
		take("2026-12", -2, 3, 1, true) // giving back always fits
		take("2026-12", 2, 3, 3, true)
		take("2026-12", 10, -1, 13, true) // no limit
		take("2026-12", -20, -1, 0, true) // never below zero
		take("2027-01", 0, 0, 0, true)
		must(t, s.AddRequests(ctx, "2026-12", 5))
		take("2026-12", 0, 5, 5, true)
		must(t, s.Close())
		s = h.openStore(t, loc, nil)
		if n, _ := s.Requests(ctx, "2026-12"); n != 5 {
			t.Fatalf("Requests after reopen = %d, want 5", n)
		}
		if _, _, err := s.TakeRequests(ctx, "december", 1, -1); err == nil {
			t.Error("TakeRequests with a bad month succeeded")
		}
		// Concurrent takers never exceed the limit together, and every
		// take that reported success is counted.
		var wg sync.WaitGroup
		var mu sync.Mutex
		granted := 0
		for range 8 {
			wg.Go(func() {
				for range 10 {
					_, ok, err := s.TakeRequests(ctx, "2027-03", 1, 50)
					if err != nil {
						t.Error(err)
					}
					if ok {
						mu.Lock()
						granted++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if n, _ := s.Requests(ctx, "2027-03"); n != 50 || granted != 50 {
			t.Errorf("80 concurrent takes under a limit of 50: count %d, granted %d", n, granted)
		}
	})

	t.Run("Turns", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		if ts, err := s.Turns(ctx); err != nil || len(ts) != 0 {
			t.Fatalf("fresh Turns = %v, %v", ts, err)
		}
		at := time.Date(2026, 12, 31, 23, 59, 59, 123456789, time.UTC)
		people := Turn{Sync: "people", LastSend: at, LastCost: 3, Interval: 90*time.Second + 1}
		orgs := Turn{Sync: "orgs", WaitingSince: at.Add(-time.Hour), WaitingRows: 7, Due: at.Add(time.Hour), HeldAt: at, Interval: time.Minute}
		must(t, s.SaveTurn(ctx, people))
		must(t, s.SaveTurn(ctx, orgs))
		must(t, s.Close())
		s = h.openStore(t, loc, nil)
		if got, _ := s.Turns(ctx); len(got) != 2 || got[0] != normTurn(orgs) {
			t.Fatalf("a claim after reopen: %+v, want %+v", got, normTurn(orgs))
		}
		orgs.WaitingSince, orgs.Due, orgs.LastSend = time.Time{}, time.Time{}, at.Add(time.Second) // it sent: the claim is cleared
		must(t, s.SaveTurn(ctx, orgs))
		must(t, s.Close())
		s = h.openStore(t, loc, nil)
		got, err := s.Turns(ctx)
		must(t, err)
		want := []Turn{normTurn(orgs), normTurn(people)}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("Turns after reopen:\n got %+v\nwant %+v", got, want)
		}
		if got[1].LastSend.Nanosecond() != 123456000 || got[1].Interval != 90*time.Second {
			t.Errorf("times not kept to the microsecond: %+v", got[1])
		}
		if err := s.SaveTurn(ctx, Turn{}); err == nil {
			t.Error("SaveTurn without a sync name succeeded")
		}
		must(t, s.Forget(ctx, "orgs"))
		if got, _ := s.Turns(ctx); len(got) != 1 || got[0].Sync != "people" {
			t.Errorf("Turns after Forget(orgs) = %+v", got)
		}
	})

	t.Run("TryLock", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		rel, ok, err := s.TryLock(ctx, "orgs")
		must(t, err)
		if !ok {
			t.Fatal("first TryLock not ok")
		}
		// A second holder (even in this process) does not get it; another
		// sync is independent.
		if rel2, ok, err := s.TryLock(ctx, "orgs"); err != nil || ok {
			if ok {
				rel2()
			}
			t.Fatalf("second TryLock(orgs) = %v, %v; want not ok", ok, err)
		}
		relC, ok, err := s.TryLock(ctx, "contacts")
		must(t, err)
		if !ok {
			t.Fatal("TryLock(contacts) not ok while orgs is held")
		}
		relC()
		rel()
		rel() // twice is harmless
		rel3, ok, err := s.TryLock(ctx, "orgs")
		must(t, err)
		if !ok {
			t.Fatal("TryLock after release not ok")
		}
		rel3()
		if _, _, err := s.TryLock(ctx, ""); err == nil {
			t.Error("TryLock with an empty sync name succeeded")
		}
	})

	t.Run("Fingerprints", func(t *testing.T) { testFingerprints(t, h) })

	t.Run("Ledger", func(t *testing.T) { testLedger(t, h) })

	t.Run("ReadOnly", func(t *testing.T) { testReadOnly(t, h) })

	t.Run("ConcurrentUse", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		const syncs, commits = 4, 15
		var wg sync.WaitGroup
		errs := make(chan error, syncs*commits*3)
		for i := range syncs {
			wg.Go(func() {
				name := fmt.Sprintf("sync%d", i)
				for j := range commits {
					key := fmt.Sprintf("k%d", j)
					if err := s.Journal(ctx, batch(name, key, pos(fmt.Sprint(j)), pos(fmt.Sprint(j+1)), key)); err != nil {
						errs <- err
					}
					if _, err := s.Pending(ctx, name); err != nil {
						errs <- err
					}
					rej := []Reject{{RowKey: []string{"shared"}, Code: key}}
					if err := s.Commit(ctx, name, key, pos(fmt.Sprint(j+1)), "fp", rej, nil); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i := range syncs {
			name := fmt.Sprintf("sync%d", i)
			st, err := s.Load(ctx, name)
			must(t, err)
			p, err := s.Pending(ctx, name)
			must(t, err)
			rs, err := s.Rejects(ctx, name, 0)
			must(t, err)
			if st.Batches != commits || !st.Position.Equal(pos(fmt.Sprint(commits))) || len(p) != 0 ||
				len(rs) != 1 || rs[0].Attempts != commits {
				t.Errorf("%s: state %+v, pending %v, rejects %+v", name, st, keys(p), rs)
			}
		}
	})
}

// testReadOnly checks OpenReadOnly: nothing to read before a writer ran,
// then everything the writer wrote, and no way to change it.
func testReadOnly(t *testing.T, h harness) {
	ctx := context.Background()
	loc := h.newLoc(t)
	for range 2 { // the first attempt must not have created the store
		if _, err := h.openReadOnly(t, loc); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("OpenReadOnly before anything was written = %v, want ErrNoStore", err)
		}
	}
	w := h.openStore(t, loc, nil)
	must(t, w.Commit(ctx, "orgs", "k0", pos("7"), "fp", []Reject{{RowKey: []string{"1"}, Code: "c"}}, nil))
	must(t, w.Journal(ctx, batch("orgs", "k1", pos("7"), pos("8"), "body")))
	must(t, w.RecordRun(ctx, "orgs", Run{OK: true, Rows: 3}, 10))
	must(t, w.AddRequests(ctx, "2026-11", 9))
	must(t, w.SaveTurn(ctx, Turn{Sync: "orgs", LastCost: 2}))
	must(t, w.SaveFingerprints(ctx, "orgs", [][]string{{"1"}}, [][]byte{{1, 2}}))

	// The writer stays open (a file store keeps its lock): a reader opens
	// next to it.
	r, err := h.openReadOnly(t, loc)
	must(t, err)
	t.Cleanup(func() { r.Close() })
	check := func(s Store, who string) {
		t.Helper()
		st, err := s.Load(ctx, "orgs")
		must(t, err)
		p, err := s.Pending(ctx, "orgs")
		must(t, err)
		run, ok, err := s.LastRun(ctx, "orgs")
		must(t, err)
		n, err := s.Requests(ctx, "2026-11")
		must(t, err)
		c, err := s.CountRejects(ctx, "orgs")
		must(t, err)
		fps, err := s.Fingerprints(ctx, "orgs", [][]string{{"1"}})
		must(t, err)
		syncs, err := s.Syncs(ctx)
		must(t, err)
		if rs, err := s.History(ctx, "", 0); err != nil || len(rs) != 1 || rs[0].Rows != 3 {
			t.Errorf("%s sees history %+v, %v", who, rs, err)
		}
		turns, err := s.Turns(ctx)
		must(t, err)
		if len(turns) != 1 || turns[0].LastCost != 2 {
			t.Errorf("%s sees turns %+v", who, turns)
		}
		if o, err := s.Overviews(ctx); err != nil || len(o) != 1 || o[0].InFlight != 1 || o[0].Rejects != 1 || !o[0].HasRun {
			t.Errorf("%s sees overviews %+v, %v", who, o, err)
		}
		if !st.Position.Equal(pos("7")) || len(p) != 1 || !ok || run.Rows != 3 || n != 9 || c != 1 ||
			len(fps) != 1 || !bytes.Equal(fps[0], []byte{1, 2}) || !slices.Equal(syncs, []string{"orgs"}) {
			t.Errorf("%s sees state %+v, pending %v, run %+v %v, requests %d, rejects %d, fingerprints %v, syncs %v",
				who, st, keys(p), run, ok, n, c, fps, syncs)
		}
	}
	check(r, "reader")
	for name, err := range map[string]error{
		"Journal":          r.Journal(ctx, batch("orgs", "k2", pos("8"), pos("9"), "x")),
		"SetJobID":         r.SetJobID(ctx, "orgs", "k1", "job-1"),
		"Drop":             r.Drop(ctx, "orgs", "k1"),
		"Commit":           r.Commit(ctx, "orgs", "k1", pos("8"), "fp", nil, nil),
		"Forget":           r.Forget(ctx, "orgs"),
		"SaveFingerprints": r.SaveFingerprints(ctx, "orgs", [][]string{{"1"}}, [][]byte{{3}}),
		"RecordRun":        r.RecordRun(ctx, "orgs", Run{}, 10),
		"AddRequests":      r.AddRequests(ctx, "2026-11", 1),
		"TakeRequests":     takeErr(r.TakeRequests(ctx, "2026-11", 1, -1)),
		"SaveTurn":         r.SaveTurn(ctx, Turn{Sync: "orgs"}),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", name, err)
		}
	}
	check(r, "reader after refused writes")
	check(w, "writer after the reader's refused writes")
}

func takeErr(_ int, _ bool, err error) error { return err }

// sameRun compares runs field by field (Checkpoint holds a slice).
func sameRun(a, b Run) bool {
	return reflect.DeepEqual(normRun(a), normRun(b))
}

func runIDs(rs []Run) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s#%d", r.Sync, r.Seq))
	}
	return out
}

// sum16 is a distinct 16-byte sum per (seed, i), like the engine's digests.
func sum16(seed string, i int) []byte {
	return fmt.Appendf(nil, "%-8.8s%08x", seed, i)
}

// wantFingerprints checks Fingerprints(keys) against want (nil = none).
func wantFingerprints(t *testing.T, s Store, sync string, keys [][]string, want [][]byte) {
	t.Helper()
	got, err := s.Fingerprints(context.Background(), sync, keys)
	must(t, err)
	if len(got) != len(keys) {
		t.Fatalf("Fingerprints(%s) returned %d sums for %d keys", sync, len(got), len(keys))
	}
	bad := 0
	for i := range keys {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			if bad++; bad <= 5 {
				t.Errorf("Fingerprints(%s)[%d] key %q = %q, want %q", sync, i, keys[i], got[i], want[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d mismatches in all", bad)
	}
}

func testFingerprints(t *testing.T, h harness) {
	ctx := context.Background()

	t.Run("MissingIsNil", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		keys := [][]string{{"1"}, {"2"}, nil}
		wantFingerprints(t, s, "orgs", keys, make([][]byte, 3))
		got, err := s.Fingerprints(ctx, "orgs", nil)
		if err != nil || len(got) != 0 {
			t.Errorf("Fingerprints(no keys) = %v, %v", got, err)
		}
		must(t, s.SaveFingerprints(ctx, "orgs", nil, nil)) // nothing to do is not an error
		if _, err := s.Fingerprints(ctx, "", keys); err == nil {
			t.Error("Fingerprints with an empty sync name succeeded")
		}
		if err := s.SaveFingerprints(ctx, "", keys, [][]byte{{1}, {2}, {3}}); err == nil {
			t.Error("SaveFingerprints with an empty sync name succeeded")
		}
		if err := s.SaveFingerprints(ctx, "orgs", keys, [][]byte{{1}}); err == nil {
			t.Error("SaveFingerprints with fewer sums than keys succeeded")
		}
		if err := s.SaveFingerprints(ctx, "orgs", keys[:1], [][]byte{make([]byte, maxFingerprintSum+1)}); err == nil {
			t.Error("SaveFingerprints with an oversized sum succeeded")
		}
		wantFingerprints(t, s, "orgs", keys, make([][]byte, 3)) // failed saves stored nothing
	})

	t.Run("RoundTrip", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		keys := [][]string{{"1"}, {"2"}, {"3"}}
		sums := [][]byte{sum16("a", 1), sum16("a", 2), {0, 0xff, 0}} // any bytes, NUL included
		must(t, s.SaveFingerprints(ctx, "orgs", keys, sums))
		// The store keeps its own copy of the caller's slices.
		keys[0][0], sums[1][0] = "9", 'X'
		keys[0][0], sums[1] = "1", sum16("a", 2)
		// Aligned with the request: unknown keys in between and repeats.
		q := [][]string{{"3"}, {"4"}, {"1"}, {"3"}, {"2"}}
		want := [][]byte{{0, 0xff, 0}, nil, sum16("a", 1), {0, 0xff, 0}, sum16("a", 2)}
		wantFingerprints(t, s, "orgs", q, want)
		// Returned sums are the caller's to modify.
		got, err := s.Fingerprints(ctx, "orgs", q)
		must(t, err)
		got[0][0], got[2][0] = 'Z', 'Z'
		wantFingerprints(t, s, "orgs", q, want)
		must(t, s.Close())

		s2 := h.openStore(t, loc, nil)
		wantFingerprints(t, s2, "orgs", q, want)
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		keys := [][]string{{"1"}, {"2"}, {"3"}}
		must(t, s.SaveFingerprints(ctx, "orgs", keys, [][]byte{sum16("old", 1), sum16("old", 2), sum16("old", 3)}))
		must(t, s.SaveFingerprints(ctx, "orgs", keys[:2], [][]byte{sum16("new", 1), []byte("short")}))
		wantFingerprints(t, s, "orgs", keys, [][]byte{sum16("new", 1), []byte("short"), sum16("old", 3)})
		// A key given twice in one call: the last sum wins (and the upsert
		// must not trip over the repeat).
		must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"3"}, {"4"}, {"3"}}, [][]byte{sum16("x", 1), sum16("x", 2), sum16("x", 3)}))
		wantFingerprints(t, s, "orgs", [][]string{{"3"}, {"4"}}, [][]byte{sum16("x", 3), sum16("x", 2)})
		// An empty sum deletes; deleting what is not there is fine.
		must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"1"}, {"2"}, {"5"}, {"4"}}, [][]byte{nil, {}, nil, sum16("y", 4)}))
		wantFingerprints(t, s, "orgs", [][]string{{"1"}, {"2"}, {"3"}, {"4"}, {"5"}},
			[][]byte{nil, nil, sum16("x", 3), sum16("y", 4), nil})
		// Delete then store again within one call: the last one wins.
		must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"3"}, {"3"}, {"4"}, {"4"}}, [][]byte{nil, sum16("z", 3), sum16("z", 4), nil}))
		wantFingerprints(t, s, "orgs", [][]string{{"3"}, {"4"}}, [][]byte{sum16("z", 3), nil})
	})

	t.Run("KeysOfSeveralColumns", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		// Keys that a naive join or a lossy text encoding would confuse.
		keys := [][]string{
			{"a", "b"}, {"a,b"}, {"a", "b", ""}, {"", "a", "b"}, {"ab"}, {"a;", "b"}, {"a", ";b"},
			{"1:a;"}, {"1:a;", ""}, nil, {""}, {"", ""},
			{"x"}, {"x61"}, {"\\xff"}, {"\\377"}, {"\xff"}, {"\xfe"}, {"a\x00b"}, {"a", "\x00b"},
			{"2026-01-02 03:04:05+00", "42", "€"},
		}
		sums := make([][]byte, len(keys))
		for i := range keys {
			sums[i] = sum16("k", i)
		}
		must(t, s.SaveFingerprints(ctx, "orgs", keys, sums))
		wantFingerprints(t, s, "orgs", keys, sums)
		// Reversed, in case an implementation answers in storage order.
		rk, rs := slices.Clone(keys), slices.Clone(sums)
		slices.Reverse(rk)
		slices.Reverse(rs)
		wantFingerprints(t, s, "orgs", rk, rs)
		must(t, s.Close())
		s2 := h.openStore(t, loc, nil)
		wantFingerprints(t, s2, "orgs", keys, sums)
		// An empty key and a nil key are the same (as for positions).
		wantFingerprints(t, s2, "orgs", [][]string{{}}, [][]byte{sum16("k", 9)})
	})

	t.Run("SeparateSyncs", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		keys := [][]string{{"1"}, {"2"}}
		must(t, s.SaveFingerprints(ctx, "orgs", keys, [][]byte{sum16("orgs", 1), sum16("orgs", 2)}))
		must(t, s.SaveFingerprints(ctx, "contacts", keys[:1], [][]byte{sum16("contacts", 1)}))
		wantFingerprints(t, s, "orgs", keys, [][]byte{sum16("orgs", 1), sum16("orgs", 2)})
		wantFingerprints(t, s, "contacts", keys, [][]byte{sum16("contacts", 1), nil})
		wantFingerprints(t, s, "deals", keys, [][]byte{nil, nil})
		// Fingerprints alone do not make a sync exist.
		if syncs, _ := s.Syncs(ctx); len(syncs) != 0 {
			t.Errorf("Syncs = %v, want none (fingerprints only)", syncs)
		}
	})

	t.Run("ForgetClears", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		keys := [][]string{{"1"}, {"2"}}
		must(t, s.SaveFingerprints(ctx, "orgs", keys, [][]byte{sum16("orgs", 1), sum16("orgs", 2)}))
		must(t, s.SaveFingerprints(ctx, "contacts", keys, [][]byte{sum16("contacts", 1), sum16("contacts", 2)}))
		must(t, s.Forget(ctx, "orgs"))
		wantFingerprints(t, s, "orgs", keys, [][]byte{nil, nil})
		wantFingerprints(t, s, "contacts", keys, [][]byte{sum16("contacts", 1), sum16("contacts", 2)})
		must(t, s.Close())
		s2 := h.openStore(t, loc, nil)
		wantFingerprints(t, s2, "orgs", keys, [][]byte{nil, nil})
		// Saving again after Forget starts from nothing.
		must(t, s2.SaveFingerprints(ctx, "orgs", keys[1:], [][]byte{sum16("again", 2)}))
		wantFingerprints(t, s2, "orgs", keys, [][]byte{nil, sum16("again", 2)})
	})

	t.Run("Has", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		has := func(sync string, want bool) {
			t.Helper()
			got, err := s.HasFingerprints(ctx, sync)
			if err != nil || got != want {
				t.Errorf("HasFingerprints(%q) = %v, %v; want %v", sync, got, err, want)
			}
		}
		has("orgs", false)
		must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"1"}}, [][]byte{sum16("has", 1)}))
		has("orgs", true)
		has("contacts", false)
		must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"1"}}, [][]byte{nil}))
		has("orgs", false) // deleting the last one leaves none
		must(t, s.AddFingerprints(ctx, "orgs", [][]string{{"2"}}, [][]byte{sum16("has", 2)}))
		has("orgs", true)
		must(t, s.Forget(ctx, "orgs"))
		has("orgs", false)
		if _, err := s.HasFingerprints(ctx, ""); err == nil {
			t.Error("HasFingerprints with an empty sync name succeeded")
		}
	})

	t.Run("Add", func(t *testing.T) {
		s := h.openStore(t, h.newLoc(t), nil)
		keys := [][]string{{"1"}, {"2"}, {"3"}}
		must(t, s.AddFingerprints(ctx, "orgs", keys, [][]byte{sum16("a", 1), sum16("a", 2), sum16("a", 3)}))
		wantFingerprints(t, s, "orgs", keys, [][]byte{sum16("a", 1), sum16("a", 2), sum16("a", 3)})
		// The keys were thought new but one is stored by now (a
		// backfill of the same sync saved it): it is replaced all the
		// same, and the others are added.
		must(t, s.AddFingerprints(ctx, "orgs", [][]string{{"4"}, {"2"}, {"5"}, {"4"}}, [][]byte{sum16("b", 4), sum16("b", 2), sum16("b", 5), sum16("c", 4)}))
		wantFingerprints(t, s, "orgs", [][]string{{"1"}, {"2"}, {"3"}, {"4"}, {"5"}},
			[][]byte{sum16("a", 1), sum16("b", 2), sum16("a", 3), sum16("c", 4), sum16("b", 5)})
		// An empty sum deletes, as with SaveFingerprints.
		must(t, s.AddFingerprints(ctx, "orgs", [][]string{{"1"}, {"6"}}, [][]byte{nil, sum16("d", 6)}))
		wantFingerprints(t, s, "orgs", [][]string{{"1"}, {"6"}}, [][]byte{nil, sum16("d", 6)})
		if err := s.AddFingerprints(ctx, "orgs", keys, [][]byte{{1}}); err == nil {
			t.Error("AddFingerprints with fewer sums than keys succeeded")
		}
	})

	t.Run("TenThousandKeys", func(t *testing.T) {
		loc := h.newLoc(t)
		s, err := h.open(t, loc)
		must(t, err)
		const n = 10_000
		keys := make([][]string, n)
		sums := make([][]byte, n)
		for i := range n {
			keys[i] = []string{fmt.Sprint(i), fmt.Sprintf("tenant-%d", i%7)}
			sums[i] = sum16("first", i)
		}
		wantFingerprints(t, s, "orgs", keys, make([][]byte, n))
		must(t, s.SaveFingerprints(ctx, "orgs", keys, sums))
		wantFingerprints(t, s, "orgs", keys, sums)
		// Overwrite every other one, add n more in the same call, and ask
		// for a mix of old, new and unknown keys in random order.
		var k2 [][]string
		var s2 [][]byte
		for i := 0; i < 2*n; i += 2 {
			k2 = append(k2, []string{fmt.Sprint(i), fmt.Sprintf("tenant-%d", i%7)})
			s2 = append(s2, sum16("second", i))
		}
		must(t, s.SaveFingerprints(ctx, "orgs", k2, s2))
		q := make([][]string, n)
		want := make([][]byte, n)
		rng := rand.New(rand.NewPCG(1, 2))
		for j := range n {
			i := rng.IntN(3 * n)
			q[j] = []string{fmt.Sprint(i), fmt.Sprintf("tenant-%d", i%7)}
			switch {
			case i < 2*n && i%2 == 0:
				want[j] = sum16("second", i)
			case i < n:
				want[j] = sum16("first", i)
			}
		}
		wantFingerprints(t, s, "orgs", q, want)
		must(t, s.Close())
		s3 := h.openStore(t, loc, nil)
		wantFingerprints(t, s3, "orgs", q, want)
	})
}
