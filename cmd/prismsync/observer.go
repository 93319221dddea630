package main

import (
	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/internal/alert"
	"github.com/prismsync/prismsync/internal/telemetry"
)

// opsObserver is what the engine reports to: the telemetry observer, plus
// the queue of passes (app.runPass records each) for the run history, and
// the webhook alerts (which queue for their own goroutine).
// newApp builds it. Observer methods must not do I/O, and neither may a
// pass wait for the store, so passes are queued for the writer startOps
// starts (recordRuns, in ops.go). A command that starts no ops (backfill,
// rejects --retry) records no runs: nothing drains its queue, and a full
// queue drops records rather than block.
type opsObserver struct {
	*telemetry.Metrics
	runs   chan runRecord
	alerts *alert.Notifier // nil without ALERT_WEBHOOK_URL
	// passed is signalled after every pass, so the store-fed gauges are
	// read again at once (refreshFromStore in ops.go).
	passed chan struct{}
}

func newOpsObserver(m *telemetry.Metrics) *opsObserver {
	return &opsObserver{Metrics: m, runs: make(chan runRecord, 256), passed: make(chan struct{}, 1)}
}

type runRecord struct {
	sync string
	run  checkpoint.Run
}

var _ connector.Observer = (*opsObserver)(nil)

// PassFinished implements connector.Observer.
func (o *opsObserver) PassFinished(sum connector.Summary, err error) {
	o.Metrics.PassFinished(sum, explain(err)) // for /readyz, as in the log
	select {
	case o.passed <- struct{}{}:
	default: // a refresh is already due
	}
}

// recordPass queues a pass for the run history and the alerts.
func (o *opsObserver) recordPass(p passRecord) {
	o.alerts.Observe(alertPass(p))
	select {
	case o.runs <- runRecord{p.sync, p.run}:
	default:
		// The store is slow or down; the next pass records again. Never
		// block the engine for status bookkeeping.
	}
}
