package main

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prismsync/prismsync/internal/sdnotify"
)

// The daemon's scheduler beats the watchdog's heartbeat from a job of its
// own, so beats stop when the scheduler stops dispatching.
func TestDaemonBeatsTheHeartbeat(t *testing.T) {
	beats := make(chan struct{}, 100)
	p := sdnotify.NewProgress(func() time.Time {
		select {
		case beats <- struct{}{}:
		default:
		}
		return time.Now()
	})
	<-beats // NewProgress's own
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon(ctx, slog.New(slog.DiscardHandler), time.Second, nil, nil, nil, nil, heartbeat{every: 5 * time.Millisecond, progress: p})
	}()
	for i := range 3 {
		select {
		case <-beats:
		case <-time.After(10 * time.Second):
			t.Fatalf("beat %d never came", i+1)
		}
	}
	cancel()
	mustT(t, <-done)
}

// lineWriter hands each log line to a channel.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

// Without progress the ops watchdog does not ping and says why; once the
// scheduler beats again, pings resume.
func TestOpsWatchdogFollowsProgress(t *testing.T) {
	a, _ := fileApp(t, "")
	logs := make(lineWriter, 1000)
	a.log = slog.New(slog.NewTextHandler(logs, nil))
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixNano())
	p := sdnotify.NewProgress(func() time.Time { return time.Unix(0, now.Load()) })
	now.Add(int64(time.Hour)) // the scheduler has been stuck for an hour
	sock, msgs := notifySocket(t)
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "40000"}
	o, err := startOps(context.Background(), a, opsOptions{env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, progress: p})
	mustT(t, err)
	defer o.stop()
	waitMessage(t, msgs, "READY=1")
	timeout := time.After(10 * time.Second)
	for warned := false; !warned; {
		select {
		case line := <-logs:
			warned = strings.Contains(line, "the scheduler made no progress")
		case m := <-msgs:
			if m == sdnotify.Watchdog {
				t.Fatal("pinged without progress")
			}
		case <-timeout:
			t.Fatal("the watchdog never noticed the missing progress")
		}
	}
	select {
	case m := <-msgs:
		if m == sdnotify.Watchdog {
			t.Fatal("pinged without progress")
		}
	default:
	}
	p.Beat()
	waitMessage(t, msgs, sdnotify.Watchdog)
}
