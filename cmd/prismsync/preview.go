package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/mapping"
)

const previewHelp = `Usage: prismsync preview --sync NAME [--limit N] [--where SQL]

Shows what the next pass of sync NAME would send, without sending anything
or moving its checkpoint. It reads the first N rows (default 10) after the
sync's checkpoint, in the order the engine reads them, maps them, and prints
the exact import request bodies to stdout, one per line, split into requests
of the sync's batch_size. Rows the mapping refuses (a missing required value,
a failed coercion, a dedupe value repeated in one request) are left out of
the bodies and listed on stderr with their key and reason.

--where SQL selects rows by a boolean expression over the source's columns
instead of the checkpoint (for example to see how one row would be sent).
It is your own SQL, applied as WHERE (SQL) around the source, and runs in a
READ ONLY transaction.

Needs DATABASE_URL (and the checkpoint store), not the MICRO_* variables.
The commit horizon is not applied: the newest rows shown may be sent by a
later pass rather than the next one.

Examples:
  prismsync preview --sync people
  prismsync preview --sync people --limit 1 | jq .
  prismsync preview --sync people --where "id = 42"
  prismsync preview --sync people --where "updated_at > now() - interval '1 hour'" --limit 100
`

func runPreview(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("preview", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, previewHelp) }
	name := fl.String("sync", "", "the sync to preview (required)")
	limit := fl.Int("limit", 10, "how many rows to read")
	where := fl.String("where", "", "SQL boolean expression over the source columns; replaces the checkpoint")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	switch {
	case *name == "":
		fl.Usage()
		return &usageError{errors.New("preview needs --sync NAME")}
	case fl.NArg() > 0:
		return &usageError{fmt.Errorf("preview: unexpected argument %q (quote the --where expression)", fl.Arg(0))}
	case *limit < 1 || *limit > mapping.MaxBatchSize:
		return &usageError{fmt.Errorf("preview: --limit must be between 1 and %d", mapping.MaxBatchSize)}
	}
	cfg, err := loadConfig(ctx, env, needs{db: true})
	if err != nil {
		return err
	}
	mf, err := mapping.Load(cfg.MappingFile)
	if err != nil {
		return err
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

	var after checkpoint.Position
	if *where == "" {
		if after, err = previewPosition(ctx, cfg, pool, s.Name); err != nil {
			return err
		}
	}
	p, err := newPreviewer(ctx, pool, s)
	if err != nil {
		// Explain a source that does not fit the mapping the way validate
		// does, at the lines to fix.
		if fs := mapping.CheckSource(ctx, pool, s); fs.HasErrors() {
			for _, f := range fs {
				fmt.Fprintln(stderr, f.String())
			}
			return &usageError{fmt.Errorf("sync %s does not fit its source (%d errors)", s.Name, len(fs.Errors()))}
		}
		return err
	}
	rows, err := p.read(ctx, after, *where, *limit)
	if err != nil {
		return err
	}
	what := "after the checkpoint " + after.String()
	if *where != "" {
		what = "matching --where"
	}
	if len(rows) == 0 {
		fmt.Fprintf(stderr, "sync %s: no rows %s; nothing would be sent\n", s.Name, what)
		return nil
	}
	res := p.build(rows)
	fmt.Fprintf(stderr, "sync %s: %d rows %s: %d in %d request(s) to POST /v2/prism/{teamId}/%s/import, %d invalid (nothing was sent)\n",
		s.Name, len(rows), what, len(rows)-len(res.invalid), len(res.bodies), s.Target.Object, len(res.invalid))
	for _, b := range res.bodies {
		if _, err := stdout.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write body: %w", err)
		}
	}
	for _, n := range res.notes {
		fmt.Fprintln(stderr, n)
	}
	return nil
}

