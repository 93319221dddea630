package connector_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// A month of the daemon on a virtual clock, through the real engine, the
// fake API and a checkpoint store in real PostgreSQL: a 100,000-row initial
// load, then a writer changing a few rows every minute for 30 days, under
// Micro's 1,000 requests a month. It checks that no month ever counts more
// than 1,000 requests (the fake refuses the 1,001st), that the budget
// beyond the reserve is never spent, that every change arrives, and that
// no change waits longer than the pace the planner announced when it held
// it (plus one schedule interval: the pass that sends it comes on the
// schedule).
//
// The month starts on its 1st, its 15th and its last day, so each run has
// a turnover in a different place.
func TestSimulatedMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates three months of passes (about two minutes); run without -short")
	}
	for _, start := range []time.Time{
		time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2027, 1, 15, 9, 30, 0, 0, time.UTC),
		time.Date(2027, 2, 28, 18, 0, 0, 0, time.UTC),
	} {
		t.Run(start.Format("Jan_02"), func(t *testing.T) {
			t.Parallel() // each has its own database, fake and clock
			simulateMonth(t, start)
		})
	}
}

func simulateMonth(t *testing.T, start time.Time) {
	const (
		rows      = 100_000
		limit     = 1000
		schedule  = 15 * time.Minute // the daemon's passes (SYNC_SCHEDULE)
		perMinute = 3                // rows the writer changes every minute
		days      = 30
	)
	ctx := context.Background()
	clock := prismtest.NewClock(start)
	e := newEnv(t, prismtest.Options{Now: clock.Now, MonthlyLimit: limit})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 second'
		FROM generate_series(1, $1) g`, rows)
	// The index validate asks for: without it every pass sorts the table.
	e.exec(`CREATE INDEX ON people (updated_at, id)`)
	e.exec(`ANALYZE people`)
	bud := e.withBudget(t, clock, limit, budget.DefaultReserve)
	sy := e.syncer(mappingFor(t, 10_000, true))
	sy.Budget, sy.Paced, sy.Interval, sy.MaxInflight = bud, true, schedule, 4
	sy.Fingerprints = e.store

	sum, err := sy.Once(ctx)
	if err != nil || sum.Sent != rows || sum.Held != 0 {
		t.Fatalf("initial load: %+v, %v", sum, err)
	}
	load := e.fake.Stats().Requests
	t.Logf("initial load of %d rows: %d requests", rows, load)

	rng := rand.New(rand.NewPCG(uint64(start.Unix()), 1))
	var (
		changed   []time.Time // virtual times of changes not yet delivered
		waits     []time.Duration
		announced time.Time     // next send the planner announced for the current hold
		longest   time.Duration // the longest wait announced
		holds     int
	)
	end := start.Add(days * 24 * time.Hour)
	began := time.Now()
	defer func() {
		t.Logf("simulated %s in %s", clock.Now().Sub(start).Round(time.Hour), time.Since(began).Round(time.Millisecond))
	}()
	for now := start; now.Before(end); {
		// The writer's changes until the next pass, one statement per
		// pass: the engine only sees the table when it reads it.
		next := now.Add(schedule)
		ids := make([]int64, 0, perMinute*int(schedule/time.Minute))
		for m := now.Add(time.Minute); !m.After(next); m = m.Add(time.Minute) {
			for range perMinute {
				ids = append(ids, 1+rng.Int64N(rows))
				changed = append(changed, m)
			}
		}
		e.exec(`UPDATE people SET seats = seats + 1, updated_at = clock_timestamp() WHERE id = ANY($1)`, ids)
		now = next
		clock.Advance(next.Sub(clock.Now()))

		sum, err := sy.Once(ctx)
		if err != nil {
			t.Fatalf("%s: pass failed: %v", now.Format(time.DateTime), err)
		}
		switch {
		case sum.Held > 0:
			// Spending to the reserve is the plan, so the last requests
			// may run out within the month's last pace; any earlier, the
			// plan overspent.
			if sum.BudgetSpent && sum.NextSend.Sub(now) > longest+schedule {
				t.Fatalf("%s: the budget beyond the reserve is spent %s before the month ends (the longest pace announced was %s)",
					now.Format(time.DateTime), sum.NextSend.Sub(now), longest)
			}
			if announced.IsZero() {
				announced, holds = sum.NextSend, holds+1
				longest = max(longest, announced.Sub(now))
			}
			if sum.NextSend.IsZero() {
				t.Fatalf("%s: %d rows held without a next send", now.Format(time.DateTime), sum.Held)
			}
		case sum.Sent > 0:
			if !announced.IsZero() && now.After(announced.Add(schedule)) {
				t.Fatalf("%s: sent rows held since the planner announced %s", now.Format(time.DateTime), announced.Format(time.DateTime))
			}
			for _, c := range changed {
				waits = append(waits, now.Sub(c))
			}
			changed, announced = changed[:0], time.Time{}
		}
	}
	// Whatever is still held goes out once its turn comes.
	for i := 0; len(changed) > 0; i++ {
		clock.Advance(schedule)
		sum, err := sy.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Sent > 0 {
			changed = nil
		}
		if i > 1000 {
			t.Fatal("the last changes were never sent")
		}
	}
	e.checkFake()

	st := e.fake.Stats()
	if st.RateLimited != 0 {
		t.Fatalf("the fake refused %d requests over its monthly limit", st.RateLimited)
	}
	reserve := budget.DefaultReserve.Of(limit)
	for _, m := range monthsBetween(start, clock.Now()) {
		if n := e.requestsIn(m); n > limit-reserve {
			t.Errorf("%s: %d requests counted, more than the %d beyond the reserve", m, n, limit-reserve)
		} else {
			t.Logf("%s: %d requests", m, n)
		}
	}
	slices.Sort(waits)
	t.Logf("%d changes in %d holds; wait median %s, max %s; %d requests in all",
		len(waits), holds, waits[len(waits)/2].Round(time.Minute), waits[len(waits)-1].Round(time.Minute), st.Requests)
}

func monthsBetween(a, b time.Time) []string {
	var out []string
	for m := time.Date(a.Year(), a.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(b); m = m.AddDate(0, 1, 0) {
		out = append(out, budget.Month(m))
	}
	return out
}
