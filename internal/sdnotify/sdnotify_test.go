package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a unixgram socket like systemd's and returns its name and a
// channel of the datagrams received.
func listen(t *testing.T, name string) <-chan string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func shortDir(t *testing.T) string {
	t.Helper()
	// t.TempDir can exceed the 108-byte limit of a unix socket path.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram received")
		return ""
	}
}

func TestNotifyPath(t *testing.T) {
	sock := filepath.Join(shortDir(t), "notify")
	ch := listen(t, sock)
	n := FromEnv(func(k string) (string, bool) {
		if k == "NOTIFY_SOCKET" {
			return sock, true
		}
		return "", false
	})
	if !n.Enabled() {
		t.Fatal("notifier with a socket is not enabled")
	}
	ctx := context.Background()
	if err := n.Notify(ctx, Ready, "STATUS=syncing"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch); got != "READY=1\nSTATUS=syncing" {
		t.Errorf("got %q", got)
	}
	if err := n.Notify(ctx, Stopping); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch); got != "STOPPING=1" {
		t.Errorf("got %q", got)
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := fmt.Sprintf("@prismsync-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	ch := listen(t, name)
	if err := New(name).Notify(context.Background(), Ready); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch); got != "READY=1" {
		t.Errorf("got %q", got)
	}
}

func TestDisabledAndErrors(t *testing.T) {
	ctx := context.Background()
	var nilN *Notifier
	for _, n := range []*Notifier{nilN, New(""), FromEnv(func(string) (string, bool) { return "", false })} {
		if n.Enabled() {
			t.Error("notifier without a socket is enabled")
		}
		if err := n.Notify(ctx, Ready); err != nil {
			t.Errorf("no-op Notify = %v", err)
		}
		n.RunWatchdog(ctx, time.Millisecond, nil, nil) // returns at once
	}
	if err := New("relative/sock").Notify(ctx, Ready); err == nil {
		t.Error("relative socket path accepted")
	}
	missing := filepath.Join(shortDir(t), "absent")
	if err := New(missing).Notify(ctx, Ready); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Notify to a missing socket = %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		env  map[string]string
		want time.Duration
		ok   bool
	}{
		{map[string]string{}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 30 * time.Second, true},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}, 30 * time.Second, true},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0, false},
		{map[string]string{"WATCHDOG_USEC": "soon"}, 0, false},
	} {
		got, ok := WatchdogInterval(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if got != tc.want || ok != tc.ok {
			t.Errorf("WatchdogInterval(%v) = %v, %v; want %v, %v", tc.env, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRunWatchdog(t *testing.T) {
	sock := filepath.Join(shortDir(t), "notify")
	ch := listen(t, sock)
	n := New(sock)
	ctx, cancel := context.WithCancel(context.Background())
	healthy := make(chan bool, 1)
	healthy <- true
	alive := func() bool {
		v := <-healthy
		healthy <- v
		return v
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, 20*time.Millisecond, alive, func(err error) { t.Error(err) })
	}()
	for range 3 {
		if got := receive(t, ch); got != Watchdog {
			t.Fatalf("got %q, want %q", got, Watchdog)
		}
	}
	// A process that says it is wedged stops pinging. Drain what was
	// already sent, then expect silence for several intervals.
	<-healthy
	healthy <- false
	drainUntilQuiet(t, ch, 200*time.Millisecond)
	<-healthy
	healthy <- true
	if got := receive(t, ch); got != Watchdog {
		t.Fatalf("after recovery got %q", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after cancel")
	}
}

// drainUntilQuiet reads datagrams until none arrives for quiet; more than
// two (pings already in flight when alive turned false) fail the test.
func drainUntilQuiet(t *testing.T, ch <-chan string, quiet time.Duration) {
	t.Helper()
	extra := 0
	for {
		select {
		case <-ch:
			extra++
			if extra > 2 {
				t.Fatal("watchdog kept pinging while alive() returned false")
			}
		case <-time.After(quiet):
			return
		}
	}
}

// fakeClock is a settable clock for Progress.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestProgress(t *testing.T) {
	c := &fakeClock{}
	c.t.Store(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixNano())
	p := NewProgress(c.now)
	if !p.Within(time.Minute) {
		t.Error("a new Progress is not within its interval")
	}
	c.advance(time.Minute)
	if !p.Within(time.Minute) {
		t.Error("exactly one interval after the beat is not within")
	}
	c.advance(time.Nanosecond)
	if p.Within(time.Minute) {
		t.Error("past the interval without a beat is still within")
	}
	p.Beat()
	if !p.Within(0) {
		t.Error("a beat just now is not within 0")
	}
	var none *Progress
	if !none.Within(0) {
		t.Error("a nil Progress gates the watchdog")
	}
}

// The watchdog pings on a tick only while the loop's heartbeat is recent:
// ticks are sent by the test, the clock is the test's, and what reached
// the socket is counted once the watchdog has returned.
func TestWatchdogPingsOnlyWhileProgressing(t *testing.T) {
	sock := filepath.Join(shortDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &fakeClock{}
	p := NewProgress(c.now)
	const interval = 10 * time.Second
	// Ticks are taken one at a time, and each tick's check is reported
	// before the test moves the clock again.
	tick := make(chan time.Time)
	checked := make(chan bool)
	alive := func() bool {
		ok := p.Within(interval)
		checked <- ok
		return ok
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(sock).watchdog(ctx, tick, time.Second, alive, func(err error) { t.Error(err) })
	}()
	// pings counts what reached the socket once the watchdog returned: a
	// marker sent after it is queued behind every ping, so reading up to
	// the marker reads them all without guessing how long to wait.
	pings := func() int {
		t.Helper()
		if err := New(sock).Notify(context.Background(), "END=1"); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n := 0
		buf := make([]byte, 64)
		for {
			m, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				t.Fatal(err)
			}
			switch string(buf[:m]) {
			case "END=1":
				return n
			case Watchdog:
				n++
			default:
				t.Fatalf("got %q", buf[:m])
			}
		}
	}
	steps := []struct {
		advance time.Duration
		beat    bool
	}{
		{5 * time.Second, false},  // 5s since the start: ping
		{4 * time.Second, false},  // 9s: ping
		{2 * time.Second, false},  // 11s, stuck: no ping
		{time.Hour, false},        // still stuck: no ping
		{0, true},                 // progress again: ping
		{10 * time.Second, false}, // 10s after it: ping
	}
	want := []bool{true, true, false, false, true, true}
	for i, s := range steps {
		c.advance(s.advance)
		if s.beat {
			p.Beat()
		}
		tick <- time.Time{}
		if ok := <-checked; ok != want[i] {
			t.Errorf("step %d: within = %v, want %v", i+1, ok, want[i])
		}
	}
	// One more tick after the last step: the loop takes it only once the
	// last step's ping was sent.
	c.advance(time.Hour)
	tick <- time.Time{}
	<-checked
	cancel()
	<-done
	if n := pings(); n != 4 {
		t.Errorf("%d pings for 6 ticks, 2 of them without progress; want 4", n)
	}
}
