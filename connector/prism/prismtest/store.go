package prismtest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// record is a stored object. It holds no pointers: the property text lives
// in the store's arena and times, list ids and lists in side tables, so the
// garbage collector never walks the records, however many there are.
type record struct {
	id      uuid.UUID
	props   span   // property text in objectStore.text
	created uint32 // index into objectStore.times
	updated uint32
	listID  uint32 // index into objectStore.listIDs
	updates uint32
	matches uint32
	deleted bool // Server.Delete: no dedupe match, no valid reference, not listed
}

// seq numbers records from 1 in creation order (0 is "no record"), which
// keeps "first match wins" stable.
type seq = uint32

const recChunk = 4096

type indexKey struct {
	slug            string
	caseInsensitive bool
}

// objectStore holds the records of one object type. Dedupe indexes are built
// on first use per (slug, case mode) and then maintained on every write, so a
// lookup is a map access however many records there are.
type objectStore struct {
	recs    [][]record // chunks of recChunk records, in seq order
	n       seq
	deleted seq               // how many of the n are deleted
	byID    map[uuid.UUID]seq // built by the first Record call
	indexes map[indexKey]*dedupeIndex
	text    arena
	lists   map[seq][]byte // objects[].list of the last write that had one
	times   []time.Time    // created/updated times; a batch shares one entry
	listIDs []string       // distinct options.list_id values; [0] is ""
	listIdx map[string]uint32
	hash    func(key []byte) uint64 // of dedupe keys; tests make it collide

	// scratch space, used under the Server's lock
	key, key2, buf []byte
	keys           [][]byte
	random         []byte // unused random bytes for ids
}

func newObjectStore() *objectStore {
	st := &objectStore{
		indexes: make(map[indexKey]*dedupeIndex),
		lists:   make(map[seq][]byte),
		listIDs: []string{""},
		listIdx: map[string]uint32{"": 0},
	}
	seed := maphash.MakeSeed()
	st.hash = func(key []byte) uint64 { return maphash.Bytes(seed, key) }
	return st
}

func (st *objectStore) rec(n seq) *record {
	return &st.recs[(n-1)/recChunk][(n-1)%recChunk]
}

// newID returns a random (version 4) UUID exactly as uuid.New makes one,
// but from random bytes drawn 4 KiB at a time: one read and one allocation
// per id were a tenth of the cost of storing a record.
func (st *objectStore) newID() uuid.UUID {
	if len(st.random) < len(uuid.UUID{}) {
		st.random = make([]byte, 4096)
		rand.Read(st.random) // never fails (it crashes the program instead)
	}
	var id uuid.UUID
	st.random = st.random[copy(id[:], st.random):]
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant RFC 4122
	return id
}

func (st *objectStore) timeIndex(t time.Time) uint32 {
	// Compared with == rather than Equal: the exact value (location,
	// monotonic reading) is what Record returns.
	if n := len(st.times); n > 0 && st.times[n-1] == t {
		return uint32(n - 1)
	}
	st.times = append(st.times, t)
	return uint32(len(st.times) - 1)
}

func (st *objectStore) listIndex(listID string) uint32 {
	if i, ok := st.listIdx[listID]; ok {
		return i
	}
	st.listIDs = append(st.listIDs, listID)
	i := uint32(len(st.listIDs) - 1)
	st.listIdx[listID] = i
	return i
}

// recKey is the index key of record n's value of idx's slug, in st.key2.
func (st *objectStore) recKey(idx *dedupeIndex, n seq) ([]byte, bool) {
	val, _ := prop(st.text.get(st.rec(n).props), idx.tok)
	var ok bool
	st.key2, ok = dedupeKey(st.key2[:0], val, idx.caseInsensitive)
	return st.key2, ok
}

// record returns the record with id, or 0. The id index is built on first
// use: the engine never asks, and it would cost every import a map insert.
func (st *objectStore) record(id uuid.UUID) seq {
	if st.byID == nil {
		st.byID = make(map[uuid.UUID]seq, st.n)
		for n := seq(1); n <= st.n; n++ {
			st.byID[st.rec(n).id] = n
		}
	}
	return st.byID[id]
}

