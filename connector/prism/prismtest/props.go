package prismtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Records keep their properties as JSON text (see item) rather than as
// map[string]any: one flat byte string per record instead of a map, a boxed
// value per property and a string per key, which is what made a million
// stored records cost gigabytes and most of the fake's GC time. Maps are
// built only when a test reads a record.

// propIter walks the key/value pairs of a property text.
type propIter struct{ s scanner }

func newPropIter(text []byte) propIter {
	it := propIter{scanner{b: text}}
	if len(text) > 0 {
		it.s.i = 1 // past '{'
	}
	return it
}

// next returns the next key token (with quotes) and raw value.
func (it *propIter) next() (key, val []byte, ok bool) {
	s := &it.s
	if s.i >= len(s.b) {
		return nil, nil, false
	}
	if s.peek() == ',' {
		s.i++
	}
	key, _, ok = s.key()
	if !ok {
		return nil, nil, false
	}
	start := s.i
	if _, ok := s.value(1); !ok {
		return nil, nil, false
	}
	return key, s.b[start:s.i], true
}

// prop returns the raw value of the key token key.
func prop(text, key []byte) ([]byte, bool) {
	it := newPropIter(text)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if bytes.Equal(k, key) {
			return v, true
		}
	}
	return nil, false
}

// keyToken is how slug is spelled as a key in a property text.
func keyToken(slug string) []byte {
	tok, err := json.Marshal(slug)
	if err != nil {
		panic(fmt.Sprintf("prismtest: encode slug: %v", err)) // cannot fail for a string
	}
	return tok
}

// mergeProps appends to dst the text of old patched with upd: upd's pairs
// (nulls included) replace or join old's, as maps.Copy(old, upd) would.
// keys is scratch space for upd's keys.
func mergeProps(dst, old, upd []byte, keys [][]byte) ([]byte, [][]byte) {
	keys = keys[:0]
	it := newPropIter(upd)
	for k, _, ok := it.next(); ok; k, _, ok = it.next() {
		keys = append(keys, k)
	}
	dst = append(dst, '{')
	it = newPropIter(old)
outer:
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		for _, u := range keys {
			if bytes.Equal(k, u) {
				continue outer
			}
		}
		dst = append(dst, k...)
		dst = append(dst, ':')
		dst = append(dst, v...)
		dst = append(dst, ',')
	}
	// upd's pairs as they are: its text without the braces.
	if inner := bytes.TrimSpace(upd[1 : len(upd)-1]); len(inner) > 0 {
		dst = append(dst, inner...)
	} else if dst[len(dst)-1] == ',' {
		dst = dst[:len(dst)-1]
	}
	return append(dst, '}'), keys
}

// decodeProps builds the map a test sees, with the values the reference
// decoder produces: string, json.Number, bool, nil or []any of those.
func decodeProps(text []byte) map[string]any {
	props := map[string]any{}
	if len(text) == 0 {
		return props
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&props); err != nil {
		panic(fmt.Sprintf("prismtest: decode stored properties: %v", err)) // the text was validated on import
	}
	return props
}

// dedupeKey appends the index key of a raw property value to dst: the key
// dedupeValue computes for the decoded value. ok is false for null, arrays
// and objects, which never match.
func dedupeKey(dst, val []byte, caseInsensitive bool) ([]byte, bool) {
	if len(val) == 0 {
		return dst, false
	}
	switch c := val[0]; {
	case c == '"':
		inner := val[1 : len(val)-1]
		if plainASCII(inner) {
			if !caseInsensitive {
				return append(dst, inner...), true
			}
			for _, c := range inner {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				dst = append(dst, c)
			}
			return dst, true
		}
		var s string
		if err := json.Unmarshal(val, &s); err != nil {
			return dst, false // cannot happen: the text was validated on import
		}
		if caseInsensitive {
			s = strings.ToLower(s)
		}
		return append(dst, s...), true
	case c == 't' || c == 'f' || c == '-' || '0' <= c && c <= '9':
		// Booleans as strconv.FormatBool writes them, numbers by their
		// text as json.Number keeps it.
		return append(dst, val...), true
	}
	return dst, false
}

// plainASCII reports whether the inside of a string token is its own value
// (no escapes, nothing outside ASCII).
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}
