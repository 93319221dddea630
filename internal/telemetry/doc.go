// Package telemetry turns what prismsync does into Prometheus metrics and
// health endpoints, so an operator can see the daemon's state without reading
// its logs.
//
// Metrics implements connector.Observer (fed by the engine) and offers
// ObserveRequest (fed by the API client's OnRequest hook). It registers on its
// own prometheus.Registry, never the global default one, so two instances (in
// tests, or two daemons in one process) never collide. Handler serves
// /healthz (the process answers), /readyz (a caller-supplied check plus "no
// sync has failed too many passes in a row") and /metrics; ServeListener
// runs it on a listener the caller opened until its context ends.
package telemetry
