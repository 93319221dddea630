package checkpoint

import "time"

// Turn is one sync's place in the request budget's schedule, shared by every
// process using the store: when it last sent a batch, and whether it is
// holding rows back waiting for its turn. The budget (connector/budget)
// reads all turns to pace partial batches across syncs and replicas, so that
// a restart or a crash-looping process neither resets the pace nor loses its
// place in the queue.
type Turn struct {
	Sync string
	// LastSend is when the sync last started sending a batch (zero: never).
	LastSend time.Time
	// LastCost is the number of requests that send was expected to cost.
	LastCost int
	// WaitingSince is when the sync began holding rows for its turn (zero:
	// not waiting); WaitingRows how many rows it held at its last pass.
	WaitingSince time.Time
	WaitingRows  int
	// Due is the next send the budget announced for the claim: a promise
	// it keeps even when the batch grows costlier while it waits.
	Due time.Time
	// HeldAt is the last time a pass of the sync held rows; a claim not
	// renewed within a few of the sync's Interval is stale (its process
	// died or the sync was removed) and no longer delays other syncs.
	HeldAt   time.Time
	Interval time.Duration
}

// Waiting reports whether t is a claim for the next send.
func (t Turn) Waiting() bool { return !t.WaitingSince.IsZero() }

// normTurn keeps what both stores can hold exactly.
func normTurn(t Turn) Turn {
	for _, p := range []*time.Time{&t.LastSend, &t.WaitingSince, &t.Due, &t.HeldAt} {
		if !p.IsZero() {
			*p = stamp(*p)
		}
	}
	t.Interval = t.Interval.Truncate(time.Microsecond)
	return t
}
