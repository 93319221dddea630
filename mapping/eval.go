package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// A driver value reaches JSON one of two ways. A bare column property takes
// appendValue, straight from the driver value to its token (the hot path, no
// allocation). Any other property takes eval: its source is read into a val
// (toVal), the transforms, map and type work on that, and writeVal writes
// it. Both must write the same bytes for the same value; toVal therefore
// reads numbers, UUIDs and infinities through appendValue, and appendValue
// never falls back to the general path.

// appendValue writes a driver value straight to JSON.
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
	case pgtype.Date:
		return appendWrapped(dst, x.Valid, x.InfinityModifier, x.Time, colType{kind: ckDate}, w)
	case pgtype.Timestamp:
		return appendWrapped(dst, x.Valid, x.InfinityModifier, x.Time, colType{kind: ckTimestamp}, w)
	case pgtype.Timestamptz:
		return appendWrapped(dst, x.Valid, x.InfinityModifier, x.Time, colType{kind: ckTimestamptz}, w)
	case pgtype.UUID:
		if !x.Valid {
			return append(dst, "null"...), nil
		}
		return appendValue(dst, x.Bytes, ct, w)
	case map[string]any:
		return dst, errObject()
	case []byte:
		return dst, errBytea()
	}
	return dst, errUnsupported(v)
}

// appendWrapped writes a pgtype date or timestamp wrapper as its plain
// driver value would be written.
func appendWrapped(dst []byte, valid bool, inf pgtype.InfinityModifier, t time.Time, ct colType, w *wctx) ([]byte, error) {
	if !valid {
		return append(dst, "null"...), nil
	}
	if inf != pgtype.Finite {
		return appendValue(dst, inf, ct, w)
	}
	return appendValue(dst, t, ct, w)
}

// The errors of values that cannot be property values, shared by both paths.
func errObject() *RowError {
	return rowErr(CodeInvalidValue, "JSON objects cannot be sent as a property value; add transform json_string")
}

func errBytea() *RowError {
	return rowErr(CodeInvalidValue, "bytea cannot be sent as is; add transform encode(base64) or encode(hex)")
}

