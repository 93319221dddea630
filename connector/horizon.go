package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// bound is the upper cursor bound of one pass. A row the pass reads past
// the bound could still be joined, behind the new checkpoint, by a row a
// transaction open now commits later; so the pass leaves those for later.
type bound struct {
	until string        // cursor < until, the commit horizon (text of a timestamptz); "" = none
	cap   string        // cursor <= cap, the value guard's newest safe mark; "" = none
	lag   time.Duration // how far the commit horizon holds the pass back from now
}

// passBound returns the bound of one pass over src: the commit horizon for
// a timestamp cursor, the value guard for any other. ok is false when no
// row is known to be final yet, so the pass reads nothing (with GuardWait
// set it waits that long for one, then fails with ErrHeldBack).
func (s *Syncer) passBound(ctx context.Context, src *source) (b bound, ok bool, err error) {
	if src.TimeCursor() {
		lag := s.Lag
		h, err := commitHorizon(ctx, s.DB, lag)
		if err != nil {
			return b, false, err
		}
		if !h.known {
			s.warnOnce.Do(func() {
				s.logger().Warn("cannot read other sessions' transaction start times (grant pg_read_all_stats or pg_monitor to prismsync's role); late commits are guarded only by the sync's lag, using at least 1m", "lag", lag)
			})
			if lag < time.Minute {
				if h, err = commitHorizon(ctx, s.DB, time.Minute); err != nil {
					return b, false, err
				}
			}
		}
		return bound{until: h.until, lag: h.lag}, true, nil
	}
	safe, known, err := s.guard.cap(ctx, s.DB, src)
	// A fresh process has no marks yet: with a transaction open, wait
	// (GuardWait) for it to end rather than read nothing.
	for deadline := time.Now().Add(s.GuardWait); err == nil && known && safe == "" && time.Now().Before(deadline); {
		if err := s.sleep(ctx, 250*time.Millisecond); err != nil {
			return b, false, err
		}
		safe, known, err = s.guard.cap(ctx, s.DB, src)
	}
	switch {
	case err != nil:
		return b, false, err
	case !known:
		s.warnOnce.Do(func() {
			s.logger().Warn("cannot read other sessions' transaction start times (grant pg_read_all_stats or pg_monitor to prismsync's role); rows committed late behind the checkpoint can be missed")
		})
		return b, true, nil
	case safe == "":
		if s.GuardWait > 0 {
			return b, false, fmt.Errorf("%w: waited %s for transactions that were open when this pass began (see pg_stat_activity); nothing was read", ErrHeldBack, s.GuardWait)
		}
		return b, false, nil // nothing is known to be final yet: the next pass reads it
	default:
		return bound{cap: safe}, true, nil
	}
}

// Why a horizon: `updated_at DEFAULT now()` stamps a row with its
// transaction's START time, but the row becomes visible only at COMMIT. A
// transaction that runs long can commit a row whose cursor is already behind
// the checkpoint, and a reader that simply follows the cursor never sees it.
// So a pass reads only rows with cursor < H, where H is the start time of the
// oldest transaction still open in the database: every row stamped before H
// has been committed (or rolled back) already, so nothing can appear behind
// the checkpoint later.

// Both guards need the start of the oldest transaction other sessions have
// open in this database, and whether this role may see it at all.
const (
	oldestOpenXactSQL = `(SELECT min(xact_start) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend'
		  AND xact_start IS NOT NULL AND pid <> pg_backend_pid())`
	canSeeOthersSQL = `(pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
		OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))`
)

// horizon is the commit horizon of one pass.
type horizon struct {
	until string        // timestamptz text: read cursor < until
	lag   time.Duration // now - until: how far the horizon holds the pass back
	known bool          // false when pg_stat_activity could not be read
}

// commitHorizon computes min(oldest open transaction start, now) - and
// now - lag, whichever is earlier. Reading other sessions' xact_start needs
// pg_read_all_stats (or pg_monitor, or superuser); without it known is false
// and only lag bounds the pass.
func commitHorizon(ctx context.Context, pool *pgxpool.Pool, lag time.Duration) (horizon, error) {
	var h horizon
	var lagSecs float64
	err := pool.QueryRow(ctx, `
		WITH oldest AS (
			SELECT `+oldestOpenXactSQL+` AS t
		), visible AS (
			SELECT `+canSeeOthersSQL+` AS ok
		), bound AS (
			SELECT CASE WHEN visible.ok THEN least(coalesce(oldest.t, now()), now() - $1::interval)
			            ELSE now() - $1::interval END AS u, visible.ok
			FROM oldest, visible
		)
		SELECT u::text, ok, extract(epoch FROM now() - u)::float8 FROM bound`,
		fmt.Sprintf("%d microseconds", lag.Microseconds()),
	).Scan(&h.until, &h.known, &lagSecs)
	if err != nil {
		return h, fmt.Errorf("commit horizon: %w", err)
	}
	h.lag = time.Duration(lagSecs * float64(time.Second))
	return h, nil
}

// For cursors that are not timestamps (a version column fed by a sequence,
// a date) there is no start time to compare with, but the same race exists:
// a transaction takes its value, other transactions take larger ones and
// commit, and the first commits last. The guard: remember at each pass the
// largest cursor value visible then (a mark) and when it was taken; a mark
// becomes safe once every transaction that was open at that moment has
// ended, because any transaction started later takes a larger value. A pass
// reads only up to the newest safe mark. With no other transaction open
// (the usual case) the current mark is safe at once.

// mark is the largest visible cursor value at a moment.
type mark struct {
	cursor string    // text of the cursor value
	at     time.Time // server time the value was read
}

// valueGuard keeps the marks of one Syncer (passes of a sync never overlap,
// so it needs no lock).
type valueGuard struct {
	marks []mark
	safe  string // newest safe mark so far ("" none)
}

// cap returns the cursor bound for this pass ("" when nothing is safe yet).
// known is false when other sessions' transactions cannot be seen.
func (g *valueGuard) cap(ctx context.Context, pool *pgxpool.Pool, src *source) (bound string, known bool, err error) {
	var m mark
	var maxCursor *string
	var oldest *time.Time
	err = pool.QueryRow(ctx, `
		SELECT (SELECT max(`+src.ordering[0]+`)::text FROM `+src.from+`),
		       clock_timestamp(), `+oldestOpenXactSQL+`, `+canSeeOthersSQL,
	).Scan(&maxCursor, &m.at, &oldest, &known)
	if err != nil {
		return "", false, fmt.Errorf("cursor guard: %w", err)
	}
	if !known {
		return "", false, nil
	}
	if maxCursor != nil {
		m.cursor = *maxCursor
		g.marks = append(g.marks, m)
	}
	// The newest mark taken before every transaction still open began.
	keep := g.marks[:0]
	for _, mk := range g.marks {
		if oldest == nil || mk.at.Before(*oldest) {
			g.safe = mk.cursor
			continue
		}
		keep = append(keep, mk)
	}
	g.marks = keep
	return g.safe, true, nil
}
