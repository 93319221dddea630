package checkpoint

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// fileVersion is the format version written to, and the only one read from,
// the "version" field of a checkpoint file.
const fileVersion = 1

// FileStore keeps checkpoints in one JSON document. Every change rewrites the
// whole document (temp file, fsync, rename, fsync of the directory), so a
// crash leaves either the old or the new document, never a mix. That makes it
// suited to a few syncs with modest journals; use PostgreSQL for more.
type FileStore struct {
	path string
	now  func() time.Time

	mu       sync.RWMutex
	lock     *os.File // flock held while open; nil after Close
	readOnly bool     // OpenFileReadOnly: no lock, no writes
	closed   bool
	st       fileState
	leases   map[string]bool // syncs leased through TryLock (guarded by mu)
}

var _ Store = (*FileStore)(nil)

// fileState is the in-memory form. Updates never modify a slice or inner map
// in place: they build new ones, so a shallow clone is a snapshot to return to
// when writing fails.
type fileState struct {
	positions map[string]filePosition
	history   map[string]fileHistory
	journal   map[string][]fileBatch           // per sync, in Pending order
	rejects   map[string]map[string]fileReject // per sync, by rejectKey
	runs      map[string]fileRun
	requests  map[string]int // per month
	// fingerprints per sync, by fingerprintKey; sums are never modified in
	// place either.
	fingerprints map[string]map[string][]byte
	nextSeq      int64
}

// fileDoc is the on-disk document.
type fileDoc struct {
	Version   int                     `json:"version"`
	NextSeq   int64                   `json:"next_seq"`
	Positions map[string]filePosition `json:"positions"`
	History   map[string]fileHistory  `json:"history"`
	Journal   map[string][]fileBatch  `json:"journal"`
	Rejects   map[string][]fileReject `json:"rejects"`
	// Added after version 1 without a version bump: an older prismsync
	// ignores (and drops) them, losing only status information.
	Runs     map[string]fileRun `json:"runs,omitempty"`
	Requests map[string]int     `json:"requests,omitempty"`
	// Per sync, fingerprintKey -> base64 sum. An older prismsync drops
	// them; the rows are then sent once more, nothing is lost.
	Fingerprints map[string]map[string][]byte `json:"fingerprints,omitempty"`
}

type fileRun struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Rows     int       `json:"rows"`
	Sent     int       `json:"sent"`
}

