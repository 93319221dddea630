package prismtest

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// RefProperty declares a reference property (storage types ref_* and
// multiref_*, ../shared/micro-api.md §8): its value links to records of
// Object, one record id (a UUID string), or with Multi an array of them.
type RefProperty struct {
	Object string
	Multi  bool
}

// refSlug is a RefProperty with its slug as a key token of a property text.
type refSlug struct {
	RefProperty
	slug string
	tok  []byte
}

// checkRefs returns the per-row error "invalid_reference" for the first
// reference property (in slug order) of props whose value is not null and
// not the id of a live record of its object type. The brief says ref
// properties take record UUIDs (§9 item 15); Micro's exact refusal is not
// documented, so the fake refuses the row, as it does other bad values.
// Caller holds s.mu.
func (s *Server) checkRefs(refs []refSlug, props []byte) *wireError {
	for _, r := range refs {
		raw, ok := prop(props, r.tok)
		if !ok || string(raw) == "null" {
			continue
		}
		var ids []any
		var one any
		if err := json.Unmarshal(raw, &one); err != nil {
			return refError(r, "is not valid JSON")
		}
		switch v := one.(type) {
		case string:
			if r.Multi {
				return refError(r, "must be an array of record ids")
			}
			ids = []any{v}
		case []any:
			if !r.Multi {
				return refError(r, "must be one record id, not an array")
			}
			ids = v
		default:
			return refError(r, "must be a record id")
		}
		for _, id := range ids {
			str, _ := id.(string)
			if !s.liveRecord(r.Object, str) {
				return refError(r, fmt.Sprintf("%s is not the id of an existing %s record", string(mustJSON(id)), r.Object))
			}
		}
	}
	return nil
}

func refError(r refSlug, msg string) *wireError {
	return &wireError{Code: "invalid_reference", Message: fmt.Sprintf("property %q: %s", r.slug, msg)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("?")
	}
	return b
}

// liveRecord reports whether id is the canonical id of a record of object
// that was not deleted. Caller holds s.mu.
func (s *Server) liveRecord(object, id string) bool {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return false
	}
	st := s.objects[object]
	if st == nil {
		return false
	}
	n := st.record(u)
	return n != 0 && !st.rec(n).deleted
}

// compileRefs turns Options.Refs into the per-object lists checkRefs walks,
// in slug order so that the reported slug is deterministic.
func compileRefs(refs map[string]map[string]RefProperty) map[string][]refSlug {
	if refs == nil {
		return nil
	}
	out := make(map[string][]refSlug, len(refs))
	for object, slugs := range refs {
		var list []refSlug
		for slug, r := range slugs {
			list = append(list, refSlug{RefProperty: r, slug: slug, tok: keyToken(slug)})
		}
		slices.SortFunc(list, func(a, b refSlug) int {
			switch {
			case a.slug < b.slug:
				return -1
			case a.slug > b.slug:
				return 1
			}
			return 0
		})
		out[object] = list
	}
	return out
}

// Delete soft-deletes the record with id, as DELETE /{objectType}/{id}
// does: it no longer matches on dedupe (an import then creates a new record
// for the same key, with a new id), is no longer a valid reference, and is
// left out of Records, Count, Record and Find. It reports whether a live
// record was deleted.
func (s *Server) Delete(object, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	if !s.liveRecord(object, id) {
		return false
	}
	st := s.objects[object]
	st.markDeleted(st.record(uuid.MustParse(id)))
	return true
}
