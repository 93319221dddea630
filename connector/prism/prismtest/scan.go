package prismtest

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// item is one object of an import in the form the store keeps it: its
// properties as the JSON text of one object whose keys are unique and
// spelled exactly as encoding/json writes them (see canonicalKey), so that a
// slug is found by comparing bytes and the text decodes back to the values
// the reference decoder produces. A row with err set is refused on its own
// (per-row error) while the other rows go ahead.
type item struct {
	props []byte // {"slug":value,...}; nil or "{}" when there are none
	list  []byte // objects[].list, nil when absent or null
	err   *wireError
}

// batch is a decoded and validated import body.
type batch struct {
	items []item
	opts  importOptions
}

// decodeBatch decodes an import body. scanImport takes the bodies clients
// actually send, without building a map per object; whatever it does not
// accept (malformed JSON, unknown or repeated fields, escaped or non-ASCII
// keys, deep nesting, ...) goes through decodeImport, the reference decoder,
// so that errors and odd inputs are answered exactly as decodeImport
// answers them. FuzzScanImport checks that both agree where scanImport
// accepts.
func decodeBatch(body []byte, known map[string]bool) (*batch, error) {
	if b, ok := scanImport(body, known); ok {
		return b, nil
	}
	req, err := decodeImport(body, known)
	if err != nil {
		return nil, err
	}
	b := &batch{items: make([]item, len(req.rows)), opts: req.opts}
	for i, r := range req.rows {
		it := item{list: r.list, err: r.err}
		if r.err == nil && len(r.props) > 0 {
			// json.Marshal sorts the keys and escapes them as canonicalKey
			// expects; the values decode back to themselves.
			text, err := json.Marshal(r.props)
			if err != nil {
				panic(fmt.Sprintf("prismtest: encode properties: %v", err))
			}
			it.props = text
		}
		b.items[i] = it
	}
	return b, nil
}

// maxScanDepth bounds the nesting scanImport follows; deeper bodies go to
// the reference decoder, which has its own (larger) limit.
const maxScanDepth = 64

