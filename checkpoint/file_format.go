package checkpoint

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// fileVersion is the format version written to, and the only one read from,
// the "version" field of a checkpoint file.
const fileVersion = 1

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
	turns        map[string]fileTurn
	// records per sync, by fingerprintKey: the ledger's record ids.
	records map[string]map[string]string
	// recordStates per sync, by fingerprintKey: StateDeleted or
	// StateArchived for a record that is not plain live.
	recordStates map[string]map[string]string
	// relinks per sync, by the referenced sync and fingerprintKey joined
	// with NUL (relinkKey).
	relinks map[string]map[string]fileRelink
	nextSeq int64
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
		turns:        map[string]fileTurn{},
		records:      map[string]map[string]string{},
		recordStates: map[string]map[string]string{},
		relinks:      map[string]map[string]fileRelink{},
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
		turns:        maps.Clone(st.turns),
		records:      maps.Clone(st.records),
		recordStates: maps.Clone(st.recordStates),
		relinks:      maps.Clone(st.relinks),
		nextSeq:      st.nextSeq,
	}
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
	// The request budget's turn per sync. An older prismsync drops them;
	// the pace then starts over from that version's first send.
	Turns map[string]fileTurn `json:"turns,omitempty"`
	// The record ledger, per sync: fingerprintKey -> record id. An older
	// prismsync drops it; rows that link to those records then wait until
	// their referenced rows are delivered again.
	Records map[string]map[string]string `json:"records,omitempty"`
	// RecordStates marks ledger records deleted or archived, per sync:
	// fingerprintKey -> "deleted" | "archived". An older prismsync drops
	// it and takes deleted records for live ones.
	RecordStates map[string]map[string]string `json:"record_states,omitempty"`
	// Relinks per sync. An older prismsync drops them; rows that link to a
	// re-created record then keep the old link until they change.
	Relinks map[string][]fileRelink `json:"relinks,omitempty"`
}

type fileRelink struct {
	RefSync string    `json:"ref_sync"`
	RowKey  string    `json:"row_key"` // fingerprintKey
	Since   time.Time `json:"since"`
}

func relinkKey(refSync, encKey string) string { return refSync + "\x00" + encKey }

type fileTurn struct {
	LastSend     time.Time     `json:"last_send,omitzero"`
	LastCost     int           `json:"last_cost,omitempty"`
	WaitingSince time.Time     `json:"waiting_since,omitzero"`
	WaitingRows  int           `json:"waiting_rows,omitempty"`
	Due          time.Time     `json:"due,omitzero"`
	HeldAt       time.Time     `json:"held_at,omitzero"`
	Interval     time.Duration `json:"interval_ns,omitempty"`
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
	// Held: the batch's rows kept out of the body (Batch.Held).
	Held []fileReject `json:"held,omitempty"`
	Kind string       `json:"kind,omitempty"` // "" import, "delete", "archive"
}

type fileReject struct {
	RowKey    []string  `json:"row_key"`
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	Payload   []byte    `json:"payload"`
	Attempts  int       `json:"attempts"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// A deferred row (added within version 1; an older prismsync reads it
	// as a reject with code missing_reference and retries it when it
	// changes).
	WaitSync string   `json:"wait_sync,omitempty"`
	WaitKey  []string `json:"wait_key,omitempty"`
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
	for sync, t := range doc.Turns {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: turn with an empty sync name", ErrCorrupt)
		}
		st.turns[sync] = t
	}
	for sync, m := range doc.RecordStates {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: record states with an empty sync name", ErrCorrupt)
		}
		if len(m) > 0 {
			st.recordStates[sync] = m
		}
	}
	for sync, m := range doc.Records {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: records with an empty sync name", ErrCorrupt)
		}
		if len(m) > 0 {
			st.records[sync] = m
		}
	}
	for sync, rs := range doc.Relinks {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: relinks with an empty sync name", ErrCorrupt)
		}
		m := make(map[string]fileRelink, len(rs))
		for _, r := range rs {
			if _, err := parseRowKey(r.RowKey); err != nil || r.RefSync == "" {
				return fileState{}, fmt.Errorf("%w: relink %q of sync %q", ErrCorrupt, r.RowKey, sync)
			}
			m[relinkKey(r.RefSync, r.RowKey)] = r
		}
		if len(m) > 0 {
			st.relinks[sync] = m
		}
	}
	for sync, rs := range doc.Rejects {
		if sync == "" {
			return fileState{}, fmt.Errorf("%w: rejects with an empty sync name", ErrCorrupt)
		}
		m := make(map[string]fileReject, len(rs))
		for _, r := range rs {
			r.RowKey, r.WaitKey = normKey(r.RowKey), normKey(r.WaitKey)
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
		Turns:        st.turns,
		Records:      st.records,
		RecordStates: st.recordStates,
		Relinks:      make(map[string][]fileRelink, len(st.relinks)),
	}
	for sync, m := range st.relinks {
		rs := slices.Collect(maps.Values(m))
		slices.SortFunc(rs, func(a, b fileRelink) int {
			return cmp.Compare(relinkKey(a.RefSync, a.RowKey), relinkKey(b.RefSync, b.RowKey))
		})
		doc.Relinks[sync] = rs
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
