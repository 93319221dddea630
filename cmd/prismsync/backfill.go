package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
)

const backfillHelp = `Usage: prismsync backfill --sync NAME [--from VALUE] [--to VALUE] [--restart] [--force] [--dry-run] [--yes]

Re-sends a range of a sync's rows (default: all of them), for example after a
mapping change. The daemon's live checkpoint is not touched: the backfill
keeps its own position (named NAME~backfill), so an interrupted backfill
resumes where it stopped when the same command is run again; --restart
starts it over. Rows whose mapped object is unchanged since Micro last
confirmed it are skipped (change fingerprints) unless --force. --from and --to bound the cursor column, inclusive, in
PostgreSQL's text form of the column's type.

It first prints what it will cost: rows, batches and requests (polls
included) against what is left of the month's request budget; --dry-run
prints only that. A backfill is never paced: it may use the budget's
reserve, and stops with exit code 4 when the month's budget runs out
(nothing is lost; run it again next month to resume).

On a terminal it shows progress (rows done of the estimated total, rate,
ETA) and asks for confirmation unless --yes; elsewhere it logs progress
every few seconds and needs --yes.

Examples:
  prismsync backfill --sync people --dry-run
  prismsync backfill --sync people --yes
  prismsync backfill --sync people --from 2026-01-01 --to '2026-02-01 00:00:00+00'
`

func runBackfill(ctx context.Context, args []string, env envconfig.Lookuper, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("backfill", backfillHelp, stdout, stderr)
	name := fs.String("sync", "", "the sync to backfill (required)")
	from := fs.String("from", "", "lowest cursor value to send (inclusive)")
	to := fs.String("to", "", "highest cursor value to send (inclusive)")
	restart := fs.Bool("restart", false, "forget an interrupted backfill's position and start over")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	force := fs.Bool("force", false, "send rows even when their object is unchanged since Micro last confirmed it")
	dryRun := fs.Bool("dry-run", false, "print what the backfill would cost (rows, batches, requests) against the month's budget, and send nothing")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	if *name == "" {
		fs.usage()
		return &usageError{errors.New("backfill needs --sync NAME")}
	}
	a, err := newApp(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	syncs, err := selectSyncs(a.syncs, *name)
	if err != nil {
		return err
	}
	sy := a.syncer(syncs[0])
	sy.StateName = checkpoint.BackfillState(*name)
	sy.From, sy.To = *from, *to
	// A backfill re-sends rows on purpose: a fresh key per run, so an
	// identical earlier backfill's stored answers are not replayed.
	sy.KeyNonce = uuid.NewString()
	sy.GuardWait = 30 * time.Second
	sy.Force = *force
	if *restart && !*dryRun {
		if err := a.store.Forget(ctx, sy.StateName); err != nil {
			return fmt.Errorf("forget backfill position: %w", err)
		}
	}
	// What is left to send: all of it, or the rest of an interrupted
	// backfill (a dry run of --restart counts all of it, forgetting nothing).
	count := sy.Backlog
	if *restart && *dryRun {
		count = sy.Count
	}
	total, err := count(ctx)
	if err != nil {
		return fmt.Errorf("estimate rows: %w", err)
	}
	est, err := estimateBackfill(ctx, a, sy, total)
	if err != nil {
		return err
	}
	if *dryRun {
		fmt.Fprintln(stdout, est)
		return nil
	}
	fmt.Fprintln(stderr, est)
	tty := isTerminal(stderr)
	if !*yes {
		// Only a person can answer the question: both the answer's stream
		// and the question's must be a terminal.
		if !tty || !isTerminal(stdin) {
			return &usageError{errors.New("backfill re-sends rows to Micro; pass --yes to confirm when not on a terminal")}
		}
		fmt.Fprintf(stderr, "Re-send about %d rows of sync %s to Micro? [y/N] ", total, *name)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &usageError{errors.New("backfill cancelled")}
		}
	}
	prog := &progress{total: total, start: time.Now(), tty: tty, w: stderr, log: a.log, every: 5 * time.Second}
	sy.Observer = multiObserver{sy.Observer, prog}
	sum, held, err := a.runPass(ctx, sy)
	if !held && err == nil {
		err = errors.New("another prismsync process is running this backfill right now")
	}
	prog.finish()
	logSummary(a.log, sum, err)
	if err != nil {
		reportBudget(stderr, *name, backlog(ctx, sy), err)
		return fmt.Errorf("backfill interrupted (run the same command again to resume): %w", err)
	}
	// Done: forget the backfill position so the next backfill starts over.
	if err := a.store.Forget(ctx, sy.StateName); err != nil {
		return fmt.Errorf("backfill done, but its position could not be removed: %w", err)
	}
	fmt.Fprintf(stdout, "backfill of %s done: %d rows read, %d created, %d updated, %d unchanged matches, %d rejected, %d invalid\n",
		*name, sum.Rows, sum.Created, sum.Updated, sum.Existing, sum.Rejected, sum.Invalid)
	return nil
}

