// Command prismsync keeps Micro CRM objects in step with PostgreSQL rows.
//
// main only wires the process to Run: arguments, environment, standard
// streams and signals. Everything else is testable through Run, which
// dispatches to one file per command: run.go, once.go, backfill.go,
// rejects.go, reconcile.go, status.go, preview.go, validate.go, healthcheck.go, demo.go
// and bench.go (its flags; the measurement is internal/bench). The sync
// commands share app.go (newApp: configuration, pool, store, metrics,
// observer, client) and ops.go (the endpoint, sd_notify and run records
// while syncs run); config.go reads the environment, flags.go holds the flag
// preamble and exitcode.go decides exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/internal/bench"
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	err := Run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr)
	code := exitCode(err)
	if err != nil && !errors.Is(err, errSilent) {
		fmt.Fprintf(os.Stderr, "prismsync: %v\n", err)
	}
	os.Exit(code)
}

// signalContext cancels on the first SIGINT/SIGTERM, so work drains; a
// second signal exits at once (the journal makes that safe).
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "prismsync: second signal, exiting now")
		os.Exit(exitFailure)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

const usage = `prismsync keeps Micro CRM objects in step with PostgreSQL rows.

Usage:
  prismsync run                  run every sync on its schedule until SIGINT/SIGTERM
  prismsync once [--sync NAME]   one pass of each sync (or NAME) until caught up
  prismsync backfill --sync NAME re-send a sync's rows (all, or --from/--to), keeping the live checkpoint
  prismsync rejects              list rows that were not delivered, with their reasons
  prismsync status [--json]      one row per sync: checkpoint, last run, in flight, rejects, requests used
  prismsync history [--sync NAME] the last passes of each sync: result, rows, requests, checkpoint
  prismsync reconcile [--sync NAME] [--dry-run] [--yes]
                                 remove the Micro records of rows deleted from the source (hard deletes)
  prismsync healthcheck          exit 0 when the local /healthz answers (Docker HEALTHCHECK)
  prismsync validate             check the mapping file (and the source, with DATABASE_URL)
  prismsync preview --sync NAME  print the request bodies the next pass would send (sends nothing)
  prismsync demo                 zero-configuration demo: throwaway PostgreSQL + fake API
  prismsync bench                measure throughput, memory and API requests on a throwaway PostgreSQL
  prismsync version              print the version (also: prismsync --version)

Configuration comes from the environment; see config.example.env.
Run 'prismsync help COMMAND' (or 'prismsync COMMAND --help') for a
command's flags, their defaults and examples.

Exit codes: 0 success, 1 a sync failed, 2 bad flags, environment or mapping,
3 database or checkpoint store unreachable, 4 the month's request budget is
spent (once, backfill, rejects --retry; nothing is lost).
`

// Run executes one prismsync command.
func Run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	return explain(run(ctx, args, env, stdout, stderr))
}

func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{errors.New("no command given")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return runDaemon(ctx, rest, env, stdout, stderr)
	case "once":
		return runOnce(ctx, rest, env, stdout, stderr)
	case "validate":
		return runValidate(ctx, rest, env, stdout, stderr)
	case "preview":
		return runPreview(ctx, rest, env, stdout, stderr)
	case "backfill":
		return runBackfill(ctx, rest, env, os.Stdin, stdout, stderr)
	case "rejects":
		return runRejects(ctx, rest, env, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, env, stdout, stderr)
	case "history":
		return runHistory(ctx, rest, env, stdout, stderr)
	case "reconcile":
		return runReconcile(ctx, rest, env, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, env, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case bench.FakeAPICommand:
		return runBenchFakeAPI(ctx, rest, os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fs := newFlagSet("version", versionHelp, stdout, stderr)
		if help, err := fs.parse(rest); help || err != nil {
			return err
		}
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage)
			return nil
		}
		if len(rest) > 1 || !slices.Contains(commands, rest[0]) {
			fmt.Fprint(stderr, usage)
			return &usageError{fmt.Errorf("help: no command %q", strings.Join(rest, " "))}
		}
		// The command prints its own help, flags and defaults included.
		return run(ctx, []string{rest[0], "--help"}, env, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return &usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// commands are the ones usage lists, for "prismsync help CMD".
var commands = []string{"run", "once", "backfill", "rejects", "status", "history", "reconcile", "healthcheck", "validate", "preview", "demo", "bench", "version"}

const versionHelp = `Usage: prismsync version
       prismsync --version

Prints the version and the commit prismsync was built from.
`
