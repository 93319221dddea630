package telemetry

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
)

const namespace = "prismsync"

// DefaultFailThreshold is how many passes of one sync must fail in a row
// before readiness fails: one failed pass is usually a blip (a deploy of the
// database, a 503 storm) that the next tick absorbs.
const DefaultFailThreshold = 3

// Options configures Metrics. The zero value is usable.
type Options struct {
	// FailThreshold is the number of consecutive failed passes of a sync
	// that makes Ready fail (default DefaultFailThreshold).
	FailThreshold int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
	// NoProcessMetrics leaves out the Go runtime and process collectors
	// (tests compare exact output).
	NoProcessMetrics bool
	// Version and Commit label prismsync_build_info ("unknown" when empty).
	Version, Commit string
}

// Metrics collects prismsync's metrics on its own registry. It implements
// connector.Observer; all methods are safe for concurrent use and do no I/O.
type Metrics struct {
	reg       *prometheus.Registry
	now       func() time.Time
	threshold int

	rowsRead, rowsSent, rowsCreated, rowsUpdated *prometheus.CounterVec
	rowsUnchanged, rowsInvalid, rowsRejected     *prometheus.CounterVec
	rowsExisting                                 *prometheus.CounterVec
	rowsDeleted, rowsArchived, rowsRestored      *prometheus.CounterVec
	batches, jobs, passes                        *prometheus.CounterVec
	jobDuration, jobPolls, passDuration          *prometheus.HistogramVec
	requests, retries                            *prometheus.CounterVec
	requestDuration                              *prometheus.HistogramVec
	inflight, lastSuccess, lastPass, failures    *prometheus.GaugeVec
	cursorTime, horizonLag, schedule             *prometheus.GaugeVec
	rejects, deferred                            *prometheus.GaugeVec
	budgetUsed, budgetLimit, budgetReserve       prometheus.Gauge
	budgetPace, budgetNextSend, budgetProjected  prometheus.Gauge

	mu    sync.Mutex
	syncs map[string]*syncState
}

// syncState is what readiness and the scrape-time gauges need per sync.
type syncState struct {
	added       bool // by AddSyncs: SetSyncStates reports it
	consecutive int
	lastErr     string
	cursor      time.Time // zero when the cursor is not a time
	// The latest pass and successful pass known, from this process's
	// passes or the store's record of any process's.
	lastPass, lastSuccess time.Time
}

var _ connector.Observer = (*Metrics)(nil)

