package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/internal/statuspage"
	"github.com/prismsync/prismsync/internal/telemetry"
	"github.com/prismsync/prismsync/mapping"
)

const statusHelp = `Usage: prismsync status [--sync NAME] [--json]

One row per sync: its checkpoint (cursor, key, and for time cursors its age,
i.e. how far behind the CRM may be), the last pass (when, how long, result),
batches in flight (journaled, not yet confirmed), rejected rows and deferred
rows (rows that link to a row of another sync without a Micro record yet:
they go out once it has one; those waiting longer than DEFER_WARN_AFTER are
listed below the table); then the
month's request budget: requests used by every replica together, what is
left and the reserve, the daemon's pace and next partial send, the projected
use at the month's end, and the syncs waiting for their turn.

Syncs come from the mapping file (MAPPING_FILE) and the checkpoint store, so a
sync removed from the mapping still shows. It reads the store only, and
never creates or changes it; with a file: store it reads a snapshot, so it
works next to a running daemon. With no store yet (nothing has run) it says
so on stderr and shows the mapping's syncs as never run.
Exit code 0 whenever the store could be read, whatever the syncs' state;
scripts should read --json, whose shape is stable:

  {"generated_at": RFC3339, "month": "2026-11", "requests_this_month": N,
   "monthly_request_limit": N,
   "budget": {"used", "limit", "left", "reserve", "pace_seconds", "last_send",
     "next_send", "projected_month_end", "runs_out"?, "waiting": [{"sync",
     "since", "rows"}]},
   "syncs": [{"name", "in_mapping", "checkpoint": {"cursor", "key", "batches",
     "updated_at", "age_seconds"?} | null, "checkpoint_error"?,
     "last_run": {"started", "finished", "duration_seconds", "ok", "error"?,
     "rows", "sent"} | null, "in_flight_batches", "rejected_rows",
     "deferred_rows", "deferred_too_long": [{"row_key", "waits_for_sync",
     "waits_for_key", "since"}]}]}

Examples:
  prismsync status
  prismsync status --json | jq '.syncs[] | select(.last_run.ok == false) | .name'
`

func runStatus(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	flags := newFlagSet("status", statusHelp, stdout, stderr)
	only := flags.String("sync", "", "only this sync")
	asJSON := flags.Bool("json", false, "print JSON")
	if help, err := flags.parse(args); help || err != nil {
		return err
	}
	cfg, err := loadConfig(ctx, env, needs{})
	if err != nil {
		return err
	}
	var store interface {
		statusStore
		budget.Store
		Close() error
	}
	switch s, err := openReadStore(ctx, cfg); {
	case err != nil:
		return err
	case s == nil:
		// Nothing has run here yet: every sync of the mapping, never run.
		fmt.Fprintf(stderr, "prismsync: %s\n", noStoreText(cfg))
		store = emptyStore{}
	default:
		store = s
	}
	defer store.Close()

	var mapped []string
	mf, err := mapping.Load(cfg.MappingFile)
	switch {
	case err == nil:
		for _, s := range mf.Syncs {
			mapped = append(mapped, s.Name)
		}
	case errors.Is(err, fs.ErrNotExist):
		// Status without a mapping file still shows what the store knows.
	default:
		fmt.Fprintf(stderr, "prismsync: warning: %v; showing the syncs the checkpoint store knows\n", err)
	}

	snap, err := cfg.newBudget(store, nil).Snapshot(ctx)
	if err != nil {
		return &unreachableError{err}
	}
	rep, err := collectStatus(ctx, store, mapped, *only, snap, time.Now(), cfg.DeferWarnAfter)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeStatusTable(stdout, rep)
	return nil
}

// statusReport is the stable JSON shape of `prismsync status --json`:
// fields may be added, never renamed or removed.
type statusReport struct {
	GeneratedAt  time.Time    `json:"generated_at"`
	Month        string       `json:"month"`
	Requests     int          `json:"requests_this_month"`
	MonthlyLimit int          `json:"monthly_request_limit"`
	Budget       budgetStatus `json:"budget"`
	Syncs        []syncStatus `json:"syncs"`
}

