package connector

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// cursorTypes are the column types a cursor may have: their text forms sort
// the same way as their values, so a position stored as text and cast back is
// exact.
var cursorTypes = map[uint32]string{
	pgtype.TimestamptzOID: "timestamptz",
	pgtype.TimestampOID:   "timestamp",
	pgtype.DateOID:        "date",
	pgtype.Int2OID:        "smallint",
	pgtype.Int4OID:        "integer",
	pgtype.Int8OID:        "bigint",
	pgtype.NumericOID:     "numeric",
}

// Source reads the rows of one sync in keyset order: (cursor, key...)
// strictly after a position, one page per call. It never uses OFFSET, so a
// page costs the same at row 10 and at row 10 million, and rows sharing one
// cursor value are split across pages by their key without loss or repeat.
type Source struct {
	pool     *pgxpool.Pool
	from     string   // quoted table or parenthesised subquery, aliased src
	cols     []string // mapping columns, in the order the encoder expects
	ordering []string // quoted src.cursor, src.key...
	types    []string // SQL type names of cursor and key columns, for casts
	fields   []mapping.Column
	pageSQL  string // after a position
	firstSQL string // from the start
}

// row is one source row: the values the mapping encodes, and its position.
type row struct {
	values []any
	pos    checkpoint.Position
}

// NewSource describes the sync's source against the database without reading
// rows: it checks that the key and cursor columns exist, that the cursor has a
// supported type, and learns the column types the encoder needs.
func NewSource(ctx context.Context, pool *pgxpool.Pool, sync *mapping.Sync) (*Source, error) {
	src := sync.Source
	s := &Source{pool: pool, cols: sync.Columns()}
	switch {
	case src.Query != "":
		s.from = "(" + strings.TrimRight(strings.TrimSpace(src.Query), ";") + ") AS src"
	case src.Table != "":
		s.from = pgx.Identifier(strings.Split(src.Table, ".")).Sanitize() + " AS src"
	default:
		return nil, fmt.Errorf("sync %s: source has neither table nor query", sync.Name)
	}
	if src.Cursor == "" || len(src.Key) == 0 {
		return nil, fmt.Errorf("sync %s: source needs a cursor and a key", sync.Name)
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
		return nil, fmt.Errorf("sync %s: describe source: %w", sync.Name, err)
	}
	fds := rows.FieldDescriptions()
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sync %s: describe source: %w", sync.Name, err)
	}
	for i, c := range s.cols {
		s.fields = append(s.fields, mapping.Column{Name: c, OID: fds[i].DataTypeOID})
	}
	for i, c := range orderCols {
		oid := fds[len(s.cols)+i].DataTypeOID
		if i == 0 {
			if _, ok := cursorTypes[oid]; !ok {
				return nil, fmt.Errorf("sync %s: cursor column %q has a type prismsync cannot order by (OID %d); use timestamptz, timestamp, date, smallint, integer, bigint or numeric", sync.Name, c, oid)
			}
		}
		var name string
		if err := pool.QueryRow(ctx, "SELECT $1::oid::regtype::text", oid).Scan(&name); err != nil {
			return nil, fmt.Errorf("sync %s: type of column %q: %w", sync.Name, c, err)
		}
		s.types = append(s.types, name)
	}

	// Positions are kept as PostgreSQL text so they round-trip exactly
	// (microseconds, numeric scale); they are cast back to the column types.
	var posText []string
	for _, o := range s.ordering {
		posText = append(posText, "("+o+")::text")
	}
	selectList := strings.Join(append(sel[:len(s.cols):len(s.cols)], posText...), ", ")
	var params []string
	for i, t := range s.types {
		params = append(params, fmt.Sprintf("$%d::text::%s", i+1, t))
	}
	order := strings.Join(s.ordering, ", ")
	s.firstSQL = fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL ORDER BY %s LIMIT $1",
		selectList, s.from, s.ordering[0], order)
	s.pageSQL = fmt.Sprintf("SELECT %s FROM %s WHERE (%s) > (%s) ORDER BY %s LIMIT $%d",
		selectList, s.from, order, strings.Join(params, ", "), order, len(params)+1)
	return s, nil
}

// Fields are the mapping columns with their types, for mapping.Compile.
func (s *Source) Fields() []mapping.Column { return s.fields }

// Page reads up to limit rows strictly after pos inside a READ ONLY
// transaction. Rows whose cursor is NULL are never read (they cannot be
// ordered); `prismsync validate` warns about nullable cursors.
func (s *Source) Page(ctx context.Context, pos checkpoint.Position, limit int) ([]row, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a read-only transaction has nothing to lose

	var rows pgx.Rows
	if pos.IsZero() {
		rows, err = tx.Query(ctx, s.firstSQL, limit)
	} else {
		if len(pos.Key) != len(s.types)-1 {
			return nil, fmt.Errorf("checkpoint has %d key values but the mapping's key has %d columns; was the key changed? (run a backfill to start over)", len(pos.Key), len(s.types)-1)
		}
		args := make([]any, 0, len(s.types)+1)
		args = append(args, pos.Cursor)
		for _, k := range pos.Key {
			args = append(args, k)
		}
		args = append(args, limit)
		rows, err = tx.Query(ctx, s.pageSQL, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("read page: %w", err)
	}
	defer rows.Close()
	n := len(s.cols)
	out := make([]row, 0, limit)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}
		r := row{values: vals[:n:n]}
		texts := vals[n:]
		r.pos.Cursor, _ = texts[0].(string)
		r.pos.Key = make([]string, len(texts)-1)
		for i, t := range texts[1:] {
			if t == nil {
				return nil, fmt.Errorf("row with cursor %s has a NULL key column; key columns must be NOT NULL", r.pos.Cursor)
			}
			r.pos.Key[i] = t.(string)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read page: %w", err)
	}
	return out, tx.Commit(ctx)
}
