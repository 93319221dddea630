package budget

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
)

// Request asks to send one batch.
type Request struct {
	Sync string
	Rows int // objects in the batch
	// Partial is a batch with fewer rows than batch_size: the daemon holds
	// it for its turn so that later changes join it.
	Partial bool
	// Limit is the most rows the batch can grow to while it waits (the
	// batch size; 0: Rows). The turn announced for a held batch is priced
	// at what a batch that large costs, so that growing while it waits
	// (into a job instead of an answer at once) cannot make it late.
	Limit int
	// Paced is set by the daemon. Explicit runs (once, backfill, rejects
	// --retry) leave it unset: they never wait and may use the reserve.
	Paced bool
	// Interval is how often the sync's passes run (its schedule): a claim
	// for a turn that is not renewed within a few intervals is stale.
	Interval time.Duration
}

// Decision is the budget's answer to a Request.
type Decision struct {
	// Ticket is set when the batch may go; it carries the requests reserved
	// for it. Attach it to the context of the batch's API calls
	// (WithTicket) and call Done when the batch ended.
	Ticket *Ticket
	// Otherwise the batch waits until Next (a paced batch's turn, or the
	// start of the next month when the budget beyond the reserve is spent).
	Next time.Time
	// Pace is the time between two sends of this cost at which the month's
	// budget lasts to its end (0 when not paced).
	Pace time.Duration
	// Ahead is the number of other syncs waiting before this one.
	Ahead int
	// Spent is set when the budget beyond the reserve does not cover the
	// batch: it waits for the month to turn.
	Spent bool
}

// Go reports whether the batch may be sent now.
func (d Decision) Go() bool { return d.Ticket != nil }

// Pace is the time a send of cost requests must wait after the previous send
// so that the requests left beyond the reserve last until the month ends:
// timeLeft / (left - reserve) × cost. ok is false when they do not cover
// one such send at all.
func Pace(timeLeft time.Duration, left, reserve, cost int) (pace time.Duration, ok bool) {
	spendable := left - reserve
	if cost < 1 {
		cost = 1
	}
	if spendable < cost {
		return 0, false
	}
	if timeLeft <= 0 {
		return 0, true
	}
	p := float64(timeLeft) * float64(cost) / float64(spendable)
	return time.Duration(math.Ceil(p)), true
}

// Admit decides whether a batch may be sent now. With a Ticket the batch's
// expected cost is already counted; without one, nothing was.
//
// An explicit run is admitted while the month's requests cover the batch and
// gets ErrExhausted (an *ExhaustedError) otherwise. The daemon's full
// batches go while the requests beyond the reserve cover them; a partial
// batch waits for its turn (see the package documentation).
func (b *Budget) Admit(ctx context.Context, r Request) (Decision, error) {
	now := b.now()
	month := Month(now)
	_, monthEnd := monthBounds(now)
	cost := b.estimate(r.Rows)
	if b.limit == 0 {
		// No budget: count, never plan.
		return b.admit(ctx, r, month, now, cost, -1)
	}
	if !r.Paced {
		d, err := b.admit(ctx, r, month, now, cost, b.limit)
		if err == nil && !d.Go() {
			used, _ := b.store.Requests(ctx, month)
			return d, &ExhaustedError{Month: month, Used: used, Limit: b.limit, Resumes: monthEnd}
		}
		return d, err
	}
	ceiling := b.limit - b.reserve
	if !r.Partial {
		d, err := b.admit(ctx, r, month, now, cost, ceiling)
		if err == nil && !d.Go() {
			d.Spent, d.Next = true, monthEnd
		}
		return d, err
	}

	used, err := b.store.Requests(ctx, month)
	if err != nil {
		return Decision{}, fmt.Errorf("read request count: %w", err)
	}
	pace, ok := Pace(monthEnd.Sub(now), b.limit-used, b.reserve, cost)
	if !ok {
		return Decision{Spent: true, Next: monthEnd}, b.hold(ctx, r, now, monthEnd, nil)
	}
	if b.maxDelay > 0 && b.maxDelay < pace {
		b.warnRunOut(month, now, pace, cost, b.limit-used-b.reserve)
		pace = b.maxDelay
	}
	turns, err := b.store.Turns(ctx)
	if err != nil {
		return Decision{}, fmt.Errorf("read turns: %w", err)
	}
	last, ahead, mine := queue(turns, r.Sync, now)
	monthStart, _ := monthBounds(now)
	next := last.Add(pace * time.Duration(1+ahead))
	if last.Before(monthStart) {
		// Nothing sent this month yet (or ever): a fresh budget, so the
		// pace starts over and the first partial batch goes at once.
		next = now
	}
	if mine.Waiting() && !mine.Due.IsZero() && mine.Due.Before(next) {
		// The time announced when the hold began is kept, even if other
		// syncs have spent since; the reserve still bounds what this can
		// spend.
		next, ahead = mine.Due, 0
	}
	if ahead == 0 && !now.Before(next) {
		d, err := b.admit(ctx, r, month, now, cost, ceiling)
		if err == nil && !d.Go() {
			// Another process took the last requests meanwhile.
			return Decision{Spent: true, Next: monthEnd}, b.hold(ctx, r, now, monthEnd, turns)
		}
		d.Pace = pace
		return d, err
	}
	// What is announced (and kept) is priced at the largest batch this one
	// can grow into while it waits, so it is never later than the send.
	due := next
	if worst := b.estimate(max(r.Limit, r.Rows)); worst > cost {
		if wp, ok := Pace(monthEnd.Sub(now), b.limit-used, b.reserve, worst); ok && !last.Before(monthStart) {
			due = last.Add(wp * time.Duration(1+ahead))
		}
	}
	if mine.Waiting() && !mine.Due.IsZero() && mine.Due.Before(due) {
		due = mine.Due
	}
	if due.Before(next) {
		due = next
	}
	return Decision{Next: due, Pace: pace, Ahead: ahead}, b.hold(ctx, r, now, due, turns)
}

