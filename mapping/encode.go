package mapping

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Column is one column of the source query's result, as reported by the
// driver (pgconn.FieldDescription.Name and DataTypeOID).
type Column struct {
	Name string
	OID  uint32
}

// Row error codes.
const (
	CodeMissingRequired  = "missing_required"
	CodeCoercionFailed   = "coercion_failed"
	CodeInvalidValue     = "invalid_value"
	CodeUnmappedValue    = "unmapped_value"
	CodeUnsupportedValue = "unsupported_value"
	CodeInvalidRow       = "invalid_row"
)

// RowError says why a row cannot be sent. The row is invalid as a whole; the
// caller records it as a reject and moves on.
type RowError struct {
	Code     string
	Property string
	Message  string
}

func (e *RowError) Error() string {
	if e.Property == "" {
		return e.Message + " (" + e.Code + ")"
	}
	return "property " + e.Property + ": " + e.Message + " (" + e.Code + ")"
}

// Warning codes.
const (
	WarnNonFinite   = "non_finite_number" // NaN or ±Infinity sent as null
	WarnInfinite    = "infinite_value"    // date/timestamp ±infinity sent as null
	WarnInvalidUTF8 = "invalid_utf8"      // bytes replaced by U+FFFD
)

// Warning notes something about a row that was still sent, with a value
// changed on the way.
type Warning struct {
	Code     string
	Property string
	Message  string
}

// Encoder writes rows of one sync as Prism import objects. It is immutable
// and safe for concurrent use.
type Encoder struct {
	props           []compiled
	list            []compiled
	dedupe          int // index into props, -1 for none
	caseInsensitive bool
	ncols           int
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
}

