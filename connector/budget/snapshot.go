package budget

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
)

// Snapshot is the budget as status pages and metrics show it.
type Snapshot struct {
	Month    string
	Limit    int // 0: no budget
	Reserve  int
	Used     int // requests counted this month, in flight reservations included
	Left     int // Limit - Used (0 when there is no limit)
	Cost     int // requests one partial send is expected to cost
	Pace     time.Duration
	LastSend time.Time // zero: nothing sent yet
	// NextSend is the earliest time the daemon sends a partial batch (zero
	// when nothing limits it).
	NextSend time.Time
	MonthEnd time.Time
	// Projected is the month's use at its end if rows keep changing and the
	// daemon sends at its pace; RunsOut, when set, is the day that use
	// reaches the requests beyond the reserve (only with a maximum delay
	// shorter than the pace).
	Projected int
	RunsOut   time.Time
	Waiting   []checkpoint.Turn // live claims, oldest first
}

// Snapshot reads the month's count and the turns from the store. It
// writes nothing.
func (b *Budget) Snapshot(ctx context.Context) (Snapshot, error) {
	now := b.now()
	_, end := monthBounds(now)
	s := Snapshot{Month: Month(now), Limit: b.limit, Reserve: b.reserve, MonthEnd: end}
	used, err := b.store.Requests(ctx, s.Month)
	if err != nil {
		return s, fmt.Errorf("read request count: %w", err)
	}
	turns, err := b.store.Turns(ctx)
	if err != nil {
		return s, fmt.Errorf("read turns: %w", err)
	}
	s.Used = used
	var lastCost int
	for _, t := range turns {
		if t.LastSend.After(s.LastSend) {
			s.LastSend, lastCost = t.LastSend, t.LastCost
		}
		if t.Waiting() && live(t, now) {
			s.Waiting = append(s.Waiting, t)
		}
	}
	slices.SortFunc(s.Waiting, func(a, b checkpoint.Turn) int { return a.WaitingSince.Compare(b.WaitingSince) })
	if b.limit == 0 {
		s.Projected = used
		return s, nil
	}
	s.Left = max(0, b.limit-used)
	b.mu.Lock()
	learned := b.costs.syncMax > 0 || b.costs.asyncMin > 0
	s.Cost = b.costs.estimate(1)
	b.mu.Unlock()
	if !learned && lastCost > 0 {
		s.Cost = lastCost // a process that sent nothing yet (status) knows only the last send
	}
	spendable := max(0, b.limit-used-b.reserve)
	pace, ok := Pace(end.Sub(now), b.limit-used, b.reserve, s.Cost)
	if !ok {
		s.NextSend, s.Projected = end, used
		return s, nil
	}
	s.Pace = pace
	step := pace
	// Rows changing all the time, the daemon sends every pace and spends
	// exactly what is beyond the reserve; a shorter maximum delay spends
	// it sooner, then stops.
	s.Projected = used + spendable
	if b.maxDelay > 0 && b.maxDelay < pace {
		step = b.maxDelay
		s.RunsOut = now.Add(step * time.Duration(spendable/s.Cost))
	}
	if !s.LastSend.IsZero() {
		s.NextSend = s.LastSend.Add(step)
	}
	return s, nil
}
