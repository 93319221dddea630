package connector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// source reads the rows of one sync in keyset order: (cursor, key...)
// strictly after a position, one page per call. It never uses OFFSET, so a
// page costs the same at row 10 and at row 10 million, and rows sharing one
// cursor value are split across pages by their key without loss or repeat.
type source struct {
	pool       *pgxpool.Pool
	from       string   // quoted table or parenthesised subquery, aliased src
	cols       []string // mapping columns, in the order the encoder expects
	ordering   []string // quoted src.cursor, src.key...
	types      []string // SQL type names of cursor and key columns, for casts
	fields     []mapping.Column
	selectList string
	cursorOID  uint32
	deleted    bool // the select list ends with the row's soft-delete flag
}

// row is one source row: the values the mapping encodes, and its position.
type row struct {
	values []any
	pos    checkpoint.Position
	object []byte // the encoded object, once mapped
	sum    []byte // its change fingerprint, when fingerprints are on
	// fresh: the store had no fingerprint for the row's key when the
	// pass looked (or had none for the sync at all).
	fresh bool
	// deleted: the source's soft-delete column says the row is deleted.
	deleted bool
}

// newSource describes the sync's source against the database without reading
// rows: it checks that the key and cursor columns exist, that the cursor has a
// supported type, and learns the column types the encoder needs.
func newSource(ctx context.Context, pool *pgxpool.Pool, sync *mapping.Sync) (*source, error) {
	src := sync.Source
	s := &source{pool: pool, cols: sync.Columns()}
	switch {
	case src.Query != "":
		s.from = "(" + strings.TrimRight(strings.TrimSpace(src.Query), ";") + ") AS src"
	case src.Table != "":
		s.from = pgx.Identifier(strings.Split(src.Table, ".")).Sanitize() + " AS src"
	default:
		return nil, errors.New("source has neither table nor query")
	}
	if src.Cursor == "" || len(src.Key) == 0 {
		return nil, errors.New("source needs a cursor and a key")
	}
	orderCols := append([]string{src.Cursor}, src.Key...)
	for _, c := range orderCols {
		s.ordering = append(s.ordering, "src."+pgx.Identifier{c}.Sanitize())
	}

	// Describe everything we will select, without reading a row.
	var sel []string
	for _, c := range s.cols {
		sel = append(sel, "src."+pgx.Identifier{c}.Sanitize())
	}
	sel = append(sel, s.ordering...)
	rows, err := pool.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+s.from+" LIMIT 0")
	if err != nil {
		return nil, fmt.Errorf("describe source: %w", err)
	}
	fds := rows.FieldDescriptions()
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe source: %w", err)
	}
	for i, c := range s.cols {
		s.fields = append(s.fields, mapping.Column{Name: c, OID: fds[i].DataTypeOID})
	}
	for i, c := range orderCols {
		oid := fds[len(s.cols)+i].DataTypeOID
		if i == 0 {
			if _, ok := mapping.CursorType(oid); !ok {
				return nil, fmt.Errorf("cursor column %q has a type prismsync cannot order by (OID %d); use timestamptz, timestamp, date, smallint, integer, bigint or numeric", c, oid)
			}
		}
		var name string
		if err := pool.QueryRow(ctx, "SELECT $1::oid::regtype::text", oid).Scan(&name); err != nil {
			return nil, fmt.Errorf("type of column %q: %w", c, err)
		}
		s.types = append(s.types, name)
	}

	// Positions are kept as PostgreSQL text so they round-trip exactly
	// (microseconds, numeric scale); they are cast back to the column types.
	// The common types arrive as they are and are printed here
	// (position.go); the others are cast in the query.
	s.selectList = strings.Join(sel[:len(s.cols):len(s.cols)], ", ")
	for i, o := range s.ordering {
		if s.selectList != "" {
			s.selectList += ", "
		}
		if formattedHere(fds[len(s.cols)+i].DataTypeOID) {
			s.selectList += o
		} else {
			s.selectList += "(" + o + ")::text"
		}
	}
	s.cursorOID = fds[len(s.cols)].DataTypeOID
	if d := src.Deleted; d != "" {
		if err := s.describeDeleted(ctx, d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Window bounds one page read. The zero Window reads from the start with no
// upper bound. Preview's callers set the exported fields; a pass adds the
// Syncer's From and To and its own bound.
type Window struct {
	After checkpoint.Position // strictly after this (cursor, key...) position; zero = from the start
	// Where is an operator's own SQL boolean expression over the source's
	// columns (`prismsync preview --where`); it runs in the READ ONLY
	// transaction, never in a pass.
	Where string
	Limit int

	from string // with a zero After: cursor >= from ("" = no lower bound)
	to   string // cursor <= to ("" = no upper bound)
	// A pass's bound (see passBound): cursor < until, the commit horizon
	// (text of a timestamptz); cursor <= cap, the guard for other cursor
	// types. "" = none.
	until, cap string
}

// Page reads up to w.Limit rows of the window, in keyset order, inside a
// READ ONLY transaction. Rows whose cursor is NULL are never read (they cannot
// be ordered); `prismsync validate` warns about nullable cursors. A pass
// reads its window with a scan instead (scan.go): one query, not one per
// page.
func (s *source) Page(ctx context.Context, w Window) ([]row, error) {
	sql, args, err := s.ordered(w)
	if err != nil {
		return nil, err
	}
	args = append(args, w.Limit)
	return s.read(ctx, fmt.Sprintf("%s LIMIT $%d", sql, len(args)), args, w.Limit)
}

// ordered is the SELECT of a window's rows in keyset order, without a limit.
func (s *source) ordered(w Window) (string, []any, error) {
	from, where, args, err := s.window(w)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s",
		s.selectList, from, where, strings.Join(s.ordering, ", ")), args, nil
}

// Count counts the rows of a window (its Limit is ignored), for a
// backfill's progress estimate.
func (s *source) Count(ctx context.Context, w Window) (int64, error) {
	from, where, args, err := s.window(w)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+from+" WHERE "+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows: %w", err)
	}
	return n, nil
}

