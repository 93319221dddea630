package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/mapping"
)

const previewHelp = `Usage: prismsync preview --sync NAME [--limit N] [--where SQL]

Shows what the next pass of sync NAME would send, without sending anything
or moving its checkpoint. It reads the first N rows (default 10) after the
sync's checkpoint, in the order the engine reads them, maps them, and prints
the exact import request bodies to stdout, one per line, split into requests
of the sync's batch_size. Rows the mapping refuses (a missing required value,
a failed coercion, a dedupe value repeated in one request) are left out of
the bodies and listed on stderr with their key and reason. Links (ref:) carry
the record ids the checkpoint store's ledger holds; a row whose linked row has
no record yet is listed as deferred: the pass would keep it back until then.

--where SQL selects rows by a boolean expression over the source's columns
instead of the checkpoint (for example to see how one row would be sent).
It is your own SQL, applied as WHERE (SQL) around the source, and runs in a
READ ONLY transaction.

Rows whose change fingerprint matches the object Micro last confirmed
(FINGERPRINTS) are left out of the bodies, as a pass leaves them out, and
listed on stderr as unchanged.

Needs DATABASE_URL (and the checkpoint store, which it only reads: it never
creates or changes it), not the MICRO_* variables.
The commit horizon is not applied: the newest rows shown may be sent by a
later pass rather than the next one.

Examples:
  prismsync preview --sync people
  prismsync preview --sync people --limit 1 | jq .
  prismsync preview --sync people --where "id = 42"
  prismsync preview --sync people --where "updated_at > now() - interval '1 hour'" --limit 100
`

func runPreview(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fl := newFlagSet("preview", previewHelp, stdout, stderr)
	name := fl.String("sync", "", "the sync to preview (required)")
	limit := fl.Int("limit", 10, "how many rows to read")
	where := fl.String("where", "", "SQL boolean expression over the source columns; replaces the checkpoint")
	fl.argHint = "quote the --where expression"
	if help, err := fl.parse(args); help || err != nil {
		return err
	}
	switch {
	case *name == "":
		fl.usage()
		return &usageError{errors.New("preview needs --sync NAME")}
	case *limit < 1 || *limit > mapping.MaxBatchSize:
		return &usageError{fmt.Errorf("preview: --limit must be between 1 and %d", mapping.MaxBatchSize)}
	}
	cfg, err := loadConfig(ctx, env, needs{db: true})
	if err != nil {
		return err
	}
	mf, err := mapping.Load(cfg.MappingFile)
	if err != nil {
		return &usageError{err}
	}
	syncs, err := selectSyncs(mf.Syncs, *name)
	if err != nil {
		return err
	}
	s := syncs[0]
	pool, err := openPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()

	// The store is only read: the checkpoint to start after, the
	// fingerprints that tell which rows a pass would skip, and the record
	// ledger that links resolve through.
	store, err := openReadStore(ctx, cfg)
	if err != nil {
		return err
	}
	var after checkpoint.Position
	if store == nil {
		fmt.Fprintf(stderr, "sync %s: %s; previewing from the start\n", s.Name, noStoreText(cfg))
	} else {
		defer store.Close()
		if *where == "" {
			st, err := store.Load(ctx, s.Name)
			if err != nil {
				return fmt.Errorf("load checkpoint: %w", err)
			}
			after = st.Position
		}
	}
	// The engine builds the bodies, so they are byte for byte what a pass
	// would send (the preview test compares them with a real pass); links
	// resolve through the store's record ledger.
	sy := &connector.Syncer{Sync: s, DB: pool}
	if store != nil {
		sy.Store = store
		if cfg.Fingerprints {
			sy.Fingerprints = store
		}
	}
	pv, err := sy.Preview(ctx, connector.Window{After: after, Where: *where, Limit: *limit})
	if err != nil {
		var pe *connector.PermanentError
		if errors.As(err, &pe) {
			// Explain a source that does not fit the mapping the way
			// validate does, at the lines to fix.
			if fs := mapping.CheckSource(ctx, pool, s); fs.HasErrors() {
				for _, f := range fs {
					fmt.Fprintln(stderr, f.String())
				}
				return &usageError{fmt.Errorf("sync %s does not fit its source (%d errors)", s.Name, len(fs.Errors()))}
			}
		}
		return whereError(err, *where, s.Name)
	}
	what := "after the checkpoint " + after.String()
	if *where != "" {
		what = "matching --where"
	}
	if pv.Rows == 0 {
		fmt.Fprintf(stderr, "sync %s: no rows %s; nothing would be sent\n", s.Name, what)
		return nil
	}
	unchanged := ""
	if len(pv.Unchanged) > 0 {
		unchanged = fmt.Sprintf(", %d unchanged (not sent)", len(pv.Unchanged))
	}
	deferred := ""
	if len(pv.Deferred) > 0 {
		deferred = fmt.Sprintf(", %d deferred", len(pv.Deferred))
	}
	fmt.Fprintf(stderr, "sync %s: %d rows %s: %d in %d request(s) to POST /v2/prism/{teamId}/%s/import%s, %d invalid%s (nothing was sent)\n",
		s.Name, pv.Rows, what, pv.Rows-len(pv.Invalid)-len(pv.Deferred)-len(pv.Unchanged), len(pv.Bodies), s.Target.Object, unchanged, len(pv.Invalid), deferred)
	for _, b := range pv.Bodies {
		if _, err := stdout.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write body: %w", err)
		}
	}
	for _, k := range pv.Unchanged {
		fmt.Fprintf(stderr, "row %s: unchanged: Micro already has this object (its fingerprint matches), a pass skips it\n", keyText(s, k))
	}
	for _, r := range pv.Invalid {
		msg := r.Message
		if !strings.HasSuffix(msg, "("+r.Code+")") {
			msg += " (" + r.Code + ")"
		}
		fmt.Fprintf(stderr, "row %s: invalid: %s\n", keyText(s, r.RowKey), msg)
	}
	for _, r := range pv.Deferred {
		fmt.Fprintf(stderr, "row %s: deferred: %s\n", keyText(s, r.RowKey), r.Message)
	}
	for _, w := range pv.Warnings {
		fmt.Fprintf(stderr, "row %s: warning: property %s: %s (%s)\n", keyText(s, w.RowKey), w.Property, w.Message, w.Code)
	}
	return nil
}

// whereError tells the operator's own --where mistakes (a usage problem)
// from a failing database.
func whereError(err error, where, sync string) error {
	var pe *pgconn.PgError
	if where != "" && errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "42") || strings.HasPrefix(pe.Code, "22") || pe.Code == "25006") {
		return &usageError{fmt.Errorf("preview --where %q: %s", where, pe.Message)}
	}
	return fmt.Errorf("sync %s: %w", sync, err)
}

// keyText names a row by its key columns, e.g. (id=42) or (lang=en, id=7).
func keyText(s *mapping.Sync, key []string) string {
	parts := make([]string, len(key))
	for i, k := range key {
		col := ""
		if i < len(s.Source.Key) {
			col = s.Source.Key[i]
		}
		parts[i] = col + "=" + k
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
