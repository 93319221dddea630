package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/internal/telemetry"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or 10s pass: the ops goroutines work
// asynchronously, and polling with a deadline is how the test waits.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notifySocket listens like systemd does and returns the messages received.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "psn") // short: unix socket paths are limited
	mustT(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	mustT(t, err)
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// waitMessage skips other messages (watchdog pings) until one starts with
// prefix.
func waitMessage(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-timeout:
			t.Fatalf("no sd_notify message %q", prefix)
		}
	}
}

func fileApp(t *testing.T, httpAddr string) (*app, checkpoint.Store) {
	t.Helper()
	store, err := checkpoint.OpenFile(filepath.Join(t.TempDir(), "checkpoint.json"))
	mustT(t, err)
	t.Cleanup(func() { store.Close() })
	m := telemetry.New(telemetry.Options{})
	cfg := &Config{HTTPAddr: httpAddr, MonthlyRequests: 1000, BudgetReserve: "5%", HistoryKeep: 1000}
	log := slog.New(slog.DiscardHandler)
	return &app{
		cfg:      cfg,
		log:      log,
		store:    store,
		budget:   cfg.newBudget(store, log),
		metrics:  m,
		observer: newOpsObserver(m),
	}, store
}

// noEnv is an environment without sd_notify's variables.
func noEnv(string) (string, bool) { return "", false }

func TestOpsLifecycle(t *testing.T) {
	a, store := fileApp(t, "127.0.0.1:0")
	ctx := context.Background()
	month := budget.Month(time.Now())
	mustT(t, store.AddRequests(ctx, month, 7)) // other replicas' requests
	sock, msgs := notifySocket(t)
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "40000"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	o, err := startOps(runCtx, a, opsOptions{endpoint: true, env: lookup})
	mustT(t, err)
	defer o.stop()
	base := "http://" + o.addr

	if m := waitMessage(t, msgs, "READY=1"); !strings.Contains(m, "STATUS=") {
		t.Errorf("READY message %q has no STATUS", m)
	}
	waitMessage(t, msgs, "WATCHDOG=1")
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}

	// The budget gauges show the store's count (every replica's) and the
	// plan; the client's hooks meter a request and count it in the metrics.
	eventually(t, "the budget in /metrics", func() bool {
		_, body := httpGet(t, base+"/metrics")
		return strings.Contains(body, "prismsync_budget_used_requests 7") &&
			strings.Contains(body, "prismsync_budget_limit_requests 1000") &&
			strings.Contains(body, "prismsync_budget_reserve_requests 50")
	})
	done, err := a.budget.Meter(ctx)
	mustT(t, err)
	done(1)
	a.metrics.ObserveRequest(connector.WithSyncName(ctx, "people"), prism.RequestInfo{Op: "import", Status: 202, Attempt: 1, Sent: 1})
	if n, _ := store.Requests(ctx, month); n != 8 {
		t.Errorf("store counts %d requests after one more, want 8", n)
	}
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, `prismsync_api_requests_total{code="202",op="import",sync="people"} 1`) {
		t.Errorf("request not in /metrics:\n%s", body)
	}

	// A pass is recorded in the store for status and the history.
	start := time.Now()
	a.observer.recordPass(newPassRecord("people", start, start.Add(time.Second), connector.Summary{Sync: "people", Rows: 3, Sent: 2}, 4, nil))
	eventually(t, "the run record", func() bool {
		r, ok, err := store.LastRun(ctx, "people")
		return err == nil && ok && r.OK && r.Rows == 3 && r.Sent == 2 && r.Requests == 4 && r.Finished.Sub(r.Started) == time.Second
	})

	// First signal: STOPPING=1, not ready, still alive (batches drain).
	cancel()
	waitMessage(t, msgs, "STOPPING=1")
	if code, body := httpGet(t, base+"/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping = %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d", code)
	}
	// The pass that ends during the drain is still recorded: stop flushes.
	a.observer.recordPass(newPassRecord("people", start, time.Now(), connector.Summary{Sync: "people", Rows: 1}, 0, errors.New("sync people: interrupted")))
	o.stop()
	o.stop() // twice is harmless
	r, ok, err := store.LastRun(ctx, "people")
	mustT(t, err)
	if !ok || r.OK || r.Error != "sync people: interrupted" {
		t.Errorf("run after stop = %+v, %v", r, ok)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("ops endpoint still answers after stop")
	}
}

func TestOpsBusyAddressAndDisabled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	defer ln.Close()
	a, _ := fileApp(t, ln.Addr().String())
	_, err = startOps(context.Background(), a, opsOptions{endpoint: true, env: noEnv})
	if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Errorf("startOps on a busy address = %v (exit %d)", err, exitCode(err))
	}

	a, _ = fileApp(t, "")
	o, err := startOps(context.Background(), a, opsOptions{endpoint: true, env: noEnv})
	mustT(t, err)
	if o.addr != "" {
		t.Errorf("HTTP_ADDR empty but endpoint on %s", o.addr)
	}
	o.stop()

	// A one-shot run asks for no endpoint, whatever HTTP_ADDR says, and
	// leaves the configuration as it was.
	a, _ = fileApp(t, ln.Addr().String())
	o, err = startOps(context.Background(), a, opsOptions{env: noEnv})
	mustT(t, err)
	if o.addr != "" || a.cfg.HTTPAddr != ln.Addr().String() {
		t.Errorf("endpoint: false but endpoint on %q, HTTP_ADDR now %q", o.addr, a.cfg.HTTPAddr)
	}
	o.stop()
}

func TestOpsReadyReportsUnreachableStore(t *testing.T) {
	a, store := fileApp(t, "127.0.0.1:0")
	o, err := startOps(context.Background(), a, opsOptions{endpoint: true, env: noEnv})
	mustT(t, err)
	defer o.stop()
	store.Close() // a closed store fails like an unreachable one
	code, body := httpGet(t, "http://"+o.addr+"/readyz")
	if code != 503 || !strings.Contains(body, "checkpoint store unreachable") {
		t.Errorf("/readyz with a closed store = %d %q", code, body)
	}
}
