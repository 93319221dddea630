package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtemp"
	"github.com/prismsync/prismsync/mapping"
)

const demoHelp = `Usage: prismsync demo [--rows N]

Runs prismsync end to end with no configuration: starts a throwaway
PostgreSQL (initdb in a temp dir; needs the PostgreSQL server package),
seeds a sample table, serves the in-process fake Micro import API on
loopback, syncs the table, changes some rows, syncs again (twice more: with
nothing changed, and with only updated_at bumped), prints a summary of each
pass and removes everything. Nothing leaves this machine.
`

// demoMapping is the mapping the demo syncs with; it doubles as an example.
const demoMapping = `syncs:
  - name: people
    source:
      table: public.people
      key: [id]
      cursor: updated_at
    target:
      object: organization
      dedupe_by: external_id
      case_insensitive: true
      update_existing: true
    batch_size: 250
    properties:
      external_id: id
      name: name
      email: { column: email, transform: [trim, lower] }
      seats: seats
      active: active
      source_system: { value: postgres }
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoHelp, stdout, stderr)
	nrows := fs.Int("rows", 2000, "rows to seed")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	if *nrows < 1 {
		return &usageError{errors.New("--rows must be at least 1")}
	}
	log := newLogger(stderr, "warn", "auto")

	fmt.Fprintln(stdout, "starting a throwaway PostgreSQL ...")
	cluster, err := pgtemp.Start(ctx, pgtemp.Options{})
	if err != nil {
		return &unreachableError{err}
	}
	defer cluster.Stop()
	dsn, err := cluster.CreateDB(ctx, "demo")
	if err != nil {
		return err
	}
	pool, err := openPool(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE public.people (
			id         bigint PRIMARY KEY,
			name       text NOT NULL,
			email      text,
			seats      integer,
			active     boolean NOT NULL DEFAULT true,
			updated_at timestamptz NOT NULL DEFAULT now()
		);
		CREATE INDEX people_sync ON public.people (updated_at, id);`); err != nil {
		return fmt.Errorf("demo: create table: %w", err)
	}
	// Every 500 rows share one updated_at, as a bulk UPDATE would leave
	// them: keyset pagination on (updated_at, id) must still read each once.
	if _, err := pool.Exec(ctx, `
		INSERT INTO public.people (id, name, email, seats, active, updated_at)
		SELECT g, 'Company ' || g, '  Contact' || g || '@Example.COM ', g % 50, g % 7 <> 0,
		       timestamptz '2026-01-01 00:00:00+00' + (g / 500) * interval '1 minute'
		FROM generate_series(1, $1::int) AS g`, *nrows); err != nil {
		return fmt.Errorf("demo: seed: %w", err)
	}

	fake := prismtest.New(prismtest.Options{APIKey: "demo-key"})
	defer fake.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: listen: %w", err)
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close below
	defer srv.Close()

	mf, findings := mapping.Parse("demo-mapping.yaml", []byte(demoMapping))
	if findings.HasErrors() {
		return fmt.Errorf("demo mapping: %w", findings)
	}
	store, err := checkpoint.Open(ctx, "postgres", dsn)
	if err != nil {
		return err
	}
	defer store.Close()
	teamID := uuid.NewString()
	api, err := prism.New(prism.Config{
		BaseURL: "http://" + ln.Addr().String(), APIKey: "demo-key", TeamID: teamID,
		RateLimit: -1, FirstPoll: 10 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return err
	}
	sync, _ := mf.Sync("people")
	sy := &connector.Syncer{Sync: sync, DB: pool, Store: store, API: api, Logger: log, MaxInflight: 4,
		Fingerprints: store}

	fmt.Fprintf(stdout, "fake Micro API on http://%s (team %s)\n\n", ln.Addr(), teamID)
	fmt.Fprintf(stdout, "pass 1: initial sync of %d rows\n", *nrows)
	sum, err := sy.Once(ctx)
	printSummary(stdout, sum)
	if err != nil {
		return err
	}

	changed := min(100, *nrows)
	if _, err := pool.Exec(ctx, `UPDATE public.people SET seats = seats + 1, updated_at = now() WHERE id <= $1`, changed); err != nil {
		return fmt.Errorf("demo: update rows: %w", err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO public.people (id, name, email, updated_at)
		SELECT g, 'New company ' || g, 'new' || g || '@example.com', now()
		FROM generate_series($1::int + 1, $1::int + 10) AS g`, *nrows); err != nil {
		return fmt.Errorf("demo: insert rows: %w", err)
	}
	fmt.Fprintf(stdout, "\npass 2: after updating %d rows and inserting 10\n", changed)
	sum, err = sy.Once(ctx)
	printSummary(stdout, sum)
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "\npass 3: nothing changed")
	sum, err = sy.Once(ctx)
	printSummary(stdout, sum)
	if err != nil {
		return err
	}

	touched := min(50, *nrows)
	if _, err := pool.Exec(ctx, `UPDATE public.people SET updated_at = now() WHERE id <= $1`, touched); err != nil {
		return fmt.Errorf("demo: touch rows: %w", err)
	}
	fmt.Fprintf(stdout, "\npass 4: updated_at bumped on %d rows, nothing else changed (change fingerprints skip them)\n", touched)
	sum, err = sy.Once(ctx)
	printSummary(stdout, sum)
	if err != nil {
		return err
	}

	st := fake.Stats()
	fmt.Fprintf(stdout, "\nfake API now holds %d organizations; prismsync made %d requests (%d imports, %d polls)\n",
		len(fake.Records("organization")), st.Requests, st.Imports, st.Polls)
	fmt.Fprintln(stdout, "cleaning up.")
	return nil
}

func printSummary(w io.Writer, s connector.Summary) {
	fmt.Fprintf(w, "  rows read %d · skipped unchanged %d · sent %d · created %d · updated %d · invalid %d · rejected %d · batches %d\n",
		s.Rows, s.Unchanged, s.Sent, s.Created, s.Updated, s.Invalid, s.Rejected, s.Batches)
	fmt.Fprintf(w, "  checkpoint %s · %s\n", positionText(s), s.Duration.Round(time.Millisecond))
}
