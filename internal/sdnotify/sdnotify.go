package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The states prismsync sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends states to the service manager. The zero value (and a nil
// *Notifier) sends nothing, so callers never branch on "under systemd?".
type Notifier struct {
	socket string
}

// New returns a Notifier for socket, a file system path or, starting with
// "@", a Linux abstract socket name (Go's net package maps the "@" to the
// leading NUL byte). An empty socket gives a no-op Notifier.
func New(socket string) *Notifier { return &Notifier{socket: socket} }

// FromEnv reads NOTIFY_SOCKET through lookup (os.LookupEnv in production).
func FromEnv(lookup func(string) (string, bool)) *Notifier {
	s, _ := lookup("NOTIFY_SOCKET")
	return New(s)
}

// Enabled reports whether states are actually sent.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Notify sends one datagram with the given states, one per line (e.g. Ready,
// "STATUS=syncing 3 tables").
func (n *Notifier) Notify(ctx context.Context, states ...string) error {
	if !n.Enabled() {
		return nil
	}
	msg := strings.Join(states, "\n")
	if msg == "" {
		return errors.New("sdnotify: empty message")
	}
	if !strings.HasPrefix(n.socket, "/") && !strings.HasPrefix(n.socket, "@") {
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither an absolute path nor an abstract name (@...)", n.socket)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixgram", n.socket)
	if err != nil {
		return fmt.Errorf("sdnotify: connect to %s: %w", n.socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetWriteDeadline(dl); err != nil {
			return fmt.Errorf("sdnotify: %w", err)
		}
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.socket, err)
	}
	return nil
}

// WatchdogInterval returns the WatchdogSec systemd set for this process
// (WATCHDOG_USEC, for the process WATCHDOG_PID names if set), and false when
// no watchdog is expected.
func WatchdogInterval(lookup func(string) (string, bool)) (time.Duration, bool) {
	usec, ok := lookup("WATCHDOG_USEC")
	if !ok || usec == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	// A watchdog meant for a parent (e.g. a shell wrapper) is not ours.
	if pid, ok := lookup("WATCHDOG_PID"); ok && pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return time.Duration(n) * time.Microsecond, true
}

// RunWatchdog sends WATCHDOG=1 every interval/2 (as sd_watchdog_enabled(3)
// advises, so one late tick does not kill the service) until ctx ends.
// alive, if not nil, is asked before each ping: returning false skips the
// ping, so a wedged process is restarted by systemd (Progress.Within makes
// one from the work loop's heartbeat). Errors go to onErr (may be nil);
// sending goes on, since systemd may come back.
func (n *Notifier) RunWatchdog(ctx context.Context, interval time.Duration, alive func() bool, onErr func(error)) {
	if !n.Enabled() || interval <= 0 {
		return
	}
	t := time.NewTicker(max(interval/2, time.Millisecond))
	defer t.Stop()
	n.watchdog(ctx, t.C, interval/2+time.Millisecond, alive, onErr)
}

// watchdog is RunWatchdog driven by tick, so tests choose the instants.
func (n *Notifier) watchdog(ctx context.Context, tick <-chan time.Time, timeout time.Duration, alive func() bool, onErr func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if alive != nil && !alive() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := n.Notify(sctx, Watchdog)
		cancel()
		if err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
	}
}

// Progress is the heartbeat of a work loop, for the watchdog: the loop
// calls Beat whenever it does its work (a scheduler dispatching its jobs),
// and the watchdog pings only while Within(interval) holds, so a loop that
// is stuck, not merely a process that still runs a ticker, gets restarted.
// The zero value is not usable; a nil *Progress is always within.
type Progress struct {
	now  func() time.Time
	last atomic.Int64 // UnixNano of the last Beat; 0 = none yet
}

// NewProgress returns a Progress reading time from now (time.Now in
// production), counting its creation as the first beat: a loop just
// started has not had time to show progress yet.
func NewProgress(now func() time.Time) *Progress {
	p := &Progress{now: now}
	p.Beat()
	return p
}

// Beat records progress now.
func (p *Progress) Beat() { p.last.Store(p.now().UnixNano()) }

// Within reports whether the last Beat was at most d ago.
func (p *Progress) Within(d time.Duration) bool {
	if p == nil {
		return true
	}
	return p.now().Sub(time.Unix(0, p.last.Load())) <= d
}