type filePosition struct {
	Position    Position  `json:"position"`
	Fingerprint string    `json:"fingerprint"`
	Batches     int64     `json:"batches"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type fileHistory struct {
	Commits     int64     `json:"commits"`
	FirstCommit time.Time `json:"first_commit"`
	LastCommit  time.Time `json:"last_commit"`
}

type fileBatch struct {
	Key       string     `json:"key"`
	Seq       int64      `json:"seq"` // insertion order, the tie-break after CreatedAt
	Attempt   int        `json:"attempt"`
	From      Position   `json:"from"`
	To        Position   `json:"to"`
	Rows      int        `json:"rows"`
	BodyGzip  []byte     `json:"body_gzip"` // base64 of the gzip stream
	Object    string     `json:"object"`
	JobID     string     `json:"job_id"`
	CreatedAt time.Time  `json:"created_at"`
	RowKeys   [][]string `json:"row_keys,omitempty"`
}

type fileReject struct {
	RowKey    []string  `json:"row_key"`
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	Payload   []byte    `json:"payload"`
	Attempts  int       `json:"attempts"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// OpenFile opens (creating if missing) the checkpoint file at path and holds
// the lock file path+".lock" until Close. A file that cannot be decoded is an
// error, never an empty store.
func OpenFile(path string) (*FileStore, error) {
	if path == "" {
		return nil, errors.New("checkpoint: empty checkpoint file path")
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	s := &FileStore{path: path, now: time.Now, lock: lock}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.st = emptyState()
		// Write at once so a read-only or missing directory fails now, not at
		// the first commit.
		if err := s.save(s.st); err != nil {
			unlockFile(lock)
			return nil, err
		}
	case err != nil:
		unlockFile(lock)
		return nil, fmt.Errorf("checkpoint: read %s: %w", path, err)
	default:
		if s.st, err = decodeFile(data); err != nil {
			unlockFile(lock)
			return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
		}
	}
	return s, nil
}

func emptyState() fileState {
	return fileState{
		positions:    map[string]filePosition{},
		history:      map[string]fileHistory{},
		journal:      map[string][]fileBatch{},
		rejects:      map[string]map[string]fileReject{},
		runs:         map[string]fileRun{},
		requests:     map[string]int{},
		fingerprints: map[string]map[string][]byte{},
		nextSeq:      1,
	}
}

func (st fileState) clone() fileState {
	return fileState{
		positions:    maps.Clone(st.positions),
		history:      maps.Clone(st.history),
		journal:      maps.Clone(st.journal),
		rejects:      maps.Clone(st.rejects),
		runs:         maps.Clone(st.runs),
		requests:     maps.Clone(st.requests),
		fingerprints: maps.Clone(st.fingerprints),
		nextSeq:      st.nextSeq,
	}
}

// decodeFile parses a checkpoint document. Errors wrap ErrCorrupt or
// ErrUnsupportedVersion; the caller adds the path.
func decodeFile(data []byte) (fileState, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fileState{}, fmt.Errorf("%w: %v (restore it from a backup; it is never treated as empty)", ErrCorrupt, err)
	}
	if head.Version == nil {
		return fileState{}, fmt.Errorf("%w: no \"version\" field", ErrCorrupt)
	}
	if *head.Version != fileVersion {
		return fileState{}, fmt.Errorf("format version %d, this prismsync reads version %d only; use a newer prismsync: %w",
			*head.Version, fileVersion, ErrUnsupportedVersion)
	}
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return fileState{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	st := emptyState()
	st.nextSeq = max(doc.NextSeq, 1)
	for sync, p := range doc.Positions {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: position with an empty sync name", ErrCorrupt)
		}
		p.Position = normPos(p.Position)
		st.positions[sync] = p
	}
	for sync, h := range doc.History {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: history with an empty sync name", ErrCorrupt)
		}
		st.history[sync] = h
	}
	for sync, bs := range doc.Journal {
		seen := map[string]bool{}
		out := make([]fileBatch, 0, len(bs))
		for _, b := range bs {
			if sync == "" || b.Key == "" || seen[b.Key] {
				return fileState{}, fmt.Errorf("%w: journal of sync %q: empty or duplicate batch key %q", ErrCorrupt, sync, b.Key)
			}
			seen[b.Key] = true
			b.From, b.To = normPos(b.From), normPos(b.To)
			st.nextSeq = max(st.nextSeq, b.Seq+1)
			out = append(out, b)
		}
		sortJournal(out)
		if len(out) > 0 {
			st.journal[sync] = out
		}
	}
	for sync, r := range doc.Runs {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: run with an empty sync name", ErrCorrupt)
		}
		st.runs[sync] = r
	}
	for month, n := range doc.Requests {
		if checkMonth(month) != nil || n < 0 {
			return fileState{}, fmt.Errorf("%w: request count %q: %d", ErrCorrupt, month, n)
		}
		st.requests[month] = n
	}
	for sync, m := range doc.Fingerprints {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: fingerprints with an empty sync name", ErrCorrupt)
		}
		for k, sum := range m {
			if len(sum) == 0 || len(sum) > maxFingerprintSum {
				return fileState{}, fmt.Errorf("%w: fingerprint %q of sync %q: sum of %d bytes", ErrCorrupt, k, sync, len(sum))
			}
		}
		if len(m) > 0 {
			st.fingerprints[sync] = m
		}
	}
	for sync, rs := range doc.Rejects {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: rejects with an empty sync name", ErrCorrupt)
		}
		m := make(map[string]fileReject, len(rs))
		for _, r := range rs {
			r.RowKey = normKey(r.RowKey)
			k := rejectKey(r.RowKey)
			if _, dup := m[k]; dup {
				return fileState{}, fmt.Errorf("%w: rejects of sync %q: duplicate row key %q", ErrCorrupt, sync, r.RowKey)
			}
			m[k] = r
		}
		if len(m) > 0 {
			st.rejects[sync] = m
		}
	}
	return st, nil
}

