package checkpoint

import (
	"context"
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

// FileStore keeps checkpoints in one JSON document. Every change rewrites the
// whole document (temp file, fsync, rename, fsync of the directory), so a
// crash leaves either the old or the new document, never a mix. That makes it
// suited to a few syncs with modest journals; use PostgreSQL for more.
type FileStore struct {
	path string
	now  func() time.Time

	mu       sync.RWMutex
	lock     *os.File // flock held while open; nil after Close
	readOnly bool     // OpenReadOnly: no lock, no writes
	closed   bool
	st       fileState
	runs     fileRuns        // the run history, kept in PATH.history (file_history.go)
	leases   map[string]bool // syncs leased through TryLock (guarded by mu)
}

var _ Store = (*FileStore)(nil)

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
	if s.runs, err = readHistory(historyPath(path)); err != nil {
		unlockFile(lock)
		return nil, err
	}
	// The last runs of an older version's document move to the history
	// file (the document drops them on its next write); a line a crash
	// cut short goes, so that the next append starts a line of its own.
	if s.runs.seed(s.st.runs) || s.runs.torn {
		if err := writeHistory(historyPath(path), &s.runs); err != nil {
			unlockFile(lock)
			return nil, err
		}
	}
	s.st.runs = map[string]fileRun{}
	return s, nil
}

// openFileReadOnly reads the checkpoint file at path without taking its lock,
// so "prismsync status" can look while a daemon holds it. The store is a
// snapshot of the file as it was when opened (the daemon replaces the file by
// rename, so the snapshot is always one complete document); its writing
// methods fail with ErrReadOnly.
func openFileReadOnly(path string) (*FileStore, error) {
	if path == "" {
		return nil, fmt.Errorf("checkpoint: empty checkpoint file path")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &noStoreError{what: "file " + path, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	st, err := decodeFile(data)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	runs, err := readHistory(historyPath(path))
	if err != nil {
		return nil, err
	}
	runs.seed(st.runs)
	return &FileStore{path: path, now: time.Now, readOnly: true, st: st, runs: runs}, nil
}

// save writes st durably: temp file, fsync, rename over the old file, fsync
// of the directory so the rename itself survives a power cut.
func (s *FileStore) save(st fileState) error {
	data, err := encodeFile(st)
	if err != nil {
		return fmt.Errorf("checkpoint: encode %s: %w", s.path, err)
	}
	return replaceFile(s.path, data)
}

// replaceFile puts data at path durably: temp file, fsync, rename over the
// old file, fsync of the directory.
func replaceFile(path string, data []byte) error {
	// A fixed temp name is safe because the lock file keeps writers out; a
	// leftover from a crash is simply overwritten.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
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
		return fmt.Errorf("checkpoint: write %s: %w", path, werr)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: replace %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return &renamedError{fmt.Errorf("checkpoint: sync directory of %s: %w", path, err)}
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
	if err := s.lockForWrite(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
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

// lockForWrite takes the write lock of a store that is open and may be
// written; the caller unlocks s.mu when it returns nil.
func (s *FileStore) lockForWrite(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return err
	}
	if s.readOnly {
		s.mu.Unlock()
		return fmt.Errorf("checkpoint: %s: %w", s.path, ErrReadOnly)
	}
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
		BodyGzip: z, Object: b.Object, JobID: b.JobID, CreatedAt: stamp(b.CreatedAt), RowKeys: b.RowKeys,
		Held: fileRejects(b.Held), Kind: b.Kind}
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
			Rows: fb.Rows, Body: body, Object: fb.Object, JobID: fb.JobID, CreatedAt: fb.CreatedAt.UTC(), RowKeys: fb.RowKeys,
			Held: rejectsOf(sync, fb.Held), Kind: fb.Kind})
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

// Commit implements Store: CommitRecords without records.
func (s *FileStore) Commit(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string) error {
	return s.CommitRecords(ctx, sync, key, to, fingerprint, rejects, resolved, Ledger{})
}

// CommitRecords implements Store with one rename. Resolved keys are deleted
// before rejects are upserted, so a row in both ends up rejected.
func (s *FileStore) CommitRecords(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string, ledger Ledger) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	records, err := prepareCommit(sync, rejects, ledger)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(st *fileState) error {
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
		owner := RejectOwner(sync)
		saveRecords(st, owner, records, now)
		if len(resolved) == 0 && len(rejects) == 0 {
			return nil
		}
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
				Payload: slices.Clone(r.Payload), Attempts: max(r.Attempts, 1), FirstSeen: first, LastSeen: last,
				WaitSync: r.WaitSync, WaitKey: normKey(r.WaitKey)}
			if old, ok := m[k]; ok && sameKind(old.reject(""), r) {
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
				out = append(out, r.reject(sy))
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
		delete(st.turns, sync)
		delete(st.records, sync)
		delete(st.recordStates, sync)
		delete(st.relinks, sync)
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: forget sync %q: %w", sync, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forgetHistory(sync)
}

// String is for logs.
func (s *FileStore) String() string { return "file:" + s.path }
