package mapping

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"go.yaml.in/yaml/v3"
)

// Querier is what CheckSource needs from a database handle; *pgxpool.Pool
// and *pgx.Conn satisfy it. Every check runs inside one READ ONLY
// transaction that is rolled back, so even a query source with a
// data-modifying CTE cannot change anything while it is being checked.
type Querier interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// cursorTypes are the column types a cursor may have, by type OID. Their
// text forms sort like their values, so a position kept as text and cast
// back is exact.
var cursorTypes = map[uint32]string{
	pgtype.TimestamptzOID: "timestamptz",
	pgtype.TimestampOID:   "timestamp",
	pgtype.DateOID:        "date",
	pgtype.Int2OID:        "smallint",
	pgtype.Int4OID:        "integer",
	pgtype.Int8OID:        "bigint",
	pgtype.NumericOID:     "numeric",
}

// CursorType reports whether a column of type oid can be a sync's cursor,
// and the type's name. The engine and validate share this one list.
func CursorType(oid uint32) (name string, ok bool) {
	name, ok = cursorTypes[oid]
	return name, ok
}

// nullSampleCap bounds the NULL-cursor count so validate stays cheap on a
// large table full of NULLs.
const nullSampleCap = 1000

// CheckSource checks a sync against its live source without reading more
// than it must and without writing anything: the source is described (never
// executed) to learn its columns, every referenced column must exist and fit
// its transforms (the findings of Compile), the key must be covered by a
// unique index or constraint, and the cursor must have a supported type, be
// NOT NULL and be indexed together with the key. The one statement that reads
// rows is the count of NULL cursors, run only when the cursor may be NULL.
//
// Every problem is a Finding located at the mapping node it concerns, sorted
// by position. A database that cannot be reached at all is reported as one
// error finding at the sync's name.
func CheckSource(ctx context.Context, q Querier, s *Sync) Findings {
	c := &liveCheck{s: s}
	tx, err := q.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		c.errorf(position{s.line, s.col}, "sync %s: cannot check the source: %s", s.Name, pgMessage(err))
		return c.findings
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to keep
	c.tx = tx
	c.run(ctx)
	c.findings.sort()
	return c.findings
}

type liveCheck struct {
	s        *Sync
	tx       pgx.Tx
	findings Findings
	from     string // the source as a FROM item aliased src
	fields   []pgconn.FieldDescription
	byName   map[string][]int // column name -> indexes into fields
}

func (c *liveCheck) add(sev Severity, at position, format string, args ...any) {
	if at.line == 0 {
		at = position{c.s.line, c.s.col}
	}
	c.findings = append(c.findings, Finding{File: c.s.file, Line: at.line, Col: at.col, Severity: sev,
		Message: fmt.Sprintf(format, args...)})
}

func (c *liveCheck) errorf(at position, format string, args ...any) {
	c.add(SeverityError, at, format, args...)
}

func (c *liveCheck) warnf(at position, format string, args ...any) {
	c.add(SeverityWarning, at, format, args...)
}

func (c *liveCheck) run(ctx context.Context) {
	if !c.describe(ctx) {
		return
	}
	cols := make([]Column, len(c.fields))
	for i, f := range c.fields {
		cols[i] = Column{Name: f.Name, OID: f.DataTypeOID}
	}
	if _, err := c.s.Compile(cols); err != nil {
		var fe *FindingsError
		if errors.As(err, &fe) {
			c.findings = append(c.findings, fe.Findings...)
		} else {
			c.errorf(position{c.s.line, c.s.col}, "sync %s: %v", c.s.Name, err)
		}
	}
	at := c.s.at
	cursor, cursorOK := c.column(c.s.Source.Cursor, "source.cursor", at.cursor)
	var keys []*pgconn.FieldDescription
	for i, k := range c.s.Source.Key {
		var kat position
		if i < len(at.keys) {
			kat = at.keys[i]
		}
		if f, ok := c.column(k, "source.key", kat); ok {
			keys = append(keys, f)
		}
	}
	keysOK := len(keys) == len(c.s.Source.Key) && len(keys) > 0
	if cursorOK {
		c.checkCursor(ctx, cursor)
	}
	if keysOK {
		c.checkKey(ctx, keys)
	}
	if cursorOK && keysOK && cursorTypes[cursor.DataTypeOID] != "" {
		c.checkIndex(ctx, cursor, keys)
	}
	if d := c.s.Source.Deleted; d != "" {
		if f, ok := c.column(d, "source.deleted", at.deleted); ok {
			switch f.DataTypeOID {
			case pgtype.BoolOID, pgtype.TimestamptzOID, pgtype.TimestampOID:
			default:
				c.errorf(at.deleted, "sync %s: source.deleted: column %q is %s; a soft-delete column must be a timestamp (deleted when not NULL) or a boolean (deleted when true)",
					c.s.Name, d, c.typeName(ctx, f.DataTypeOID))
			}
		}
	}
	c.checkRefs(ctx)
}

