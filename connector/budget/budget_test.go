package budget

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
)

// memStore is an in-memory Store; the checkpoint stores' conformance suite
// tests the real ones.
type memStore struct {
	mu    sync.Mutex
	n     map[string]int
	turns map[string]checkpoint.Turn
	fail  error
}

func newMemStore() *memStore {
	return &memStore{n: map[string]int{}, turns: map[string]checkpoint.Turn{}}
}

func (s *memStore) TakeRequests(_ context.Context, month string, n, limit int) (int, bool, error) {
	runtime.Gosched() // a round trip: let other goroutines interleave
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, false, s.fail
	}
	if limit >= 0 && s.n[month]+n > limit {
		return s.n[month], false, nil
	}
	s.n[month] = max(0, s.n[month]+n) // as the stores: never below zero
	return s.n[month], true, nil
}

func (s *memStore) Requests(_ context.Context, month string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[month], s.fail
}

func (s *memStore) Turns(context.Context) ([]checkpoint.Turn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []checkpoint.Turn
	for _, t := range s.turns {
		out = append(out, t)
	}
	return out, nil
}

func (s *memStore) SaveTurn(_ context.Context, t checkpoint.Turn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.turns[t.Sync] = t
	return nil
}

func (s *memStore) count(month string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[month]
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func at(y int, m time.Month, d, h int) *clock {
	return &clock{time.Date(y, m, d, h, 0, 0, 0, time.UTC)}
}

func TestPace(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name                string
		timeLeft            time.Duration
		left, reserve, cost int
		want                time.Duration
		ok                  bool
	}{
		{"fresh month, share reserve", 30 * day, 1000, 50, 1, 30 * day / 950, true},
		{"after a 400-request load", 29 * day, 600, 50, 1, 29 * day / 550, true},
		{"async send costs three", 10 * day, 500, 50, 3, 10 * day * 3 / 450, true},
		{"count reserve", 20 * day, 100, 90, 1, 2 * day, true},
		{"exactly one send left", day, 51, 50, 1, day, true},
		{"reserve reached", day, 50, 50, 1, 0, false},
		{"send does not fit", day, 52, 50, 3, 0, false},
		{"spent", day, 0, 50, 1, 0, false},
		{"month over", 0, 500, 50, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Pace(tc.timeLeft, tc.left, tc.reserve, tc.cost)
			if ok != tc.ok || (ok && (got-tc.want).Abs() > time.Microsecond) {
				t.Fatalf("Pace(%s, %d, %d, %d) = %s, %v; want %s, %v", tc.timeLeft, tc.left, tc.reserve, tc.cost, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  int
		err   bool
	}{
		{"5%", 1000, 50, false},
		{"2.5%", 1000, 25, false},
		{"5%", 30, 2, false}, // rounded up: a reserve is never nothing by accident
		{" 50 ", 1000, 50, false},
		{"0", 1000, 0, false},
		{"2000", 1000, 1000, false},
		{"100%", 1000, 1000, false},
		{"5%", 0, 0, false},
		{"-1", 1000, 0, true},
		{"101%", 1000, 0, true},
		{"five", 1000, 0, true},
		{"", 1000, 0, true},
	} {
		r, err := ParseReserve(tc.in)
		if (err != nil) != tc.err {
			t.Fatalf("ParseReserve(%q): err %v, want error %v", tc.in, err, tc.err)
		}
		if err == nil && r.Of(tc.limit) != tc.want {
			t.Fatalf("ParseReserve(%q).Of(%d) = %d, want %d", tc.in, tc.limit, r.Of(tc.limit), tc.want)
		}
	}
	if DefaultReserve.Of(1000) != 50 || DefaultReserve.String() != "5%" {
		t.Fatalf("default reserve: %d (%s)", DefaultReserve.Of(1000), DefaultReserve)
	}
}

func newBudget(st Store, c *clock, limit int, reserve Reserve) *Budget {
	return New(st, Config{Limit: limit, Reserve: reserve, Now: c.now})
}

// learnSync teaches b that batches up to rows are answered at once.
func learnSync(b *Budget, rows int) {
	b.costs.learn(rows, false, 0)
}

func TestExplicitRunsUseTheReserveThenStop(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	st.n["2026-12"] = 996
	b := newBudget(st, c, 1000, Reserve{count: 50})
	learnSync(b, 100)
	for i := range 4 {
		d, err := b.Admit(ctx, Request{Sync: "people", Rows: 10, Partial: true})
		if err != nil || !d.Go() {
			t.Fatalf("explicit send %d at %d of 1000: %+v, %v", i, 996+i, d, err)
		}
	}
	d, err := b.Admit(ctx, Request{Sync: "people", Rows: 10})
	var ee *ExhaustedError
	if d.Go() || !errors.As(err, &ee) || !errors.Is(err, ErrExhausted) {
		t.Fatalf("explicit send at 1000 of 1000: %+v, %v; want ErrExhausted", d, err)
	}
	if want := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC); !ee.Resumes.Equal(want) {
		t.Fatalf("resumes %s, want %s", ee.Resumes, want)
	}
	if st.count("2026-12") != 1000 {
		t.Fatalf("count %d, want exactly the limit", st.count("2026-12"))
	}
}

func TestDaemonFullBatchesStopAtTheReserve(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 3, 0)
	st.n["2026-12"] = 947
	b := newBudget(st, c, 1000, Reserve{count: 50})
	learnSync(b, 10000)
	var d Decision
	var err error
	for i := range 3 { // 947 -> 950, the ceiling
		d, err = b.Admit(ctx, Request{Sync: "people", Rows: 10000, Paced: true})
		if err != nil || !d.Go() {
			t.Fatalf("full batch %d at %d, ceiling 950: %+v, %v", i, 947+i, d, err)
		}
	}
	d, err = b.Admit(ctx, Request{Sync: "people", Rows: 10000, Paced: true})
	if err != nil || d.Go() || !d.Spent || !d.Next.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("full batch at the ceiling: %+v, %v; want held until January", d, err)
	}
	// An explicit run may still use the reserve.
	if d, err := b.Admit(ctx, Request{Sync: "people", Rows: 10000}); err != nil || !d.Go() {
		t.Fatalf("explicit batch in the reserve: %+v, %v", d, err)
	}
}

