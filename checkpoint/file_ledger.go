package checkpoint

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// reject is the stored reject as the Store returns it.
func (r fileReject) reject(sync string) Reject {
	return Reject{Sync: sync, RowKey: normKey(r.RowKey), Code: r.Code, Message: r.Message,
		Payload: slices.Clone(r.Payload), Attempts: r.Attempts, FirstSeen: r.FirstSeen.UTC(), LastSeen: r.LastSeen.UTC(),
		WaitSync: r.WaitSync, WaitKey: normKey(r.WaitKey)}
}

// saveRecords applies a commit's ledger to st: new inner maps, so the
// snapshot update falls back to on failure keeps the old ones.
func saveRecords(st *fileState, owner string, p ledgerSave, now time.Time) {
	if p.empty() {
		return
	}
	markRecords(st, owner, p)
	if len(p.keys) == 0 {
		return
	}
	m := maps.Clone(st.records[owner])
	if m == nil {
		m = make(map[string]string, len(p.keys))
	}
	var replaced []string
	states := st.recordStates[owner]
	if len(states) > 0 {
		states = maps.Clone(states)
	}
	for i, k := range p.keys {
		delete(states, k) // live again
		if old, ok := m[k]; ok && old != p.ids[i] {
			replaced = append(replaced, k)
		}
		m[k] = p.ids[i]
	}
	st.records[owner] = m
	if len(states) == 0 {
		delete(st.recordStates, owner)
	} else {
		st.recordStates[owner] = states
	}
	for _, ref := range p.referrers {
		if len(replaced) == 0 {
			break
		}
		rm := maps.Clone(st.relinks[ref])
		if rm == nil {
			rm = map[string]fileRelink{}
		}
		for _, k := range replaced {
			rm[relinkKey(owner, k)] = fileRelink{RefSync: owner, RowKey: k, Since: now}
		}
		st.relinks[ref] = rm
	}
}

// RecordIDs implements Store.
func (s *FileStore) RecordIDs(ctx context.Context, refs []RecordRef) ([]string, error) {
	out := make([]string, len(refs))
	for _, r := range refs {
		if err := checkSync(r.Sync); err != nil {
			return nil, err
		}
	}
	err := s.view(ctx, func(st *fileState) error {
		for i, r := range refs {
			k := fingerprintKey(r.RowKey)
			if st.recordStates[r.Sync][k] != StateDeleted {
				out[i] = st.records[r.Sync][k]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: look up %d record(s): %w", len(refs), err)
	}
	return out, nil
}

// Deferred implements Store.
func (s *FileStore) Deferred(ctx context.Context, sync string) ([]Reject, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	var out []Reject
	err := s.view(ctx, func(st *fileState) error {
		for _, r := range st.rejects[sync] {
			if r.WaitSync != "" {
				out = append(out, r.reject(sync))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: deferred rows of sync %q: %w", sync, err)
	}
	sortDeferred(out)
	return out, nil
}

// CountDeferred implements Store.
func (s *FileStore) CountDeferred(ctx context.Context, sync string) (int, error) {
	n := 0
	err := s.view(ctx, func(st *fileState) error {
		for sy, m := range st.rejects {
			if sync != "" && sy != sync {
				continue
			}
			for _, r := range m {
				if r.WaitSync != "" {
					n++
				}
			}
		}
		return nil
	})
	return n, err
}

// Relinks implements Store.
func (s *FileStore) Relinks(ctx context.Context, sync string) ([]Relink, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	var out []Relink
	err := s.view(ctx, func(st *fileState) error {
		for _, r := range st.relinks[sync] {
			key, err := parseRowKey(r.RowKey)
			if err != nil {
				return err
			}
			out = append(out, Relink{RefSync: r.RefSync, RowKey: key, Since: r.Since.UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: relinks of sync %q: %w", sync, err)
	}
	slices.SortFunc(out, func(a, b Relink) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		if a.RefSync != b.RefSync {
			return strings.Compare(a.RefSync, b.RefSync)
		}
		return strings.Compare(fingerprintKey(a.RowKey), fingerprintKey(b.RowKey))
	})
	return out, nil
}

// DropRelinks implements Store with one rewrite of the file.
func (s *FileStore) DropRelinks(ctx context.Context, sync string, relinks []Relink) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if len(relinks) == 0 {
		return nil
	}
	err := s.update(ctx, func(st *fileState) error {
		m := maps.Clone(st.relinks[sync])
		for _, r := range relinks {
			k := relinkKey(r.RefSync, fingerprintKey(r.RowKey))
			if cur, ok := m[k]; ok && !cur.Since.After(stamp(r.Since)) {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(st.relinks, sync)
		} else {
			st.relinks[sync] = m
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: drop %d relink(s) of sync %q: %w", len(relinks), sync, err)
	}
	return nil
}

// markRecords applies a commit's deleted and archived marks and drops the
// change fingerprints of those rows.
func markRecords(st *fileState, owner string, p ledgerSave) {
	if len(p.deleted) == 0 && len(p.archived) == 0 {
		return
	}
	states := maps.Clone(st.recordStates[owner])
	if states == nil {
		states = map[string]string{}
	}
	fps := maps.Clone(st.fingerprints[owner])
	for _, set := range []struct {
		keys  []string
		state string
	}{{p.deleted, StateDeleted}, {p.archived, StateArchived}} {
		for _, k := range set.keys {
			if _, ok := st.records[owner][k]; ok {
				states[k] = set.state
			}
			delete(fps, k)
		}
	}
	st.recordStates[owner] = states
	if len(fps) == 0 {
		delete(st.fingerprints, owner)
	} else {
		st.fingerprints[owner] = fps
	}
}

// RecordStates implements Store.
func (s *FileStore) RecordStates(ctx context.Context, sync string, keys [][]string) ([]RecordState, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	out := make([]RecordState, len(keys))
	err := s.view(ctx, func(st *fileState) error {
		for i, k := range keys {
			e := fingerprintKey(k)
			if id, ok := st.records[sync][e]; ok {
				out[i] = RecordState{ID: id, State: st.recordStates[sync][e]}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: record states of sync %q: %w", sync, err)
	}
	return out, nil
}

// LedgerPage implements Store. The file holds the ledger in memory
// already; a page is sorted from it in byte order of the encoded keys.
func (s *FileStore) LedgerPage(ctx context.Context, sync, after string, limit int) ([]LedgerEntry, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	var keys []string
	var out []LedgerEntry
	err := s.view(ctx, func(st *fileState) error {
		for k := range st.records[sync] {
			if k > after && st.recordStates[sync][k] != StateDeleted {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if limit > 0 && len(keys) > limit {
			keys = keys[:limit]
		}
		for _, k := range keys {
			rk, err := parseRowKey(k)
			if err != nil {
				return err
			}
			out = append(out, LedgerEntry{RowKey: rk, ID: st.records[sync][k], State: st.recordStates[sync][k], After: k})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: ledger of sync %q: %w", sync, err)
	}
	return out, nil
}

// CountRecords implements Store.
func (s *FileStore) CountRecords(ctx context.Context, sync string) (int, error) {
	if err := checkSync(sync); err != nil {
		return 0, err
	}
	n := 0
	err := s.view(ctx, func(st *fileState) error {
		for k := range st.records[sync] {
			if st.recordStates[sync][k] != StateDeleted {
				n++
			}
		}
		return nil
	})
	return n, err
}