// checkRefs compares the type of each ref column with the type of the key
// column of the referenced sync it must match. A value links when its text
// equals PostgreSQL's text of the referenced key, so an integer never
// matches a uuid, and text matches either only when it is written exactly
// as PostgreSQL prints them.
func (c *liveCheck) checkRefs(ctx context.Context) {
	c.s.eachRef(func(p *Property) {
		t := p.target
		if t == nil || len(p.RefColumns) != len(t.Source.Key) {
			return // reported by Parse
		}
		keyOIDs, ok := c.describeKey(ctx, t)
		if !ok {
			return // the referenced sync's own check reports its source
		}
		at := p.colsAt
		for i, col := range p.RefColumns {
			idx := c.byName[col]
			if len(idx) != 1 {
				return // missing or ambiguous: reported by Compile
			}
			oid := c.fields[idx[0]].DataTypeOID
			ct, _ := classify(oid)
			if ct.kind == ckArray && len(p.RefColumns) == 1 {
				ct = colType{kind: ct.elem}
			}
			mine, theirs := refFamily(ct.kind), refFamily(classifyKind(keyOIDs[i]))
			key := t.Source.Key[i]
			switch {
			case theirs == "":
				c.errorf(at, "sync %s: property %s: sync %s's key column %q is %s; a ref can only point at a key of integer, text or uuid columns",
					c.s.Name, p.Slug, t.Name, key, c.typeName(ctx, keyOIDs[i]))
			case mine == "":
				// Compile reported the column's type.
			case mine != theirs && mine != "text" && theirs != "text":
				c.errorf(at, "sync %s: property %s: column %q is %s but sync %s's key column %q is %s; no value of one can equal a value of the other",
					c.s.Name, p.Slug, col, c.typeName(ctx, oid), t.Name, key, c.typeName(ctx, keyOIDs[i]))
			case mine == "text" && theirs != "text":
				c.warnf(at, "sync %s: property %s: column %q is text but sync %s's key column %q is %s; a value links only when it is written exactly as PostgreSQL prints a %s (cast the column in a query to be sure)",
					c.s.Name, p.Slug, col, t.Name, key, c.typeName(ctx, keyOIDs[i]), theirs)
			}
		}
	})
}

// describeKey returns the type OIDs of t's key columns, by preparing (never
// running) a select of them from t's source.
func (c *liveCheck) describeKey(ctx context.Context, t *Sync) ([]uint32, bool) {
	var from string
	switch {
	case t.Source.Query != "":
		from = "(" + t.Source.Query + ") AS src"
	case t.Source.Table != "":
		from = pgx.Identifier(strings.Split(t.Source.Table, ".")).Sanitize() + " AS src"
	default:
		return nil, false
	}
	cols := make([]string, len(t.Source.Key))
	for i, k := range t.Source.Key {
		cols[i] = "src." + pgx.Identifier{k}.Sanitize()
	}
	sd, err := c.tx.Conn().PgConn().Prepare(ctx, "", "SELECT "+strings.Join(cols, ", ")+" FROM "+from, nil)
	if err != nil {
		return nil, false
	}
	out := make([]uint32, len(sd.Fields))
	for i, f := range sd.Fields {
		out[i] = f.DataTypeOID
	}
	return out, len(out) == len(cols)
}

