package statuspage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium for the test. Without it the test is
// skipped, except under CI=true (.ci/run installs Debian's chromium), where
// a missing browser is a failure.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and no chromium on PATH: the status page must be tested in a browser (apt-get install chromium)")
		}
		t.Skip("no chromium on PATH (apt-get install chromium); the status page's browser test needs it")
	}
	// The flags that work on a bare machine, as root, offline: no
	// sandbox (root), no GPU, nothing fetched in the background, and a
	// profile of its own.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first call starts the browser, which lives as long as its
	// context: no timeout on that one, only on each look.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// facts is what the tests read from the rendered DOM.
type facts struct {
	Title       string            `json:"title"`
	Refresh     string            `json:"refresh"`
	Scripts     int               `json:"scripts"`
	Images      int               `json:"images"`
	States      map[string]string `json:"states"`
	Badges      map[string]string `json:"badges"`
	Counts      map[string]string `json:"counts"`
	Errors      map[string]string `json:"errors"`
	Checkpoints map[string]string `json:"checkpoints"`
	Deferred    map[string]string `json:"deferred"`
	Rejects     map[string]string `json:"rejects"`
	Used        string            `json:"used"`
	Pace        string            `json:"pace"`
	Next        string            `json:"next"`
	Passes      []string          `json:"passes"`
	PageWidth   int               `json:"pageWidth"`
	ViewWidth   int               `json:"viewWidth"`
	WidestCard  int               `json:"widestCard"`
	FontSize    float64           `json:"fontSize"`
}

const readFacts = `(() => {
  const by = (sel, f) => Object.fromEntries([...document.querySelectorAll('[data-sync]')].map(c => [c.dataset.sync, f(c.querySelector(sel))]));
  const text = e => e ? e.textContent.trim().replace(/\s+/g, ' ') : '';
  const field = n => text(document.querySelector('#budget [data-field="' + n + '"]'));
  return {
    title: document.title,
    refresh: (document.querySelector('meta[http-equiv="refresh"]') || {}).content || '',
    scripts: document.scripts.length,
    images: document.images.length,
    states: Object.fromEntries([...document.querySelectorAll('[data-sync]')].map(c => [c.dataset.sync, c.dataset.state])),
    badges: by('.badge', text),
    counts: by('[data-field="counts"]', text),
    errors: by('[data-field="error"]', text),
    checkpoints: by('[data-field="checkpoint"]', text),
    deferred: by('[data-field="deferred"]', text),
    rejects: by('[data-field="rejects"]', text),
    used: field('used'), pace: field('pace'), next: field('next'),
    passes: [...document.querySelectorAll('tr[data-pass]')].map(r => r.dataset.pass),
    pageWidth: document.documentElement.scrollWidth,
    viewWidth: window.innerWidth,
    widestCard: Math.max(0, ...[...document.querySelectorAll('.card')].map(c => Math.ceil(c.getBoundingClientRect().right))),
    fontSize: parseFloat(getComputedStyle(document.body).fontSize),
  };
})()`

// look loads url at a viewport of w×h and returns what the DOM shows and a
// full-page screenshot.
func look(t *testing.T, ctx context.Context, url string, w, h int64, mobile bool) (facts, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	emulate := chromedp.EmulateViewport(w, h)
	if mobile {
		emulate = chromedp.EmulateViewport(w, h, chromedp.EmulateScale(2), chromedp.EmulateMobile)
	}
	if err := chromedp.Do(ctx, emulate, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#budget"))); err != nil {
		t.Fatalf("chromium: load %s: %v", url, err)
	}
	f, err := chromedp.Run(ctx, chromedp.Evaluate[facts](readFacts))
	if err != nil {
		t.Fatalf("chromium: read the DOM: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	return f, png
}

func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// The page as a browser renders it: one card per sync in its state, the
// last pass's counts and error, checkpoints, the budget, the passes, a
// meta refresh and no script; on a phone nothing is wider than the screen.
func TestStatusPageInChromium(t *testing.T) {
	ctx := browser(t)
	url := serve(t, func(context.Context) (Page, error) { return samplePage(), nil })

	f, png := look(t, ctx, url, 1280, 900, false)
	saveArtifact(t, "status-page-desktop.png", png)
	check := func(what string, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", what, got, want)
		}
	}
	wantStates := map[string]string{"people": Healthy, "orgs": Failing, "deals": Waiting, "contacts": Never}
	if len(f.States) != 4 {
		t.Errorf("cards %v, want 4", f.States)
	}
	for sync, st := range wantStates {
		if f.States[sync] != st {
			t.Errorf("card %s in state %q, want %q", sync, f.States[sync], st)
		}
	}
	check("orgs badge", f.Badges["orgs"], "failing ×3")
	check("deals badge", f.Badges["deals"], "waiting for budget")
	check("contacts badge", f.Badges["contacts"], "never run")
	check("people counts", f.Counts["people"], "500 read · 498 sent (124 created, 374 updated, 0 existing) · 2 unchanged")
	check("orgs error", f.Errors["orgs"], "401 Unauthorized (check MICRO_API_KEY / MICRO_TEAM_ID)")
	check("people checkpoint", f.Checkpoints["people"], "2026-11-30 22:50:00.123+00 [4711] (12m old)")
	check("contacts checkpoint", f.Checkpoints["contacts"], "start (nothing committed yet)")
	check("deals deferred", f.Deferred["deals"], "3")
	check("people rejects", f.Rejects["people"], "2")
	check("budget used", f.Used, "912 of 1000")
	check("budget pace", f.Pace, "one partial send every 1h20m")
	check("budget next send", f.Next, "2026-11-30 23:36:00 UTC (in 34m)")
	if strings.Join(f.Passes, " ") != "people#412 orgs#96 deals#37 people#411 orgs#95" {
		t.Errorf("passes %v", f.Passes)
	}
	if f.Refresh != "15" || f.Scripts != 0 || f.Title != "prismsync: 4 syncs" {
		t.Errorf("refresh %q, scripts %d, title %q", f.Refresh, f.Scripts, f.Title)
	}

	f, png = look(t, ctx, url, 390, 844, true)
	saveArtifact(t, "status-page-phone.png", png)
	if f.PageWidth > f.ViewWidth || f.WidestCard > f.ViewWidth {
		t.Errorf("on a 390px phone the page is %dpx wide, its widest card ends at %dpx", f.PageWidth, f.WidestCard)
	}
	if f.FontSize < 14 {
		t.Errorf("body text of %gpx on a phone", f.FontSize)
	}
	if len(f.States) != 4 || f.Used != "912 of 1000" {
		t.Errorf("phone layout lost content: %+v", f)
	}
}

// In the browser too, a name or error that looks like markup is text: no
// element is made of it, and it reads as it was given.
func TestStatusPageEscapesInChromium(t *testing.T) {
	ctx := browser(t)
	p := samplePage()
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	p.Syncs[1].Name = evil
	p.Syncs[1].LastPass.Error = evil
	f, _ := look(t, ctx, serve(t, func(context.Context) (Page, error) { return p, nil }), 1280, 900, false)
	if f.Scripts != 0 || f.Images != 0 {
		t.Errorf("%d scripts and %d images made of the data", f.Scripts, f.Images)
	}
	if f.Errors[evil] != evil || f.States[evil] != Failing {
		t.Errorf("the evil card reads %q (state %q)", f.Errors[evil], f.States[evil])
	}
}
