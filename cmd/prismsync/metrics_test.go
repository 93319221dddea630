package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
)

// series returns every series of the metric family name as label sets
// with their values (a histogram's value is its sample count).
func series(t *testing.T, a *app, name string) []labelled {
	t.Helper()
	fams, err := a.metrics.Registry().Gather()
	mustT(t, err)
	var out []labelled
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelled{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				l.labels[lp.GetName()] = lp.GetValue()
			}
			l.value = metricValue(m)
			out = append(out, l)
		}
	}
	return out
}

type labelled struct {
	labels map[string]string
	value  float64
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// A pass through the real client counts every request under the sync that
// made it and its operation: imports and the polls of async jobs.
func TestRequestsLabelledBySyncAndOp(t *testing.T) {
	env, fake := onceEnv(t, "right-key") // 250 rows in batches of 100: async jobs (polled) and a sync import
	a, err := newApp(context.Background(), envconfig.MapLookuper(env), &bytes.Buffer{})
	mustT(t, err)
	defer a.close()
	sy := a.syncer(a.syncs[0])
	if _, _, err := a.runPass(context.Background(), sy); err != nil {
		t.Fatal(err)
	}
	byOp := map[string]float64{}
	for _, s := range series(t, a, "prismsync_api_requests_total") {
		if s.labels["sync"] != "items" {
			t.Errorf("request series %v: want sync=items", s.labels)
		}
		byOp[s.labels["op"]] += s.value
	}
	st := fake.Stats()
	if byOp["import"] != float64(st.Imports) || byOp["poll"] != float64(st.Polls) || st.Polls == 0 {
		t.Errorf("requests by op = %v; the fake saw %d imports and %d polls", byOp, st.Imports, st.Polls)
	}
}

// value returns the value of the one series of name whose labels include
// want, failing the test unless exactly one matches.
func value(t *testing.T, a *app, name string, want ...string) float64 {
	t.Helper()
	var found []labelled
next:
	for _, s := range series(t, a, name) {
		for i := 0; i+1 < len(want); i += 2 {
			if s.labels[want[i]] != want[i+1] {
				continue next
			}
		}
		found = append(found, s)
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1", name, want, len(found))
	}
	return found[0].value
}

// The metric set right after a restart, before any pass: every per-sync
// series is there at 0, so rate() and absent() alerts hold after a
// restart; what the store keeps (the checkpoint, rejects) is there from the
// first scrape; and the build is named.
func TestMetricsRightAfterStart(t *testing.T) {
	ctx := context.Background()
	env, _ := onceEnv(t, "right-key")
	env["HTTP_ADDR"] = "127.0.0.1:0"
	a, err := newApp(ctx, envconfig.MapLookuper(env), &bytes.Buffer{})
	mustT(t, err)
	defer a.close()
	// What an earlier run left in the store.
	mustT(t, a.store.Commit(ctx, "items", "", checkpoint.Position{Cursor: "2026-01-05", Key: []string{"4"}}, "fp",
		[]checkpoint.Reject{{RowKey: []string{"3"}, Code: "invalid", Message: "bad"}}, nil))
	o, err := startOps(ctx, a, opsOptions{endpoint: true, env: noEnv})
	mustT(t, err)
	defer o.stop()
	_, body := httpGet(t, "http://"+o.addr+"/metrics")

	for _, name := range []string{
		"prismsync_rows_read_total", "prismsync_rows_sent_total", "prismsync_rows_created_total", "prismsync_rows_updated_total",
		"prismsync_rows_skipped_unchanged_total", "prismsync_rows_matched_existing_total", "prismsync_rows_invalid_total",
		"prismsync_rows_rejected_total", "prismsync_batches_total", "prismsync_jobs_total", "prismsync_passes_total",
		"prismsync_job_duration_seconds_count", "prismsync_job_poll_requests_count", "prismsync_pass_duration_seconds_count",
		"prismsync_api_requests_total", "prismsync_api_retries_total", "prismsync_api_request_duration_seconds_count",
		"prismsync_inflight_batches", "prismsync_consecutive_failed_passes", "prismsync_last_success_timestamp_seconds",
		"prismsync_last_pass_timestamp_seconds", "prismsync_commit_horizon_lag_seconds", "prismsync_schedule_interval_seconds",
		"prismsync_deferred_rows",
	} {
		re := regexp.MustCompile(`(?m)^` + name + `\{[^}]*sync="items"[^}]*\} 0$`)
		if !re.MatchString(body) {
			t.Errorf("/metrics right after start has no %s{sync=\"items\"} at 0", name)
		}
	}
	for _, want := range []string{
		`prismsync_passes_total{result="failed",sync="items"} 0`,
		`prismsync_api_requests_total{code="202",op="import",sync="items"} 0`,
		`prismsync_api_retries_total{op="poll",sync="items"} 0`,
		`prismsync_rejected_rows{sync="items"} 1`,
		`prismsync_checkpoint_cursor_timestamp_seconds{sync="items"} 1.7675712e+09`,
		`prismsync_build_info{commit="` + commit() + `",go_version="` + runtime.Version() + `",version="` + version() + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics right after start lacks %s", want)
		}
	}
}