func classifyKind(oid uint32) colKind {
	ct, ok := classify(oid)
	if !ok {
		return ckDynamic
	}
	return ct.kind
}

// refFamily groups the column kinds whose texts can equal each other.
func refFamily(k colKind) string {
	switch k {
	case ckInt:
		return "integer"
	case ckText:
		return "text"
	case ckUUID:
		return "uuid"
	}
	return ""
}

// describe learns the source's columns by preparing a statement over it,
// which parses and plans but never executes it.
func (c *liveCheck) describe(ctx context.Context) bool {
	src := c.s.Source
	const prefix = "SELECT * FROM "
	var what string
	var at position
	switch {
	case src.Query != "":
		c.from = "(" + src.Query + ") AS src"
		what, at = "source.query", c.s.at.query
	case src.Table != "":
		c.from = pgx.Identifier(strings.Split(src.Table, ".")).Sanitize() + " AS src"
		what, at = "source.table", c.s.at.table
	default:
		c.errorf(c.s.at.source, "sync %s: source has neither table nor query", c.s.Name)
		return false
	}
	sd, err := c.tx.Conn().PgConn().Prepare(ctx, "", prefix+c.from, nil)
	if err != nil {
		var pe *pgconn.PgError
		if src.Query != "" && errors.As(err, &pe) && pe.Position > 0 && c.s.at.queryText != nil {
			// Point at the offending token inside the query, not just at
			// the query key.
			off := int(pe.Position) - 1 - utf8.RuneCountInString(prefix) - 1
			if p, ok := c.s.at.queryText.at(src.Query, off); ok {
				at = p
			}
		}
		c.errorf(at, "sync %s: %s: %s", c.s.Name, what, pgMessage(err))
		return false
	}
	c.fields = sd.Fields
	c.byName = make(map[string][]int, len(c.fields))
	for i, f := range c.fields {
		c.byName[f.Name] = append(c.byName[f.Name], i)
	}
	return true
}

// column finds a key or cursor column of the source, reporting it missing or
// ambiguous.
func (c *liveCheck) column(name, what string, at position) (*pgconn.FieldDescription, bool) {
	idx := c.byName[name]
	switch len(idx) {
	case 0:
		names := make([]string, len(c.fields))
		for i, f := range c.fields {
			names[i] = f.Name
		}
		c.errorf(at, "sync %s: %s: column %q not found in the source (have: %s)", c.s.Name, what, name, strings.Join(names, ", "))
		return nil, false
	case 1:
		return &c.fields[idx[0]], true
	default:
		c.errorf(at, "sync %s: %s: column %q is ambiguous: the source returns it %d times", c.s.Name, what, name, len(idx))
		return nil, false
	}
}

// origin is the table column a source column is a plain reference to.
type origin struct {
	rel     string // schema-qualified, quoted for SQL
	display string // schema.table as written in messages
	kind    byte   // pg_class.relkind
	notNull bool
}

// origin looks up the table column behind f; ok is false when f is computed
// by the query.
func (c *liveCheck) origin(ctx context.Context, f *pgconn.FieldDescription) (origin, bool, error) {
	if f.TableOID == 0 || f.TableAttributeNumber == 0 {
		return origin{}, false, nil
	}
	var o origin
	var schema, table, kind string
	err := c.tx.QueryRow(ctx, `
		SELECT n.nspname, c.relname, c.relkind::text, a.attnotnull
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = $2
		WHERE c.oid = $1`, f.TableOID, int16(f.TableAttributeNumber)).Scan(&schema, &table, &kind, &o.notNull)
	if errors.Is(err, pgx.ErrNoRows) {
		return origin{}, false, nil
	}
	if err != nil {
		return origin{}, false, err
	}
	o.rel = pgx.Identifier{schema, table}.Sanitize()
	o.display = schema + "." + table
	if kind != "" {
		o.kind = kind[0]
	}
	return o, true, nil
}

