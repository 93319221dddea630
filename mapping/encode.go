package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// Encoder writes rows of one sync as Prism import objects. It is immutable
// and safe for concurrent use.
type Encoder struct {
	props           []compiled
	list            []compiled
	refs            []Ref // the ref properties, props first
	dedupe          int   // index into props, -1 for none
	caseInsensitive bool
	ncols           int
}

// Append appends one object {"default":{...}} (plus "list":{...} when the
// sync has list properties) to dst. row holds the values as pgx
// rows.Values() returns them, aligned with the columns given to Compile.
// On an invalid row it returns dst with its original length and a *RowError.
// dedupe is the dedupe_by property's value as a string (lower-cased when
// case_insensitive), "" when there is none or it is NULL. warn, which may be
// nil, hears about values that were sent in a changed form (NaN as null,
// invalid UTF-8 replaced).
func (e *Encoder) Append(dst []byte, row []any, warn func(Warning)) (out []byte, dedupe string, err error) {
	return e.AppendResolved(dst, row, nil, warn)
}

// AppendResolved is Append for a sync with ref properties: resolve gives
// the record id each referenced key links to. A key it does not know makes
// the row wait: the error is a *MissingRefError and dst keeps its length.
// With a nil resolve every non-NULL ref is missing.
func (e *Encoder) AppendResolved(dst []byte, row []any, resolve Resolver, warn func(Warning)) (out []byte, dedupe string, err error) {
	if len(row) != e.ncols {
		return dst, "", &RowError{Code: CodeInvalidRow, Message: fmt.Sprintf("row has %d values, the encoder was compiled for %d columns", len(row), e.ncols)}
	}
	start := len(dst)
	dst = append(dst, `{"default":{`...)
	dst, dedupe, err = e.appendProps(dst, e.props, row, resolve, warn, e.dedupe)
	if err != nil {
		return dst[:start], "", err
	}
	dst = append(dst, '}')
	if e.list != nil {
		dst = append(dst, `,"list":{`...)
		dst, _, err = e.appendProps(dst, e.list, row, resolve, warn, -1)
		if err != nil {
			return dst[:start], "", err
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), dedupe, nil
}

func (e *Encoder) appendProps(dst []byte, props []compiled, row []any, resolve Resolver, warn func(Warning), dedupeIdx int) ([]byte, string, error) {
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
		switch {
		case c.ref != nil:
			dst, err = c.appendRef(dst, row, resolve)
		case c.fast:
			dst, err = appendValue(dst, row[c.col], c.ct, &w)
		default:
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

func withProperty(err error, slug string) error {
	if re, ok := err.(*RowError); ok && re.Property == "" {
		re.Property = slug
	}
	return err
}

func rowErr(code, format string, args ...any) *RowError {
	return &RowError{Code: code, Message: fmt.Sprintf(format, args...)}
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
