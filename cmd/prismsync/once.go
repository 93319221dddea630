package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sethvargo/go-envconfig"
)

const onceHelp = `Usage: prismsync once [--sync NAME]

One pass of every sync in the mapping file (or only NAME): settle batches an
interrupted run left in the journal, then read and send pages until the
source has no rows after the checkpoint. Exits 0 only if every sync succeeded.

Examples:
  prismsync once
  MAPPING_FILE=/etc/prismsync/mapping.yaml prismsync once --sync people
`

func runOnce(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("once", onceHelp, stderr)
	only := fs.String("sync", "", "run only the sync with this name")
	if help, err := parseFlags(fs, args); help || err != nil {
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
	for _, s := range syncs {
		sy := a.syncer(s)
		sy.GuardWait = 30 * time.Second // a one-shot run must not exit 0 having read nothing
		sum, held, err := a.runPass(ctx, sy)
		if !held && err == nil {
			err = fmt.Errorf("sync %s is being run by another prismsync process right now; try again later", s.Name)
		}
		logSummary(a.log, sum, err)
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d syncs failed: %w", len(failed), len(syncs), errors.Join(failed...))
	}
	return nil
}