// estimateBackfill says what sending rows costs against the month's budget:
// batches of the sync's size, each its POST and, when Micro runs it as a
// job, its polls (as learned; two before any job was seen). With change
// fingerprints, unchanged rows are not sent, so it is an upper bound.
func estimateBackfill(ctx context.Context, a *app, sy *connector.Syncer, rows int64) (string, error) {
	size := int64(sy.Sync.BatchSize)
	batches := (rows + size - 1) / size
	perBatch := a.budget.Estimate(sy.Sync.BatchSize)
	var b strings.Builder
	fmt.Fprintf(&b, "backfill of %s: %d rows in %d batches of up to %d: at most %d requests (%d a batch: its POST", sy.Sync.Name, rows, batches, size, batches*int64(perBatch), perBatch)
	if perBatch > 1 {
		fmt.Fprintf(&b, " and %d polls if Micro runs it as a job", perBatch-1)
	}
	b.WriteString(")")
	s, err := a.budget.Snapshot(ctx)
	if err != nil {
		return "", err
	}
	if s.Limit == 0 {
		fmt.Fprintf(&b, "; %d requests used in %s, no monthly budget", s.Used, s.Month)
		return b.String(), nil
	}
	beyond := max(0, s.Left-s.Reserve)
	fmt.Fprintf(&b, "; in %s %d of %d requests are used, %d left beyond the reserve of %d", s.Month, s.Used, s.Limit, beyond, s.Reserve)
	if need := batches * int64(perBatch); need > int64(beyond) {
		fmt.Fprintf(&b, ".\nThat is more than the budget beyond the reserve: the backfill may use the reserve, and stops with exit code 4 when the month's budget runs out (run it again after %s to resume; nothing is lost)",
			s.MonthEnd.Format(time.DateOnly))
	}
	return b.String(), nil
}

// progress shows a backfill's progress: a redrawn line on a terminal, a
// log line every few seconds elsewhere.
type progress struct {
	mu    sync.Mutex
	total int64
	done  int64
	start time.Time
	last  time.Time
	every time.Duration
	tty   bool
	w     io.Writer
	log   interface{ Info(string, ...any) }
}

func (p *progress) PassFinished(connector.Summary, error) {}
func (p *progress) InFlight(string, int)                  {}
func (p *progress) BatchDone(_ string, r connector.BatchReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(r.Rows + r.Invalid)
	now := time.Now()
	if p.tty || now.Sub(p.last) >= p.every {
		p.last = now
		p.print(now)
	}
}

func (p *progress) print(now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := float64(p.done) / max(el, 0.001)
	eta := "?"
	if rate > 0 && p.total > p.done {
		eta = (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second).String()
	} else if p.total <= p.done {
		eta = "0s"
	}
	if p.tty {
		const width = 30
		frac := 1.0
		if p.total > 0 {
			frac = min(1, float64(p.done)/float64(p.total))
		}
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		fmt.Fprintf(p.w, "\r[%s] %d/%d rows  %.0f rows/s  ETA %s ", bar, p.done, p.total, rate, eta)
		return
	}
	p.log.Info("backfill progress", "done", p.done, "total", p.total, "rows_per_sec", int(rate), "eta", eta)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.print(time.Now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// multiObserver fans events out to several observers (nil ones skipped).
type multiObserver []connector.Observer

func (m multiObserver) PassFinished(s connector.Summary, err error) {
	for _, o := range m {
		if o != nil {
			o.PassFinished(s, err)
		}
	}
}

func (m multiObserver) BatchDone(sync string, r connector.BatchReport) {
	for _, o := range m {
		if o != nil {
			o.BatchDone(sync, r)
		}
	}
}

func (m multiObserver) InFlight(sync string, n int) {
	for _, o := range m {
		if o != nil {
			o.InFlight(sync, n)
		}
	}
}