func TestPartialBatchWaitsForThePace(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	b := newBudget(st, c, 1000, Reserve{count: 50})
	learnSync(b, 100)
	req := Request{Sync: "people", Rows: 5, Partial: true, Paced: true, Interval: time.Minute}
	d, err := b.Admit(ctx, req)
	if err != nil || !d.Go() {
		t.Fatalf("first partial batch (nothing sent yet): %+v, %v", d, err)
	}
	done, _ := b.Meter(WithTicket(ctx, d.Ticket))
	done(1)
	d.Ticket.Done(ctx, Outcome{Answered: true})
	wantPace := (31*24*time.Hour - time.Minute) / 949
	c.add(time.Minute)
	d, err = b.Admit(ctx, req)
	if err != nil || d.Go() {
		t.Fatalf("partial batch one minute after a send: %+v, %v; want held", d, err)
	}
	if (d.Pace - wantPace).Abs() > time.Second {
		t.Fatalf("pace %s, want %s", d.Pace, wantPace)
	}
	if want := c.t.Add(-time.Minute).Add(d.Pace); !d.Next.Equal(want) {
		t.Fatalf("next send %s, want last send + pace = %s", d.Next, want)
	}
	if tr := st.turns["people"]; !tr.Waiting() || tr.WaitingRows != 5 {
		t.Fatalf("hold not recorded: %+v", tr)
	}
	c.t = d.Next
	d, err = b.Admit(ctx, req)
	if err != nil || !d.Go() {
		t.Fatalf("partial batch at its announced time: %+v, %v", d, err)
	}
	if st.turns["people"].Waiting() {
		t.Fatal("a send did not clear the claim")
	}
}

