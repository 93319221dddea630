package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultMaxSnapshot is how long a pass holds one snapshot of the source
// when Syncer.MaxSnapshot is not set.
const DefaultMaxSnapshot = 5 * time.Minute

// scanCursor names the server-side cursor of a scan; each scan has its own
// transaction, so one name serves all.
const scanCursor = "prismsync_scan"

// scan reads the window of one pass as one ordered query: a server-side
// cursor over SELECT … WHERE (cursor, key) > checkpoint AND cursor < horizon
// ORDER BY cursor, key, declared in a READ ONLY transaction and fetched one
// batch at a time. With an index on (cursor, key) PostgreSQL walks it;
// without one it sorts the window once, where a LIMIT query per batch sorted
// it once per batch. The server produces only what is fetched, so while the
// pipeline is full (a slow API) no rows pile up here: the reader waits, and
// so does the query.
//
// One snapshot is held for at most maxAge (Syncer.MaxSnapshot): a backfill of
// hours must not keep vacuum from removing dead rows for hours. When it is
// that old, the scan ends its transaction and declares the cursor again
// from the last row read, strictly after it, in a new snapshot: the
// keyset's ties, the pass's bound and exactly-once are the same as within
// one snapshot, because the window is the same and starts where the reader
// left off. Without an index each new snapshot sorts what is left of the
// window, so maxAge trades that sort against vacuum.
//
// A scan belongs to the reader goroutine of one pass; it is not safe for
// concurrent use.
type scan struct {
	src    *source
	w      Window // After is the last row read
	maxAge time.Duration
	now    func() time.Time

	tx     pgx.Tx // the open snapshot, nil between snapshots
	opened time.Time
	// idle bounds how long the snapshot may sit idle while the reader
	// waits: half the server's idle_in_transaction_session_timeout, which
	// would otherwise end the session (0: none).
	idle      time.Duration
	done      bool // the window has no rows after w.After
	snapshots int  // snapshots opened so far
}

// scan starts reading w; nothing is sent to the server before the first
// next.
func (s *source) scan(w Window, maxAge time.Duration, now func() time.Time) *scan {
	if maxAge <= 0 {
		maxAge = DefaultMaxSnapshot
	}
	if now == nil {
		now = time.Now
	}
	return &scan{src: s, w: w, maxAge: maxAge, now: now}
}

// next returns up to n rows after the last one read, in keyset order. Fewer
// than n (none included) means the window is exhausted: the scan has then
// released its snapshot, and later calls return nothing.
func (sc *scan) next(ctx context.Context, n int) ([]row, error) {
	if sc.done {
		return nil, nil
	}
	if sc.tx != nil && sc.now().Sub(sc.opened) >= sc.maxAge {
		sc.release(ctx)
	}
	if sc.tx == nil {
		if err := sc.open(ctx); err != nil {
			return nil, err
		}
	}
	// Described on every call: a FETCH's columns are the cursor's, and a
	// cached description could belong to another sync's cursor on the same
	// connection.
	rows, err := sc.tx.Query(ctx, fmt.Sprintf("FETCH FORWARD %d FROM %s", n, scanCursor), pgx.QueryExecModeDescribeExec)
	if err != nil {
		sc.release(ctx)
		return nil, fmt.Errorf("read rows: %w", err)
	}
	out, err := sc.src.collect(rows, make([]row, 0, n))
	if err != nil {
		sc.release(ctx)
		return nil, err
	}
	if len(out) > 0 {
		sc.w.After = out[len(out)-1].pos
	}
	if len(out) < n {
		sc.done = true
		sc.release(ctx) // the last batches are sent without a snapshot held
	}
	return out, nil
}

// open begins a snapshot and declares the cursor from the last row read.
func (sc *scan) open(ctx context.Context) error {
	sql, args, err := sc.src.ordered(sc.w)
	if err != nil {
		return err
	}
	tx, err := sc.src.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	sc.tx, sc.opened = tx, sc.now()
	var idleMS int64
	if err := tx.QueryRow(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'`).Scan(&idleMS); err != nil {
		sc.release(ctx)
		return fmt.Errorf("begin read: %w", err)
	}
	sc.idle = time.Duration(idleMS) * time.Millisecond / 2
	if _, err := tx.Exec(ctx, "DECLARE "+scanCursor+" NO SCROLL CURSOR FOR "+sql, args...); err != nil {
		sc.release(ctx)
		return fmt.Errorf("read rows: %w", err)
	}
	sc.snapshots++
	return nil
}

// expiry returns a channel that fires when the open snapshot should no
// longer be held by a reader that waits to hand over a batch: at maxAge, or
// before the server's idle-in-transaction timeout would end the session.
// stop releases its timer. With no snapshot open the channel is nil.
func (sc *scan) expiry() (fires <-chan time.Time, stop func()) {
	if sc.tx == nil {
		return nil, func() {}
	}
	d := sc.maxAge - sc.now().Sub(sc.opened)
	if sc.idle > 0 {
		d = min(d, sc.idle)
	}
	if d <= 0 {
		c := make(chan time.Time)
		close(c)
		return c, func() {}
	}
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// release ends the open snapshot, if any; the next call of next opens a
// new one from the last row read. Ending a read-only transaction cannot
// lose anything, so it is best effort and survives a cancelled ctx.
func (sc *scan) release(ctx context.Context) {
	if sc.tx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	sc.tx.Rollback(ctx) //nolint:errcheck // a failed rollback closes the connection, which ends the snapshot too
	sc.tx = nil
}
