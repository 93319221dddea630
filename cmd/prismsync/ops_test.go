package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/internal/pgtest"
	"github.com/prismsync/prismsync/internal/telemetry"
)

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

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
	m := telemetry.New(telemetry.Options{MonthlyLimit: 1000})
	return &app{
		cfg:      &Config{HTTPAddr: httpAddr, MonthlyRequests: 1000},
		log:      slog.New(slog.DiscardHandler),
		store:    store,
		metrics:  m,
		observer: newOpsObserver(m),
	}, store
}

// noEnv is an environment without sd_notify's variables.
func noEnv(string) (string, bool) { return "", false }

func TestOpsLifecycle(t *testing.T) {
	a, store := fileApp(t, "127.0.0.1:0")
	ctx := context.Background()
	month := telemetry.Month(time.Now())
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

	// The request gauge starts from the store's count; the client's hook
	// adds to it.
	var obs connector.Observer = a.observer
	onRequest := countRequest(ctx, budget.New(1000, store, a.log), a.metrics)
	onRequest(prism.RequestInfo{Op: "import", Status: 202, Attempt: 1})
	eventually(t, "request count in /metrics", func() bool {
		_, body := httpGet(t, base+"/metrics")
		return strings.Contains(body, "prismsync_api_requests_month 8") &&
			strings.Contains(body, `prismsync_api_requests_total{code="202",op="import"} 1`) &&
			strings.Contains(body, "prismsync_api_requests_month_limit 1000")
	})

	// A pass is recorded in the store for status.
	obs.PassFinished(connector.Summary{Sync: "people", Rows: 3, Sent: 2, Duration: time.Second}, nil)
	eventually(t, "the run record", func() bool {
		r, ok, err := store.LastRun(ctx, "people")
		return err == nil && ok && r.OK && r.Rows == 3 && r.Sent == 2 && r.Finished.Sub(r.Started) == time.Second
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
	obs.PassFinished(connector.Summary{Sync: "people", Rows: 1}, errors.New("sync people: interrupted"))
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

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer bad.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	hostPort := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	_, okPort, _ := net.SplitHostPort(hostPort(ok))
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"healthy", map[string]string{"HTTP_ADDR": hostPort(ok)}, nil, true},
		{"wildcard host probes loopback", map[string]string{"HTTP_ADDR": "0.0.0.0:" + okPort}, nil, true},
		{"empty host probes loopback", map[string]string{"HTTP_ADDR": ":" + okPort}, nil, true},
		{"flag overrides env", map[string]string{"HTTP_ADDR": closedAddr}, []string{"--addr", hostPort(ok)}, true},
		{"500", map[string]string{"HTTP_ADDR": hostPort(bad)}, nil, false},
		{"nothing listening", map[string]string{"HTTP_ADDR": closedAddr}, nil, false},
		{"hangs past timeout", map[string]string{"HTTP_ADDR": hostPort(hang)}, []string{"--timeout", "200ms"}, false},
		{"disabled", map[string]string{"HTTP_ADDR": ""}, nil, false},
		{"bad address", map[string]string{"HTTP_ADDR": "nonsense"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := Run(context.Background(), append([]string{"healthcheck"}, tc.args...), envconfig.MapLookuper(tc.env), &stdout, &stderr)
			if tc.ok {
				if err != nil || stdout.String() != "ok\n" {
					t.Errorf("err %v, stdout %q", err, stdout.String())
				}
				return
			}
			// Docker reads 1 as unhealthy and reserves 2.
			if err == nil || exitCode(err) != exitFailure {
				t.Errorf("err %v, exit %d; want exit %d", err, exitCode(err), exitFailure)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
	// The default address is HTTP_ADDR's default.
	if got, _ := probeAddr("[::]:9464"); got != "[::1]:9464" {
		t.Errorf("probeAddr([::]:9464) = %s", got)
	}
}

const statusMapping = `syncs:
  - name: people
    source: { table: people, key: [id], cursor: updated_at }
    target: { object: contact, dedupe_by: ext }
    properties:
      ext: id
  - name: never
    source: { table: deals, key: [id], cursor: id }
    target: { object: deal, dedupe_by: ext }
    properties:
      ext: id
`

// seedStatus gives a store two syncs in the states status must show.
func seedStatus(t *testing.T, s checkpoint.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	cursor := now.Add(-90 * time.Minute).UTC().Format("2006-01-02 15:04:05.999999-07")
	mustT(t, s.Commit(ctx, "people", "k1", checkpoint.Position{Cursor: cursor, Key: []string{"42"}}, "fp",
		[]checkpoint.Reject{{RowKey: []string{"7"}, Code: "invalid_value", Message: "bad"}, {RowKey: []string{"8"}, Code: "x"}}, nil))
	mustT(t, s.Journal(ctx, checkpoint.Batch{Sync: "people", Key: "k2", Attempt: 1, Body: []byte("{}"), Object: "contact"}))
	mustT(t, s.RecordRun(ctx, "people", checkpoint.Run{Started: now.Add(-10 * time.Minute), Finished: now.Add(-9 * time.Minute),
		Error: "sync people: import job j1 failed: boom", Rows: 500, Sent: 0}))
	mustT(t, s.Commit(ctx, "gone", "k1", checkpoint.Position{Cursor: "17", Key: []string{"17"}}, "fp", nil, nil))
	mustT(t, s.RecordRun(ctx, "gone", checkpoint.Run{Started: now.Add(-time.Hour), Finished: now.Add(-time.Hour + 2*time.Second), OK: true, Rows: 5, Sent: 5}))
	mustT(t, s.AddRequests(ctx, telemetry.Month(now), 412))
}

func checkStatusJSON(t *testing.T, out []byte) {
	t.Helper()
	var rep struct {
		Month        string `json:"month"`
		Requests     int    `json:"requests_this_month"`
		MonthlyLimit int    `json:"monthly_request_limit"`
		Syncs        []struct {
			Name       string `json:"name"`
			InMapping  bool   `json:"in_mapping"`
			Checkpoint *struct {
				Cursor     string   `json:"cursor"`
				Key        []string `json:"key"`
				Batches    int      `json:"batches"`
				AgeSeconds *float64 `json:"age_seconds"`
			} `json:"checkpoint"`
			LastRun *struct {
				OK       bool    `json:"ok"`
				Error    string  `json:"error"`
				Rows     int     `json:"rows"`
				Duration float64 `json:"duration_seconds"`
			} `json:"last_run"`
			InFlight int `json:"in_flight_batches"`
			Rejected int `json:"rejected_rows"`
		} `json:"syncs"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if rep.Requests != 412 || rep.MonthlyLimit != 1000 || rep.Month != telemetry.Month(time.Now()) {
		t.Errorf("header = %+v", rep)
	}
	if len(rep.Syncs) != 3 {
		t.Fatalf("syncs = %d, want people, never, gone:\n%s", len(rep.Syncs), out)
	}
	p, n, g := rep.Syncs[0], rep.Syncs[1], rep.Syncs[2]
	if p.Name != "people" || !p.InMapping || p.Checkpoint == nil || p.Checkpoint.Key[0] != "42" || p.Checkpoint.Batches != 1 ||
		p.Checkpoint.AgeSeconds == nil || *p.Checkpoint.AgeSeconds < 89*60 || *p.Checkpoint.AgeSeconds > 100*60 ||
		p.LastRun == nil || p.LastRun.OK || !strings.Contains(p.LastRun.Error, "boom") || p.LastRun.Rows != 500 ||
		p.LastRun.Duration != 60 || p.InFlight != 1 || p.Rejected != 2 {
		t.Errorf("people = %+v\n%s", p, out)
	}
	if n.Name != "never" || !n.InMapping || n.Checkpoint != nil || n.LastRun != nil || n.InFlight != 0 {
		t.Errorf("never = %+v", n)
	}
	if g.Name != "gone" || g.InMapping || g.Checkpoint == nil || g.Checkpoint.AgeSeconds != nil || g.LastRun == nil || !g.LastRun.OK {
		t.Errorf("gone = %+v", g)
	}
}

func TestStatusFileStoreNextToDaemon(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.json")
	mf := filepath.Join(dir, "mapping.yaml")
	mustT(t, os.WriteFile(mf, []byte(statusMapping), 0o600))
	// The "daemon" keeps the store (and its lock) open throughout.
	s, err := checkpoint.OpenFile(path)
	mustT(t, err)
	defer s.Close()
	seedStatus(t, s, time.Now())
	env := envconfig.MapLookuper(map[string]string{"CHECKPOINT_STORE": "file:" + path, "MAPPING_FILE": mf})

	var out, errOut bytes.Buffer
	mustT(t, Run(context.Background(), []string{"status", "--json"}, env, &out, &errOut))
	checkStatusJSON(t, out.Bytes())

	out.Reset()
	mustT(t, Run(context.Background(), []string{"status"}, env, &out, &errOut))
	table := out.String()
	for _, want := range []string{"SYNC", "people", "[42]", "1h30m", "FAILED: sync people: import job j1 failed: boom",
		"never", "(start)", "gone (not in mapping)", "ok: 5 rows, 5 sent in 2s", "API requests in ", "412 of 1000"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	out.Reset()
	mustT(t, Run(context.Background(), []string{"status", "--sync", "gone", "--json"}, env, &out, &errOut))
	if strings.Count(out.String(), `"name"`) != 1 {
		t.Errorf("--sync gone printed:\n%s", out.String())
	}
	err = Run(context.Background(), []string{"status", "--sync", "nope"}, env, &out, &errOut)
	if exitCode(err) != exitUsage {
		t.Errorf("--sync nope: %v (exit %d)", err, exitCode(err))
	}
	err = Run(context.Background(), []string{"status"}, envconfig.MapLookuper(map[string]string{
		"CHECKPOINT_STORE": "file:" + filepath.Join(dir, "absent.json"), "MAPPING_FILE": mf}), &out, &errOut)
	if exitCode(err) != exitUnreachable || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("status with no checkpoint file: %v (exit %d)", err, exitCode(err))
	}
}

func TestStatusPostgresStore(t *testing.T) {
	dsn := pgtest.NewDB(t)
	ctx := context.Background()
	s, err := checkpoint.Open(ctx, "postgres", dsn)
	mustT(t, err)
	defer s.Close()
	seedStatus(t, s, time.Now())
	mf := filepath.Join(t.TempDir(), "mapping.yaml")
	mustT(t, os.WriteFile(mf, []byte(statusMapping), 0o600))
	var out, errOut bytes.Buffer
	err = Run(ctx, []string{"status", "--json"}, envconfig.MapLookuper(map[string]string{"DATABASE_URL": dsn, "MAPPING_FILE": mf}), &out, &errOut)
	mustT(t, err)
	checkStatusJSON(t, out.Bytes())

	// A database prismsync never ran against has no store to show; status
	// says so and leaves the database as it was.
	fresh := pgtest.NewDB(t)
	err = Run(ctx, []string{"status"}, envconfig.MapLookuper(map[string]string{"DATABASE_URL": fresh, "MAPPING_FILE": mf}), &out, &errOut)
	if exitCode(err) != exitUnreachable || !strings.Contains(err.Error(), "schema prismsync does not exist") {
		t.Errorf("status on a fresh database: %v (exit %d)", err, exitCode(err))
	}

	// Without DATABASE_URL the postgres store cannot be found: a usage error.
	err = Run(ctx, []string{"status"}, envconfig.MapLookuper(map[string]string{"MAPPING_FILE": mf}), &out, &errOut)
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("status without DATABASE_URL: %v (exit %d)", err, exitCode(err))
	}
}