// dedupeIndex maps the hash of a dedupe key to the records having it; as
// the maps hold no pointers, the collector does not walk them. A hash is
// not a key, so every candidate is checked against its own value.
type dedupeIndex struct {
	tok             []byte // the slug as a key token
	caseInsensitive bool
	first           map[uint64]seq   // the earliest record per hash
	later           map[uint64][]seq // the others, ascending; rarely any
}

func (idx *dedupeIndex) add(h uint64, n seq) {
	f, ok := idx.first[h]
	switch {
	case !ok:
		idx.first[h] = n
		return
	case n < f:
		idx.first[h], n = n, f
	}
	later := idx.later[h]
	i, _ := slices.BinarySearch(later, n)
	idx.later[h] = slices.Insert(later, i, n)
}

func (idx *dedupeIndex) remove(h uint64, n seq) {
	later := idx.later[h]
	if idx.first[h] == n {
		if len(later) == 0 {
			delete(idx.first, h)
			return
		}
		idx.first[h], n = later[0], later[0]
	}
	if i, ok := slices.BinarySearch(later, n); ok {
		later = slices.Delete(later, i, i+1)
	}
	if len(later) == 0 {
		delete(idx.later, h)
	} else {
		idx.later[h] = later
	}
}

// eachMatch calls fn with the records whose key is key, in creation order,
// until fn returns false.
func (st *objectStore) eachMatch(idx *dedupeIndex, key []byte, fn func(seq) bool) {
	h := st.hash(key)
	f, ok := idx.first[h]
	if !ok {
		return
	}
	if k, ok := st.recKey(idx, f); ok && bytes.Equal(k, key) && !fn(f) {
		return
	}
	for _, n := range idx.later[h] {
		if k, ok := st.recKey(idx, n); ok && bytes.Equal(k, key) && !fn(n) {
			return
		}
	}
}

// dedupeValue is the index key of a property value: strings (lower-cased when
// matching case-insensitively), numbers by their JSON text and booleans.
// Numbers and strings share a key space ("42" matches 42), as a typed
// property would coerce both. Null, missing and array values never match.
// dedupeKey computes the same key from a value's JSON text.
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

func (st *objectStore) index(k indexKey) *dedupeIndex {
	idx, ok := st.indexes[k]
	if ok {
		return idx
	}
	idx = &dedupeIndex{
		tok:             keyToken(k.slug),
		caseInsensitive: k.caseInsensitive,
		first:           make(map[uint64]seq),
		later:           make(map[uint64][]seq),
	}
	for n := seq(1); n <= st.n; n++ {
		if key, ok := st.recKey(idx, n); ok && !st.rec(n).deleted {
			idx.add(st.hash(key), n)
		}
	}
	st.indexes[k] = idx
	return idx
}

// lookup returns the earliest-created record whose slug value matches the
// one in props, or 0.
func (st *objectStore) lookup(slug string, caseInsensitive bool, props []byte) seq {
	idx := st.index(indexKey{slug, caseInsensitive})
	val, _ := prop(props, idx.tok)
	key, ok := dedupeKey(st.key[:0], val, caseInsensitive)
	st.key = key
	if !ok {
		return 0
	}
	var found seq
	st.eachMatch(idx, key, func(n seq) bool { found = n; return false })
	return found
}

func (st *objectStore) create(it item, listID string, now time.Time) seq {
	st.n++
	n := st.n
	if (n-1)%recChunk == 0 {
		st.recs = append(st.recs, make([]record, 0, recChunk))
	}
	t := st.timeIndex(now)
	rec := record{
		id:      st.newID(),
		props:   st.text.put(it.props),
		created: t,
		updated: t,
		listID:  st.listIndex(listID),
	}
	last := &st.recs[len(st.recs)-1]
	*last = append(*last, rec)
	if st.byID != nil {
		st.byID[rec.id] = n
	}
	if it.list != nil {
		st.lists[n] = bytes.Clone(it.list)
	}
	for _, idx := range st.indexes {
		val, _ := prop(it.props, idx.tok)
		var ok bool
		if st.key, ok = dedupeKey(st.key[:0], val, idx.caseInsensitive); ok {
			idx.add(st.hash(st.key), n) // newest seq: lands last
		}
	}
	return n
}

