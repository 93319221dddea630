package mapping

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// Column is one column of the source query's result, as reported by the
// driver (pgconn.FieldDescription.Name and DataTypeOID).
type Column struct {
	Name string
	OID  uint32
}

// Compile binds the sync to the real columns of its source query. It checks
// that every referenced column exists and that the transforms and coercions
// fit the column types, and returns a *FindingsError listing every problem.
// Key and cursor columns are not checked here; the reader owns them.
func (s *Sync) Compile(cols []Column) (*Encoder, error) {
	idx := make(map[string]int, len(cols))
	dup := map[string]bool{}
	for i, c := range cols {
		if _, ok := idx[c.Name]; ok {
			dup[c.Name] = true
		}
		idx[c.Name] = i
	}
	var problems Findings
	e := &Encoder{dedupe: -1, caseInsensitive: s.Target.CaseInsensitive, ncols: len(cols)}
	compileAll := func(props []Property, what string) []compiled {
		out := make([]compiled, 0, len(props))
		for i := range props {
			p := &props[i]
			c, msgs := compileProperty(p, cols, idx, dup)
			for _, m := range msgs {
				problems = append(problems, Finding{File: p.file, Line: p.line, Col: p.col, Severity: SeverityError,
					Message: fmt.Sprintf("sync %s: %s %s: %s", s.Name, what, p.Slug, m)})
			}
			out = append(out, c)
		}
		return out
	}
	e.props = compileAll(s.Properties, "property")
	if len(s.ListProperties) > 0 {
		e.list = compileAll(s.ListProperties, "list property")
	}
	for _, cs := range [][]compiled{e.props, e.list} {
		for i := range cs {
			if r := cs[i].ref; r != nil {
				r.index = len(e.refs)
				e.refs = append(e.refs, Ref{Slug: cs[i].p.Slug, Sync: cs[i].p.Ref, Columns: cs[i].p.RefColumns, Multi: r.multi})
			}
		}
	}
	for i := range s.Properties {
		if s.Properties[i].Slug == s.Target.DedupeBy {
			e.dedupe = i
		}
	}
	if len(problems) > 0 {
		return nil, &FindingsError{Findings: problems}
	}
	return e, nil
}

type compiled struct {
	p    *Property
	key  []byte // `"slug":`
	fast bool   // a bare column: written straight from the driver value
	col  int
	ct   colType
	cols []int     // coalesce
	cts  []colType // coalesce
	tmpl []ctmpl
	cval val // FromValue
	mapv map[string]val
	mdef val
	ref  *refSpec // FromRef
}

type ctmpl struct {
	lit string
	col int // -1 for a literal
	ct  colType
}

func compileProperty(p *Property, cols []Column, idx map[string]int, dup map[string]bool) (compiled, []string) {
	c := compiled{p: p, col: -1}
	c.key = appendString(nil, p.Slug, new(bool))
	c.key = append(c.key, ':')
	var msgs []string
	lookup := func(name string) (int, colType, bool) {
		i, ok := idx[name]
		if !ok {
			names := make([]string, len(cols))
			for j, col := range cols {
				names[j] = col.Name
			}
			msgs = append(msgs, fmt.Sprintf("column %q not found (have: %s)", name, strings.Join(names, ", ")))
			return 0, colType{}, false
		}
		if dup[name] {
			msgs = append(msgs, fmt.Sprintf("column %q is ambiguous: the query returns it more than once", name))
			return 0, colType{}, false
		}
		ct, ok := classify(cols[i].OID)
		if !ok {
			msgs = append(msgs, fmt.Sprintf("column %q has unsupported type %s; cast it in a query (e.g. %s::text)", name, oidName(cols[i].OID), name))
			return 0, colType{}, false
		}
		return i, ct, true
	}
	start := kAny
	resolved := true
	switch p.Kind {
	case FromColumn:
		i, ct, ok := lookup(p.Column)
		resolved = ok
		c.col, c.ct, start = i, ct, ct.static()
	case FromCoalesce:
		for j, name := range p.Coalesce {
			i, ct, ok := lookup(name)
			resolved = resolved && ok
			c.cols = append(c.cols, i)
			c.cts = append(c.cts, ct)
			if j == 0 {
				start = ct.static()
			} else if ct.static() != start {
				start = kAny
			}
		}
	case FromTemplate:
		start = kString
		for _, part := range p.tmpl {
			if part.col == "" {
				c.tmpl = append(c.tmpl, ctmpl{lit: part.lit, col: -1})
				continue
			}
			i, ct, ok := lookup(part.col)
			resolved = resolved && ok
			if ok && ct.kind == ckBytes {
				msgs = append(msgs, fmt.Sprintf("template column %q is bytea and cannot be rendered as text", part.col))
			}
			c.tmpl = append(c.tmpl, ctmpl{col: i, ct: ct})
		}
	case FromValue:
		start = kindOfLiteral(p.Value)
		c.cval = literalVal(p.Value)
	case FromRef:
		c.ref = &refSpec{}
		for _, name := range p.RefColumns {
			i, ct, ok := lookup(name)
			if !ok {
				continue
			}
			kind := ct.kind
			if kind == ckArray && len(p.RefColumns) == 1 {
				kind, c.ref.multi = ct.elem, true
			}
			if kind != ckInt && kind != ckText && kind != ckUUID {
				msgs = append(msgs, fmt.Sprintf("ref column %q is %s; a ref column must be an integer, text or uuid column (or, alone, an array of one for a multi-ref)",
					name, refTypeName(cols[i].OID, ct)))
				continue
			}
			c.ref.cols = append(c.ref.cols, i)
			c.ref.trim = append(c.ref.trim, cols[i].OID == pgtype.BPCharOID || cols[i].OID == pgtype.BPCharArrayOID)
		}
		return c, msgs
	default:
		msgs = append(msgs, "no value source")
		return c, msgs
	}
	if resolved {
		_, problems := checkPipeline(start, p)
		msgs = append(msgs, problems...)
	}
	if p.Map != nil {
		c.mapv = make(map[string]val, len(p.Map))
		for k, v := range p.Map {
			c.mapv[k] = literalVal(v)
		}
		c.mdef = literalVal(p.MapDefault)
	}
	c.fast = p.Kind == FromColumn && len(p.Transforms) == 0 && p.Type == "" && p.Map == nil
	return c, msgs
}