// budgetStatus is the month's request budget and the daemon's plan for it.
type budgetStatus struct {
	Used    int `json:"used"` // counted this month, in-flight reservations included
	Limit   int `json:"limit"`
	Left    int `json:"left"`
	Reserve int `json:"reserve"`
	// Pace is the time between two partial sends at which the budget
	// lasts the month; NextSend when the next one may go (null: now).
	PaceSeconds float64    `json:"pace_seconds"`
	LastSend    *time.Time `json:"last_send"`
	NextSend    *time.Time `json:"next_send"`
	Projected   int        `json:"projected_month_end"`
	RunsOut     *time.Time `json:"runs_out,omitempty"`
	Waiting     []waiting  `json:"waiting"`
}

// waiting is a sync holding rows for its turn.
type waiting struct {
	Sync  string    `json:"sync"`
	Since time.Time `json:"since"`
	Rows  int       `json:"rows"`
}

type syncStatus struct {
	Name            string            `json:"name"`
	InMapping       bool              `json:"in_mapping"`
	Checkpoint      *checkpointStatus `json:"checkpoint"`
	CheckpointError string            `json:"checkpoint_error,omitempty"`
	LastRun         *lastRunStatus    `json:"last_run"`
	InFlight        int               `json:"in_flight_batches"`
	Rejected        int               `json:"rejected_rows"` // refused by the mapping or the API
	Deferred        int               `json:"deferred_rows"` // waiting for another sync's record
	// DeferredTooLong lists the deferred rows waiting longer than
	// DEFER_WARN_AFTER, oldest first.
	DeferredTooLong []deferredStatus `json:"deferred_too_long"`
}

type deferredStatus struct {
	RowKey   []string  `json:"row_key"`
	WaitSync string    `json:"waits_for_sync"`
	WaitKey  []string  `json:"waits_for_key"`
	Since    time.Time `json:"since"`
}

type checkpointStatus struct {
	Cursor    string    `json:"cursor"`
	Key       []string  `json:"key"`
	Batches   int64     `json:"batches"`
	UpdatedAt time.Time `json:"updated_at"`
	// AgeSeconds is now minus the cursor, for time-typed cursors only.
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
}

