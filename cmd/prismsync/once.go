package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/mapping"
)

const onceHelp = `Usage: prismsync once [--sync NAME]

One pass of every sync in the mapping file (or only NAME): settle batches an
interrupted run left in the journal, then read and send pages until the
source has no rows after the checkpoint. A sync that others link to (ref:)
passes before them, so their links find its records; rows whose linked row
has no record yet wait (deferred) and go out in a later run. It is never paced: everything
pending is sent, using the budget's reserve if need be. Exits 0 only if every
sync succeeded; 4 when the month's request budget ran out (the rows still
waiting and when sending resumes are printed; nothing is lost).

Examples:
  prismsync once
  MAPPING_FILE=/etc/prismsync/mapping.yaml prismsync once --sync people
`

func runOnce(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("once", onceHelp, stdout, stderr)
	only := fs.String("sync", "", "run only the sync with this name")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	a, err := newApp(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	syncs, err := selectSyncs(a.syncs, *only)
	if err != nil {
		return err
	}
	// A one-shot run serves no endpoint, but records its runs.
	o, err := startOps(ctx, a, opsOptions{env: os.LookupEnv})
	if err != nil {
		return err
	}
	defer o.stop()
	var failed []error
	// Referenced syncs first: their commits write the records the links
	// of the syncs after them resolve to.
	for _, s := range mapping.Order(syncs) {
		sy := a.syncer(s)
		sy.GuardWait = 30 * time.Second // a one-shot run must not exit 0 having read nothing
		sum, held, err := a.runPass(ctx, sy)
		if !held && err == nil {
			err = fmt.Errorf("sync %s is being run by another prismsync process right now; try again later", s.Name)
		}
		logSummary(a.log, sum, err)
		if err != nil {
			reportBudget(stderr, s.Name, backlog(ctx, sy), err)
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d syncs failed: %w", len(failed), len(syncs), errors.Join(failed...))
	}
	return nil
}

// reportBudget tells the operator, when err is a spent request budget,
// what still waits and when sending resumes. waiting describes the rows.
func reportBudget(w io.Writer, sync, waiting string, err error) {
	var ee *budget.ExhaustedError
	if !budgetOnly(err) || !errors.As(err, &ee) {
		return
	}
	fmt.Fprintf(w, "prismsync: sync %s: the month's request budget is spent (%d of %d requests in %s); %s, nothing is lost. Sending resumes %s, or sooner if MICRO_MONTHLY_REQUESTS is raised.\n",
		sync, ee.Used, ee.Limit, ee.Month, waiting, ee.Resumes.UTC().Format(time.RFC3339))
}

// backlog describes the rows sy still has to send after its checkpoint.
func backlog(ctx context.Context, sy *connector.Syncer) string {
	n, err := sy.Backlog(ctx)
	if err != nil {
		return "the rows after its checkpoint still wait"
	}
	return fmt.Sprintf("%d rows still wait", n)
}
