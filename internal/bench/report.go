package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// Print writes the report as prismsync bench prints it.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	rate := func(n int64, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	s := r.Summary
	fmt.Fprintf(w, "prismsync bench: %d rows, batch %d, inflight %d, job latency %s, fake's sync threshold %d objects; %d CPUs, GOMAXPROCS %d, %s\n",
		c.Rows, c.Batch, c.Inflight, c.Latency, c.Threshold, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	index, fp := "no index on (updated_at, id)", "off"
	if c.Index {
		index = "index on (updated_at, id)"
	}
	if c.Fingerprints {
		fp = "on"
	}
	table := c.Table
	if table == "" {
		table = Wide
	}
	fmt.Fprintf(w, "  table          %s, %s; change fingerprints %s\n", table, index, fp)
	fmt.Fprintf(w, "  seed           %d rows in %s                 (load avg %s)\n",
		c.Rows, r.SeedDuration.Round(time.Millisecond), r.SeedLoad)
	copyRate := rate(r.CopyRows, r.CopyDuration)
	fmt.Fprintf(w, "  COPY ceiling   %d rows, %s in %s = %.0f rows/s; PostgreSQL %.1f µs/row   (load avg %s)\n",
		r.CopyRows, mb(r.CopyBytes), r.CopyDuration.Round(time.Millisecond), copyRate,
		float64(r.CopyPostgresCPU.Microseconds())/float64(max(1, r.CopyRows)), r.CopyLoad)
	e2e := rate(int64(s.Rows), s.Duration)
	ratio := 0.0
	if copyRate > 0 {
		ratio = e2e / copyRate
	}
	fmt.Fprintf(w, "  end to end     %d rows in %s = %.0f rows/s = %.3f of COPY   (load avg %s)\n",
		s.Rows, s.Duration.Round(time.Millisecond), e2e, ratio, r.SyncLoad)
	fmt.Fprintf(w, "                 sent %d · created %d · updated %d · invalid %d · rejected %d · batches %d · mean batch %s\n",
		s.Sent, s.Created, s.Updated, s.Invalid, s.Rejected, s.Batches, r.BatchTime.Round(time.Millisecond))
	if g := r.BatchGaps; len(g) > 0 {
		med, top := g[len(g)/2], g[len(g)-1]
		fmt.Fprintf(w, "  commits        first after %s; then one every %s (median), 99th percentile %s, slowest %s = %.1f × the median\n",
			r.FirstBatch.Round(time.Millisecond), med.Round(10*time.Microsecond), g[len(g)*99/100].Round(10*time.Microsecond),
			top.Round(10*time.Microsecond), float64(top)/float64(max(1, med)))
	}
	polls := 0.0
	if r.AsyncJobs > 0 {
		polls = float64(r.Polls) / float64(r.AsyncJobs)
	}
	fmt.Fprintf(w, "  API requests   %d (%d imports, %d polls; %d async jobs, %.2f polls per async job; %d retries, %d non-2xx)\n",
		r.Requests, r.Imports, r.Polls, r.AsyncJobs, polls, r.Retries, r.FailedCalls)
	limit := "off"
	if r.RateLimit > 0 {
		limit = fmt.Sprintf("%g/s", r.RateLimit)
	}
	fmt.Fprintf(w, "  client         first poll %s, max poll interval %s, rate limit %s\n", r.FirstPoll, r.MaxPoll, limit)
	fmt.Fprintf(w, "  peak RSS       %s (prismsync's process only; %s before the sync phase). PostgreSQL and the fake API run in their own processes\n",
		mb(r.MaxRSS), mb(r.MaxRSSBefore))
	fmt.Fprintf(w, "  live heap      %s at most after a GC during the sync (GOGC %s lets the heap grow to about 1+GOGC/100 times that)\n",
		mb(r.PeakLiveHeap), gogc())
	perRow := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(1, s.Rows)) }
	fmt.Fprintf(w, "  CPU            prismsync %s in the sync phase (%.1f µs/row); PostgreSQL %s in the sync phase (%.1f µs/row); fake API %s over its life (%.1f µs/row, peak RSS %s)\n",
		r.SyncCPU.Round(time.Millisecond), perRow(r.SyncCPU), r.PostgresCPU.Round(time.Millisecond), perRow(r.PostgresCPU),
		r.FakeCPU.Round(time.Millisecond), perRow(r.FakeCPU), mb(r.FakeRSS))
	fmt.Fprintf(w, "  fake API saw   %d requests, %d imports (%d async), %d polls, %d objects, %d records stored\n",
		r.Fake.Requests, r.Fake.Imports, r.Fake.AsyncImports, r.Fake.Polls, r.Fake.Rows, r.Fake.Records)
	printStatements(w, r.Statements, s.Rows)
	if r.AsyncJobs == 0 {
		// Synchronous imports wait for no poll: no latency bound applies.
		fmt.Fprintf(w, "  latency bound  none: every import completed synchronously (no job to wait for)\n")
		return
	}
	// Every job waits for its first poll: with an instant API that delay,
	// not the machine, bounds throughput.
	wait := max(c.Latency, r.FirstPoll)
	ceiling := float64(c.Inflight*c.Batch) / wait.Seconds()
	what := "job latency"
	if r.FirstPoll > c.Latency {
		what = "first poll delay"
	}
	fmt.Fprintf(w, "  latency bound  inflight × batch / %s = %d × %d / %s = %.0f rows/s; achieved %.0f%%\n",
		what, c.Inflight, c.Batch, wait, ceiling, 100*e2e/ceiling)
}

// gogc is the GOGC setting in effect, for the live-heap line.
func gogc() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return "100"
}
