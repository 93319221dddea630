package prismtest

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

type record struct {
	seq       uint64 // creation order, to keep "first match wins" stable
	id        string
	props     map[string]any
	list      json.RawMessage
	listID    string
	updates   int
	matches   int
	createdAt time.Time
	updatedAt time.Time
}

type indexKey struct {
	slug            string
	caseInsensitive bool
}

// objectStore holds the records of one object type. Dedupe indexes are built
// on first use per (slug, case mode) and then maintained on every write, so a
// lookup is a map access however many records there are.
type objectStore struct {
	seq     uint64
	byID    map[string]*record
	order   []*record
	indexes map[indexKey]map[string][]*record
}

func newObjectStore() *objectStore {
	return &objectStore{
		byID:    make(map[string]*record),
		indexes: make(map[indexKey]map[string][]*record),
	}
}

// dedupeValue is the index key of a property value: strings (lower-cased when
// matching case-insensitively), numbers by their JSON text and booleans.
// Numbers and strings share a key space ("42" matches 42), as a typed
// property would coerce both. Null, missing and array values never match.
func dedupeValue(v any, caseInsensitive bool) (string, bool) {
	switch x := v.(type) {
	case string:
		if caseInsensitive {
			return strings.ToLower(x), true
		}
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func (st *objectStore) index(k indexKey) map[string][]*record {
	idx, ok := st.indexes[k]
	if ok {
		return idx
	}
	idx = make(map[string][]*record)
	for _, rec := range st.order {
		if v, ok := dedupeValue(rec.props[k.slug], k.caseInsensitive); ok {
			idx[v] = append(idx[v], rec)
		}
	}
	st.indexes[k] = idx
	return idx
}

// lookup returns the earliest-created record whose slug value matches.
func (st *objectStore) lookup(slug string, caseInsensitive bool, value any) *record {
	v, ok := dedupeValue(value, caseInsensitive)
	if !ok {
		return nil
	}
	if recs := st.index(indexKey{slug, caseInsensitive})[v]; len(recs) > 0 {
		return recs[0]
	}
	return nil
}

func (st *objectStore) create(r row, listID string, now time.Time) *record {
	st.seq++
	rec := &record{
		seq:       st.seq,
		id:        uuid.NewString(),
		props:     r.props, // the row is applied once; its map becomes the record's
		list:      r.list,
		listID:    listID,
		createdAt: now,
		updatedAt: now,
	}
	st.byID[rec.id] = rec
	st.order = append(st.order, rec)
	for k, idx := range st.indexes {
		if v, ok := dedupeValue(rec.props[k.slug], k.caseInsensitive); ok {
			idx[v] = append(idx[v], rec) // newest seq: appending keeps order
		}
	}
	return rec
}

// patch writes the supplied properties onto rec (null clears a value) and
// moves rec between index buckets whose key changed.
func (st *objectStore) patch(rec *record, r row, listID string, now time.Time) {
	for k, idx := range st.indexes {
		nv, touched := r.props[k.slug]
		if !touched {
			continue
		}
		oldKey, hadOld := dedupeValue(rec.props[k.slug], k.caseInsensitive)
		newKey, hasNew := dedupeValue(nv, k.caseInsensitive)
		if hadOld == hasNew && oldKey == newKey {
			continue
		}
		if hadOld {
			bucket := idx[oldKey]
			if i := slices.Index(bucket, rec); i >= 0 {
				bucket = slices.Delete(bucket, i, i+1)
			}
			if len(bucket) == 0 {
				delete(idx, oldKey)
			} else {
				idx[oldKey] = bucket
			}
		}
		if hasNew {
			bucket := idx[newKey]
			i, _ := slices.BinarySearchFunc(bucket, rec.seq, func(e *record, seq uint64) int {
				return cmpUint(e.seq, seq)
			})
			idx[newKey] = slices.Insert(bucket, i, rec)
		}
	}
	maps.Copy(rec.props, r.props)
	if r.list != nil {
		rec.list = r.list
	}
	if listID != "" {
		rec.listID = listID
	}
	rec.updates++
	rec.updatedAt = now
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rowResult is the outcome of one row, encoded into results[].
type rowResult struct {
	id       string
	created  bool
	existing bool
	updated  bool
	err      *wireError
}

// applyRows runs rows in order (so a later row can match a record an earlier
// row created) and counts the outcomes. Caller holds s.mu.
func (s *Server) applyRows(object string, rows []row, o importOptions, now time.Time) []rowResult {
	st := s.objects[object]
	if st == nil {
		st = newObjectStore()
		s.objects[object] = st
	}
	results := make([]rowResult, len(rows))
	for i, r := range rows {
		if r.err != nil {
			results[i] = rowResult{err: r.err}
			s.stats.RowErrors++
			continue
		}
		if o.dedupeBy != "" {
			if rec := st.lookup(o.dedupeBy, o.caseInsensitive, r.props[o.dedupeBy]); rec != nil {
				rec.matches++
				if o.updateExisting {
					st.patch(rec, r, o.listID, now)
					s.stats.Updates++
					results[i] = rowResult{id: rec.id, existing: true, updated: true}
				} else {
					s.stats.Skips++
					results[i] = rowResult{id: rec.id, existing: true}
				}
				continue
			}
		}
		rec := st.create(r, o.listID, now)
		s.stats.Creates++
		results[i] = rowResult{id: rec.id, created: true}
	}
	return results
}
