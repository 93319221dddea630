package mapping

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var transformNames = []string{"trim", "lower", "upper", "null_if_empty", "truncate(N)", "split(SEP)", "join(SEP)", "json_string", "default(VALUE)", "encode(base64|hex)"}

// parseTransform reads one transform spelled name or name(arg). The argument
// is taken verbatim between the parentheses; wrap it in double quotes to use
// Go escapes (e.g. join("\n")) or to make leading/trailing spaces obvious.
func parseTransform(s string) (Transform, error) {
	s = strings.TrimSpace(s)
	name, arg, hasArg := s, "", false
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return Transform{}, fmt.Errorf("bad transform %q: missing ')'", s)
		}
		name, arg, hasArg = strings.TrimSpace(s[:i]), s[i+1:len(s)-1], true
		if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
			u, err := strconv.Unquote(arg)
			if err != nil {
				return Transform{}, fmt.Errorf("bad transform %q: bad quoted argument: %v", s, err)
			}
			arg = u
		} else if len(arg) >= 2 && arg[0] == '\'' && arg[len(arg)-1] == '\'' {
			arg = arg[1 : len(arg)-1]
		}
	}
	t := Transform{Name: name, Arg: arg}
	switch name {
	case "trim", "lower", "upper", "null_if_empty", "json_string":
		if hasArg {
			return t, fmt.Errorf("transform %s takes no argument", name)
		}
	case "truncate":
		n, err := strconv.Atoi(strings.TrimSpace(arg))
		if !hasArg || err != nil || n < 1 {
			return t, fmt.Errorf("bad truncate(N) %q: N must be a positive integer", s)
		}
		t.N, t.Arg = n, ""
	case "split":
		if !hasArg || arg == "" {
			return t, fmt.Errorf("bad split(SEP) %q: SEP must not be empty", s)
		}
	case "join":
		if !hasArg {
			return t, fmt.Errorf("bad join(SEP) %q: write join() for no separator", s)
		}
	case "default":
		if !hasArg {
			return t, fmt.Errorf("bad default(VALUE) %q: missing VALUE", s)
		}
	case "encode":
		if arg != "base64" && arg != "hex" {
			return t, fmt.Errorf("bad encode %q: want encode(base64) or encode(hex)", s)
		}
	default:
		return t, fmt.Errorf("unknown transform %q (known: %s)", name, strings.Join(transformNames, ", "))
	}
	return t, nil
}

// skind is the static kind of a value as far as it is known before any row
// is read; kAny means "only known at run time".
type skind int

const (
	kAny skind = iota
	kString
	kNumber
	kBool
	kDate
	kTime
	kArray
	kJSON // decoded json/jsonb: scalar, array or object
	kBytes
	kNull
)

func (k skind) String() string {
	return [...]string{"any", "text", "number", "boolean", "date", "timestamp", "array", "json", "bytea", "null"}[k]
}

func kindOfLiteral(v any) skind {
	switch v.(type) {
	case nil:
		return kNull
	case string:
		return kString
	case Number:
		return kNumber
	case bool:
		return kBool
	case []any:
		return kArray
	}
	return kAny
}

// textish reports whether a value of kind k may be a string at run time.
func textish(k skind) bool {
	return k == kString || k == kAny || k == kJSON || k == kNull
}

// checkPipeline follows the static kind of a property's value through its
// transforms, map and type coercion and reports combinations that can never
// work. Kinds that are only known at run time pass and are checked per row.
func checkPipeline(k skind, p *Property) (skind, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, t := range p.Transforms {
		switch t.Name {
		case "trim", "lower", "upper", "truncate":
			if !textish(k) {
				bad("transform %s needs text, got %s", t, k)
			}
			if k != kString {
				k = kAny
			}
		case "null_if_empty":
		case "split":
			if !textish(k) {
				bad("transform %s needs text, got %s", t, k)
			}
			k = kArray
		case "join":
			if k != kArray && k != kAny && k != kJSON && k != kNull {
				bad("transform %s needs an array, got %s", t, k)
			}
			k = kString
		case "json_string":
			if k == kBytes {
				bad("transform json_string does not take bytea; use encode(base64) or encode(hex)")
			}
			k = kString
		case "encode":
			if k != kBytes && k != kAny && k != kNull {
				bad("transform %s needs bytea, got %s", t, k)
			}
			k = kString
		case "default":
			if k != kString {
				k = kAny
			}
		}
	}
	if p.Map != nil {
		if k == kBytes {
			bad("map needs text, got bytea")
		}
		if k != kArray {
			k = kAny
		}
	}
	switch p.Type {
	case "":
	case "array":
		if k == kBytes {
			bad("cannot coerce bytea to array")
		}
		k = kArray
	default:
		if k == kBytes || k == kArray {
			bad("cannot coerce %s to %s", k, p.Type)
		}
		k = map[string]skind{"string": kString, "number": kNumber, "boolean": kBool, "date": kDate, "datetime": kTime}[p.Type]
	}
	if k == kBytes {
		bad("bytea needs transform encode(base64) or encode(hex)")
	}
	return k, problems
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