// window turns a Window into a FROM item and a WHERE condition with its
// parameters, cast from text to the key and cursor column types.
func (s *source) window(w Window) (from, where string, args []any, err error) {
	var conds []string
	param := func(v any, typ string) string {
		args = append(args, v)
		return fmt.Sprintf("$%d::text::%s", len(args), typ)
	}
	cursor := s.ordering[0]
	conds = append(conds, cursor+" IS NOT NULL")
	if !w.After.IsZero() {
		p := w.After
		if len(p.Key) != len(s.types)-1 {
			return "", "", nil, fmt.Errorf("checkpoint has %d key values but the mapping's key has %d columns; was the key changed? (run a backfill to start over)", len(p.Key), len(s.types)-1)
		}
		ps := []string{param(p.Cursor, s.types[0])}
		for i, k := range p.Key {
			ps = append(ps, param(k, s.types[i+1]))
		}
		conds = append(conds, "("+strings.Join(s.ordering, ", ")+") > ("+strings.Join(ps, ", ")+")")
	} else if w.from != "" {
		conds = append(conds, cursor+" >= "+param(w.from, s.types[0]))
	}
	if w.to != "" {
		conds = append(conds, cursor+" <= "+param(w.to, s.types[0]))
	}
	if w.cap != "" {
		conds = append(conds, cursor+" <= "+param(w.cap, s.types[0]))
	}
	if w.until != "" {
		// The horizon is a timestamptz; a timestamp cursor compares with
		// it in UTC, the session time zone.
		conds = append(conds, cursor+" < "+param(w.until, "timestamptz"))
	}
	from = s.from
	if w.Where != "" {
		from = "(SELECT * FROM " + s.from + " WHERE (" + w.Where + ")) AS src"
	}
	return from, strings.Join(conds, " AND "), args, nil
}

