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
	"github.com/prismsync/prismsync/internal/telemetry"
	"github.com/prismsync/prismsync/mapping"
)

const statusHelp = `Usage: prismsync status [--sync NAME] [--json]

One row per sync: its checkpoint (cursor, key, and for time cursors its age,
i.e. how far behind the CRM may be), the last pass (when, how long, result),
batches in flight (journaled, not yet confirmed), rejected rows, and the API
requests used this month by every replica together.

Syncs come from the mapping file (MAPPING_FILE) and the checkpoint store, so a
sync removed from the mapping still shows. It reads the store only; with a
file: store it reads a snapshot, so it works next to a running daemon.
Exit code 0 whenever the store could be read, whatever the syncs' state;
scripts should read --json, whose shape is stable:

  {"generated_at": RFC3339, "month": "2026-11", "requests_this_month": N,
   "monthly_request_limit": N,
   "syncs": [{"name", "in_mapping", "checkpoint": {"cursor", "key", "batches",
     "updated_at", "age_seconds"?} | null, "checkpoint_error"?,
     "last_run": {"started", "finished", "duration_seconds", "ok", "error"?,
     "rows", "sent"} | null, "in_flight_batches", "rejected_rows"}]}

Examples:
  prismsync status
  prismsync status --json | jq '.syncs[] | select(.last_run.ok == false) | .name'
`

func runStatus(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	flags := newFlagSet("status", statusHelp, stderr)
	only := flags.String("sync", "", "only this sync")
	asJSON := flags.Bool("json", false, "print JSON")
	if help, err := parseFlags(flags, args); help || err != nil {
		return err
	}
	cfg, err := loadConfig(ctx, env, needs{})
	if err != nil {
		return err
	}
	store, err := openStatusStore(ctx, cfg)
	if err != nil {
		return err
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

	rep, err := collectStatus(ctx, store, mapped, *only, cfg.MonthlyRequests, time.Now())
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

// openStatusStore opens the store for reading only. A file store is read as a
// snapshot without its lock, which a running daemon holds.
func openStatusStore(ctx context.Context, cfg *Config) (checkpoint.Store, error) {
	if !strings.HasPrefix(cfg.CheckpointStore, "file:") && cfg.DatabaseURL == "" {
		return nil, &usageError{errors.New("configuration: missing DATABASE_URL (the checkpoint store is postgres; see config.example.env)")}
	}
	s, err := checkpoint.OpenReadOnly(ctx, cfg.CheckpointStore, cfg.DatabaseURL)
	if errors.Is(err, checkpoint.ErrNoStore) {
		return nil, &unreachableError{fmt.Errorf("%w (no sync has run with this CHECKPOINT_STORE yet)", err)}
	}
	if err != nil {
		return nil, &unreachableError{err}
	}
	return s, nil
}

// statusReport is the stable JSON shape of `prismsync status --json`:
// fields may be added, never renamed or removed.
type statusReport struct {
	GeneratedAt  time.Time    `json:"generated_at"`
	Month        string       `json:"month"`
	Requests     int          `json:"requests_this_month"`
	MonthlyLimit int          `json:"monthly_request_limit"`
	Syncs        []syncStatus `json:"syncs"`
}

type syncStatus struct {
	Name            string            `json:"name"`
	InMapping       bool              `json:"in_mapping"`
	Checkpoint      *checkpointStatus `json:"checkpoint"`
	CheckpointError string            `json:"checkpoint_error,omitempty"`
	LastRun         *lastRunStatus    `json:"last_run"`
	InFlight        int               `json:"in_flight_batches"`
	Rejected        int               `json:"rejected_rows"`
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
}

// statusStore is what status reads; checkpoint.Store implements it.
type statusStore interface {
	Syncs(ctx context.Context) ([]string, error)
	Load(ctx context.Context, sync string) (checkpoint.State, error)
	LastRun(ctx context.Context, sync string) (checkpoint.Run, bool, error)
	Pending(ctx context.Context, sync string) ([]checkpoint.Batch, error)
	CountRejects(ctx context.Context, sync string) (int, error)
	Requests(ctx context.Context, month string) (int, error)
}

// collectStatus reads one row per sync: the mapping's syncs in file order,
// then those only the store knows, sorted. A sync whose checkpoint cannot be
// loaded (e.g. missing) gets its error in the row; store failures abort.
func collectStatus(ctx context.Context, st statusStore, mapped []string, only string, limit int, now time.Time) (*statusReport, error) {
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
	month := telemetry.Month(now)
	rep := &statusReport{GeneratedAt: now.UTC().Truncate(time.Second), Month: month, MonthlyLimit: limit, Syncs: []syncStatus{}}
	if rep.Requests, err = st.Requests(ctx, month); err != nil {
		return nil, fmt.Errorf("read request count: %w", err)
	}
	for _, name := range names {
		row := syncStatus{Name: name, InMapping: slices.Contains(mapped, name)}
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
				OK: run.OK, Error: run.Error, Rows: run.Rows, Sent: run.Sent}
		}
		pending, err := st.Pending(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("sync %s: journal: %w", name, err)
		}
		row.InFlight = len(pending)
		if row.Rejected, err = st.CountRejects(ctx, name); err != nil {
			return nil, fmt.Errorf("sync %s: rejects: %w", name, err)
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
		fmt.Fprintln(tw, "SYNC\tCHECKPOINT\tAGE\tLAST RUN\tRESULT\tIN FLIGHT\tREJECTED")
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
					age = shortDuration(time.Duration(*s.Checkpoint.AgeSeconds * float64(time.Second)))
				}
			}
			last, result := "never", "-"
			if r := s.LastRun; r != nil {
				last = fmt.Sprintf("%s (%s ago)", r.Finished.UTC().Format(time.RFC3339), shortDuration(rep.GeneratedAt.Sub(r.Finished)))
				if r.OK {
					result = fmt.Sprintf("ok: %d rows, %d sent in %s", r.Rows, r.Sent, shortDuration(time.Duration(r.Duration*float64(time.Second))))
				} else {
					result = "FAILED: " + oneLine(r.Error, 60)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", name, cp, age, last, result, s.InFlight, s.Rejected)
		}
		tw.Flush()
	}
	if rep.MonthlyLimit > 0 {
		fmt.Fprintf(w, "API requests in %s: %d of %d\n", rep.Month, rep.Requests, rep.MonthlyLimit)
	} else {
		fmt.Fprintf(w, "API requests in %s: %d (no monthly budget)\n", rep.Month, rep.Requests)
	}
}

// shortDuration prints a duration the way people read ages: 45s, 12m, 3h4m,
// 2d5h.
func shortDuration(d time.Duration) string {
	if d < 0 {
		return "-" + shortDuration(-d)
	}
	switch {
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
