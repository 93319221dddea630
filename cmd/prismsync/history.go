package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/internal/statuspage"
)

const historyHelp = `Usage: prismsync history [--sync NAME] [--limit N] [--json]

Lists the passes of every sync (or of NAME), newest first, as the process
that ran each one recorded it in the checkpoint store: when it ran and for
how long, its result (ok, failed, or budget: the month's request budget
stopped it or holds its rows), the rows it read, sent, created, updated,
matched unchanged at Micro (existing), skipped by their fingerprints
(unchanged), refused (invalid: by the mapping, rejected: by the API) and
deferred, the API requests it made, polls included, and the checkpoint it
left. The store keeps the last HISTORY_KEEP passes of each sync (1000).

It reads the store only, and never creates or changes it; with a file:
store it reads a snapshot, so it works next to a running daemon.

--json prints a stable array (fields may be added, never renamed):

  [{"sync", "pass", "started", "finished", "duration_seconds", "result",
    "ok", "error"?, "budget", "rows": {"read", "sent", "created", "updated",
    "existing", "unchanged", "invalid", "rejected", "deferred", "deleted", "archived", "restored"}, "requests",
    "checkpoint": {"cursor", "key"} | null}]

Examples:
  prismsync history
  prismsync history --sync people --limit 100
  prismsync history --json | jq '[.[] | .requests] | add'
`

func runHistory(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("history", historyHelp, stdout, stderr)
	only := fs.String("sync", "", "only this sync's passes")
	limit := fs.Int("limit", 20, "at most this many passes (0 = all kept)")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	if *limit < 0 {
		return &usageError{errors.New("history: --limit must not be negative")}
	}
	cfg, err := loadConfig(ctx, env, needs{})
	if err != nil {
		return err
	}
	store, err := openReadStore(ctx, cfg)
	if err != nil {
		return err
	}
	var runs []checkpoint.Run
	if store != nil {
		defer store.Close()
		if runs, err = store.History(ctx, *only, *limit); err != nil {
			return &unreachableError{fmt.Errorf("run history: %w", err)}
		}
	}
	if *asJSON {
		return writeHistoryJSON(stdout, runs)
	}
	switch {
	case store == nil:
		fmt.Fprintf(stdout, "no passes recorded: %s\n", noStoreText(cfg))
		return nil
	case len(runs) == 0 && *only != "":
		fmt.Fprintf(stdout, "no passes of sync %s recorded\n", *only)
		return nil
	case len(runs) == 0:
		fmt.Fprintln(stdout, "no passes recorded")
		return nil
	}
	writeHistoryTable(stdout, runs)
	return nil
}

// runResult names a pass's outcome: ok, failed, or budget (the budget
// stopped it, or holds its rows until the month turns).
func runResult(r checkpoint.Run) string {
	switch {
	case r.Budget:
		return "budget"
	case r.OK:
		return "ok"
	default:
		return "failed"
	}
}

func writeHistoryTable(w io.Writer, runs []checkpoint.Run) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tPASS\tFINISHED\tDURATION\tRESULT\tREAD\tSENT\tCREATED\tUPDATED\tEXISTING\tUNCHANGED\tINVALID\tREJECTED\tDEFERRED\tDELETED\tARCHIVED\tRESTORED\tREQUESTS\tCHECKPOINT\tERROR")
	for _, r := range runs {
		cp := "(start)"
		if !r.Checkpoint.IsZero() {
			cp = r.Checkpoint.Cursor
			if len(r.Checkpoint.Key) > 0 {
				cp += " [" + strings.Join(r.Checkpoint.Key, ",") + "]"
			}
		}
		fmt.Fprintf(tw, "%s\t#%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Sync, r.Seq,
			r.Finished.UTC().Format(time.RFC3339), statuspage.ShortDuration(r.Finished.Sub(r.Started)), runResult(r),
			r.Rows, r.Sent, r.Created, r.Updated, r.Existing, r.Unchanged, r.Invalid, r.Rejected, r.Deferred,
			r.Deleted, r.Archived, r.Restored, r.Requests, cp, oneLine(r.Error, 80))
	}
	tw.Flush()
}

// historyJSON is the stable JSON shape of one pass in `prismsync history
// --json`: fields may be added, never renamed or removed.
type historyJSON struct {
	Sync     string             `json:"sync"`
	Pass     int64              `json:"pass"`
	Started  time.Time          `json:"started"`
	Finished time.Time          `json:"finished"`
	Duration float64            `json:"duration_seconds"`
	Result   string             `json:"result"`
	OK       bool               `json:"ok"`
	Error    string             `json:"error,omitempty"`
	Budget   bool               `json:"budget"`
	Rows     historyRowsJSON    `json:"rows"`
	Requests int                `json:"requests"`
	Cursor   *historyCheckpoint `json:"checkpoint"`
}

type historyRowsJSON struct {
	Read      int `json:"read"`
	Sent      int `json:"sent"`
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Existing  int `json:"existing"`
	Unchanged int `json:"unchanged"`
	Invalid   int `json:"invalid"`
	Rejected  int `json:"rejected"`
	Deferred  int `json:"deferred"`
	Deleted   int `json:"deleted"`
	Archived  int `json:"archived"`
	Restored  int `json:"restored"`
}

type historyCheckpoint struct {
	Cursor string   `json:"cursor"`
	Key    []string `json:"key"`
}

func historyEntry(r checkpoint.Run) historyJSON {
	j := historyJSON{Sync: r.Sync, Pass: r.Seq, Started: r.Started, Finished: r.Finished,
		Duration: math.Round(r.Finished.Sub(r.Started).Seconds()*1000) / 1000, Result: runResult(r), OK: r.OK,
		Error: r.Error, Budget: r.Budget, Requests: r.Requests,
		Rows: historyRowsJSON{Read: r.Rows, Sent: r.Sent, Created: r.Created, Updated: r.Updated, Existing: r.Existing,
			Unchanged: r.Unchanged, Invalid: r.Invalid, Rejected: r.Rejected, Deferred: r.Deferred,
			Deleted: r.Deleted, Archived: r.Archived, Restored: r.Restored}}
	if !r.Checkpoint.IsZero() {
		j.Cursor = &historyCheckpoint{Cursor: r.Checkpoint.Cursor, Key: r.Checkpoint.Key}
		if j.Cursor.Key == nil {
			j.Cursor.Key = []string{}
		}
	}
	return j
}

func writeHistoryJSON(w io.Writer, runs []checkpoint.Run) error {
	out := make([]historyJSON, 0, len(runs))
	for _, r := range runs {
		out = append(out, historyEntry(r))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