func TestPaceAfterAnInitialLoadIsNotTwelveDays(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 6)
	st.n["2026-12"] = 400 // a big initial load this morning
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t}
	b := newBudget(st, c, 1000, DefaultReserve)
	learnSync(b, 100)
	c.add(30 * time.Minute)
	d, err := b.Admit(ctx, Request{Sync: "people", Rows: 3, Partial: true, Paced: true})
	if err != nil {
		t.Fatal(err)
	}
	if d.Go() || d.Pace > 90*time.Minute || d.Pace < 60*time.Minute {
		t.Fatalf("after 400 requests on day 1: %+v; want a pace near 31d/550 = 81m", d)
	}
}

func TestMonthTurnoverResetsThePace(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := &clock{time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)}
	st.n["2026-12"] = 950
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t.Add(-time.Minute)}
	b := newBudget(st, c, 1000, Reserve{count: 50})
	learnSync(b, 100)
	req := Request{Sync: "people", Rows: 3, Partial: true, Paced: true}
	d, _ := b.Admit(ctx, req)
	if d.Go() || !d.Spent || !d.Next.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("one request beyond the reserve is not enough: %+v", d)
	}
	c.t = time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)
	d, _ = b.Admit(ctx, req)
	// The last send was an hour ago; January's pace is 31d/950 = 47 min.
	if !d.Go() {
		t.Fatalf("January: %+v; want the held batch sent", d)
	}
	if st.count("2027-01") != 1 || st.count("2026-12") != 950 {
		t.Fatalf("counts Dec %d, Jan %d", st.count("2026-12"), st.count("2027-01"))
	}
}

func TestBudgetRaisedMidMonth(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 16, 0)
	st.n["2026-12"] = 960
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t.Add(-2 * time.Hour)}
	req := Request{Sync: "people", Rows: 3, Partial: true, Paced: true}
	low := newBudget(st, c, 1000, DefaultReserve)
	learnSync(low, 100)
	if d, _ := low.Admit(ctx, req); d.Go() || !d.Spent {
		t.Fatalf("960 of 1000 with a 50 reserve: %+v; want spent", d)
	}
	high := newBudget(st, c, 5000, DefaultReserve) // restarted with a raised budget
	learnSync(high, 100)
	d, _ := high.Admit(ctx, req)
	if !d.Go() || d.Pace > 10*time.Minute {
		t.Fatalf("raised to 5000: %+v; want sent, pace 16d/3790 = 6m", d)
	}
}

func TestSyncsTakeTurns(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 10, 0)
	st.n["2026-12"] = 100
	st.turns["busy"] = checkpoint.Turn{Sync: "busy", LastSend: c.t}
	b := newBudget(st, c, 1000, DefaultReserve)
	learnSync(b, 100)
	busy := Request{Sync: "busy", Rows: 50, Partial: true, Paced: true, Interval: time.Minute}
	quiet := Request{Sync: "quiet", Rows: 1, Partial: true, Paced: true, Interval: 5 * time.Minute}

	c.add(time.Minute)
	if d, _ := b.Admit(ctx, quiet); d.Go() {
		t.Fatal("quiet sent before the pace passed")
	}
	// busy asks every minute, quiet every five. When the slot opens,
	// quiet (waiting longer) goes first, even if busy asks first.
	first := func() string {
		for i := 1; i < 5000; i++ {
			c.add(time.Minute)
			if d, _ := b.Admit(ctx, busy); d.Go() {
				return "busy"
			} else if d.Ahead > 1 {
				t.Fatalf("busy sees %d syncs ahead, want at most 1", d.Ahead)
			}
			if i%5 == 0 {
				if d, _ := b.Admit(ctx, quiet); d.Go() {
					return "quiet"
				}
			}
		}
		t.Fatal("nobody sent for 5000 minutes")
		return ""
	}
	if got := first(); got != "quiet" {
		t.Fatalf("%s sent first; want quiet, which waited longer", got)
	}
	if got := first(); got != "busy" {
		t.Fatalf("%s sent second; want busy", got)
	}
	// Each waits about one pace (21d/900 = 34m) plus its own interval.
	if s, _ := b.Snapshot(ctx); s.Pace > 40*time.Minute {
		t.Fatalf("pace %s", s.Pace)
	}
}