func sortJournal(bs []fileBatch) {
	slices.SortFunc(bs, func(a, b fileBatch) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
}

func encodeFile(st fileState) ([]byte, error) {
	doc := fileDoc{
		Version:   fileVersion,
		NextSeq:   st.nextSeq,
		Positions: st.positions,
		History:   st.history,
		Journal:   st.journal,
		Rejects:   make(map[string][]fileReject, len(st.rejects)),
		Runs:      st.runs,
		Requests:  st.requests,
		// encoding/json writes map keys sorted, so this is deterministic too.
		Fingerprints: st.fingerprints,
	}
	for sync, m := range st.rejects {
		rs := slices.Collect(maps.Values(m))
		// Sorted so the same state always writes the same bytes.
		slices.SortFunc(rs, func(a, b fileReject) int { return slices.Compare(a.RowKey, b.RowKey) })
		doc.Rejects[sync] = rs
	}
	// Indented: an operator may need to read or repair it by hand.
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// save writes st durably: temp file, fsync, rename over the old file, fsync
// of the directory so the rename itself survives a power cut.
func (s *FileStore) save(st fileState) error {
	data, err := encodeFile(st)
	if err != nil {
		return fmt.Errorf("checkpoint: encode %s: %w", s.path, err)
	}
	// A fixed temp name is safe because the lock file keeps writers out; a
	// leftover from a crash is simply overwritten.
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", s.path, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: write %s: %w", s.path, werr)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: replace %s: %w", s.path, err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return &renamedError{fmt.Errorf("checkpoint: sync directory of %s: %w", s.path, err)}
	}
	return nil
}

// renamedError marks a save whose new document is already in place (only the
// directory fsync failed), so memory must follow it.
type renamedError struct{ err error }

func (e *renamedError) Error() string { return e.err.Error() }
func (e *renamedError) Unwrap() error { return e.err }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// update applies fn to a snapshot and saves it; memory changes only when the
// file did, so a failed write leaves both as they were (all or nothing).
func (s *FileStore) update(ctx context.Context, fn func(st *fileState) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("checkpoint: %s: %w", s.path, ErrReadOnly)
	}
	next := s.st.clone()
	if err := fn(&next); err != nil {
		return err
	}
	if err := s.save(next); err != nil {
		if _, ok := errors.AsType[*renamedError](err); ok {
			s.st = next
		}
		return err
	}
	s.st = next
	return nil
}

// view runs fn under the read lock.
func (s *FileStore) view(ctx context.Context, fn func(st *fileState) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	return fn(&s.st)
}

func (s *FileStore) usable() error {
	if s.closed {
		return fmt.Errorf("checkpoint: %s: %w", s.path, ErrClosed)
	}
	return nil
}

// Path returns the checkpoint file's path.
func (s *FileStore) Path() string { return s.path }

// Close releases the lock. Calling it twice is harmless.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.lock == nil { // read-only: nothing to unlock
		return nil
	}
	err := unlockFile(s.lock)
	s.lock = nil
	if err != nil {
		return fmt.Errorf("checkpoint: unlock %s: %w", s.path, err)
	}
	return nil
}