// ByKeys reads the rows with the given keys (rows that no longer exist are
// simply missing), in keyset order. `prismsync rejects --retry` uses it.
func (s *source) ByKeys(ctx context.Context, keys [][]string) ([]row, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var args []any
	var tuples []string
	for _, k := range keys {
		if len(k) != len(s.types)-1 {
			return nil, fmt.Errorf("row key %v has %d values but the mapping's key has %d columns", k, len(k), len(s.types)-1)
		}
		ps := make([]string, len(k))
		for i, v := range k {
			args = append(args, v)
			ps[i] = fmt.Sprintf("$%d::text::%s", len(args), s.types[i+1])
		}
		tuples = append(tuples, "("+strings.Join(ps, ", ")+")")
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL AND (%s) IN (%s) ORDER BY %s",
		s.selectList, s.from, s.ordering[0], strings.Join(s.ordering[1:], ", "), strings.Join(tuples, ", "), strings.Join(s.ordering, ", "))
	return s.read(ctx, sql, args, len(keys))
}

// read runs one SELECT built by Page or ByKeys inside a READ ONLY
// transaction and splits each row into mapped values and position.
func (s *source) read(ctx context.Context, sql string, args []any, sizeHint int) ([]row, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a read-only transaction has nothing to lose
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read page: %w", err)
	}
	out, err := s.collect(rows, make([]row, 0, sizeHint))
	if err != nil {
		return nil, err
	}
	return out, tx.Commit(ctx)
}

// collect appends the rows of one result to out, each split into mapped
// values and position, and closes rows.
func (s *source) collect(rows pgx.Rows, out []row) ([]row, error) {
	defer rows.Close()
	n := len(s.cols)
	var dec *rowDecoder
	var fds []pgconn.FieldDescription
	for rows.Next() {
		if dec == nil {
			// Planned once per result, not per value as rows.Values() does.
			fds = rows.FieldDescriptions()
			dec = newRowDecoder(rows.Conn().TypeMap(), fds[:n:n])
		}
		raw := rows.RawValues()
		if len(raw) != len(fds) {
			return nil, fmt.Errorf("read row: %d values for %d columns", len(raw), len(fds))
		}
		vals, err := dec.decode(raw[:n])
		if err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}
		// The select list ends with the soft-delete flag, when there is
		// one; before it, the cursor and key columns.
		end := len(raw)
		r := row{values: vals}
		if s.deleted {
			end--
			r.deleted = boolValue(fds[end], raw[end])
		}
		// The cursor is never NULL (the window says so); a key column may be.
		r.pos.Key = make([]string, end-n-1)
		for i := n; i < end; i++ {
			text, ok := positionText(fds[i], raw[i])
			switch {
			case raw[i] == nil && i > n:
				return nil, fmt.Errorf("row with cursor %s has a NULL key column; key columns must be NOT NULL", r.pos.Cursor)
			case !ok:
				return nil, fmt.Errorf("read row: malformed %s value (%d bytes)", fds[i].Name, len(raw[i]))
			case i == n:
				r.pos.Cursor = text
			default:
				r.pos.Key[i-n-1] = text
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read page: %w", err)
	}
	return out, nil
}

// boolValue reads a boolean column's value in either wire format; NULL is
// false.
func boolValue(fd pgconn.FieldDescription, raw []byte) bool {
	if fd.Format == pgx.BinaryFormatCode {
		return len(raw) == 1 && raw[0] == 1
	}
	return string(raw) == "t"
}

// TimeCursor reports whether the cursor is a timestamp, so the commit
// horizon and Syncer.Lag apply to it.
func (s *source) TimeCursor() bool {
	return s.cursorOID == pgtype.TimestamptzOID || s.cursorOID == pgtype.TimestampOID
}

// Fields are the mapping columns with their types, for mapping.Compile.
func (s *source) Fields() []mapping.Column { return s.fields }