func TestStaleClaimStopsDelayingOthers(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 10, 0)
	// A replica died while "gone" waited for its turn, long ago.
	st.turns["gone"] = checkpoint.Turn{Sync: "gone", WaitingSince: c.t.Add(-48 * time.Hour), HeldAt: c.t.Add(-47 * time.Hour), Interval: time.Minute}
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t.Add(-24 * time.Hour)}
	b := newBudget(st, c, 1000, DefaultReserve)
	learnSync(b, 100)
	if d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 1, Partial: true, Paced: true}); !d.Go() {
		t.Fatalf("held behind a stale claim: %+v", d)
	}
}

func TestMaxDelayCapsTheWait(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t}
	b := New(st, Config{Limit: 1000, Reserve: DefaultReserve, MaxDelay: 15 * time.Minute, Now: c.now})
	learnSync(b, 100)
	c.add(15 * time.Minute)
	d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 1, Partial: true, Paced: true})
	if !d.Go() || d.Pace != 15*time.Minute {
		t.Fatalf("15 minutes after a send with MAX_DELAY=15m: %+v", d)
	}
	s, err := b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 949 sends 15 minutes apart last about 9.9 days.
	if s.RunsOut.IsZero() || s.RunsOut.After(time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC)) || s.RunsOut.Before(time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("runs out %s, want about Dec 10-11", s.RunsOut)
	}
}

func TestMeterCountsWhatReachedMicro(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	b := newBudget(st, c, 10, Reserve{})
	d, err := b.Admit(ctx, Request{Sync: "people", Rows: 500}) // unknown size: POST + 2 polls
	if err != nil || !d.Go() || d.Ticket.Reserved() != 3 {
		t.Fatalf("admit: %+v, %v", d, err)
	}
	if st.count("2026-12") != 3 {
		t.Fatalf("reserved %d, want 3", st.count("2026-12"))
	}
	tctx := WithTicket(ctx, d.Ticket)
	// A refused connection: given back.
	done, err := b.Meter(tctx)
	if err != nil {
		t.Fatal(err)
	}
	done(0)
	// The POST and four polls: two beyond the reservation.
	for range 5 {
		done, err := b.Meter(tctx)
		if err != nil {
			t.Fatal(err)
		}
		done(1)
	}
	if got := st.count("2026-12"); got != 5 {
		t.Fatalf("count %d after 5 requests reached Micro, want 5", got)
	}
	d.Ticket.Done(ctx, Outcome{Answered: true, Async: true, Polls: 4})
	if got := st.count("2026-12"); got != 5 {
		t.Fatalf("count %d after Done, want 5", got)
	}
	// A transport resend wrote the request twice: both count.
	done, _ = b.Meter(ctx)
	done(2)
	if got := st.count("2026-12"); got != 7 {
		t.Fatalf("count %d, want 7", got)
	}
	// Learned: a 500-row job needs 4 polls.
	if got := b.estimate(500); got != 5 {
		t.Fatalf("estimate after a 4-poll job: %d, want 5", got)
	}
	// Three left; an unused reservation is given back.
	d, _ = b.Admit(ctx, Request{Sync: "people", Rows: 50})
	if d.Go() {
		t.Fatalf("a 5-request send admitted with 3 left: %+v", d)
	}
	for range 3 {
		done, _ := b.Meter(ctx)
		done(1)
	}
	if _, err := b.Meter(ctx); !errors.Is(err, ErrExhausted) {
		t.Fatalf("request at the limit: %v, want ErrExhausted", err)
	}
	if got := st.count("2026-12"); got != 10 {
		t.Fatalf("count %d, want exactly the limit", got)
	}
}

