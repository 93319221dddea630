package mapping

import (
	"fmt"
	"strconv"
	"strings"
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
