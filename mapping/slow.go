package mapping

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

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
	return val{}, rowErr(CodeUnsupportedValue, "unsupported driver value of type %T", v)
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
			return dst, rowErr(CodeInvalidValue, "JSON objects cannot be sent as a property value; add transform json_string")
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v.obj); err != nil {
			return dst, rowErr(CodeInvalidValue, "cannot serialise JSON value: %v", err)
		}
		return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...), nil
	}
	return dst, rowErr(CodeInvalidValue, "bytea cannot be sent as is; add transform encode(base64) or encode(hex)")
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

func applyTransform(v val, t Transform, w *wctx) (val, error) {
	needText := func() error {
		return rowErr(CodeInvalidValue, "transform %s needs text, got %s", t, v.k)
	}
	if v.k == vNull && t.Name != "default" {
		return v, nil // NULL passes through every transform but default
	}
	switch t.Name {
	case "trim", "lower", "upper", "truncate", "split":
		if v.k != vStr {
			return v, needText()
		}
		switch t.Name {
		case "trim":
			v.s = strings.TrimSpace(v.s)
		case "lower":
			v.s = strings.ToLower(v.s)
		case "upper":
			v.s = strings.ToUpper(v.s)
		case "truncate":
			v.s = truncateRunes(v.s, t.N)
		case "split":
			if v.s == "" {
				return val{k: vArr, arr: []val{}}, nil
			}
			parts := strings.Split(v.s, t.Arg)
			arr := make([]val, len(parts))
			for i, p := range parts {
				arr[i] = val{k: vStr, s: p}
			}
			return val{k: vArr, arr: arr}, nil
		}
		return v, nil
	case "null_if_empty":
		if v.k == vStr && v.s == "" || v.k == vArr && len(v.arr) == 0 {
			return val{}, nil
		}
		return v, nil
	case "join":
		if v.k != vArr {
			return v, rowErr(CodeInvalidValue, "transform %s needs an array, got %s", t, v.k)
		}
		var b strings.Builder
		n := 0
		for _, el := range v.arr {
			if el.k == vNull {
				continue // NULL elements are dropped, like array_to_string
			}
			s, err := text(el, w)
			if err != nil {
				return v, err
			}
			if n > 0 {
				b.WriteString(t.Arg)
			}
			b.WriteString(s)
			n++
		}
		return val{k: vStr, s: b.String()}, nil
	case "json_string":
		if v.k == vBytes {
			return v, rowErr(CodeInvalidValue, "transform json_string does not take bytea")
		}
		b, err := writeVal(nil, v, true, w)
		if err != nil {
			return v, err
		}
		return val{k: vStr, s: string(b)}, nil
	case "default":
		if v.k == vNull {
			return val{k: vStr, s: t.Arg}, nil
		}
		return v, nil
	case "encode":
		if v.k != vBytes {
			return v, rowErr(CodeInvalidValue, "transform %s needs bytea, got %s", t, v.k)
		}
		if t.Arg == "hex" {
			return val{k: vStr, s: hex.EncodeToString(v.raw)}, nil
		}
		return val{k: vStr, s: base64.StdEncoding.EncodeToString(v.raw)}, nil
	}
	return v, rowErr(CodeInvalidValue, "unknown transform %s", t)
}

func truncateRunes(s string, n int) string {
	count := 0
	for i := range s {
		if count == n {
			return s[:i]
		}
		count++
	}
	return s
}

func (c *compiled) applyMap(v val, w *wctx) (val, error) {
	switch v.k {
	case vNull:
		return v, nil
	case vArr:
		out := make([]val, len(v.arr))
		for i, el := range v.arr {
			m, err := c.applyMap(el, w)
			if err != nil {
				return v, err
			}
			out[i] = m
		}
		return val{k: vArr, arr: out}, nil
	case vObj, vBytes:
		return v, rowErr(CodeInvalidValue, "map needs a scalar, got %s", v.k)
	}
	key, err := text(v, w)
	if err != nil {
		return v, err
	}
	if m, ok := c.mapv[key]; ok {
		return m, nil
	}
	switch c.p.Unmapped {
	case UnmappedReject:
		return v, rowErr(CodeUnmappedValue, "value %q is not in the map", key)
	case UnmappedDefault:
		return c.mdef, nil
	}
	return v, nil
}

// coerce applies a property's type. NULL stays NULL for every type.
func coerce(v val, typ string) (val, error) {
	if v.k == vNull {
		return v, nil
	}
	fail := func(detail string) (val, error) {
		return v, rowErr(CodeCoercionFailed, "cannot convert %s to %s%s", describe(v), typ, detail)
	}
	switch typ {
	case "string":
		switch v.k {
		case vStr:
			return v, nil
		case vNum, vBool, vDate, vTime:
			s, _ := text(v, nil)
			return val{k: vStr, s: s}, nil
		}
		return fail("")
	case "number":
		switch v.k {
		case vNum:
			return v, nil
		case vStr:
			s := strings.TrimSpace(v.s)
			if isJSONNumber(s) {
				return val{k: vNum, s: s}, nil
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return fail("")
			}
			return val{k: vNum, s: string(appendFloat(nil, f, 64))}, nil
		}
		return fail("")
	case "boolean":
		switch v.k {
		case vBool:
			return v, nil
		case vNum:
			switch v.s {
			case "0":
				return val{k: vBool, b: false}, nil
			case "1":
				return val{k: vBool, b: true}, nil
			}
		case vStr:
			switch strings.ToLower(strings.TrimSpace(v.s)) {
			case "true", "t", "yes", "y", "on", "1":
				return val{k: vBool, b: true}, nil
			case "false", "f", "no", "n", "off", "0":
				return val{k: vBool, b: false}, nil
			}
		}
		return fail(" (want true/false, t/f, yes/no, y/n, on/off or 1/0)")
	case "date":
		switch v.k {
		case vDate:
			return v, nil
		case vTime:
			return val{k: vDate, t: v.t.UTC()}, nil
		case vStr:
			if t, ok := parseTime(v.s); ok {
				return val{k: vDate, t: t.UTC()}, nil
			}
		}
		return fail(" (want YYYY-MM-DD or RFC 3339)")
	case "datetime":
		switch v.k {
		case vTime:
			return v, nil
		case vDate:
			return val{k: vTime, t: v.t}, nil
		case vStr:
			if t, ok := parseTime(v.s); ok {
				return val{k: vTime, t: t}, nil
			}
		}
		return fail(" (want RFC 3339 or YYYY-MM-DD)")
	case "array":
		if v.k == vArr {
			return v, nil
		}
		return val{k: vArr, arr: []val{v}}, nil
	}
	return fail("")
}

// parseTime accepts RFC 3339, the same with a space instead of T, and bare
// dates and date-times without zone, which are taken as UTC.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", dateLayout} {
		if t, err := time.Parse(layout, s); err == nil {
			if !timeInRange(t) {
				return time.Time{}, false
			}
			return t, true
		}
	}
	return time.Time{}, false
}

func describe(v val) string {
	switch v.k {
	case vStr:
		s := v.s
		if len(s) > 40 {
			s = truncateRunes(s, 40) + "…"
		}
		return fmt.Sprintf("text %q", s)
	case vNum:
		return "number " + v.s
	}
	return v.k.String()
}