// Load implements Store.
func (s *FileStore) Load(ctx context.Context, sync string) (State, error) {
	if err := checkSync(sync); err != nil {
		return State{}, err
	}
	var out State
	err := s.view(ctx, func(st *fileState) error {
		p, ok := st.positions[sync]
		if !ok {
			if h, ok := st.history[sync]; ok && h.Commits > 0 {
				return &MissingCheckpointError{Sync: sync, Commits: h.Commits, LastCommit: h.LastCommit,
					Where: fmt.Sprintf("the \"positions\" section of %s", s.path)}
			}
			return nil
		}
		out = State{Position: normPos(p.Position), Exists: true, Fingerprint: p.Fingerprint,
			Batches: p.Batches, UpdatedAt: p.UpdatedAt.UTC()}
		return nil
	})
	return out, err
}

// Journal implements Store. Replacing a batch keeps its place in Pending's
// order, and its CreatedAt unless b.CreatedAt is set.
func (s *FileStore) Journal(ctx context.Context, b Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	z, err := compress(b.Body)
	if err != nil {
		return fmt.Errorf("checkpoint: journal batch %q of sync %q: %w", b.Key, b.Sync, err)
	}
	fb := fileBatch{Key: b.Key, Attempt: b.Attempt, From: normPos(b.From), To: normPos(b.To), Rows: b.Rows,
		BodyGzip: z, Object: b.Object, JobID: b.JobID, CreatedAt: stamp(b.CreatedAt), RowKeys: b.RowKeys}
	return s.update(ctx, func(st *fileState) error {
		bs := slices.Clone(st.journal[b.Sync])
		i := slices.IndexFunc(bs, func(x fileBatch) bool { return x.Key == b.Key })
		if i >= 0 {
			fb.Seq = bs[i].Seq
			if b.CreatedAt.IsZero() {
				fb.CreatedAt = bs[i].CreatedAt
			}
			bs[i] = fb
		} else {
			fb.Seq = st.nextSeq
			st.nextSeq++
			if b.CreatedAt.IsZero() {
				fb.CreatedAt = stamp(s.now())
			}
			bs = append(bs, fb)
		}
		sortJournal(bs)
		st.journal[b.Sync] = bs
		return nil
	})
}

// SetJobID implements Store.
func (s *FileStore) SetJobID(ctx context.Context, sync, key, jobID string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	return s.update(ctx, func(st *fileState) error {
		bs := slices.Clone(st.journal[sync])
		i := slices.IndexFunc(bs, func(x fileBatch) bool { return x.Key == key })
		if i < 0 {
			return fmt.Errorf("checkpoint: set job id of batch %q of sync %q: %w", key, sync, ErrNotJournaled)
		}
		bs[i].JobID = jobID
		st.journal[sync] = bs
		return nil
	})
}

// Pending implements Store.
func (s *FileStore) Pending(ctx context.Context, sync string) ([]Batch, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	var fbs []fileBatch
	if err := s.view(ctx, func(st *fileState) error { fbs = st.journal[sync]; return nil }); err != nil {
		return nil, err
	}
	// fbs is never modified in place, so it can be decompressed unlocked.
	var out []Batch
	for _, fb := range fbs {
		body, err := decompress(fb.BodyGzip)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: pending batch %q of sync %q: %w", s.path, fb.Key, sync, err)
		}
		out = append(out, Batch{Sync: sync, Key: fb.Key, Attempt: fb.Attempt, From: normPos(fb.From), To: normPos(fb.To),
			Rows: fb.Rows, Body: body, Object: fb.Object, JobID: fb.JobID, CreatedAt: fb.CreatedAt.UTC(), RowKeys: fb.RowKeys})
	}
	return out, nil
}

// Drop implements Store. Dropping a batch that is not journaled is not an
// error: the outcome is the same.
func (s *FileStore) Drop(ctx context.Context, sync, key string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	return s.update(ctx, func(st *fileState) error {
		dropJournal(st, sync, key)
		return nil
	})
}