// A pass that cannot take its lease (the database refuses connections) is
// a failed pass of its sync: counted, named in the log, and it counts
// towards readiness.
func TestLeaseFailureCounted(t *testing.T) {
	ctx := context.Background()
	env, _ := onceEnv(t, "right-key")
	var logs bytes.Buffer
	a, err := newApp(ctx, envconfig.MapLookuper(env), &logs)
	mustT(t, err)
	defer a.close()
	// The lease takes a connection of its own; the pool's stay open. A
	// database cannot close itself to connections: do it from another.
	cc := a.pool.Config().ConnConfig.Copy()
	db := cc.Database
	cc.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cc)
	mustT(t, err)
	defer admin.Close(ctx)
	allow := func(on bool) {
		_, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, pgx.Identifier{db}.Sanitize(), on))
		mustT(t, err)
	}
	allow(false)
	defer allow(true) // before admin closes

	sy := a.syncer(a.syncs[0])
	sum, held, err := a.runPass(ctx, sy)
	if err == nil || held || !strings.Contains(err.Error(), "sync items: take lease") {
		t.Fatalf("runPass with the database refusing connections = held %v, %v", held, err)
	}
	logSummary(a.log, sum, err)
	if !strings.Contains(logs.String(), `"sync":"items"`) || strings.Contains(logs.String(), `"sync":""`) {
		t.Errorf("the failed pass is not logged under its sync:\n%s", logs.String())
	}
	if got := value(t, a, "prismsync_passes_total", "sync", "items", "result", "failed"); got != 1 {
		t.Errorf("failed passes = %v, want 1", got)
	}
	if got := value(t, a, "prismsync_consecutive_failed_passes", "sync", "items"); got != 1 {
		t.Errorf("consecutive failed passes = %v, want 1", got)
	}
	if got := value(t, a, "prismsync_last_pass_timestamp_seconds", "sync", "items"); got == 0 {
		t.Error("the failed pass did not set the last pass")
	}

	allow(true)
	if _, _, err := a.runPass(ctx, sy); err != nil {
		t.Fatal(err)
	}
	if got := value(t, a, "prismsync_passes_total", "sync", "items", "result", "ok"); got != 1 {
		t.Errorf("ok passes = %v, want 1", got)
	}
	if got := value(t, a, "prismsync_consecutive_failed_passes", "sync", "items"); got != 0 {
		t.Errorf("consecutive failed passes after a success = %v", got)
	}
}

// Two replicas on one store report the same sync state, whichever ran the
// pass; the one that ran it does so right after the pass, without waiting
// for the periodic refresh.
func TestReplicasReportTheSameState(t *testing.T) {
	ctx := context.Background()
	env, _ := onceEnv(t, "right-key")
	apps := make([]*app, 2)
	for i := range apps {
		a, err := newApp(ctx, envconfig.MapLookuper(env), &bytes.Buffer{})
		mustT(t, err)
		defer a.close()
		o, err := startOps(ctx, a, opsOptions{env: noEnv})
		mustT(t, err)
		defer o.stop()
		apps[i] = a
	}
	leader, standby := apps[0], apps[1]
	if _, _, err := leader.runPass(ctx, leader.syncer(leader.syncs[0])); err != nil {
		t.Fatal(err)
	}
	const cursor = "prismsync_checkpoint_cursor_timestamp_seconds"
	wantCursor := float64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 250).Unix())
	eventually(t, "the checkpoint in the leader's metrics", func() bool {
		s := series(t, leader, cursor)
		return len(s) == 1 && s[0].value == wantCursor
	})
	eventually(t, "the run record", func() bool {
		r, ok, err := leader.store.LastRun(ctx, "items")
		return err == nil && ok && r.OK
	})
	for _, a := range apps {
		refreshSyncs(ctx, a)
		refreshBudget(ctx, a)
	}
	for _, name := range []string{cursor, "prismsync_last_pass_timestamp_seconds", "prismsync_last_success_timestamp_seconds",
		"prismsync_rejected_rows", "prismsync_deferred_rows", "prismsync_budget_used_requests"} {
		var labels []string
		if name != "prismsync_budget_used_requests" {
			labels = []string{"sync", "items"}
		}
		l, s := value(t, leader, name, labels...), value(t, standby, name, labels...)
		if l != s {
			t.Errorf("%s: leader %v, standby %v", name, l, s)
		}
		if l == 0 && (name == cursor || strings.HasPrefix(name, "prismsync_last_") || name == "prismsync_budget_used_requests") {
			t.Errorf("%s = 0 after a successful pass", name)
		}
	}
	// The standby ran nothing itself.
	if got := value(t, standby, "prismsync_passes_total", "sync", "items", "result", "ok"); got != 0 {
		t.Errorf("standby counted %v passes", got)
	}
}