func (c *liveCheck) checkCursor(ctx context.Context, f *pgconn.FieldDescription) {
	at := c.s.at.cursor
	name := c.s.Source.Cursor
	if _, ok := cursorTypes[f.DataTypeOID]; !ok {
		c.errorf(at, "sync %s: source.cursor: column %q is %s; a cursor must be timestamptz, timestamp, date, smallint, integer, bigint or numeric",
			c.s.Name, name, c.typeName(ctx, f.DataTypeOID))
		return
	}
	if f.DataTypeOID == pgtype.TimestampOID {
		c.warnf(at, "sync %s: source.cursor: column %q is timestamp without time zone; the commit horizon compares it as UTC, so it must hold UTC times (timestamptz avoids this)",
			c.s.Name, name)
	}
	o, known, err := c.origin(ctx, f)
	if err != nil {
		c.errorf(at, "sync %s: source.cursor: inspect column %q: %s", c.s.Name, name, pgMessage(err))
		return
	}
	if known && o.notNull {
		return
	}
	nulls, err := c.countNullCursors(ctx)
	if err != nil {
		c.errorf(at, "sync %s: source.cursor: count rows where %q is NULL: %s", c.s.Name, name, pgMessage(err))
		return
	}
	const never = "never synced (fill it and add NOT NULL, or coalesce it in a query)"
	switch {
	case nulls >= nullSampleCap:
		c.errorf(at, "sync %s: source.cursor: column %q is NULL in at least %d rows; those rows are %s", c.s.Name, name, nullSampleCap, never)
	case nulls == 1:
		c.errorf(at, "sync %s: source.cursor: column %q is NULL in 1 row; that row is %s", c.s.Name, name, never)
	case nulls > 1:
		c.errorf(at, "sync %s: source.cursor: column %q is NULL in %d rows; those rows are %s", c.s.Name, name, nulls, never)
	case known && o.kind == 'v':
		c.warnf(at, "sync %s: source.cursor: column %q may be NULL (view %s does not say); rows where it is NULL would never be synced",
			c.s.Name, name, o.display)
	case known:
		c.warnf(at, "sync %s: source.cursor: column %q is nullable; rows where it is NULL would never be synced (add NOT NULL to %s)",
			c.s.Name, name, o.display)
	default:
		c.warnf(at, "sync %s: source.cursor: column %q may be NULL (the query computes it); rows where it is NULL would never be synced",
			c.s.Name, name)
	}
}

// countNullCursors runs the source, in a savepoint so a query that fails at
// run time does not abort the checks after it.
func (c *liveCheck) countNullCursors(ctx context.Context) (int, error) {
	sp, err := c.tx.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer sp.Rollback(ctx) //nolint:errcheck // read-only
	var n int
	err = sp.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM %s WHERE src.%s IS NULL LIMIT %d) AS nulls",
		c.from, pgx.Identifier{c.s.Source.Cursor}.Sanitize(), nullSampleCap)).Scan(&n)
	return n, err
}

