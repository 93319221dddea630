package prism

import (
	"encoding/json"
	"strconv"
	"strings"
)

// decodeResults decodes the results array of a job answer into wireResults,
// exactly as json.Unmarshal would. raw is part of a body json.Unmarshal has
// already checked for syntax.
//
// The usual shape, an array of flat objects whose members are input_index
// (an integer), id (a string without escapes), created, existing and updated
// (booleans) and error (any value), any of them null, is read here by hand:
// through encoding/json's reflection, the results of a 1,000-row import cost
// 4 µs of prismsync's CPU per row, 40% of all it spent on issue 12's bench.
// Anything else (another member name, which encoding/json would match without
// regard to case; an escaped id; a number that is not a plain integer) goes to
// json.Unmarshal, so the outcome never depends on the path.
func decodeResults(raw json.RawMessage) ([]wireResult, error) {
	if len(raw) == 0 {
		return nil, nil // no results member
	}
	if out, ok := fastResults(raw); ok {
		return out, nil
	}
	var out []wireResult
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// withoutResults returns body, a JSON object already checked for syntax,
// with the value of its results member replaced by null, and that value:
// the rest of the answer is small, and encoding/json then skips neither
// scanning nor decoding the part that is most of it. ok is false for any
// body it does not handle as encoding/json would (not an object, a member
// named results in another case, two of them); those go to json.Unmarshal
// whole.
func withoutResults(body []byte) (rest, results []byte, ok bool) {
	s := resultScanner{b: body, ok: true}
	s.space()
	if !s.byte('{') {
		return nil, nil, false
	}
	start, end := -1, -1
	s.space()
	for s.ok && !s.byte('}') {
		name := s.plainString()
		s.space()
		if !s.byte(':') {
			return nil, nil, false
		}
		s.space()
		vs := s.i
		s.skipValue()
		switch {
		case string(name) == "results":
			if start >= 0 {
				return nil, nil, false
			}
			start, end = vs, s.i
		case len(name) == len("results") && strings.EqualFold(string(name), "results"):
			return nil, nil, false
		}
		s.space()
		if !s.byte(',') && (s.i >= len(s.b) || s.b[s.i] != '}') {
			return nil, nil, false
		}
		s.space()
	}
	s.space()
	if !s.ok || s.i != len(s.b) || start < 0 || end <= start {
		return nil, nil, false
	}
	rest = make([]byte, 0, len(body)-(end-start)+4)
	rest = append(append(append(rest, body[:start]...), "null"...), body[end:]...)
	return rest, body[start:end], true
}

// resultScanner reads one results array; ok turns false at the first thing
// it does not handle.
type resultScanner struct {
	b  []byte
	i  int
	ok bool
}

func fastResults(raw []byte) ([]wireResult, bool) {
	s := resultScanner{b: raw, ok: true}
	s.space()
	if s.literal("null") {
		s.space()
		return nil, s.ok && s.i == len(s.b)
	}
	if !s.byte('[') {
		return nil, false
	}
	out := make([]wireResult, 0, len(raw)/96) // about the size of one result
	s.space()
	if s.byte(']') {
		s.space()
		return out, s.ok && s.i == len(s.b)
	}
	for s.ok {
		var r wireResult
		s.object(&r)
		out = append(out, r)
		s.space()
		if s.byte(']') {
			break
		}
		if !s.byte(',') {
			return nil, false
		}
		s.space()
	}
	s.space()
	return out, s.ok && s.i == len(s.b)
}

func (s *resultScanner) object(r *wireResult) {
	if !s.byte('{') {
		s.ok = false
		return
	}
	s.space()
	if s.byte('}') {
		return
	}
	for s.ok {
		name := s.plainString()
		s.space()
		if !s.byte(':') {
			s.ok = false
			return
		}
		s.space()
		switch string(name) { // no allocation: the compiler compares in place
		case "input_index":
			if s.literal("null") {
				r.InputIndex = nil
			} else if n, ok := s.integer(); ok {
				r.InputIndex = &n
			} else {
				s.ok = false
			}
		case "id":
			if !s.literal("null") { // null leaves a string as it was
				r.ID = string(s.plainString())
			}
		case "created":
			s.boolean(&r.Created)
		case "existing":
			s.boolean(&r.Existing)
		case "updated":
			s.boolean(&r.Updated)
		case "error":
			// RawMessage keeps whatever value it is given, null included.
			start := s.i
			s.skipValue()
			if s.i == start {
				s.ok = false
			}
			r.Error = json.RawMessage(s.b[start:s.i:s.i])
		default:
			s.ok = false
		}
		s.space()
		if s.byte('}') {
			return
		}
		if !s.byte(',') {
			s.ok = false
			return
		}
		s.space()
	}
}

func (s *resultScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (s *resultScanner) byte(c byte) bool {
	if s.ok && s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// literal consumes lit if it is next.
func (s *resultScanner) literal(lit string) bool {
	if s.ok && len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// plainString reads a string without escapes and returns its contents.
func (s *resultScanner) plainString() []byte {
	if !s.byte('"') {
		s.ok = false
		return nil
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1]
		case c == '\\' || c < 0x20 || c >= 0x80:
			// Escapes, and bytes encoding/json checks for UTF-8.
			s.ok = false
			return nil
		}
		s.i++
	}
	s.ok = false
	return nil
}

// integer reads an integer without fraction or exponent that fits an int.
func (s *resultScanner) integer() (int, bool) {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	n, err := strconv.Atoi(string(s.b[start:s.i]))
	return n, err == nil
}

func (s *resultScanner) boolean(v *bool) {
	switch {
	case s.literal("true"):
		*v = true
	case s.literal("false"):
		*v = false
	case s.literal("null"): // leaves it as it was
	default:
		s.ok = false
	}
}

// skipValue moves past one JSON value of any kind; the body's syntax was
// checked, so only its extent matters.
func (s *resultScanner) skipValue() {
	depth := 0
	for s.ok && s.i < len(s.b) {
		c := s.b[s.i]
		switch c {
		case '"':
			s.i++
			for s.i < len(s.b) && s.b[s.i] != '"' {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			if s.i >= len(s.b) {
				s.ok = false
				return
			}
			s.i++
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing object: no value at all
			}
			depth--
			s.i++
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return
			}
			s.i++
		default: // a literal or a number
			s.i++
		}
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return
		}
	}
	if depth != 0 {
		s.ok = false
	}
}
