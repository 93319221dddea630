package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/mapping"
)

const reconcileHelp = `Usage: prismsync reconcile [--sync NAME] [--dry-run] [--yes]

Finds the rows that were deleted from the source (hard deletes) of every
sync with deletes configured (source.deleted, reconcile: or
target.on_delete; or only NAME), and removes their Micro records per
on_delete: deleted (batch/delete, 100 ids a request) or archived
(batch/update with the archive properties). Only rows that reached Micro
count: the record ledger lists them. The checkpoint does not move.

A reconcile that would remove more than MAX_DELETE_SHARE (0.1) of a sync's
records deletes nothing, says why and exits 1: an emptied table, a wrong
DATABASE_URL or a broken query looks exactly like that. Look at the keys
with --dry-run, then run it again with --yes if they are right. It is
never paced: an explicit command sends at once, stopping only on a spent
budget (exit 4).

Examples:
  prismsync reconcile --dry-run
  prismsync reconcile --sync people
  prismsync reconcile --sync people --yes
`

func runReconcile(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("reconcile", reconcileHelp, stdout, stderr)
	only := fs.String("sync", "", "reconcile only the sync with this name")
	dryRun := fs.Bool("dry-run", false, "list the keys whose records would be removed, and send nothing")
	yes := fs.Bool("yes", false, "remove them even when they are more than MAX_DELETE_SHARE of the sync's records")
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
	var todo []*mapping.Sync
	for _, s := range syncs {
		if s.Deletes() {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		if *only != "" {
			return &usageError{fmt.Errorf("sync %s has no deletes configured (source.deleted, reconcile: or target.on_delete)", *only)}
		}
		fmt.Fprintln(stderr, "no sync has deletes configured (source.deleted, reconcile: or target.on_delete); nothing to do")
		return nil
	}
	o, err := startOps(ctx, a, opsOptions{env: os.LookupEnv})
	if err != nil {
		return err
	}
	defer o.stop()
	var failed []error
	for _, s := range todo {
		sy := a.syncer(s)
		opts := connector.ReconcileOptions{DryRun: *dryRun, Yes: *yes}
		if *dryRun {
			opts.Gone = func(key []string) { fmt.Fprintf(stdout, "%s\t%s\n", s.Name, strings.Join(key, ",")) }
		}
		sum, held, err := a.runReconcile(ctx, sy, opts)
		if !held && err == nil {
			err = fmt.Errorf("sync %s is being run by another prismsync process right now; try again later", s.Name)
		}
		switch {
		case err != nil:
			failed = append(failed, err)
			a.log.Error("reconcile failed", "sync", s.Name, "gone", sum.Gone, "deleted", sum.Deleted, "archived", sum.Archived, "err", err)
		case *dryRun:
			fmt.Fprintf(stderr, "sync %s: %d record(s) would be removed (%s); nothing was sent\n", s.Name, sum.Gone, s.Target.OnDelete)
		default:
			a.log.Info("reconcile done", "sync", s.Name, "gone", sum.Gone, "deleted", sum.Deleted, "archived", sum.Archived,
				"rejected", sum.Rejected, "batches", sum.Batches, "duration", sum.Duration)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d syncs failed: %w", len(failed), len(todo), errors.Join(failed...))
	}
	return nil
}