// New creates Metrics with every metric registered.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		now:       opts.Now,
		threshold: opts.FailThreshold,
		syncs:     map[string]*syncState{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.threshold <= 0 {
		m.threshold = DefaultFailThreshold
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(g)
		return g
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(h)
		return h
	}

	m.rowsRead = counter("rows_read_total", "Rows read from the source (sent, invalid and skipped unchanged).", "sync")
	m.rowsSent = counter("rows_sent_total", "Objects the API confirmed in a complete import job.", "sync")
	m.rowsCreated = counter("rows_created_total", "Objects the API created.", "sync")
	m.rowsUpdated = counter("rows_updated_total", "Objects the API updated.", "sync")
	m.rowsUnchanged = counter("rows_skipped_unchanged_total", "Rows not sent because Micro already has their object (change fingerprints).", "sync")
	m.rowsExisting = counter("rows_matched_existing_total", "Objects matched on dedupe_by and left as they were.", "sync")
	m.rowsInvalid = counter("rows_invalid_total", "Rows the mapping refused (recorded as rejects, not sent).", "sync")
	m.rowsRejected = counter("rows_rejected_total", "Rows the API refused (recorded as rejects).", "sync")
	m.rowsDeleted = counter("rows_deleted_total", "Records deleted in Micro for rows soft-deleted in the source or gone from it (reconcile); ids Micro no longer knew included.", "sync")
	m.rowsArchived = counter("rows_archived_total", "Records given the archive properties instead of being deleted (on_delete: archive).", "sync")
	m.rowsRestored = counter("rows_restored_total", "Rows delivered live again after their record was deleted or archived.", "sync")
	m.batches = counter("batches_total", "Batches by final outcome: complete, failed (job failed on every attempt) or error.", "sync", "outcome")
	m.jobs = counter("jobs_total", "Import jobs (one per attempt) by outcome.", "sync", "outcome")
	m.passes = counter("passes_total", "Passes by result: ok or failed.", "sync", "result")
	m.jobDuration = histogram("job_duration_seconds", "Time from the first POST of a batch until its job was final.",
		prometheus.ExponentialBuckets(0.1, 2, 12), "sync", "mode")
	m.jobPolls = histogram("job_poll_requests", "Poll requests spent on one batch's job.",
		[]float64{0, 1, 2, 4, 8, 16, 32, 64, 128}, "sync")
	m.passDuration = histogram("pass_duration_seconds", "Duration of one pass of a sync.",
		prometheus.ExponentialBuckets(0.5, 2, 14), "sync")
	m.requests = counter("api_requests_total", "HTTP attempts to the import API by sync, operation and status code (\"error\" when no response arrived).", "sync", "op", "code")
	m.retries = counter("api_retries_total", "HTTP attempts that were retries of an earlier attempt.", "sync", "op")
	m.requestDuration = histogram("api_request_duration_seconds", "Duration of one HTTP attempt to the import API.",
		prometheus.DefBuckets, "sync", "op")
	m.inflight = gauge("inflight_batches", "Batches this process sent and has not yet committed.", "sync")
	m.lastSuccess = gauge("last_success_timestamp_seconds", "Unix time at which the last successful pass of the sync ended, by any replica (from the checkpoint store) or this one (0: none known).", "sync")
	m.lastPass = gauge("last_pass_timestamp_seconds", "Unix time at which the last pass of the sync ended, successful or not, by any replica (from the checkpoint store) or this one (0: none known).", "sync")
	m.failures = gauge("consecutive_failed_passes", "Passes of this process failed in a row (0 after a success); readiness fails at the threshold.", "sync")
	m.cursorTime = gauge("checkpoint_cursor_timestamp_seconds", "The checkpoint's cursor value as Unix time, from the checkpoint store (only for time-typed cursors, once committed).", "sync")
	m.horizonLag = gauge("commit_horizon_lag_seconds", "How far the commit horizon (and SYNC_LAG) held this process's last pass back from now (0 for cursors that are not times).", "sync")
	m.schedule = gauge("schedule_interval_seconds", "Time between two scheduled passes of the sync in this daemon (0 until its first tick; a one-shot run sets none).", "sync")
	m.rejects = gauge("rejected_rows", "Rows recorded as rejects in the checkpoint store (refused by the mapping or the API, not delivered; deferred rows apart).", "sync")
	m.deferred = gauge("deferred_rows", "Rows waiting for the Micro record of a row they link to (deferred, code missing_reference), from the checkpoint store; not counted in rejected_rows.", "sync")
	info := gauge("build_info", "Always 1; its labels say which prismsync build runs.", "version", "commit", "go_version")
	info.WithLabelValues(orUnknown(opts.Version), orUnknown(opts.Commit), runtime.Version()).Set(1)
	plain := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	m.budgetUsed = plain("budget_used_requests", "API requests counted this calendar month (UTC) by every replica, batches in flight included (their expected polls are reserved).")
	m.budgetLimit = plain("budget_limit_requests", "The monthly API request budget (0 = none).")
	m.budgetReserve = plain("budget_reserve_requests", "Requests of the monthly budget the daemon leaves for retries, polls and explicit runs.")
	m.budgetPace = plain("budget_pace_seconds", "Time between two partial sends at which the month's budget lasts until its end (0 when not limited).")
	m.budgetNextSend = plain("budget_next_send_timestamp_seconds", "Unix time from which the daemon sends its next partial batch (0 when not limited).")
	m.budgetProjected = plain("budget_projected_requests", "Requests the month will have used at its end if rows keep changing and the daemon sends at its pace.")
	m.reg.MustRegister(newScrapeTime(m))
	if !opts.NoProcessMetrics {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is where the metrics live, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) state(sync string) *syncState {
	st := m.syncs[sync]
	if st == nil {
		st = &syncState{}
		m.syncs[sync] = st
	}
	return st
}

// PassFinished implements connector.Observer. Row counts come from
// BatchDone, so they move while a long pass runs; a pass only updates the
// per-pass series and readiness. The checkpoint cursor is the store's (see
// SetSyncStates), so every replica shows the same.
func (m *Metrics) PassFinished(sum connector.Summary, err error) {
	now := m.now()
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.passes.WithLabelValues(sum.Sync, result).Inc()
	m.passDuration.WithLabelValues(sum.Sync).Observe(sum.Duration.Seconds())
	m.horizonLag.WithLabelValues(sum.Sync).Set(sum.HorizonLag.Seconds())

	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state(sum.Sync)
	if err != nil {
		st.consecutive++
		st.lastErr = err.Error()
	} else {
		st.consecutive = 0
		st.lastErr = ""
	}
	m.failures.WithLabelValues(sum.Sync).Set(float64(st.consecutive))
	var ok time.Time
	if err == nil {
		ok = now
	}
	m.passTimes(sum.Sync, st, now, ok)
}

// passTimes moves the last pass and last success of sync forward to the
// given times (zero: not known), under m.mu: this process's passes and the
// store's record of every process's arrive in any order, and only the
// latest counts. Times count to the microsecond, as the store keeps them,
// so the replica that ran a pass shows the same time as the others.
func (m *Metrics) passTimes(sync string, st *syncState, pass, success time.Time) {
	pass, success = pass.Truncate(time.Microsecond), success.Truncate(time.Microsecond)
	if pass.After(st.lastPass) {
		st.lastPass = pass
		m.lastPass.WithLabelValues(sync).Set(unix(pass))
	}
	if success.After(st.lastSuccess) {
		st.lastSuccess = success
		m.lastSuccess.WithLabelValues(sync).Set(unix(success))
	}
}

// BatchDone implements connector.Observer. Every attempt of a batch is one
// job: the attempts before the last ended "failed" (that is why the engine
// sent another), the last one ended as the batch did.
func (m *Metrics) BatchDone(sync string, b connector.BatchReport) {
	outcome := b.Outcome
	if outcome == "" {
		outcome = "unknown"
	}
	if b.Restored > 0 {
		m.rowsRestored.WithLabelValues(sync).Add(float64(b.Restored))
	}
	if b.Kind != "" {
		// A delete or archive batch: ids, not rows read; no import job.
		m.batches.WithLabelValues(sync, outcome).Inc()
		m.rowsDeleted.WithLabelValues(sync).Add(float64(b.Deleted))
		m.rowsArchived.WithLabelValues(sync).Add(float64(b.Archived))
		return
	}
	m.rowsRead.WithLabelValues(sync).Add(float64(b.Rows + b.Invalid + b.Unchanged))
	m.rowsInvalid.WithLabelValues(sync).Add(float64(b.Invalid))
	m.rowsUnchanged.WithLabelValues(sync).Add(float64(b.Unchanged))
	m.batches.WithLabelValues(sync, outcome).Inc()
	if outcome == "complete" {
		m.rowsSent.WithLabelValues(sync).Add(float64(b.Rows))
		m.rowsCreated.WithLabelValues(sync).Add(float64(b.Created))
		m.rowsUpdated.WithLabelValues(sync).Add(float64(b.Updated))
		m.rowsExisting.WithLabelValues(sync).Add(float64(b.Existing))
		m.rowsRejected.WithLabelValues(sync).Add(float64(b.Rejected))
	}
	if b.Rows == 0 {
		return // nothing was sent: no job
	}
	if b.Attempts > 1 {
		m.jobs.WithLabelValues(sync, "failed").Add(float64(b.Attempts - 1))
	}
	m.jobs.WithLabelValues(sync, outcome).Inc()
	mode := "sync"
	if b.Async {
		mode = "async"
	}
	m.jobDuration.WithLabelValues(sync, mode).Observe(b.Duration.Seconds())
	m.jobPolls.WithLabelValues(sync).Observe(float64(b.Polls))
}

// InFlight implements connector.Observer.
func (m *Metrics) InFlight(sync string, n int) {
	m.inflight.WithLabelValues(sync).Set(float64(n))
}

// ObserveRequest counts one HTTP attempt; pass it as prism.Config.OnRequest.
// The sync is the one the engine named in the request's context
// (connector.WithSyncName); "" for a request made outside a sync.
func (m *Metrics) ObserveRequest(ctx context.Context, r prism.RequestInfo) {
	sync := connector.SyncName(ctx)
	op := r.Op
	if op == "" {
		op = "other"
	}
	code := "error"
	if r.Status > 0 {
		code = strconv.Itoa(r.Status)
	}
	m.requests.WithLabelValues(sync, op, code).Inc()
	if r.Attempt > 1 {
		m.retries.WithLabelValues(sync, op).Inc()
	}
	m.requestDuration.WithLabelValues(sync, op).Observe(r.Duration.Seconds())
}

// Budget is the request budget as the gauges show it (see budget.Snapshot).
type Budget struct {
	Used, Limit, Reserve int
	Pace                 time.Duration
	NextSend             time.Time // zero: nothing limits the next send
	Projected            int
}

// SetBudget sets the budget gauges. The count is the checkpoint store's, so
// every replica shows the same.
func (m *Metrics) SetBudget(b Budget) {
	m.budgetUsed.Set(float64(b.Used))
	m.budgetLimit.Set(float64(b.Limit))
	m.budgetReserve.Set(float64(b.Reserve))
	m.budgetPace.Set(b.Pace.Seconds())
	next := 0.0
	if !b.NextSend.IsZero() {
		next = float64(b.NextSend.UnixMilli()) / 1000
	}
	m.budgetNextSend.Set(next)
	m.budgetProjected.Set(float64(b.Projected))
}

// Failing describes a sync whose recent passes all failed.
type Failing struct {
	Sync     string
	Failures int    // consecutive failed passes
	LastErr  string // the last pass's error
}

// Failing lists, sorted by name, the syncs that failed at least the
// threshold of passes in a row.
func (m *Metrics) Failing() []Failing {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Failing
	for name, st := range m.syncs {
		if st.consecutive >= m.threshold {
			out = append(out, Failing{Sync: name, Failures: st.consecutive, LastErr: st.lastErr})
		}
	}
	slices.SortFunc(out, func(a, b Failing) int { return strings.Compare(a.Sync, b.Sync) })
	return out
}

// Ready fails when a sync is failing past the threshold. The context is
// unused; it makes Ready fit where other checks do.
func (m *Metrics) Ready(context.Context) error {
	var errs []error
	for _, f := range m.Failing() {
		errs = append(errs, fmt.Errorf("sync %s failed %d passes in a row: %s", f.Sync, f.Failures, f.LastErr))
	}
	return errors.Join(errs...)
}

// cursorLayouts are the text forms PostgreSQL gives time-typed cursors in a
// session with TimeZone=UTC and DateStyle=ISO (as the engine's sessions are):
// timestamptz, timestamp, date.
var cursorLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02",
}

// ParseCursorTime reads a checkpoint cursor as a time, if it is one. A
// timestamp without zone is taken as UTC, the engine's session time zone.
func ParseCursorTime(s string) (time.Time, bool) {
	for _, l := range cursorLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// scrapeTime exports the values that depend on the time of the scrape:
// checkpoint age and this month's request count (which resets on the 1st
// even if no request was made).
type scrapeTime struct {
	m   *Metrics
	age *prometheus.Desc
}

func newScrapeTime(m *Metrics) scrapeTime {
	return scrapeTime{
		m: m,
		age: prometheus.NewDesc(namespace+"_checkpoint_age_seconds",
			"Now minus the checkpoint's cursor value (only for time-typed cursors): how stale the CRM may be.", []string{"sync"}, nil),
	}
}

func (c scrapeTime) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.age
}

func (c scrapeTime) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := m.now()
	m.mu.Lock()
	type age struct {
		sync string
		d    time.Duration
	}
	var ages []age
	for name, st := range m.syncs {
		if !st.cursor.IsZero() {
			ages = append(ages, age{name, now.Sub(st.cursor)})
		}
	}
	m.mu.Unlock()
	for _, a := range ages {
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, a.d.Seconds(), a.sync)
	}
}
