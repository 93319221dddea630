package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The label values AddSyncs creates: every value the engine reports that
// is known before the first event. API status codes other than the
// success ones (import 200 or 202, poll 200) appear on first use.
var (
	batchOutcomes = []string{"complete", "failed", "error", "nothing_to_send"}
	jobOutcomes   = []string{"complete", "failed", "error"}
	passResults   = []string{"ok", "failed"}
	jobModes      = []string{"sync", "async"}
	apiOps        = []string{"import", "poll"}
	apiSuccess    = [][2]string{{"import", "200"}, {"import", "202"}, {"poll", "200"}}
)

// AddSyncs creates every per-sync series of the named syncs at zero, so
// that rate(), increase() and absent() work from the daemon's start rather
// than from each series' first event, and a restart does not look like a
// gap. The checkpoint cursor (and its age) is the exception: it appears
// once the store holds a time-typed cursor, because 0 would claim a
// checkpoint in 1970. Only added syncs get the store's state
// (SetSyncStates), so a sync the mapping no longer has, or a backfill's
// own state, adds no series.
func (m *Metrics) AddSyncs(names ...string) {
	for _, s := range names {
		for _, c := range []*prometheus.CounterVec{m.rowsRead, m.rowsSent, m.rowsCreated, m.rowsUpdated,
			m.rowsUnchanged, m.rowsExisting, m.rowsInvalid, m.rowsRejected, m.rowsDeleted, m.rowsArchived, m.rowsRestored} {
			c.WithLabelValues(s)
		}
		for _, o := range batchOutcomes {
			m.batches.WithLabelValues(s, o)
		}
		for _, o := range jobOutcomes {
			m.jobs.WithLabelValues(s, o)
		}
		for _, r := range passResults {
			m.passes.WithLabelValues(s, r)
		}
		for _, mode := range jobModes {
			m.jobDuration.WithLabelValues(s, mode)
		}
		m.jobPolls.WithLabelValues(s)
		m.passDuration.WithLabelValues(s)
		for _, oc := range apiSuccess {
			m.requests.WithLabelValues(s, oc[0], oc[1])
		}
		for _, op := range apiOps {
			m.retries.WithLabelValues(s, op)
			m.requestDuration.WithLabelValues(s, op)
		}
		for _, g := range []*prometheus.GaugeVec{m.inflight, m.horizonLag, m.schedule, m.rejects, m.deferred} {
			g.WithLabelValues(s)
		}

		m.mu.Lock()
		st := m.state(s)
		st.added = true
		m.failures.WithLabelValues(s).Set(float64(st.consecutive))
		m.lastPass.WithLabelValues(s).Set(timeOrZero(st.lastPass))
		m.lastSuccess.WithLabelValues(s).Set(timeOrZero(st.lastSuccess))
		m.mu.Unlock()
	}
}

func timeOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return unix(t)
}

// SetSchedule records how often the daemon runs sync, so that an alert can
// tell a sync nobody ran for too long from one with a long schedule.
func (m *Metrics) SetSchedule(sync string, every time.Duration) {
	m.schedule.WithLabelValues(sync).Set(every.Seconds())
}

// SyncState is what the checkpoint store says about one sync. Every replica
// reads the same store, so every replica reports the same values, whichever
// of them ran the sync.
type SyncState struct {
	Sync   string
	Cursor string // the checkpoint's cursor as stored ("" before the first commit)
	// LastPass ends the last recorded pass of any process; LastSuccess the
	// last successful one the store knows of. Zero: none known.
	LastPass, LastSuccess time.Time
	Rejects               int // rows recorded as rejects
	Deferred              int // rows held back for a later pass
}

// SetSyncStates sets the store-fed gauges of the syncs AddSyncs added from
// a snapshot of the store: a sync missing from states has no checkpoint,
// rejects or deferred rows (any more). The last pass and last success only
// move forward, since this process may know of a later pass than the
// snapshot.
func (m *Metrics) SetSyncStates(states []SyncState) {
	byName := make(map[string]SyncState, len(states))
	for _, s := range states {
		byName[s.Sync] = s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.syncs {
		if !st.added {
			continue
		}
		s := byName[name]
		st.cursor = time.Time{}
		if t, ok := ParseCursorTime(s.Cursor); ok {
			st.cursor = t
			m.cursorTime.WithLabelValues(name).Set(unix(t))
		} else {
			m.cursorTime.DeleteLabelValues(name)
		}
		m.passTimes(name, st, s.LastPass, s.LastSuccess)
		m.rejects.WithLabelValues(name).Set(float64(s.Rejects))
		m.deferred.WithLabelValues(name).Set(float64(s.Deferred))
	}
}
