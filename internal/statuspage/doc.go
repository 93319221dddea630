// Package statuspage renders prismsync's status page: one server-rendered
// HTML document (html/template, no script, no build step) served at GET /
// of the ops endpoint, next to /healthz, /readyz and /metrics. It shows one
// card per sync (its state, last pass and counts, checkpoint and age,
// rejects, deferred rows), the month's request budget (used, left, pace,
// next send) and the last passes, and reloads itself with a meta refresh.
// It is laid out for a phone first: cards stack, the passes table scrolls
// inside its box, and nothing is wider than the screen.
//
// The package only renders: the caller's Source says what to show (cmd
// reads the checkpoint store, which every replica shares, so every replica
// shows the same page). html/template escapes everything it prints, the
// Content-Security-Policy forbids scripts, and nothing secret is given to
// it (the caller redacts error texts).
package statuspage