func TestUnusedReservationIsGivenBack(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	b := newBudget(st, c, 100, Reserve{})
	d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 50})
	done, _ := b.Meter(WithTicket(ctx, d.Ticket))
	done(1)
	d.Ticket.Done(ctx, Outcome{Answered: true}) // answered at once: 1 of 3 used
	d.Ticket.Done(ctx, Outcome{Answered: true}) // twice is harmless
	if got := st.count("2026-12"); got != 1 {
		t.Fatalf("count %d, want 1", got)
	}
	if got := b.estimate(50); got != 1 {
		t.Fatalf("a 50-row batch answered at once still costs %d", got)
	}
	// A ticket never used (the pass stopped before sending): all back.
	d, _ = b.Admit(ctx, Request{Sync: "people", Rows: 5000})
	d.Ticket.Done(ctx, Outcome{})
	if got := st.count("2026-12"); got != 1 {
		t.Fatalf("count %d, want 1", got)
	}
}

func TestCountsSurviveAStoreOutage(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	b := newBudget(st, c, 100, Reserve{})
	st.fail = errors.New("connection refused")
	for range 4 {
		done, err := b.Meter(ctx)
		if err != nil {
			t.Fatalf("a request while the store is down: %v", err)
		}
		done(1)
	}
	if b.Flush(ctx) {
		t.Fatal("Flush reported nothing pending while the store is down")
	}
	st.fail = nil
	if !b.Flush(ctx) {
		t.Fatal("Flush left counts pending after the store came back")
	}
	if got := st.count("2026-12"); got != 4 {
		t.Fatalf("count %d after the outage, want the 4 requests made during it", got)
	}
}

func TestCostLearning(t *testing.T) {
	var c costs
	if got := c.estimate(10); got != 1+defaultPolls {
		t.Fatalf("unknown size: %d", got)
	}
	c.learn(99, false, 0)
	c.learn(100, true, 1)
	c.learn(5000, true, 2)
	for _, tc := range []struct{ rows, want int }{{1, 1}, {99, 1}, {100, 2}, {120, 2}, {4000, 3}, {10000, 3}} {
		if got := c.estimate(tc.rows); got != tc.want {
			t.Errorf("estimate(%d) = %d, want %d", tc.rows, got, tc.want)
		}
	}
	// The threshold moves: 150 now answered at once.
	c.learn(150, false, 0)
	if got := c.estimate(120); got != 1 {
		t.Errorf("after a 150-row sync answer, estimate(120) = %d", got)
	}
}

func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 11, 0) // 21 days left
	st.n["2026-12"] = 400
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t.Add(-time.Hour), LastCost: 1}
	st.turns["orgs"] = checkpoint.Turn{Sync: "orgs", WaitingSince: c.t.Add(-time.Minute), HeldAt: c.t, WaitingRows: 7}
	b := newBudget(st, c, 1000, DefaultReserve)
	s, err := b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPace := 21 * 24 * time.Hour / 550
	if s.Used != 400 || s.Left != 600 || s.Reserve != 50 || s.Cost != 1 || (s.Pace-wantPace).Abs() > time.Second {
		t.Fatalf("snapshot %+v", s)
	}
	if !s.NextSend.Equal(s.LastSend.Add(s.Pace)) || s.Projected != 950 || len(s.Waiting) != 1 || s.Waiting[0].Sync != "orgs" {
		t.Fatalf("snapshot %+v", s)
	}
}