type ctmpl struct {
	lit string
	col int // -1 for a literal
	ct  colType
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

// Encode appends one object {"default":{...}} (plus "list":{...} when the
// sync has list properties) to dst. row holds the values as pgx
// rows.Values() returns them, aligned with the columns given to Compile.
// On an invalid row it returns dst with its original length and a *RowError.
// dedupe is the dedupe_by property's value as a string (lower-cased when
// case_insensitive), "" when there is none or it is NULL.
func (e *Encoder) Encode(dst []byte, row []any) (out []byte, dedupe string, err error) {
	return e.Append(dst, row, nil)
}

// Append is Encode with a callback for warnings about values that were sent
// in a changed form (NaN as null, invalid UTF-8 replaced). warn may be nil.
func (e *Encoder) Append(dst []byte, row []any, warn func(Warning)) (out []byte, dedupe string, err error) {
	if len(row) != e.ncols {
		return dst, "", &RowError{Code: CodeInvalidRow, Message: fmt.Sprintf("row has %d values, the encoder was compiled for %d columns", len(row), e.ncols)}
	}
	start := len(dst)
	dst = append(dst, `{"default":{`...)
	dst, dedupe, err = e.appendProps(dst, e.props, row, warn, e.dedupe)
	if err != nil {
		return dst[:start], "", err
	}
	dst = append(dst, '}')
	if e.list != nil {
		dst = append(dst, `,"list":{`...)
		dst, _, err = e.appendProps(dst, e.list, row, warn, -1)
		if err != nil {
			return dst[:start], "", err
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), dedupe, nil
}

// wctx carries the warning callback and the property being written.
type wctx struct {
	fn   func(Warning)
	prop string
}

func (w *wctx) warn(code, msg string) {
	if w != nil && w.fn != nil {
		w.fn(Warning{Code: code, Property: w.prop, Message: msg})
	}
}

func (e *Encoder) appendProps(dst []byte, props []compiled, row []any, warn func(Warning), dedupeIdx int) ([]byte, string, error) {
	var dedupe string
	first := true
	for i := range props {
		c := &props[i]
		w := wctx{fn: warn, prop: c.p.Slug}
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, c.key...)
		vstart := len(dst)
		var err error
		if c.fast {
			dst, err = appendValue(dst, row[c.col], c.ct, &w)
		} else {
			var v val
			v, err = c.eval(row, &w)
			if err == nil {
				dst, err = writeVal(dst, v, false, &w)
			}
		}
		if err != nil {
			return dst, "", withProperty(err, c.p.Slug)
		}
		tok := dst[vstart:]
		isNull := string(tok) == "null"
		if c.p.Required && (isNull || string(tok) == `""` || string(tok) == "[]") {
			return dst, "", &RowError{Code: CodeMissingRequired, Property: c.p.Slug, Message: "required value is NULL or empty"}
		}
		if isNull && c.p.OmitNull {
			dst = dst[:mark]
			continue
		}
		if i == dedupeIdx && !isNull {
			dedupe = tokenString(tok)
			if e.caseInsensitive {
				dedupe = strings.ToLower(dedupe)
			}
		}
		first = false
	}
	return dst, dedupe, nil
}

// tokenString turns a JSON token written by this package back into the plain
// string the API compares: a string's contents, or a number's text.
func tokenString(tok []byte) string {
	if len(tok) > 0 && tok[0] == '"' {
		// Every escape appendString writes is also a Go escape.
		if s, err := strconv.Unquote(string(tok)); err == nil {
			return s
		}
	}
	return string(tok)
}

func withProperty(err error, slug string) error {
	if re, ok := err.(*RowError); ok && re.Property == "" {
		re.Property = slug
	}
	return err
}

func rowErr(code, format string, args ...any) *RowError {
	return &RowError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// appendValue writes a driver value straight to JSON. It is the hot path for
// bare column properties and must agree with toVal+writeVal.
func appendValue(dst []byte, v any, ct colType, w *wctx) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		var bad bool
		dst = appendString(dst, x, &bad)
		if bad {
			w.warn(WarnInvalidUTF8, "invalid UTF-8 replaced by U+FFFD")
		}
		return dst, nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case int16:
		return appendInt(dst, int64(x)), nil
	case int32:
		return appendInt(dst, int64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int8:
		return appendInt(dst, int64(x)), nil
	case uint32:
		return appendUint(dst, uint64(x)), nil
	case uint64:
		return appendUint(dst, x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			w.warn(WarnNonFinite, fmt.Sprintf("%v sent as null", x))
			return append(dst, "null"...), nil
		}
		return appendFloat(dst, x, 64), nil
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			w.warn(WarnNonFinite, fmt.Sprintf("%v sent as null", x))
			return append(dst, "null"...), nil
		}
		return appendFloat(dst, float64(x), 32), nil
	case pgtype.Numeric:
		if !x.Valid {
			return append(dst, "null"...), nil
		}
		if x.NaN || x.InfinityModifier != pgtype.Finite {
			w.warn(WarnNonFinite, "numeric "+numericSpecial(x)+" sent as null")
			return append(dst, "null"...), nil
		}
		mark := len(dst)
		dst = append(dst, '"')
		dst, ok := numericText(dst, x)
		if ok {
			// Drop the opening quote: it is a number after all.
			copy(dst[mark:], dst[mark+1:])
			return dst[:len(dst)-1], nil
		}
		return append(dst, '"'), nil
	case time.Time:
		if !timeInRange(x) {
			return dst, rowErr(CodeInvalidValue, "%s is outside the years 0001..9999 that RFC 3339 can express", x.Format(time.RFC3339))
		}
		if ct.kind == ckDate {
			return appendDate(dst, x), nil
		}
		return appendTime(dst, x), nil
	case pgtype.InfinityModifier:
		w.warn(WarnInfinite, x.String()+" sent as null")
		return append(dst, "null"...), nil
	case [16]byte:
		dst = append(dst, '"')
		dst = appendUUID(dst, x)
		return append(dst, '"'), nil
	case []any:
		elem := colType{kind: ct.elem}
		if ct.kind == ckJSON {
			elem = ct
		}
		dst = append(dst, '[')
		for i, el := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, el, elem, w); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	// Rare shapes (JSON objects, bytea, pgtype wrappers) take the general path.
	vv, err := toVal(v, ct, w)
	if err != nil {
		return dst, err
	}
	return writeVal(dst, vv, false, w)
}

func numericSpecial(n pgtype.Numeric) string {
	switch {
	case n.NaN:
		return "NaN"
	case n.InfinityModifier == pgtype.Infinity:
		return "Infinity"
	}
	return "-Infinity"
}
