package prismtest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Job statuses as they appear on the wire.
const (
	StatusProcessing = "processing"
	StatusComplete   = "complete"
	StatusFailed     = "failed"
)

type job struct {
	id        string
	object    string
	rows      []row // dropped once applied
	opts      importOptions
	status    string
	total     int
	processed int
	succeeded int
	failed    int
	createdAt time.Time
	dueAt     time.Time
	updatedAt time.Time
	expiresAt time.Time
	results   []rowResult // only for complete jobs
	err       *wireError
	fail      *Fault // FaultFailJob attached when the job was created
	expired   bool
	polls     int
}

// claim is the first use of an Idempotency-Key.
type claim struct {
	fingerprint [sha256.Size]byte
	at          time.Time
	resp        response
}

type wireJob struct {
	JobID     *string       `json:"job_id"`
	Status    string        `json:"status"`
	Total     int           `json:"total"`
	Processed int           `json:"processed"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
	CreatedAt string        `json:"created_at"`
	UpdatedAt string        `json:"updated_at"`
	ExpiresAt string        `json:"expires_at,omitempty"`
	Error     *wireError    `json:"error,omitempty"`
	Results   *[]wireResult `json:"results,omitempty"`
}

type wireResult struct {
	InputIndex *int       `json:"input_index,omitempty"`
	ID         *string    `json:"id"`
	Created    bool       `json:"created"`
	Existing   bool       `json:"existing"`
	Updated    bool       `json:"updated"`
	Error      *wireError `json:"error,omitempty"`
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// encodeJob renders a job; sync imports pass a job with an empty id, which is
// encoded as "job_id": null and without expires_at (they cannot be polled).
func (s *Server) encodeJob(j *job) []byte {
	w := wireJob{
		Status:    j.status,
		Total:     j.total,
		Processed: j.processed,
		Succeeded: j.succeeded,
		Failed:    j.failed,
		CreatedAt: timestamp(j.createdAt),
		UpdatedAt: timestamp(j.updatedAt),
		Error:     j.err,
	}
	if j.id != "" {
		w.JobID = &j.id
		w.ExpiresAt = timestamp(j.expiresAt)
	}
	if j.status == StatusComplete {
		results := make([]wireResult, len(j.results))
		for i, r := range j.results {
			wr := wireResult{Created: r.created, Existing: r.existing, Updated: r.updated, Error: r.err}
			if r.id != "" {
				wr.ID = &r.id
			}
			if !s.opts.OmitInputIndex {
				wr.InputIndex = &i
			}
			results[i] = wr
		}
		w.Results = &results
	}
	body, err := json.Marshal(w)
	if err != nil {
		panic(fmt.Sprintf("prismtest: encode job: %v", err))
	}
	return body
}

func (j *job) count(results []rowResult) {
	j.processed = len(results)
	j.succeeded, j.failed = 0, 0
	for _, r := range results {
		if r.err != nil {
			j.failed++
		} else {
			j.succeeded++
		}
	}
}

// handleImport reads the body, applies idempotency rules and runs the import.
func (s *Server) handleImport(r *http.Request, info RequestInfo, body []byte, bodyErr error, fault Fault, entry *LogEntry) response {
	rid := entry.RequestID
	_, hasKey := r.Header["Idempotency-Key"]
	key := info.IdempotencyKey
	if hasKey && (len(key) < 1 || len(key) > 255) {
		return errorResponse(rid, http.StatusBadRequest, "invalid_idempotency_key",
			"Idempotency-Key must be 1 to 255 characters")
	}
	if bodyErr != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](bodyErr); ok {
			return errorResponse(rid, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("request body exceeds %d bytes", s.opts.MaxBodyBytes))
		}
		return errorResponse(rid, http.StatusBadRequest, "invalid_request", "could not read request body")
	}
	// Decoding outside the lock keeps concurrent requests cheap.
	req, decodeErr := decodeImport(body, s.known[info.ObjectType])

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settleLocked(now)

	var fp [sha256.Size]byte
	if hasKey {
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", r.Method, r.URL.Path, r.URL.RawQuery)
		h.Write(body)
		copy(fp[:], h.Sum(nil))
		if c, ok := s.claims[key]; ok {
			switch {
			case !now.Before(c.at.Add(s.opts.IdempotencyTTL)):
				return errorResponse(rid, http.StatusConflict, "idempotency_key_stale",
					"Idempotency-Key has expired; use a new key")
			case c.fingerprint != fp:
				return errorResponse(rid, http.StatusConflict, "idempotency_key_mismatch",
					"Idempotency-Key was already used with a different request")
			}
			s.stats.Replays++
			entry.Replay = true
			resp := c.resp
			resp.header = resp.header.Clone()
			if resp.header == nil {
				resp.header = http.Header{}
			}
			resp.header.Set("idempotent-replay", "true")
			return resp
		}
	}

	resp := s.runImportLocked(info, req, decodeErr, fault, entry, now)
	// Only completed non-5xx responses are kept; an import that "failed" with
	// a 5xx after being applied (FaultErrorAfterApply) executes again on retry.
	if hasKey && resp.status < 500 && fault.Kind != FaultErrorAfterApply {
		s.claims[key] = &claim{fingerprint: fp, at: now, resp: resp}
	}
	return resp
}

func (s *Server) runImportLocked(info RequestInfo, req *importRequest, decodeErr error, fault Fault, entry *LogEntry, now time.Time) response {
	rid := entry.RequestID
	if decodeErr != nil {
		var re *requestError
		if errors.As(decodeErr, &re) {
			return errorResponse(rid, http.StatusBadRequest, re.code, re.message)
		}
		return errorResponse(rid, http.StatusBadRequest, "invalid_request", decodeErr.Error())
	}
	entry.Objects = len(req.rows)
	s.stats.Imports++
	s.stats.Rows += len(req.rows)
	j := &job{
		object:    info.ObjectType,
		opts:      req.opts,
		total:     len(req.rows),
		createdAt: now,
		updatedAt: now,
	}
	if len(req.rows) < s.opts.SyncThreshold {
		s.stats.SyncImports++
		j.results = s.applyRows(info.ObjectType, req.rows, req.opts, now)
		j.status = StatusComplete
		j.count(j.results)
		return response{status: http.StatusOK, body: s.encodeJob(j)}
	}

	s.stats.AsyncImports++
	j.id = uuid.NewString()
	j.rows = req.rows
	j.status = StatusProcessing
	j.dueAt = now.Add(s.opts.JobDuration)
	j.expiresAt = now.Add(s.opts.JobTTL)
	if f, ok := s.takeJobFaultLocked(info); ok {
		j.fail = &f
		entry.Fault = f.Kind
	}
	entry.JobID = j.id
	s.jobs[j.id] = j
	s.pending = append(s.pending, j)
	location := fmt.Sprintf("/v2/prism/%s/imports/%s", info.TeamID, j.id)
	return response{
		status: http.StatusAccepted,
		header: http.Header{"Location": {location}},
		body:   s.encodeJob(j),
	}
}

// settleLocked completes every async job whose time has come, in creation
// order, which is also due order because JobDuration is fixed.
func (s *Server) settleLocked(now time.Time) {
	n := 0
	for _, j := range s.pending {
		if j.dueAt.After(now) {
			break
		}
		s.completeLocked(j)
		n++
	}
	if n > 0 {
		clear(s.pending[:n])
		s.pending = s.pending[n:]
	}
}

func (s *Server) completeLocked(j *job) {
	j.updatedAt = j.dueAt
	if f := j.fail; f != nil {
		applied := len(j.rows)
		if f.AppliedRows >= 0 && f.AppliedRows < applied {
			applied = f.AppliedRows
		}
		j.count(s.applyRows(j.object, j.rows[:applied], j.opts, j.dueAt))
		j.status = StatusFailed
		code, message := f.Code, f.Message
		if code == "" {
			code = "import_failed"
		}
		if message == "" {
			message = "the import job failed"
		}
		j.err = &wireError{Code: code, Message: message}
		s.stats.JobsFailed++
	} else {
		j.results = s.applyRows(j.object, j.rows, j.opts, j.dueAt)
		j.count(j.results)
		j.status = StatusComplete
		s.stats.JobsCompleted++
	}
	j.rows = nil
}

func (s *Server) handlePoll(info RequestInfo, fault Fault, rid string) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settleLocked(now)
	j, ok := s.jobs[info.JobID]
	if ok && fault.Kind == FaultExpireJob {
		j.expired = true
	}
	if !ok || j.expired || !now.Before(j.expiresAt) {
		return errorResponse(rid, http.StatusNotFound, "not_found", "import job not found or expired")
	}
	j.polls++
	s.stats.Polls++
	s.stats.JobPolls[j.id]++
	return response{status: http.StatusOK, body: s.encodeJob(j)}
}
