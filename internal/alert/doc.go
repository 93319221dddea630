// Package alert tells a person when a sync breaks, without Prometheus: a
// JSON POST to a webhook (ALERT_WEBHOOK_URL) each time a sync's state
// changes between healthy, failing and budget (its rows wait for the
// month's request budget), recovery included; not once per failing pass.
//
// Observe is called after every pass and never blocks it: a change is put
// on a bounded queue (a full queue drops the event and counts it), and Run,
// a goroutine of its own, delivers the queue in order, retrying a network
// error, 408, 429 or 5xx with exponential backoff (1s, doubling, capped at
// 5 minutes, 8 attempts); another 4xx means the receiver will not take it,
// so it is logged and dropped. When Run's context ends, what is still
// queued gets one attempt each within a few seconds, so a one-shot run's
// last change is not lost. Messages pass through Options.Redact before
// they are queued, so no secret reaches the receiver even if an error
// carried one, and the webhook URL (which may hold a token) is logged by
// its host only.
package alert