// previewPosition loads the sync's live checkpoint without changing the
// store: a postgres store is opened only when its schema exists (opening
// creates it otherwise), and a file store is read as a snapshot without its
// lock, which a running daemon holds.
func previewPosition(ctx context.Context, cfg *Config, pool *pgxpool.Pool, name string) (checkpoint.Position, error) {
	var store checkpoint.Store
	if path, ok := strings.CutPrefix(cfg.CheckpointStore, "file:"); ok {
		fst, err := checkpoint.OpenFileReadOnly(path)
		if errors.Is(err, fs.ErrNotExist) {
			return checkpoint.Position{}, nil
		}
		if err != nil {
			return checkpoint.Position{}, &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
		}
		store = fst
	} else {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass('prismsync.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
			return checkpoint.Position{}, &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
		}
		if !exists {
			return checkpoint.Position{}, nil // prismsync never ran against this database
		}
		pst, err := checkpoint.Open(ctx, cfg.CheckpointStore, cfg.DatabaseURL)
		if err != nil {
			return checkpoint.Position{}, &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
		}
		store = pst
	}
	defer store.Close()
	st, err := store.Load(ctx, name)
	if err != nil {
		return checkpoint.Position{}, fmt.Errorf("load checkpoint: %w", err)
	}
	return st.Position, nil
}

// previewer reads rows the way connector.Source.Page does (same columns,
// same keyset order, same casts) and maps them the way the engine builds a
// batch. The engine keeps its row type unexported, hence the mirror; the
// preview test compares the bytes with what the engine really sends.
type previewer struct {
	pool     *pgxpool.Pool
	sync     *mapping.Sync
	enc      *mapping.Encoder
	from     string   // the source as a FROM item aliased src
	selected []string // src."col" for every mapping column
	ordering []string // src."cursor", src."key"...
	types    []string // SQL types of the ordering columns, for the position casts
}

func newPreviewer(ctx context.Context, pool *pgxpool.Pool, s *mapping.Sync) (*previewer, error) {
	// NewSource checks key and cursor and learns the column types exactly as
	// a pass does, so the encoder is compiled from the same description.
	src, err := connector.NewSource(ctx, pool, s)
	if err != nil {
		return nil, err
	}
	enc, err := s.Compile(src.Fields())
	if err != nil {
		return nil, err
	}
	p := &previewer{pool: pool, sync: s, enc: enc}
	if s.Source.Query != "" {
		p.from = "(" + strings.TrimRight(strings.TrimSpace(s.Source.Query), ";") + ") AS src"
	} else {
		p.from = pgx.Identifier(strings.Split(s.Source.Table, ".")).Sanitize() + " AS src"
	}
	for _, c := range s.Columns() {
		p.selected = append(p.selected, "src."+pgx.Identifier{c}.Sanitize())
	}
	for _, c := range append([]string{s.Source.Cursor}, s.Source.Key...) {
		p.ordering = append(p.ordering, "src."+pgx.Identifier{c}.Sanitize())
	}
	rows, err := pool.Query(ctx, "SELECT "+strings.Join(p.ordering, ", ")+" FROM "+p.from+" LIMIT 0")
	if err != nil {
		return nil, fmt.Errorf("sync %s: describe source: %w", s.Name, err)
	}
	fds := rows.FieldDescriptions()
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sync %s: describe source: %w", s.Name, err)
	}
	for _, fd := range fds {
		var name string
		if err := pool.QueryRow(ctx, "SELECT $1::oid::regtype::text", fd.DataTypeOID).Scan(&name); err != nil {
			return nil, fmt.Errorf("sync %s: column type: %w", s.Name, err)
		}
		p.types = append(p.types, name)
	}
	return p, nil
}

// previewRow is one source row: the mapped columns' values and the row's
// key as text.
type previewRow struct {
	values []any
	key    []string
}