// Reservations given back while other batches take requests must add up:
// the count ends at exactly the requests made.
func TestConcurrentTicketsAddUp(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := at(2026, 12, 1, 0)
	b := newBudget(st, c, 0, Reserve{}) // no limit: every admission goes
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 10 {
				d, err := b.Admit(ctx, Request{Sync: "people", Rows: 5000})
				if err != nil || !d.Go() {
					t.Error(d, err)
					return
				}
				done, err := b.Meter(WithTicket(ctx, d.Ticket))
				if err != nil {
					t.Error(err)
					return
				}
				done(1)
				d.Ticket.Done(ctx, Outcome{})
			}
		})
	}
	wg.Wait()
	if got := st.count("2026-12"); got != 200 {
		t.Fatalf("count %d after 200 metered requests", got)
	}
}

// The turn announced when a hold begins is priced at the largest batch it
// can grow into, and kept: a batch that grows into a job while it waits is
// not late, and one that stays small goes as soon as its own cost allows.
func TestAnnouncedTurnIsKept(t *testing.T) {
	ctx := context.Background()
	for _, grows := range []bool{true, false} {
		st := newMemStore()
		c := at(2026, 12, 10, 0)
		st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t}
		b := newBudget(st, c, 1000, DefaultReserve)
		b.costs.learn(99, false, 0) // up to 99 rows: 1 request
		b.costs.learn(100, true, 2) // from 100: POST + 2 polls
		c.add(time.Minute)
		d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 5, Limit: 10000, Partial: true, Paced: true})
		if d.Go() {
			t.Fatal("sent a minute after the last send")
		}
		announced := d.Next
		// 3 requests at the pace of 22 days / 950.
		if want := st.turns["people"].LastSend.Add(3 * d.Pace); (announced.Sub(want)).Abs() > time.Minute {
			t.Fatalf("announced %s, want the pace for a 3-request batch: %s", announced, want)
		}
		rows := 5
		if grows {
			rows = 500
		}
		for c.t.Before(announced) {
			c.add(10 * time.Minute)
			d, _ = b.Admit(ctx, Request{Sync: "people", Rows: rows, Limit: 10000, Partial: true, Paced: true})
			if d.Go() {
				break
			}
			if d.Next.After(announced) {
				t.Fatalf("the turn moved from %s to the later %s", announced, d.Next)
			}
		}
		switch {
		case !d.Go():
			t.Fatalf("grows=%v: not sent by the announced %s", grows, announced)
		case grows && c.t.Before(announced.Add(-time.Minute)):
			t.Fatalf("a 500-row batch went at %s, well before the turn announced for it (%s)", c.t, announced)
		case !grows && !c.t.Before(announced):
			t.Fatalf("a 5-row batch waited for the 3-request turn (%s) instead of its own", announced)
		}
		if tr := st.turns["people"]; tr.Waiting() || !tr.Due.IsZero() {
			t.Fatalf("the send left a claim: %+v", tr)
		}
	}
}

// The first partial batch of a month goes at once: the pace starts over
// with the fresh budget, whatever was sent just before midnight.
func TestFirstPartialOfTheMonthGoesAtOnce(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := &clock{time.Date(2026, 12, 31, 23, 50, 0, 0, time.UTC)}
	st.turns["people"] = checkpoint.Turn{Sync: "people", LastSend: c.t}
	st.n["2026-12"] = 950 // December's budget beyond the reserve is spent
	b := newBudget(st, c, 1000, DefaultReserve)
	learnSync(b, 100)
	c.add(5 * time.Minute)
	if d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 3, Partial: true, Paced: true}); d.Go() || !d.Spent {
		t.Fatalf("December spent: %+v; want held until January", d)
	}
	// January's pace (31d/950 = 47m) counted from 23:50 would hold it
	// until 00:37.
	c.add(5 * time.Minute) // 2027-01-01 00:00
	if d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 3, Partial: true, Paced: true}); !d.Go() {
		t.Fatalf("the first partial batch of January: %+v; want sent", d)
	}
	c.add(time.Minute)
	if d, _ := b.Admit(ctx, Request{Sync: "people", Rows: 3, Partial: true, Paced: true}); d.Go() {
		t.Fatal("a second partial batch a minute into January went too")
	}
}
