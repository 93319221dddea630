package budget

import (
	"context"
	"sync"
)

// Ticket is an admitted batch: the requests reserved for it in the month's
// count. Its API calls take those first (see Meter); Done gives back what
// they did not use.
type Ticket struct {
	b        *Budget
	month    string
	sync     string
	rows     int
	reserved int

	mu   sync.Mutex
	used int // reserved requests the batch's attempts took
	done bool
}

// Reserved is the number of requests the batch was expected to cost.
func (t *Ticket) Reserved() int { return t.reserved }

// Outcome is how the API answered a batch, for learning what sends cost.
type Outcome struct {
	Answered bool // the API gave a final answer (job complete or failed)
	Async    bool // it ran as a job (202) and was polled
	Polls    int
}

// Done ends the ticket: the reserved requests its batch did not use are
// given back, and an answered batch teaches the budget what a batch of its
// size costs. Calling it again does nothing; a nil Ticket is fine.
func (t *Ticket) Done(ctx context.Context, o Outcome) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return
	}
	t.done = true
	unused := t.reserved - t.used
	t.mu.Unlock()
	if o.Answered {
		t.b.mu.Lock()
		t.b.costs.learn(t.rows, o.Async, o.Polls)
		t.b.mu.Unlock()
	}
	if unused > 0 {
		t.b.give(context.WithoutCancel(ctx), t.month, -unused)
	}
}

type ticketKey struct{}

// WithTicket returns a context whose API requests are counted against t.
func WithTicket(ctx context.Context, t *Ticket) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, ticketKey{}, t)
}

func ticketFrom(ctx context.Context) *Ticket {
	t, _ := ctx.Value(ticketKey{}).(*Ticket)
	return t
}

// Meter is called by the API client before every HTTP attempt. The attempt
// takes one of its ticket's reserved requests (see WithTicket); beyond
// those (more polls than expected, a retry, a request outside any batch) it
// takes one more request of the month, the reserve included, and fails with
// an *ExhaustedError when the month has none left, so the request is not
// made. done must be called after the attempt with the number of times the
// request was written to a connection: 0 gives the request back (it never
// reached Micro), more than 1 counts the extra writes (a transport resend).
func (b *Budget) Meter(ctx context.Context) (done func(wrote int), err error) {
	if t := ticketFrom(ctx); t != nil {
		t.mu.Lock()
		if !t.done && t.used < t.reserved {
			t.used++
			t.mu.Unlock()
			return func(wrote int) {
				switch {
				case wrote == 0:
					t.mu.Lock()
					t.used--
					t.mu.Unlock()
				case wrote > 1:
					b.give(ctx, t.month, wrote-1)
				}
			}, nil
		}
		t.mu.Unlock()
	}
	now := b.now()
	month := Month(now)
	limit := b.limit
	if limit == 0 {
		limit = -1
	}
	total, ok, err := b.take(ctx, month, 1, limit)
	if err != nil {
		// The store is down. The request is worth more than the count:
		// count it once the store is back.
		b.log.Debug("could not count an API request; it is added when the checkpoint store answers again", "err", err)
		b.give(ctx, month, 1)
	} else if !ok {
		_, end := monthBounds(now)
		return nil, &ExhaustedError{Month: month, Used: total, Limit: b.limit, Resumes: end}
	}
	return func(wrote int) {
		if wrote != 1 {
			b.give(ctx, month, wrote-1)
		}
	}, nil
}
