// Package sdnotify tells systemd about the service's state through the
// sd_notify protocol: one datagram of "KEY=VALUE" lines to the unix socket
// named by NOTIFY_SOCKET. prismsync runs as a Type=notify unit, so systemd
// considers it started only after READY=1 (the HTTP endpoint is up and the
// schedulers run), shows STOPPING=1 while batches drain, and restarts it when
// WATCHDOG=1 pings stop arriving within WatchdogSec. The pings come from
// a ticker but are sent only while the work loop's Progress has beaten
// within WatchdogSec, so a scheduler that stopped dispatching is restarted
// although the process still runs.
//
// The protocol is a few lines, so we keep our own rather than a dependency.
// Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
package sdnotify