func (c *liveCheck) checkKey(ctx context.Context, keys []*pgconn.FieldDescription) {
	at := c.s.at
	rel, attnums, why, err := c.sameTable(ctx, keys, c.s.Source.Key, func(i int, o origin) {
		// A view's columns never carry NOT NULL, so say nothing about them.
		if !o.notNull && o.kind != 'v' {
			var kat position
			if i < len(at.keys) {
				kat = at.keys[i]
			}
			c.warnf(kat, "sync %s: source.key: column %q is nullable; a row whose key is NULL stops the sync (add NOT NULL to %s)",
				c.s.Name, c.s.Source.Key[i], o.display)
		}
	})
	if err != nil {
		c.errorf(at.key, "sync %s: source.key: inspect key columns: %s", c.s.Name, pgMessage(err))
		return
	}
	list := strings.Join(c.s.Source.Key, ", ")
	if why != "" {
		c.warnf(at.key, "sync %s: source.key: cannot check that (%s) is unique: %s", c.s.Name, list, why)
		return
	}
	var unique bool
	err = c.tx.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_index i
			WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
			  AND (i.indkey::int2[])[0:i.indnkeyatts - 1] <@ $2::int2[])`, rel.oid, attnums).Scan(&unique)
	if err != nil {
		c.errorf(at.key, "sync %s: source.key: look up unique indexes: %s", c.s.Name, pgMessage(err))
		return
	}
	if !unique {
		c.warnf(at.key, "sync %s: source.key: (%s) is not covered by a unique index or constraint on %s; rows with equal (cursor, key) values can be skipped at a page boundary (add a primary key or a unique index)",
			c.s.Name, list, rel.display)
	}
}

func (c *liveCheck) checkIndex(ctx context.Context, cursor *pgconn.FieldDescription, keys []*pgconn.FieldDescription) {
	at := c.s.at.cursor
	fields := append([]*pgconn.FieldDescription{cursor}, keys...)
	names := append([]string{c.s.Source.Cursor}, c.s.Source.Key...)
	// The engine orders by (cursor, key...); a key column that is also the
	// cursor adds nothing to the order an index must provide.
	var ff []*pgconn.FieldDescription
	var nn []string
	seen := map[string]bool{}
	for i, n := range names {
		if !seen[n] {
			seen[n] = true
			ff = append(ff, fields[i])
			nn = append(nn, n)
		}
	}
	list := strings.Join(nn, ", ")
	rel, attnums, why, err := c.sameTable(ctx, ff, nn, nil)
	if err != nil {
		c.errorf(at, "sync %s: source.cursor: inspect cursor and key columns: %s", c.s.Name, pgMessage(err))
		return
	}
	if why != "" {
		c.warnf(at, "sync %s: source.cursor: cannot check for an index on (%s): %s; make sure the source can be read in that order by an index",
			c.s.Name, list, why)
		return
	}
	var indexed bool
	err = c.tx.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_index i
			JOIN pg_class ic ON ic.oid = i.indexrelid
			JOIN pg_am am ON am.oid = ic.relam
			WHERE i.indrelid = $1 AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
			  AND i.indnkeyatts >= cardinality($2::int2[])
			  AND (i.indkey::int2[])[0:cardinality($2::int2[]) - 1] = $2::int2[])`, rel.oid, attnums).Scan(&indexed)
	if err != nil {
		c.errorf(at, "sync %s: source.cursor: look up indexes: %s", c.s.Name, pgMessage(err))
		return
	}
	if !indexed {
		quoted := make([]string, len(nn))
		for i, n := range nn {
			quoted[i] = pgx.Identifier{n}.Sanitize()
		}
		c.warnf(at, "sync %s: source.cursor: no index on %s starts with (%s), so every page may scan the table; create one with: CREATE INDEX CONCURRENTLY ON %s (%s);",
			c.s.Name, rel.display, list, rel.rel, strings.Join(quoted, ", "))
	}
}

// relation is the one table that source columns come from.
type relation struct {
	origin
	oid uint32
}

// sameTable resolves columns to one table and their attribute numbers. why
// explains, for the operator, when that is not possible (a computed column,
// columns from different tables, a view). each, if set, sees every resolved
// column.
func (c *liveCheck) sameTable(ctx context.Context, fs []*pgconn.FieldDescription, names []string, each func(i int, o origin)) (relation, []int16, string, error) {
	var rel relation
	var attnums []int16
	for i, f := range fs {
		o, known, err := c.origin(ctx, f)
		if err != nil {
			return rel, nil, "", err
		}
		if !known {
			return rel, nil, fmt.Sprintf("column %q is computed by the query", names[i]), nil
		}
		if each != nil {
			each(i, o)
		}
		if i == 0 {
			rel = relation{origin: o, oid: f.TableOID}
		} else if f.TableOID != rel.oid {
			return rel, nil, fmt.Sprintf("columns %q and %q come from different tables (%s, %s)", names[0], names[i], rel.display, o.display), nil
		}
		attnums = append(attnums, int16(f.TableAttributeNumber))
	}
	switch rel.kind {
	case 'r', 'p', 'm':
	case 'v':
		return rel, nil, fmt.Sprintf("%s is a view", rel.display), nil
	default:
		return rel, nil, fmt.Sprintf("%s is not a table", rel.display), nil
	}
	return rel, attnums, "", nil
}