// patch writes the supplied properties onto record n (null clears a value)
// and moves it between index buckets whose key changed.
func (st *objectStore) patch(n seq, it item, listID string, now time.Time) {
	rec := st.rec(n)
	for _, idx := range st.indexes {
		nv, touched := prop(it.props, idx.tok)
		if !touched {
			continue
		}
		oldKey, hadOld := st.recKey(idx, n)
		var hasNew bool
		st.key, hasNew = dedupeKey(st.key[:0], nv, idx.caseInsensitive)
		if hadOld == hasNew && bytes.Equal(oldKey, st.key) {
			continue
		}
		if hadOld {
			idx.remove(st.hash(oldKey), n)
		}
		if hasNew {
			idx.add(st.hash(st.key), n)
		}
	}
	if len(it.props) > 2 { // more than "{}"
		st.buf, st.keys = mergeProps(st.buf[:0], st.text.get(rec.props), it.props, st.keys)
		rec.props = st.text.replace(rec.props, st.buf)
	}
	if it.list != nil {
		st.lists[n] = bytes.Clone(it.list)
	}
	if listID != "" {
		rec.listID = st.listIndex(listID)
	}
	rec.updates++
	rec.updated = st.timeIndex(now)
}

// arena keeps property texts in large pointer-free chunks.
type arena struct{ chunks [][]byte }

const arenaChunk = 1 << 20

// span locates bytes in an arena; the zero span is empty.
type span struct{ chunk, off, len uint32 }

func (a *arena) put(b []byte) span {
	if len(b) == 0 {
		return span{}
	}
	last := len(a.chunks) - 1
	if last < 0 || len(a.chunks[last])+len(b) > cap(a.chunks[last]) {
		a.chunks = append(a.chunks, make([]byte, 0, max(arenaChunk, len(b))))
		last++
	}
	c := a.chunks[last]
	a.chunks[last] = append(c, b...)
	return span{uint32(last), uint32(len(c)), uint32(len(b))}
}

func (a *arena) get(s span) []byte {
	if s.len == 0 {
		return nil
	}
	return a.chunks[s.chunk][s.off : s.off+s.len : s.off+s.len]
}

// replace stores b instead of s's bytes, in place when it fits (nothing
// else refers to them), so records updated again and again do not grow the
// arena.
func (a *arena) replace(s span, b []byte) span {
	if len(b) <= int(s.len) && len(b) > 0 {
		copy(a.get(s), b)
		s.len = uint32(len(b))
		return s
	}
	return a.put(b)
}

// Result flags.
const (
	resCreated uint8 = 1 << iota
	resExisting
	resUpdated
	resError // the row's error is the next one in outcome.errs
)

// rowResult is the outcome of one row, encoded into results[].
type rowResult struct {
	rec   seq // 0 for a row error
	flags uint8
}

// outcome is the results of an import: one rowResult per row and the
// per-row errors in row order, kept apart so the results hold no pointers.
type outcome struct {
	store *objectStore
	rows  []rowResult
	errs  []*wireError
}

// applyRows runs rows in order (so a later row can match a record an earlier
// row created) and counts the outcomes. Caller holds s.mu.
func (s *Server) applyRows(object string, items []item, o importOptions, now time.Time) outcome {
	st := s.objects[object]
	if st == nil {
		st = newObjectStore()
		s.objects[object] = st
	}
	out := outcome{store: st, rows: make([]rowResult, len(items))}
	for i, it := range items {
		err := it.err
		if refs := s.refs[object]; err == nil && refs != nil {
			// Checked as the row is applied, so a row may link to a
			// record an earlier row of the same import created.
			err = s.checkRefs(refs, it.props)
		}
		if err != nil {
			out.rows[i] = rowResult{flags: resError}
			out.errs = append(out.errs, err)
			s.stats.RowErrors++
			continue
		}
		if o.dedupeBy != "" {
			if n := st.lookup(o.dedupeBy, o.caseInsensitive, it.props); n != 0 {
				st.rec(n).matches++
				if o.updateExisting {
					st.patch(n, it, o.listID, now)
					s.stats.Updates++
					out.rows[i] = rowResult{rec: n, flags: resExisting | resUpdated}
				} else {
					s.stats.Skips++
					out.rows[i] = rowResult{rec: n, flags: resExisting}
				}
				continue
			}
		}
		n := st.create(it, o.listID, now)
		s.stats.Creates++
		out.rows[i] = rowResult{rec: n, flags: resCreated}
	}
	return out
}