func errUnsupported(v any) *RowError {
	return rowErr(CodeUnsupportedValue, "unsupported driver value of type %T", v)
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

// eval computes a non-fast property: source, transforms, map, type.
func (c *compiled) eval(row []any, w *wctx) (val, error) {
	var v val
	var err error
	switch c.p.Kind {
	case FromColumn:
		v, err = toVal(row[c.col], c.ct, w)
	case FromValue:
		v = c.cval
	case FromCoalesce:
		for i, col := range c.cols {
			if v, err = toVal(row[col], c.cts[i], w); err != nil || v.k != vNull {
				break
			}
		}
	case FromTemplate:
		var b strings.Builder
		for _, part := range c.tmpl {
			if part.col < 0 {
				b.WriteString(part.lit)
				continue
			}
			pv, err := toVal(row[part.col], part.ct, w)
			if err != nil {
				return val{}, err
			}
			s, err := text(pv, w)
			if err != nil {
				return val{}, err
			}
			b.WriteString(s)
		}
		v = val{k: vStr, s: b.String()}
	}
	if err != nil {
		return val{}, err
	}
	for _, t := range c.p.Transforms {
		if v, err = applyTransform(v, t, w); err != nil {
			return val{}, err
		}
	}
	if c.mapv != nil {
		if v, err = c.applyMap(v, w); err != nil {
			return val{}, err
		}
	}
	if c.p.Type != "" {
		if v, err = coerce(v, c.p.Type); err != nil {
			return val{}, err
		}
	}
	return v, nil
}

// vkind is the run-time kind of a value on the general (non-fast) path.
type vkind uint8

const (
	vNull vkind = iota
	vStr
	vNum // s holds a JSON number token
	vBool
	vDate
	vTime
	vArr
	vObj   // a decoded JSON object, kept in obj
	vBytes // bytea, kept in raw
)

func (k vkind) String() string {
	return [...]string{"null", "text", "number", "boolean", "date", "timestamp", "array", "json object", "bytea"}[k]
}

// val is a value between reading and writing, while transforms, map and
// type coercion work on it.
type val struct {
	k   vkind
	s   string
	b   bool
	t   time.Time
	arr []val
	obj any
	raw []byte
}

func literalVal(v any) val {
	switch x := v.(type) {
	case string:
		return val{k: vStr, s: x}
	case Number:
		return val{k: vNum, s: string(x)}
	case bool:
		return val{k: vBool, b: x}
	case []any:
		arr := make([]val, len(x))
		for i, el := range x {
			arr[i] = literalVal(el)
		}
		return val{k: vArr, arr: arr}
	}
	return val{}
}

// toVal converts a driver value; it must agree with appendValue.
func toVal(v any, ct colType, w *wctx) (val, error) {
	switch x := v.(type) {
	case nil:
		return val{}, nil
	case string:
		if !utf8.ValidString(x) {
			w.warn(WarnInvalidUTF8, "invalid UTF-8 replaced by U+FFFD")
			x = strings.ToValidUTF8(x, "\ufffd")
		}
		return val{k: vStr, s: x}, nil
	case bool:
		return val{k: vBool, b: x}, nil
	case int16, int32, int64, int, int8, uint32, uint64, float64, float32, pgtype.InfinityModifier, [16]byte:
		tok, err := appendValue(nil, x, ct, w)
		if err != nil {
			return val{}, err
		}
		return tokenVal(tok), nil
	case pgtype.Numeric:
		if !x.Valid {
			return val{}, nil
		}
		if x.NaN || x.InfinityModifier != pgtype.Finite {
			w.warn(WarnNonFinite, "numeric "+numericSpecial(x)+" sent as null")
			return val{}, nil
		}
		text, ok := numericText(nil, x)
		if ok {
			return val{k: vNum, s: string(text)}, nil
		}
		return val{k: vStr, s: string(text)}, nil
	case time.Time:
		if !timeInRange(x) {
			return val{}, rowErr(CodeInvalidValue, "%s is outside the years 0001..9999 that RFC 3339 can express", x.Format(time.RFC3339))
		}
		if ct.kind == ckDate {
			return val{k: vDate, t: x}, nil
		}
		return val{k: vTime, t: x}, nil
	case pgtype.Date:
		return wrapped(x.Valid, x.InfinityModifier, x.Time, colType{kind: ckDate}, w)
	case pgtype.Timestamp:
		return wrapped(x.Valid, x.InfinityModifier, x.Time, colType{kind: ckTimestamp}, w)
	case pgtype.Timestamptz:
		return wrapped(x.Valid, x.InfinityModifier, x.Time, colType{kind: ckTimestamptz}, w)
	case pgtype.UUID:
		if !x.Valid {
			return val{}, nil
		}
		return val{k: vStr, s: string(appendUUID(nil, x.Bytes))}, nil
	case []byte:
		return val{k: vBytes, raw: x}, nil
	case map[string]any:
		return val{k: vObj, obj: x}, nil
	case []any:
		elem := colType{kind: ct.elem}
		if ct.kind == ckJSON {
			elem = ct
		}
		arr := make([]val, len(x))
		for i, el := range x {
			ev, err := toVal(el, elem, w)
			if err != nil {
				return val{}, err
			}
			arr[i] = ev
		}
		return val{k: vArr, arr: arr}, nil
	}
	return val{}, errUnsupported(v)
}

func wrapped(valid bool, inf pgtype.InfinityModifier, t time.Time, ct colType, w *wctx) (val, error) {
	if !valid {
		return val{}, nil
	}
	if inf != pgtype.Finite {
		return toVal(inf, ct, w)
	}
	return toVal(t, ct, w)
}

// tokenVal reads back a scalar token written by appendValue.
func tokenVal(tok []byte) val {
	switch {
	case string(tok) == "null":
		return val{}
	case len(tok) > 0 && tok[0] == '"':
		return val{k: vStr, s: tokenString(tok)}
	}
	return val{k: vNum, s: string(tok)}
}

// writeVal writes v as JSON. JSON objects are refused unless allowObj: the
// API takes only scalars and arrays as property values.
func writeVal(dst []byte, v val, allowObj bool, w *wctx) ([]byte, error) {
	switch v.k {
	case vNull:
		return append(dst, "null"...), nil
	case vStr:
		var bad bool
		dst = appendString(dst, v.s, &bad)
		if bad {
			w.warn(WarnInvalidUTF8, "invalid UTF-8 replaced by U+FFFD")
		}
		return dst, nil
	case vNum:
		return append(dst, v.s...), nil
	case vBool:
		return strconv.AppendBool(dst, v.b), nil
	case vDate:
		return appendDate(dst, v.t), nil
	case vTime:
		return appendTime(dst, v.t), nil
	case vArr:
		dst = append(dst, '[')
		for i, el := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = writeVal(dst, el, allowObj, w); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case vObj:
		if !allowObj {
			return dst, errObject()
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v.obj); err != nil {
			return dst, rowErr(CodeInvalidValue, "cannot serialise JSON value: %v", err)
		}
		return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...), nil
	}
	return dst, errBytea()
}

// text is the plain string form used by templates, join, map and dedupe.
func text(v val, w *wctx) (string, error) {
	switch v.k {
	case vNull:
		return "", nil
	case vStr, vNum:
		return v.s, nil
	case vBool:
		return strconv.FormatBool(v.b), nil
	case vDate:
		return v.t.Format(dateLayout), nil
	case vTime:
		return v.t.UTC().Format(time.RFC3339Nano), nil
	case vBytes:
		return "", rowErr(CodeInvalidValue, "bytea has no text form; add transform encode(base64) or encode(hex)")
	}
	b, err := writeVal(nil, v, true, w)
	return string(b), err
}