type lastRunStatus struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Duration float64   `json:"duration_seconds"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Rows     int       `json:"rows"`
	Sent     int       `json:"sent"`
	Deleted  int       `json:"deleted"`
	Archived int       `json:"archived"`
	Restored int       `json:"restored"`
}

// statusStore is what status reads; checkpoint.Store implements it.
type statusStore interface {
	Syncs(ctx context.Context) ([]string, error)
	Load(ctx context.Context, sync string) (checkpoint.State, error)
	LastRun(ctx context.Context, sync string) (checkpoint.Run, bool, error)
	Pending(ctx context.Context, sync string) ([]checkpoint.Batch, error)
	CountRejects(ctx context.Context, sync string) (int, error)
	Deferred(ctx context.Context, sync string) ([]checkpoint.Reject, error)
}

// collectStatus reads one row per sync: the mapping's syncs in file order,
// then those only the store knows, sorted. A sync whose checkpoint cannot be
// loaded (e.g. missing) gets its error in the row; store failures abort.
func collectStatus(ctx context.Context, st statusStore, mapped []string, only string, b budget.Snapshot, now time.Time, warnAfter time.Duration) (*statusReport, error) {
	known, err := st.Syncs(ctx)
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("list syncs: %w", err)}
	}
	names := slices.Clone(mapped)
	for _, s := range known {
		if !slices.Contains(mapped, s) {
			names = append(names, s)
		}
	}
	if only != "" {
		if !slices.Contains(names, only) {
			return nil, &usageError{fmt.Errorf("no sync named %q in the mapping file or the checkpoint store", only)}
		}
		names = []string{only}
	}
	rep := &statusReport{GeneratedAt: now.UTC().Truncate(time.Second), Month: b.Month, Requests: b.Used, MonthlyLimit: b.Limit,
		Budget: budgetReport(b), Syncs: []syncStatus{}}
	for _, name := range names {
		row := syncStatus{Name: name, InMapping: slices.Contains(mapped, name), DeferredTooLong: []deferredStatus{}}
		state, err := st.Load(ctx, name)
		switch {
		case err != nil:
			row.CheckpointError = err.Error()
		case state.Exists:
			cp := &checkpointStatus{Cursor: state.Position.Cursor, Key: state.Position.Key, Batches: state.Batches, UpdatedAt: state.UpdatedAt}
			if cp.Key == nil {
				cp.Key = []string{}
			}
			if t, ok := telemetry.ParseCursorTime(state.Position.Cursor); ok {
				age := math.Round(now.Sub(t).Seconds()*1000) / 1000
				cp.AgeSeconds = &age
			}
			row.Checkpoint = cp
		}
		run, ok, err := st.LastRun(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("sync %s: last run: %w", name, err)
		}
		if ok {
			row.LastRun = &lastRunStatus{Started: run.Started, Finished: run.Finished, Duration: run.Finished.Sub(run.Started).Seconds(),
				OK: run.OK, Error: run.Error, Rows: run.Rows, Sent: run.Sent,
				Deleted: run.Deleted, Archived: run.Archived, Restored: run.Restored}
		}
		pending, err := st.Pending(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("sync %s: journal: %w", name, err)
		}
		row.InFlight = len(pending)
		if row.Rejected, err = st.CountRejects(ctx, name); err != nil {
			return nil, fmt.Errorf("sync %s: rejects: %w", name, err)
		}
		deferred, err := st.Deferred(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("sync %s: deferred rows: %w", name, err)
		}
		row.Deferred = len(deferred)
		row.Rejected -= row.Deferred // counted apart: a deferred row is not refused
		for _, d := range deferred {
			if now.Sub(d.FirstSeen) >= warnAfter {
				row.DeferredTooLong = append(row.DeferredTooLong, deferredStatus{RowKey: d.RowKey, WaitSync: d.WaitSync, WaitKey: d.WaitKey,
					Since: d.FirstSeen.UTC().Truncate(time.Second)})
			}
		}
		rep.Syncs = append(rep.Syncs, row)
	}
	return rep, nil
}

func writeStatusTable(w io.Writer, rep *statusReport) {
	if len(rep.Syncs) == 0 {
		fmt.Fprintln(w, "no syncs (none in the mapping file, none in the checkpoint store)")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYNC\tCHECKPOINT\tAGE\tLAST RUN\tRESULT\tIN FLIGHT\tREJECTED\tDEFERRED")
		for _, s := range rep.Syncs {
			name := s.Name
			if !s.InMapping {
				name += " (not in mapping)"
			}
			cp, age := "(start)", "-"
			switch {
			case s.CheckpointError != "":
				cp = "ERROR: " + oneLine(s.CheckpointError, 60)
			case s.Checkpoint != nil:
				cp = s.Checkpoint.Cursor
				if len(s.Checkpoint.Key) > 0 {
					cp += " [" + strings.Join(s.Checkpoint.Key, ",") + "]"
				}
				if s.Checkpoint.AgeSeconds != nil {
					age = statuspage.ShortDuration(time.Duration(*s.Checkpoint.AgeSeconds * float64(time.Second)))
				}
			}
			last, result := "never", "-"
			if r := s.LastRun; r != nil {
				last = fmt.Sprintf("%s (%s ago)", r.Finished.UTC().Format(time.RFC3339), statuspage.ShortDuration(rep.GeneratedAt.Sub(r.Finished)))
				if r.OK {
					result = fmt.Sprintf("ok: %d rows, %d sent%s in %s", r.Rows, r.Sent, deletesText(r), statuspage.ShortDuration(time.Duration(r.Duration*float64(time.Second))))
				} else {
					result = "FAILED: " + oneLine(r.Error, 60)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", name, cp, age, last, result, s.InFlight, s.Rejected, s.Deferred)
		}
		tw.Flush()
		writeDeferredTooLong(w, rep)
	}
	writeBudget(w, rep)
}

// writeDeferredTooLong lists the rows that have waited too long for the
// record of the row they link to, a few per sync.
func writeDeferredTooLong(w io.Writer, rep *statusReport) {
	const perSync = 10
	for _, s := range rep.Syncs {
		for i, d := range s.DeferredTooLong {
			if i == perSync {
				fmt.Fprintf(w, "  … and %d more (prismsync rejects --sync %s)\n", len(s.DeferredTooLong)-perSync, s.Name)
				break
			}
			fmt.Fprintf(w, "Deferred since %s: %s row %s waits for the Micro record of %s row %s (not synced or rejected there)\n",
				d.Since.Format(time.RFC3339), s.Name, mapping.KeyText(d.RowKey), d.WaitSync, mapping.KeyText(d.WaitKey))
		}
	}
}

func budgetReport(s budget.Snapshot) budgetStatus {
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC().Truncate(time.Second)
		return &t
	}
	b := budgetStatus{Used: s.Used, Limit: s.Limit, Left: s.Left, Reserve: s.Reserve, PaceSeconds: math.Round(s.Pace.Seconds()),
		LastSend: at(s.LastSend), NextSend: at(s.NextSend), Projected: s.Projected, RunsOut: at(s.RunsOut), Waiting: []waiting{}}
	for _, t := range s.Waiting {
		b.Waiting = append(b.Waiting, waiting{Sync: t.Sync, Since: t.WaitingSince.UTC().Truncate(time.Second), Rows: t.WaitingRows})
	}
	return b
}

func writeBudget(w io.Writer, rep *statusReport) {
	b := rep.Budget
	if b.Limit == 0 {
		fmt.Fprintf(w, "API requests in %s: %d (no monthly budget)\n", rep.Month, b.Used)
		return
	}
	fmt.Fprintf(w, "API requests in %s: %d of %d used, %d left (%d of them the reserve)\n", rep.Month, b.Used, b.Limit, b.Left, min(b.Left, b.Reserve))
	switch {
	case b.PaceSeconds == 0 && b.NextSend != nil:
		fmt.Fprintf(w, "Partial batches: none until %s (the budget beyond the reserve is spent)\n", b.NextSend.Format(time.RFC3339))
	case b.PaceSeconds > 0:
		next := "now"
		if b.NextSend != nil && b.NextSend.After(rep.GeneratedAt) {
			next = b.NextSend.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "Partial batches: one send every %s, next from %s; projected %d requests at the month's end\n",
			statuspage.ShortDuration(time.Duration(b.PaceSeconds)*time.Second), next, b.Projected)
	}
	if b.RunsOut != nil {
		fmt.Fprintf(w, "At MAX_DELAY's rate the budget beyond the reserve runs out on %s\n", b.RunsOut.Format(time.DateOnly))
	}
	for _, wt := range b.Waiting {
		fmt.Fprintf(w, "Waiting for its turn: %s, %d rows since %s\n", wt.Sync, wt.Rows, wt.Since.Format(time.RFC3339))
	}
}

// deletesText is ", 3 deleted, 1 restored" for a run that deleted,
// archived or restored records; "" for the others, whose line stays as it
// was.
func deletesText(r *lastRunStatus) string {
	var b strings.Builder
	for _, c := range []struct {
		n    int
		what string
	}{{r.Deleted, "deleted"}, {r.Archived, "archived"}, {r.Restored, "restored"}} {
		if c.n > 0 {
			fmt.Fprintf(&b, ", %d %s", c.n, c.what)
		}
	}
	return b.String()
}
