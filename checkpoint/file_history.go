package checkpoint

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// The file store keeps its run history apart from the checkpoint document,
// in PATH.history: JSON Lines, one pass a line, appended. The document is
// rewritten on every commit, so a thousand passes per sync inside it would
// make every commit write them all again; an append costs one short write
// per pass. When the file holds more than twice the lines kept (plus a
// little), it is rewritten with only those, through a temp file and a
// rename like the document. The history only informs, so a line that does
// not decode (the torn end of a write cut by a crash) is skipped, never an
// error, and the checkpoint itself never depends on it.

// historySlack is how many lines beyond twice the kept ones the history
// file may hold before it is compacted.
const historySlack = 64

func historyPath(path string) string { return path + ".history" }

// fileRunLine is one line of the history file: a run, and the oldest Seq
// of its sync kept once it was added (retention, as prismsync.runs'
// history_from), so a reopened store keeps what the store before it kept.
type fileRunLine struct {
	fileRunData
	From int64 `json:"from"`
}

type fileRunData struct {
	Sync       string    `json:"sync"`
	Seq        int64     `json:"seq"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Budget     bool      `json:"budget,omitempty"`
	Rows       int       `json:"rows"`
	Sent       int       `json:"sent"`
	Created    int       `json:"created"`
	Updated    int       `json:"updated"`
	Existing   int       `json:"existing"`
	Unchanged  int       `json:"unchanged"`
	Invalid    int       `json:"invalid"`
	Rejected   int       `json:"rejected"`
	Deferred   int       `json:"deferred"`
	Deleted    int       `json:"deleted,omitempty"`
	Archived   int       `json:"archived,omitempty"`
	Restored   int       `json:"restored,omitempty"`
	Requests   int       `json:"requests"`
	Checkpoint Position  `json:"checkpoint"`
}

// A conversion both ways: a field added to Run stops this compiling until
// the history line has a place for it.
func (l fileRunLine) run() Run              { return normRun(Run(l.fileRunData)) }
func runLine(r Run, from int64) fileRunLine { return fileRunLine{fileRunData(r), from} }

// fileRuns is the history in memory.
type fileRuns struct {
	bySync map[string][]Run // per sync, oldest first
	from   map[string]int64 // per sync, the oldest Seq kept
	lines  int              // lines in the file, kept or not
	torn   bool             // the file ends inside a line (a write cut short)
}

func (h *fileRuns) kept() int {
	n := 0
	for _, rs := range h.bySync {
		n += len(rs)
	}
	return n
}

// readHistory loads the history file at path; a missing file is an empty
// history.
func readHistory(path string) (fileRuns, error) {
	h := fileRuns{bySync: map[string][]Run{}, from: map[string]int64{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	h.torn = len(data) > 0 && data[len(data)-1] != '\n'
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		h.lines++
		var l fileRunLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Sync == "" || l.Seq < 1 {
			continue
		}
		h.bySync[l.Sync] = append(h.bySync[l.Sync], l.run())
		h.from[l.Sync] = max(h.from[l.Sync], l.From)
	}
	for sync, rs := range h.bySync {
		slices.SortFunc(rs, func(a, b Run) int { return cmp.Compare(a.Seq, b.Seq) })
		rs = slices.CompactFunc(rs, func(a, b Run) bool { return a.Seq == b.Seq })
		from := h.from[sync]
		h.bySync[sync] = slices.DeleteFunc(rs, func(r Run) bool { return r.Seq < from })
	}
	return h, nil
}

// seedHistory makes the last runs an older prismsync kept in the document
// ("runs") the first pass of their syncs' history.
func (h *fileRuns) seed(runs map[string]fileRun) bool {
	seeded := false
	for sync, r := range runs {
		if len(h.bySync[sync]) > 0 {
			continue
		}
		h.bySync[sync] = []Run{normRun(Run{Sync: sync, Seq: 1, Started: r.Started, Finished: r.Finished, OK: r.OK,
			Error: r.Error, Rows: r.Rows, Sent: r.Sent})}
		h.from[sync] = 1
		seeded = true
	}
	return seeded
}

// appendHistory adds one line to the history file.
func appendHistory(path string, r Run, from int64) error {
	line, err := json.Marshal(runLine(r, from))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeHistory replaces the history file with h's runs.
func writeHistory(path string, h *fileRuns) error {
	var buf bytes.Buffer
	lines := 0
	syncs := make([]string, 0, len(h.bySync))
	for sync := range h.bySync {
		syncs = append(syncs, sync)
	}
	slices.Sort(syncs)
	for _, sync := range syncs {
		for _, r := range h.bySync[sync] {
			line, err := json.Marshal(runLine(r, h.from[sync]))
			if err != nil {
				return err
			}
			buf.Write(line)
			buf.WriteByte('\n')
			lines++
		}
	}
	if err := replaceFile(path, buf.Bytes()); err != nil {
		var re *renamedError
		if !errors.As(err, &re) {
			return err
		}
	}
	h.lines, h.torn = lines, false
	return nil
}

// RecordRun implements Store: one appended line, and now and then a
// compaction of the file.
func (s *FileStore) RecordRun(ctx context.Context, sync string, r Run, keep int) error {
	if err := checkSync(sync); err != nil {
		return err
	}
	if err := checkKeep(sync, keep); err != nil {
		return err
	}
	if err := s.lockForWrite(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	r = normRun(r)
	r.Sync = sync
	rs := s.runs.bySync[sync]
	r.Seq = 1
	if len(rs) > 0 {
		r.Seq = rs[len(rs)-1].Seq + 1
	}
	from := max(s.runs.from[sync], r.Seq+1-int64(keep))
	path := historyPath(s.path)
	if err := appendHistory(path, r, from); err != nil {
		return fmt.Errorf("checkpoint: record run of sync %q in %s: %w", sync, path, err)
	}
	s.runs.lines++
	rs = append(rs, r)
	if i := slices.IndexFunc(rs, func(r Run) bool { return r.Seq >= from }); i > 0 {
		rs = slices.Clone(rs[i:])
	}
	s.runs.bySync[sync] = rs
	s.runs.from[sync] = from
	if s.runs.lines > 2*s.runs.kept()+historySlack {
		if err := writeHistory(path, &s.runs); err != nil {
			// The pass is recorded; the file is only longer than it needs
			// to be until the next compaction works.
			return err
		}
	}
	return nil
}

// LastRun implements Store.
func (s *FileStore) LastRun(ctx context.Context, sync string) (Run, bool, error) {
	if err := checkSync(sync); err != nil {
		return Run{}, false, err
	}
	var (
		r  Run
		ok bool
	)
	err := s.view(ctx, func(*fileState) error {
		if rs := s.runs.bySync[sync]; len(rs) > 0 {
			r, ok = rs[len(rs)-1], true
		}
		return nil
	})
	return r, ok, err
}

// History implements Store.
func (s *FileStore) History(ctx context.Context, sync string, limit int) ([]Run, error) {
	var out []Run
	err := s.view(ctx, func(*fileState) error {
		if sync != "" {
			rs := s.runs.bySync[sync]
			for i := len(rs) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
				out = append(out, rs[i])
			}
			return nil
		}
		for _, rs := range s.runs.bySync {
			out = append(out, rs...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sync == "" {
		sortHistory(out)
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	}
	return out, nil
}

// forgetHistory removes sync's runs from the history file (under s.mu).
func (s *FileStore) forgetHistory(sync string) error {
	if _, ok := s.runs.bySync[sync]; !ok {
		return nil
	}
	delete(s.runs.bySync, sync)
	delete(s.runs.from, sync)
	if err := writeHistory(historyPath(s.path), &s.runs); err != nil {
		return fmt.Errorf("checkpoint: forget the run history of sync %q: %w", sync, err)
	}
	return nil
}