func dropJournal(st *fileState, sync, key string) {
	bs := slices.DeleteFunc(slices.Clone(st.journal[sync]), func(x fileBatch) bool { return x.Key == key })
	if len(bs) == 0 {
		delete(st.journal, sync)
	} else {
		st.journal[sync] = bs
	}
}

// Commit implements Store with one rename. Resolved keys are deleted before
// rejects are upserted, so a row in both ends up rejected.
func (s *FileStore) Commit(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	err := s.update(ctx, func(st *fileState) error {
		now := stamp(s.now())
		dropJournal(st, sync, key)
		p := st.positions[sync]
		st.positions[sync] = filePosition{Position: normPos(to), Fingerprint: fingerprint, Batches: p.Batches + 1, UpdatedAt: now}
		h, ok := st.history[sync]
		if !ok {
			h.FirstCommit = now
		}
		h.Commits++
		h.LastCommit = now
		st.history[sync] = h
		if len(resolved) == 0 && len(rejects) == 0 {
			return nil
		}
		owner := RejectOwner(sync)
		m := maps.Clone(st.rejects[owner])
		if m == nil {
			m = map[string]fileReject{}
		}
		for _, k := range resolved {
			delete(m, rejectKey(k))
		}
		for _, r := range rejects {
			k := rejectKey(r.RowKey)
			first, last := now, now
			if !r.FirstSeen.IsZero() {
				first = stamp(r.FirstSeen)
			}
			if !r.LastSeen.IsZero() {
				last = stamp(r.LastSeen)
			}
			fr := fileReject{RowKey: normKey(r.RowKey), Code: cleanText(r.Code), Message: cleanText(r.Message),
				Payload: slices.Clone(r.Payload), Attempts: max(r.Attempts, 1), FirstSeen: first, LastSeen: last}
			if old, ok := m[k]; ok {
				fr.Attempts = old.Attempts + 1
				fr.FirstSeen = old.FirstSeen
			}
			m[k] = fr
		}
		if len(m) == 0 {
			delete(st.rejects, owner)
		} else {
			st.rejects[owner] = m
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: commit batch %q of sync %q: %w", key, sync, err)
	}
	return nil
}

// Rejects implements Store.
func (s *FileStore) Rejects(ctx context.Context, sync string, limit int) ([]Reject, error) {
	var out []Reject
	err := s.view(ctx, func(st *fileState) error {
		for sy, m := range st.rejects {
			if sync != "" && sy != sync {
				continue
			}
			for _, r := range m {
				out = append(out, Reject{Sync: sy, RowKey: normKey(r.RowKey), Code: r.Code, Message: r.Message,
					Payload: slices.Clone(r.Payload), Attempts: r.Attempts, FirstSeen: r.FirstSeen.UTC(), LastSeen: r.LastSeen.UTC()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortRejects(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// CountRejects implements Store.
func (s *FileStore) CountRejects(ctx context.Context, sync string) (int, error) {
	n := 0
	err := s.view(ctx, func(st *fileState) error {
		for sy, m := range st.rejects {
			if sync == "" || sy == sync {
				n += len(m)
			}
		}
		return nil
	})
	return n, err
}

// Syncs implements Store.
func (s *FileStore) Syncs(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(ctx, func(st *fileState) error {
		seen := map[string]bool{}
		for sy := range st.positions {
			seen[sy] = true
		}
		for sy := range st.history {
			seen[sy] = true
		}
		out = slices.Collect(maps.Keys(seen))
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Forget implements Store.
func (s *FileStore) Forget(ctx context.Context, sync string) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	err := s.update(ctx, func(st *fileState) error {
		delete(st.positions, sync)
		delete(st.history, sync)
		delete(st.journal, sync)
		delete(st.rejects, sync)
		delete(st.runs, sync)
		delete(st.fingerprints, sync)
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: forget sync %q: %w", sync, err)
	}
	return nil
}

// String is for logs.
func (s *FileStore) String() string { return "file:" + s.path }
