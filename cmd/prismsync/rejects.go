package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
)

const rejectsHelp = `Usage: prismsync rejects [--sync NAME] [--limit N] [--json]

Lists rows that were not delivered: rows the mapping refused (missing
required value, failed coercion, duplicate dedupe value in a batch) and rows
the API refused with a per-row error. The checkpoint moved past them so they
never block the rows behind them; each is retried automatically when its
source row changes again. Newest first.

Examples:
  prismsync rejects
  prismsync rejects --sync people --limit 20
  prismsync rejects --json | jq '.[] | .code' | sort | uniq -c
`

func runRejects(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rejects", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rejectsHelp) }
	only := fs.String("sync", "", "only this sync's rejects")
	limit := fs.Int("limit", 100, "at most this many (0 = all)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	cfg, err := loadConfig(ctx, env, needs{db: true})
	if err != nil {
		return err
	}
	dsn := ""
	if cfg.CheckpointStore == "postgres" {
		dsn = cfg.DatabaseURL
	}
	store, err := checkpoint.Open(ctx, cfg.CheckpointStore, dsn)
	if err != nil {
		return &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
	}
	defer store.Close()
	rs, err := store.Rejects(ctx, *only, *limit)
	if err != nil {
		return fmt.Errorf("list rejects: %w", err)
	}
	total, err := store.CountRejects(ctx, *only)
	if err != nil {
		return fmt.Errorf("count rejects: %w", err)
	}
	if *asJSON {
		return writeRejectsJSON(stdout, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(stdout, "no rejected rows")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tROW KEY\tCODE\tATTEMPTS\tLAST SEEN\tMESSAGE")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Sync, strings.Join(r.RowKey, ","), r.Code, r.Attempts,
			r.LastSeen.UTC().Format(time.RFC3339), oneLine(r.Message, 100))
	}
	tw.Flush()
	if total > len(rs) {
		fmt.Fprintf(stdout, "(%d of %d shown; --limit 0 for all)\n", len(rs), total)
	}
	return nil
}

// rejectJSON is the stable JSON shape of `prismsync rejects --json`.
type rejectJSON struct {
	Sync      string          `json:"sync"`
	RowKey    []string        `json:"row_key"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Attempts  int             `json:"attempts"`
	FirstSeen time.Time       `json:"first_seen"`
	LastSeen  time.Time       `json:"last_seen"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

func writeRejectsJSON(w io.Writer, rs []checkpoint.Reject) error {
	out := make([]rejectJSON, 0, len(rs))
	for _, r := range rs {
		j := rejectJSON{Sync: r.Sync, RowKey: r.RowKey, Code: r.Code, Message: r.Message,
			Attempts: r.Attempts, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen}
		if json.Valid(r.Payload) {
			j.Payload = r.Payload
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