// admit reserves cost requests of month under max and records the send.
func (b *Budget) admit(ctx context.Context, r Request, month string, now time.Time, cost, max int) (Decision, error) {
	_, ok, err := b.take(ctx, month, cost, max)
	if err != nil {
		return Decision{}, fmt.Errorf("reserve requests: %w", err)
	}
	if !ok {
		return Decision{}, nil
	}
	t := &Ticket{b: b, month: month, sync: r.Sync, rows: r.Rows, reserved: cost}
	turn := checkpoint.Turn{Sync: r.Sync, LastSend: now, LastCost: cost, Interval: r.Interval}
	if err := b.store.SaveTurn(ctx, turn); err != nil {
		// The requests are reserved; give them back rather than send a
		// batch the pace cannot account for.
		b.give(ctx, month, -cost)
		return Decision{}, fmt.Errorf("record send: %w", err)
	}
	return Decision{Ticket: t}, nil
}

// hold records that r.Sync waits for its turn (keeping the time it began
// waiting), so that other syncs and replicas serve it in order, and the send
// it was promised (due). turns are the turns as just read, or nil.
func (b *Budget) hold(ctx context.Context, r Request, now, due time.Time, turns []checkpoint.Turn) error {
	if turns == nil {
		var err error
		if turns, err = b.store.Turns(ctx); err != nil {
			return fmt.Errorf("read turns: %w", err)
		}
	}
	t := checkpoint.Turn{Sync: r.Sync}
	if i := slices.IndexFunc(turns, func(t checkpoint.Turn) bool { return t.Sync == r.Sync }); i >= 0 {
		t = turns[i]
	}
	if !t.Waiting() {
		t.WaitingSince = now
	}
	t.WaitingRows, t.Due, t.HeldAt, t.Interval = r.Rows, due, now, r.Interval
	if err := b.store.SaveTurn(ctx, t); err != nil {
		return fmt.Errorf("record wait: %w", err)
	}
	return nil
}

// queue returns the time of the last send of any sync, how many live
// claims of other syncs are older than sync's own (or than now, when sync
// is not waiting yet), and sync's own turn.
func queue(turns []checkpoint.Turn, sync string, now time.Time) (last time.Time, ahead int, own checkpoint.Turn) {
	mine := now
	for _, t := range turns {
		if t.Sync == sync {
			own = t
			if t.Waiting() {
				mine = t.WaitingSince
			}
		}
		if t.LastSend.After(last) {
			last = t.LastSend
		}
	}
	for _, t := range turns {
		if t.Sync == sync || !t.Waiting() || !live(t, now) {
			continue
		}
		if t.WaitingSince.Before(mine) || (t.WaitingSince.Equal(mine) && t.Sync < sync) {
			ahead++
		}
	}
	return last, ahead, own
}

// live reports whether a claim was renewed recently enough to count: within
// three of its sync's intervals (at least five minutes). A process that died
// while waiting leaves a claim that stops delaying others after that.
func live(t checkpoint.Turn, now time.Time) bool {
	grace := max(3*t.Interval, 5*time.Minute)
	return now.Sub(t.HeldAt) <= grace
}

// warnRunOut logs once a month that MAX_DELAY sends faster than the budget
// lasts, and on which day the budget beyond the reserve will be spent.
func (b *Budget) warnRunOut(month string, now time.Time, pace time.Duration, cost, spendable int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.warned[month] {
		return
	}
	b.warned[month] = true
	sends := spendable / max(1, cost)
	runOut := now.Add(b.maxDelay * time.Duration(sends))
	b.log.Warn("the maximum delay sends partial batches faster than the month's budget lasts; at that rate it runs out before the month ends and sending stops until the month turns",
		"max_delay", b.maxDelay, "pace", pace.Round(time.Second), "runs_out", runOut.UTC().Format(time.DateOnly))
}

// Estimate is the requests one batch of rows is expected to cost: 1 when
// Micro answered batches that large at once, else its POST plus the polls
// jobs of its size needed (two before any was seen).
func (b *Budget) Estimate(rows int) int { return b.estimate(rows) }

func (b *Budget) estimate(rows int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.costs.estimate(rows)
}