// scanner walks standard JSON (RFC 8259) without decoding it: it finds the
// extent and kind of values. Everything it accepts, encoding/json accepts
// too; it may refuse more (the caller then falls back).
type scanner struct {
	b    []byte
	i    int
	keys [][]byte // scratch: the keys of the current default object
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// consume skips white space and c if c comes next.
func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// Value kinds returned by value.
const (
	kindString  = 's'
	kindNumber  = 'n'
	kindLiteral = 'l' // true, false, null
	kindArray   = 'a' // an array of scalars only
	kindNested  = 'A' // an array holding an array or object
	kindObject  = 'o'
)

// value scans the value starting at s.i (white space already skipped).
func (s *scanner) value(depth int) (byte, bool) {
	if s.i >= len(s.b) {
		return 0, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return kindString, ok
	case c == '-' || '0' <= c && c <= '9':
		return kindNumber, s.number()
	case c == 't':
		return kindLiteral, s.literal("true")
	case c == 'f':
		return kindLiteral, s.literal("false")
	case c == 'n':
		return kindLiteral, s.literal("null")
	case c == '[':
		return s.array(depth + 1)
	case c == '{':
		return kindObject, s.object(depth + 1)
	}
	return 0, false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str scans a string token; plain reports that it holds printable ASCII
// only and no escapes, so its bytes are its value.
func (s *scanner) str() (plain, ok bool) {
	b, i := s.b, s.i+1 // past the opening quote
	plain = true
	for i < len(b) {
		c := b[i]
		if c >= 0x20 && c < 0x80 && c != '"' && c != '\\' {
			i++
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return plain, true
		case c < 0x20:
			return false, false
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return false, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return false, false
					}
				}
				i += 6
			default:
				return false, false
			}
		default: // beyond ASCII
			plain = false
			i++
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.digits() == 0:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

func (s *scanner) array(depth int) (byte, bool) {
	if depth > maxScanDepth {
		return 0, false
	}
	s.i++
	kind := byte(kindArray)
	if s.consume(']') {
		return kind, true
	}
	for {
		s.skipSpace()
		k, ok := s.value(depth)
		if !ok {
			return 0, false
		}
		if k == kindArray || k == kindNested || k == kindObject {
			kind = kindNested
		}
		if s.consume(']') {
			return kind, true
		}
		if !s.consume(',') {
			return 0, false
		}
	}
}

func (s *scanner) object(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	s.i++
	if s.consume('}') {
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		if _, ok := s.str(); !ok {
			return false
		}
		if !s.consume(':') {
			return false
		}
		s.skipSpace()
		if _, ok := s.value(depth); !ok {
			return false
		}
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// key scans an object key and its colon, returning the key's token with
// the quotes.
func (s *scanner) key() (tok []byte, plain, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	start := s.i
	plain, ok = s.str()
	end := s.i
	if !ok || !s.consume(':') {
		return nil, false, false
	}
	s.skipSpace()
	return s.b[start:end], plain, true
}

// scanImport is the fast path of decodeBatch; ok is false when the body
// must go through the reference decoder instead.
func scanImport(body []byte, known map[string]bool) (b *batch, ok bool) {
	s := &scanner{b: body}
	if !s.consume('{') || s.peek() == '}' {
		return nil, false
	}
	b = &batch{}
	sawObjects, sawOptions := false, false
	for {
		tok, _, ok := s.key()
		if !ok {
			return nil, false
		}
		switch string(tok) {
		case `"objects"`:
			if sawObjects || !s.objects(b, known) {
				return nil, false
			}
			sawObjects = true
		case `"options"`:
			start := s.i
			if _, ok := s.value(0); sawOptions || !ok {
				return nil, false
			}
			// The same function as the reference decoder, on the same bytes
			// its Decode(&raw) would have produced.
			if decodeOptions(s.b[start:s.i], known, &b.opts) != nil {
				return nil, false
			}
			sawOptions = true
		default:
			return nil, false
		}
		if s.consume('}') {
			break
		}
		if !s.consume(',') {
			return nil, false
		}
	}
	s.skipSpace()
	if s.i != len(s.b) || !sawObjects {
		return nil, false
	}
	return b, true
}

// objects scans the objects array into b.items.
func (s *scanner) objects(b *batch, known map[string]bool) bool {
	if !s.consume('[') {
		return false
	}
	if s.consume(']') {
		return true
	}
	for {
		var it item
		if !s.consume('{') {
			return false
		}
		sawDefault, sawList := false, false
		for !s.consume('}') {
			if sawDefault || sawList {
				if !s.consume(',') {
					return false
				}
			}
			tok, _, ok := s.key()
			if !ok {
				return false
			}
			switch string(tok) {
			case `"default"`:
				if sawDefault {
					return false
				}
				sawDefault = true
				switch s.peek() {
				case 'n':
					if !s.literal("null") {
						return false
					}
				case '{':
					if !s.props(&it, known) {
						return false
					}
				default:
					return false
				}
			case `"list"`:
				if sawList {
					return false
				}
				sawList = true
				start := s.i
				switch s.peek() {
				case 'n':
					if !s.literal("null") {
						return false
					}
				case '{':
					if !s.object(1) {
						return false
					}
					it.list = s.b[start:s.i]
				default:
					return false
				}
			default:
				return false
			}
		}
		b.items = append(b.items, it)
		if s.consume(']') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// props scans a default object into it.props and validates it as
// validateProps does. Keys must already be canonical (see canonicalKey)
// and unique; other objects go to the reference decoder.
func (s *scanner) props(it *item, known map[string]bool) bool {
	start := s.i
	s.i++
	s.keys = s.keys[:0]
	var bad []byte // the offending slug reported, the smallest one
	var badErr func(slug string) *wireError
	for !s.consume('}') {
		if len(s.keys) > 0 && !s.consume(',') {
			return false
		}
		tok, plain, ok := s.key()
		if !ok || !plain || !canonicalKey(tok) {
			return false
		}
		for _, k := range s.keys {
			if bytes.Equal(k, tok) {
				return false // a repeated key: last one wins, left to the reference
			}
		}
		s.keys = append(s.keys, tok)
		kind, ok := s.value(1)
		if !ok {
			return false
		}
		slug := tok[1 : len(tok)-1]
		var e func(string) *wireError
		switch {
		case len(slug) == 0:
			e = emptySlugError
		case known != nil && !known[string(slug)]:
			e = unknownPropertyError
		case kind == kindObject || kind == kindNested:
			e = invalidValueError
		}
		if e != nil && (badErr == nil || bytes.Compare(slug, bad) < 0) {
			bad, badErr = slug, e
		}
	}
	it.props = s.b[start:s.i]
	if badErr != nil {
		it.err = badErr(string(bad))
	}
	return true
}

// The per-row errors of validateProps, in the same words.
func emptySlugError(string) *wireError {
	return &wireError{Code: "invalid_value", Message: "empty property slug"}
}

func unknownPropertyError(slug string) *wireError {
	return &wireError{Code: "unknown_property", Message: fmt.Sprintf("unknown property %q", slug)}
}

func invalidValueError(slug string) *wireError {
	return &wireError{Code: "invalid_value",
		Message: fmt.Sprintf("property %q: value must be a string, number, boolean, array or null", slug)}
}

// canonicalKey reports whether a plain key token is spelled as
// encoding/json writes it: printable ASCII without the characters it
// escapes (the quote and backslash cannot occur in a plain token).
func canonicalKey(tok []byte) bool {
	for _, c := range tok[1 : len(tok)-1] {
		if c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
