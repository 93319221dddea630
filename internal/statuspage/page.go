package statuspage

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Page is everything the page shows.
type Page struct {
	GeneratedAt time.Time
	Version     string
	Syncs       []Sync
	Budget      Budget
	Passes      []Pass // the last passes of every sync, newest first
}

// States of a sync, as the page shows them.
const (
	Healthy = "healthy"
	Failing = "failing"
	Waiting = "budget" // rows wait for the month's request budget
	Never   = "never"  // no pass recorded yet
)

// Sync is one sync's card.
type Sync struct {
	Name      string
	InMapping bool
	State     string // Healthy, Failing, Waiting or Never
	// FailedPasses counts the failed passes in a row (Failing).
	FailedPasses int
	LastPass     *Pass
	// Checkpoint is the cursor and key of the last confirmed row ("" =
	// from the start); CheckpointAge is now minus the cursor, for time
	// cursors (HasAge).
	Checkpoint      string
	CheckpointAge   time.Duration
	HasAge          bool
	CheckpointError string
	InFlight        int
	Rejected        int
	Deferred        int
}

// Pass is one recorded pass.
type Pass struct {
	Sync              string
	Seq               int64
	Started, Finished time.Time
	Result            string // ok, failed or budget
	Error             string
	Rows, Sent        int
	Created, Updated  int
	Existing          int
	Unchanged         int
	Invalid, Rejected int
	Deferred          int
	Requests          int
}

// Budget is the month's request budget and the daemon's plan for it.
type Budget struct {
	Month     string
	Used      int // this month, by every replica, reservations included
	Limit     int // 0: no monthly budget
	Left      int
	Reserve   int
	Pace      time.Duration // between two partial sends; 0 = none planned
	LastSend  time.Time
	NextSend  time.Time // zero: nothing holds the next send
	Projected int       // the month's use at its end at this pace
	RunsOut   time.Time // MAX_DELAY spends the budget before the month ends
	Waiting   []WaitingSync
}

// WaitingSync is a sync holding rows for its turn.
type WaitingSync struct {
	Sync  string
	Since time.Time
	Rows  int
}

// Source reads what the page shows; its error is shown instead (so it
// must not contain secrets).
type Source func(ctx context.Context) (Page, error)

// Options configure the handler.
type Options struct {
	// Refresh is how often the page reloads itself (default 30 s).
	Refresh time.Duration
	// Timeout bounds one Source call (default 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

//go:embed page.html
var files embed.FS

// Handler serves the page built from src.
func Handler(src Source, o Options) http.Handler {
	if o.Refresh <= 0 {
		o.Refresh = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl := template.Must(template.New("page.html").Funcs(funcs).ParseFS(files, "page.html"))
	return &handler{src: src, o: o, tmpl: tmpl}
}

type handler struct {
	src  Source
	o    Options
	tmpl *template.Template
}

// view is what the template gets.
type view struct {
	Page
	Refresh int
	Error   string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	v := view{Refresh: int(h.o.Refresh.Seconds())}
	page, err := h.src(ctx)
	code := http.StatusOK
	if err != nil {
		code = http.StatusServiceUnavailable
		v.Error = err.Error()
		page = Page{GeneratedAt: time.Now()}
	}
	v.Page = page
	var buf bytes.Buffer
	if err := h.tmpl.Execute(&buf, v); err != nil {
		h.o.Logger.Error("status page: render", "err", err)
		http.Error(w, "status page: render failed", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	// Inline styles only: no script, no fetch, no frame, no form.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.WriteHeader(code)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

var funcs = template.FuncMap{
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := now.Sub(t)
		if d < 0 {
			return "in " + ShortDuration(-d)
		}
		return ShortDuration(d) + " ago"
	},
	"dur":   ShortDuration,
	"since": func(a, b time.Time) string { return ShortDuration(b.Sub(a)) },
	"pct": func(n, of int) int {
		if of <= 0 {
			return 0
		}
		return min(100, max(0, n*100/of))
	},
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// ShortDuration prints a duration the way people read ages: 45s, 12m,
// 3h4m, 2d5h. The page and prismsync status both print ages with it.
func ShortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + ShortDuration(-d)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
