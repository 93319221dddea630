package statuspage

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 30, 23, 2, 0, 0, time.UTC)

// samplePage is a page with every kind of sync, the budget under pace and
// a few passes; evil names and errors check the escaping.
func samplePage() Page {
	pass := func(sync string, seq int64, ago time.Duration, took time.Duration, result string, rows, sent int) Pass {
		end := now.Add(-ago)
		p := Pass{Sync: sync, Seq: seq, Started: end.Add(-took), Finished: end, Result: result, Rows: rows, Sent: sent,
			Created: sent / 4, Updated: sent - sent/4, Unchanged: rows - sent, Requests: 1 + sent/500*2}
		if result == "failed" {
			p.Error = "sync " + sync + ": import: 401 Unauthorized (check MICRO_API_KEY / MICRO_TEAM_ID)"
			p.Sent, p.Created, p.Updated, p.Unchanged = 0, 0, 0, 0
		}
		return p
	}
	people := pass("people", 412, 2*time.Minute, 41*time.Second, "ok", 500, 498)
	orgs := pass("orgs", 96, 4*time.Minute, 2*time.Second, "failed", 120, 0)
	deals := pass("deals", 37, 9*time.Minute, 3*time.Second, "budget", 7, 0)
	return Page{
		GeneratedAt: now,
		Version:     "v1.4.0",
		Syncs: []Sync{
			{Name: "people", InMapping: true, State: Healthy, LastPass: &people, Checkpoint: "2026-11-30 22:50:00.123+00 [4711]",
				CheckpointAge: 12 * time.Minute, HasAge: true, Rejected: 2},
			{Name: "orgs", InMapping: true, State: Failing, FailedPasses: 3, LastPass: &orgs, Checkpoint: "2026-11-30 21:10:00+00 [88]",
				CheckpointAge: 112 * time.Minute, HasAge: true, InFlight: 1},
			{Name: "deals", InMapping: true, State: Waiting, LastPass: &deals, Checkpoint: "18211 [18211]", Deferred: 3},
			{Name: "contacts", InMapping: true, State: Never},
		},
		Budget: Budget{Month: "2026-11", Used: 912, Limit: 1000, Left: 88, Reserve: 50, Pace: 80 * time.Minute,
			LastSend: now.Add(-46 * time.Minute), NextSend: now.Add(34 * time.Minute), Projected: 950,
			Waiting: []WaitingSync{{Sync: "deals", Since: now.Add(-10 * time.Minute), Rows: 7}}},
		Passes: []Pass{people, orgs, deals, pass("people", 411, 7*time.Minute, 12*time.Second, "ok", 40, 40),
			pass("orgs", 95, 9*time.Minute, 2*time.Second, "failed", 120, 0)},
	}
}

func serve(t *testing.T, src Source) string {
	t.Helper()
	srv := httptest.NewServer(Handler(src, Options{Refresh: 15 * time.Second}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// What a Source returns is text, never markup: names and errors that look
// like HTML arrive escaped, and no script can run (the policy forbids it).
func TestEscapesEverything(t *testing.T) {
	p := samplePage()
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	p.Syncs[0].Name = evil
	p.Syncs[0].LastPass.Error = evil
	p.Passes[0].Sync = evil
	p.Budget.Waiting[0].Sync = evil
	resp, body := get(t, serve(t, func(context.Context) (Page, error) { return p, nil }))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, bad := range []string{"<script", "<img"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the evil name is not shown escaped")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if !strings.Contains(body, `<meta http-equiv="refresh" content="15">`) {
		t.Error("no meta refresh")
	}
}

// A source that fails shows its error on a page that still reloads itself.
func TestSourceError(t *testing.T) {
	resp, body := get(t, serve(t, func(context.Context) (Page, error) {
		return Page{}, errors.New("checkpoint store unreachable: connection refused")
	}))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "checkpoint store unreachable") ||
		!strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("GET / with a failing source = %d\n%s", resp.StatusCode, body)
	}
}