// read returns up to limit rows strictly after the position (zero: from
// the start) or, with a where expression, matching it, in keyset order.
func (p *previewer) read(ctx context.Context, after checkpoint.Position, where string, limit int) ([]previewRow, error) {
	from := p.from
	if where != "" {
		from = "(SELECT * FROM " + p.from + " WHERE (" + where + ")) AS src"
	}
	var args []any
	param := func(v, typ string) string {
		args = append(args, v)
		return fmt.Sprintf("$%d::text::%s", len(args), typ)
	}
	order := strings.Join(p.ordering, ", ")
	conds := []string{p.ordering[0] + " IS NOT NULL"}
	if !after.IsZero() {
		if len(after.Key) != len(p.types)-1 {
			return nil, fmt.Errorf("checkpoint has %d key values but the mapping's key has %d columns; was the key changed?", len(after.Key), len(p.types)-1)
		}
		ps := []string{param(after.Cursor, p.types[0])}
		for i, k := range after.Key {
			ps = append(ps, param(k, p.types[i+1]))
		}
		conds = append(conds, "("+order+") > ("+strings.Join(ps, ", ")+")")
	}
	sel := append([]string(nil), p.selected...)
	for _, o := range p.ordering[1:] {
		sel = append(sel, "("+o+")::text")
	}
	args = append(args, limit)
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT $%d",
		strings.Join(sel, ", "), from, strings.Join(conds, " AND "), order, len(args))

	// The operator's expression runs in a READ ONLY transaction, and with
	// bound parameters pgx sends one statement only, so it cannot smuggle a
	// second one.
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to keep
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, p.readError(err, where)
	}
	defer rows.Close()
	n := len(p.selected)
	var out []previewRow
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}
		r := previewRow{values: vals[:n:n]}
		for _, v := range vals[n:] {
			k, _ := v.(string) // a NULL key column: the engine refuses it; show it empty
			r.key = append(r.key, k)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, p.readError(err, where)
	}
	return out, nil
}

// readError tells the operator's own SQL mistakes (a usage problem) from a
// failing database.
func (p *previewer) readError(err error, where string) error {
	var pe *pgconn.PgError
	if where != "" && errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "42") || strings.HasPrefix(pe.Code, "22") || pe.Code == "25006") {
		return &usageError{fmt.Errorf("preview --where %q: %s", where, pe.Message)}
	}
	return fmt.Errorf("sync %s: read rows: %w", p.sync.Name, err)
}

// previewResult is what a pass would send for the rows read.
type previewResult struct {
	bodies  [][]byte // one import request body per batch
	invalid []string // one line per row kept out of the requests
	notes   []string // invalid rows and value warnings, for stderr
}

// build groups rows into requests of batch_size and encodes them as the
// engine does (connector's Syncer.build and buildRows): rows the mapping
// refuses and rows repeating a dedupe value inside one request are kept out.
func (p *previewer) build(rows []previewRow) previewResult {
	var res previewResult
	t := p.sync.Target
	opts := prism.ImportOptions{
		DedupeBy:        t.DedupeBy,
		CaseInsensitive: t.CaseInsensitive,
		UpdateExisting:  t.UpdateExisting,
		ListID:          t.ListID,
	}
	size := p.sync.BatchSize
	for start := 0; start < len(rows); start += size {
		page := rows[start:min(start+size, len(rows))]
		var objects [][]byte
		var buf []byte
		seen := map[string]bool{}
		for _, r := range page {
			at := len(buf)
			out, dedupe, err := p.enc.Append(buf, r.values, func(w mapping.Warning) {
				res.notes = append(res.notes, fmt.Sprintf("row %s: warning: property %s: %s (%s)", p.keyText(r), w.Property, w.Message, w.Code))
			})
			if err != nil {
				// RowError's text ends with its code, e.g. "(missing_required)".
				p.invalid(&res, r, err.Error())
				continue
			}
			if dedupe != "" {
				if seen[dedupe] {
					p.invalid(&res, r, fmt.Sprintf("%s value %q already appears in this batch; the row is retried when it changes again (duplicate_in_batch)", t.DedupeBy, dedupe))
					buf = out[:at]
					continue
				}
				seen[dedupe] = true
			}
			buf = out
			objects = append(objects, buf[at:len(buf):len(buf)])
		}
		if len(objects) > 0 {
			res.bodies = append(res.bodies, prism.EncodeImportBody(objects, opts))
		}
	}
	return res
}

func (p *previewer) invalid(res *previewResult, r previewRow, msg string) {
	line := fmt.Sprintf("row %s: invalid: %s", p.keyText(r), msg)
	res.invalid = append(res.invalid, line)
	res.notes = append(res.notes, line)
}

// keyText names a row by its key columns, e.g. (id=42) or (lang=en, id=7).
func (p *previewer) keyText(r previewRow) string {
	parts := make([]string, len(r.key))
	for i, k := range r.key {
		col := ""
		if i < len(p.sync.Source.Key) {
			col = p.sync.Source.Key[i]
		}
		parts[i] = col + "=" + k
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
