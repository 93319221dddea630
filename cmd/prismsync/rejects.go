package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

const rejectsHelp = `Usage: prismsync rejects [--sync NAME] [--limit N] [--json]
       prismsync rejects --retry [--sync NAME]

Lists rows that were not delivered: rows the mapping refused (missing
required value, failed coercion, duplicate dedupe value in a batch) and rows
the API refused with a per-row error; then, apart, deferred rows: rows that
link (ref:) to a row of another sync that has no Micro record yet (code
missing_reference, with the row they wait for). The checkpoint moved past
them all so they never block the rows behind them. A rejected row is retried
automatically when its source row changes again; a deferred row goes out by
itself on the first pass after the row it waits for was delivered. Newest
first. Listing reads the checkpoint store only (a role that may only read can
run it; with a file: store it reads a snapshot, next to a running daemon); it
never creates or changes it.

--retry re-sends every rejected row (of NAME, or of all syncs) as it is now
in the source, e.g. after fixing a property in Micro or the mapping; the
checkpoint does not move. Rows that are refused again stay rejected. A retry
is never paced; when the month's request budget runs out it stops with exit
code 4, and the rows not yet retried stay in the list.

Examples:
  prismsync rejects
  prismsync rejects --sync people --limit 20
  prismsync rejects --json | jq '.[] | .code' | sort | uniq -c
  prismsync rejects --retry --sync people
`

func runRejects(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("rejects", rejectsHelp, stdout, stderr)
	only := fs.String("sync", "", "only this sync's rejects")
	limit := fs.Int("limit", 100, "at most this many (0 = all)")
	asJSON := fs.Bool("json", false, "print JSON")
	retry := fs.Bool("retry", false, "re-send the rejected rows")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	if *retry {
		return retryRejects(ctx, *only, env, stdout, stderr)
	}
	cfg, err := loadConfig(ctx, env, needs{})
	if err != nil {
		return err
	}
	// Listing only reads: never create, migrate or lock the store.
	store, err := openReadStore(ctx, cfg)
	if err != nil {
		return err
	}
	if store == nil {
		if *asJSON {
			return writeRejectsJSON(stdout, nil)
		}
		fmt.Fprintf(stdout, "no rejected rows: %s\n", noStoreText(cfg))
		return nil
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
	var refused, deferred []checkpoint.Reject
	for _, r := range rs {
		if r.Deferred() {
			deferred = append(deferred, r)
		} else {
			refused = append(refused, r)
		}
	}
	if len(refused) > 0 {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYNC\tROW KEY\tCODE\tATTEMPTS\tLAST SEEN\tMESSAGE")
		for _, r := range refused {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Sync, strings.Join(r.RowKey, ","), r.Code, r.Attempts,
				r.LastSeen.UTC().Format(time.RFC3339), oneLine(r.Message, 100))
		}
		tw.Flush()
	}
	if len(deferred) > 0 {
		if len(refused) > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintln(stdout, "Deferred (waiting for the Micro record of the row they link to; sent once it is delivered):")
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYNC\tROW KEY\tWAITS FOR\tSINCE\tPROPERTY")
		for _, r := range deferred {
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\n", r.Sync, strings.Join(r.RowKey, ","), r.WaitSync, mapping.KeyText(r.WaitKey),
				r.FirstSeen.UTC().Format(time.RFC3339), oneLine(strings.SplitN(r.Message, ":", 2)[0], 60))
		}
		tw.Flush()
	}
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
	// Deferred rows wait for the record of the row WaitsFor names.
	Deferred bool      `json:"deferred"`
	WaitsFor *waitsFor `json:"waits_for,omitempty"`
}

type waitsFor struct {
	Sync   string   `json:"sync"`
	RowKey []string `json:"row_key"`
}

func writeRejectsJSON(w io.Writer, rs []checkpoint.Reject) error {
	out := make([]rejectJSON, 0, len(rs))
	for _, r := range rs {
		j := rejectJSON{Sync: r.Sync, RowKey: r.RowKey, Code: r.Code, Message: r.Message,
			Attempts: r.Attempts, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen}
		if json.Valid(r.Payload) {
			j.Payload = r.Payload
		}
		if r.Deferred() {
			j.Deferred, j.WaitsFor = true, &waitsFor{Sync: r.WaitSync, RowKey: r.WaitKey}
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

// retryRejects re-sends the rejected rows of each selected sync under the
// sync's lease.
func retryRejects(ctx context.Context, only string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	a, err := newApp(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	syncs, err := selectSyncs(a.syncs, only)
	if err != nil {
		return err
	}
	var failed []error
	for _, s := range syncs {
		rs, err := a.store.Rejects(ctx, s.Name, 0)
		if err != nil {
			return fmt.Errorf("list rejects: %w", err)
		}
		var keys [][]string
		for _, r := range rs {
			// Rejects recorded by positions only (journals of older
			// versions) cannot be looked up in the source.
			if len(r.RowKey) == len(s.Source.Key) && !strings.HasPrefix(r.RowKey[0], "batch ") {
				keys = append(keys, r.RowKey)
			}
		}
		if len(keys) == 0 {
			fmt.Fprintf(stdout, "%s: no rejected rows to retry\n", s.Name)
			continue
		}
		release, ok, err := a.store.TryLock(ctx, s.Name)
		if err != nil {
			return fmt.Errorf("sync %s: take lease: %w", s.Name, err)
		}
		if !ok {
			failed = append(failed, fmt.Errorf("sync %s is being run by another prismsync process right now; try again later", s.Name))
			continue
		}
		sum, err := a.syncer(s).Retry(ctx, keys)
		err = explain(err)
		release()
		logSummary(a.log, sum, err)
		if err != nil {
			reportBudget(stderr, s.Name, "the rejects not yet retried wait (prismsync rejects lists them)", err)
			failed = append(failed, err)
			continue
		}
		left, _ := a.store.CountRejects(ctx, s.Name)
		fmt.Fprintf(stdout, "%s: retried %d rows (%d still in the source): %d created, %d updated, %d unchanged matches, %d rejected again, %d invalid, %d still waiting for a linked record; %d rejects left\n",
			s.Name, len(keys), sum.Rows, sum.Created, sum.Updated, sum.Existing, sum.Rejected, sum.Invalid, sum.Deferred, left)
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	return nil
}
