// Package telemetry turns what prismsync does into Prometheus metrics and
// health endpoints, so an operator can see the daemon's state without reading
// its logs.
//
// Metrics implements connector.Observer (fed by the engine) and offers
// ObserveRequest (fed by the API client's OnRequest hook, which labels each
// request with the sync named in its context). AddSyncs creates every
// per-sync series at zero when the daemon starts, so rate() and absent()
// work after a restart. SetSyncStates and SetBudget set the gauges that
// describe shared state (checkpoint, last pass and success, rejects, the
// request budget) from the checkpoint store, so every replica reports the
// same values. prismsync_build_info names the build.
//
// Metrics registers on its own prometheus.Registry, never the global
// default one, so two instances (in tests, or two daemons in one process)
// never collide. Handler serves /healthz (the process answers), /readyz (a
// caller-supplied check plus "no sync has failed too many passes in a
// row") and /metrics; ServeListener runs it on a listener the caller opened
// until its context ends.
//
// Files: metrics.go (the metrics and what the engine and client report),
// syncs.go (series from the start, the store-fed sync state), http.go (the
// endpoint).
package telemetry