func (c *liveCheck) typeName(ctx context.Context, oid uint32) string {
	var name string
	if err := c.tx.QueryRow(ctx, "SELECT format_type($1, NULL)", oid).Scan(&name); err != nil {
		return fmt.Sprintf("of type OID %d", oid)
	}
	return name
}

// pgMessage is a database error as an operator reads it: the server's
// message and hint, without the driver's prefixes. Connection strings never
// appear in pgx errors from an established connection.
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += " (" + pe.Detail + ")"
		}
		if pe.Hint != "" {
			msg += " (hint: " + pe.Hint + ")"
		}
		return msg
	}
	return err.Error()
}

// textPositions maps offsets inside a scalar's value back to the file. It
// is only built when the mapping is exact: a literal block (|) or a
// single-line scalar whose text appears verbatim in the file (no escapes).
type textPositions struct {
	lead  int        // bytes of leading space trimmed from the raw value
	raw   string     // the raw value as YAML decoded it
	lines []position // where each line of raw starts in the file
}

// at returns the file position of the character (rune) at off in the
// trimmed value text.
func (tp *textPositions) at(text string, off int) (position, bool) {
	if off < 0 || off > utf8.RuneCountInString(text) {
		return position{}, false
	}
	b := 0
	for i := 0; i < off; i++ {
		_, size := utf8.DecodeRuneInString(text[b:])
		b += size
	}
	b += tp.lead
	if b > len(tp.raw) {
		return position{}, false
	}
	before := tp.raw[:b]
	line := strings.Count(before, "\n")
	if line >= len(tp.lines) {
		return position{}, false
	}
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:])
	start := tp.lines[line]
	return position{start.line, start.col + col}, true
}

// textPositions builds the map for scalar n whose trimmed value is text;
// nil when the file text does not match the value exactly.
func (p *parser) textPositions(n *yaml.Node, text string) *textPositions {
	raw := n.Value
	tp := &textPositions{raw: raw, lead: len(raw) - len(strings.TrimLeft(raw, " \t\r\n"))}
	if tp.lead+len(text) > len(raw) || raw[tp.lead:tp.lead+len(text)] != text {
		return nil
	}
	fileLine := func(l int) (string, bool) {
		if l < 1 || l > len(p.lines) {
			return "", false
		}
		return strings.TrimRight(p.lines[l-1], "\r"), true
	}
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		// The content starts on the line after the "|" indicator, which
		// is where yaml.v3 places the node.
		for i, rl := range strings.Split(raw, "\n") {
			l := n.Line + 1 + i
			fl, ok := fileLine(l)
			if !ok {
				if rl == "" {
					break // the final newline of the block
				}
				return nil
			}
			if rl == "" {
				tp.lines = append(tp.lines, position{l, 1})
				continue
			}
			indent := len(fl) - len(rl)
			if indent < 0 || fl[indent:] != rl || strings.Trim(fl[:indent], " ") != "" {
				return nil
			}
			tp.lines = append(tp.lines, position{l, indent + 1})
		}
		return tp
	case n.Style&(yaml.FoldedStyle) != 0 || strings.Contains(raw, "\n"):
		return nil
	default:
		fl, ok := fileLine(n.Line)
		if !ok {
			return nil
		}
		start := byteOffset(fl, n.Column-1)
		if start < 0 {
			return nil
		}
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			start++
		}
		if start > len(fl) || !strings.HasPrefix(fl[start:], raw) {
			return nil
		}
		tp.lines = []position{{n.Line, utf8.RuneCountInString(fl[:start]) + 1}}
		return tp
	}
}

// byteOffset converts a 0-based rune column of s to a byte offset; -1 when s
// is shorter.
func byteOffset(s string, runes int) int {
	b := 0
	for i := 0; i < runes; i++ {
		if b >= len(s) {
			return -1
		}
		_, size := utf8.DecodeRuneInString(s[b:])
		b += size
	}
	return b
}