func oidName(oid uint32) string {
	names := map[uint32]string{
		pgtype.IntervalOID: "interval", pgtype.TimeOID: "time", pgtype.TimetzOID: "timetz",
		pgtype.InetOID: "inet", pgtype.CIDROID: "cidr", pgtype.MacaddrOID: "macaddr",
		pgtype.PointOID: "point", pgtype.XMLOID: "xml", pgtype.ByteaArrayOID: "bytea[]",
		pgtype.IntervalArrayOID: "interval[]", pgtype.BitOID: "bit", pgtype.VarbitOID: "varbit",
		pgtype.TSVectorOID: "tsvector", pgtype.QCharOID: `"char"`,
	}
	if n, ok := names[oid]; ok {
		return fmt.Sprintf("%s (OID %d)", n, oid)
	}
	return fmt.Sprintf("OID %d", oid)
}

// colKind is how the encoder treats a column, decided once from its type OID.
type colKind uint8

const (
	ckDynamic colKind = iota // user-defined types (enums, domains): decided by the Go value
	ckText
	ckInt
	ckFloat
	ckNumeric
	ckBool
	ckDate
	ckTimestamp
	ckTimestamptz
	ckUUID
	ckJSON
	ckBytes
	ckArray
)

type colType struct {
	kind colKind
	elem colKind // element kind when kind is ckArray
}

// firstUserOID is where PostgreSQL starts numbering objects created by users
// (FirstNormalObjectId); below it every type is built in and known here.
const firstUserOID = 16384

func classify(oid uint32) (colType, bool) {
	scalar := map[uint32]colKind{
		pgtype.TextOID: ckText, pgtype.VarcharOID: ckText, pgtype.BPCharOID: ckText, pgtype.NameOID: ckText,
		pgtype.Int2OID: ckInt, pgtype.Int4OID: ckInt, pgtype.Int8OID: ckInt, pgtype.OIDOID: ckInt,
		pgtype.Float4OID: ckFloat, pgtype.Float8OID: ckFloat,
		pgtype.NumericOID:     ckNumeric,
		pgtype.BoolOID:        ckBool,
		pgtype.DateOID:        ckDate,
		pgtype.TimestampOID:   ckTimestamp,
		pgtype.TimestamptzOID: ckTimestamptz,
		pgtype.UUIDOID:        ckUUID,
		pgtype.JSONOID:        ckJSON, pgtype.JSONBOID: ckJSON,
		pgtype.ByteaOID: ckBytes,
	}
	if k, ok := scalar[oid]; ok {
		return colType{kind: k}, true
	}
	array := map[uint32]colKind{
		pgtype.TextArrayOID: ckText, pgtype.VarcharArrayOID: ckText, pgtype.BPCharArrayOID: ckText, pgtype.NameArrayOID: ckText,
		pgtype.Int2ArrayOID: ckInt, pgtype.Int4ArrayOID: ckInt, pgtype.Int8ArrayOID: ckInt,
		pgtype.Float4ArrayOID: ckFloat, pgtype.Float8ArrayOID: ckFloat,
		pgtype.NumericArrayOID:     ckNumeric,
		pgtype.BoolArrayOID:        ckBool,
		pgtype.DateArrayOID:        ckDate,
		pgtype.TimestampArrayOID:   ckTimestamp,
		pgtype.TimestamptzArrayOID: ckTimestamptz,
		pgtype.UUIDArrayOID:        ckUUID,
		pgtype.JSONArrayOID:        ckJSON, pgtype.JSONBArrayOID: ckJSON,
	}
	if k, ok := array[oid]; ok {
		return colType{kind: ckArray, elem: k}, true
	}
	if oid >= firstUserOID {
		return colType{kind: ckDynamic}, true
	}
	return colType{}, false
}

func (ct colType) static() skind {
	switch ct.kind {
	case ckText, ckUUID:
		return kString
	case ckInt, ckFloat, ckNumeric:
		return kNumber
	case ckBool:
		return kBool
	case ckDate:
		return kDate
	case ckTimestamp, ckTimestamptz:
		return kTime
	case ckJSON:
		return kJSON
	case ckBytes:
		return kBytes
	case ckArray:
		return kArray
	}
	return kAny
}
