package prismtest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
	rows      []item // dropped once applied
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
	results   outcome // only for complete jobs
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

// timestamp renders job times as ISO 8601 with milliseconds, the way a
// JavaScript backend's Date.toISOString() does: clients can time a job from
// created_at..updated_at to well under a second.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// encodeJob renders a job; sync imports pass a job with an empty id, which is
// encoded as "job_id": null and without expires_at (they cannot be polled).
//
// The body is written by hand, field for field as encoding/json would
// marshal this struct (TestEncodeJobMatchesMarshal holds it to that):
//
//	{job_id *string; status string; total, processed, succeeded, failed int;
//	 created_at, updated_at string; expires_at string,omitempty;
//	 error *wireError,omitempty; results *[]result,omitempty}
//	result: {input_index *int,omitempty; id *string; created, existing,
//	 updated bool; error *wireError,omitempty}
//
// A poll of a bench batch answers 5,000 results; writing them directly
// skips reflection and an allocation or two per result.
func (s *Server) encodeJob(j *job) []byte {
	b := make([]byte, 0, 256+len(j.results.rows)*96)
	b = append(b, `{"job_id":`...)
	if j.id != "" {
		b = appendJSONString(b, j.id)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, j.status)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, int64(j.total), 10)
	b = append(b, `,"processed":`...)
	b = strconv.AppendInt(b, int64(j.processed), 10)
	b = append(b, `,"succeeded":`...)
	b = strconv.AppendInt(b, int64(j.succeeded), 10)
	b = append(b, `,"failed":`...)
	b = strconv.AppendInt(b, int64(j.failed), 10)
	b = append(b, `,"created_at":`...)
	b = appendJSONString(b, timestamp(j.createdAt))
	b = append(b, `,"updated_at":`...)
	b = appendJSONString(b, timestamp(j.updatedAt))
	if j.id != "" {
		b = append(b, `,"expires_at":`...)
		b = appendJSONString(b, timestamp(j.expiresAt))
	}
	if j.err != nil {
		b = append(b, `,"error":`...)
		b = appendWireError(b, j.err)
	}
	if j.status == StatusComplete {
		b = append(b, `,"results":[`...)
		errs := j.results.errs
		for i, r := range j.results.rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if !s.opts.OmitInputIndex {
				b = append(b, `"input_index":`...)
				b = strconv.AppendInt(b, int64(i), 10)
				b = append(b, ',')
			}
			b = append(b, `"id":`...)
			if r.rec != 0 {
				b = append(b, '"')
				b = appendUUID(b, j.results.store.rec(r.rec).id)
				b = append(b, '"')
			} else {
				b = append(b, "null"...)
			}
			b = append(b, `,"created":`...)
			b = strconv.AppendBool(b, r.flags&resCreated != 0)
			b = append(b, `,"existing":`...)
			b = strconv.AppendBool(b, r.flags&resExisting != 0)
			b = append(b, `,"updated":`...)
			b = strconv.AppendBool(b, r.flags&resUpdated != 0)
			if r.flags&resError != 0 {
				b = append(b, `,"error":`...)
				b = appendWireError(b, errs[0])
				errs = errs[1:]
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendWireError(b []byte, e *wireError) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	return append(b, '}')
}

// appendJSONString writes s as encoding/json does: strings it would not
// escape are copied, the rest are left to it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				panic(fmt.Sprintf("prismtest: encode string: %v", err)) // cannot fail for a string
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendUUID writes id in its canonical form, as uuid.UUID.String does.
func appendUUID(b []byte, id uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0x0f])
	}
	return b
}

func (j *job) count(out outcome) {
	j.processed = len(out.rows)
	j.failed = len(out.errs)
	j.succeeded = j.processed - j.failed
}

// replayLocked applies the Idempotency-Key rules (§5) to a POST whose key
// was seen before: a stale key or one used with another request is refused,
// the same request gets the first answer again. done is true when resp is
// the answer; otherwise fp is the request's fingerprint, for the claim the
// caller records once it has answered.
func (s *Server) replayLocked(r *http.Request, key string, hasKey bool, body []byte, now time.Time, entry *LogEntry) (fp [sha256.Size]byte, resp response, done bool) {
	if !hasKey {
		return fp, resp, false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", r.Method, r.URL.Path, r.URL.RawQuery)
	h.Write(body)
	copy(fp[:], h.Sum(nil))
	c, ok := s.claims[key]
	if !ok {
		return fp, resp, false
	}
	switch {
	case !now.Before(c.at.Add(s.opts.IdempotencyTTL)):
		return fp, errorResponse(entry.RequestID, http.StatusConflict, "idempotency_key_stale",
			"Idempotency-Key has expired; use a new key"), true
	case c.fingerprint != fp:
		return fp, errorResponse(entry.RequestID, http.StatusConflict, "idempotency_key_mismatch",
			"Idempotency-Key was already used with a different request"), true
	}
	s.stats.Replays++
	entry.Replay = true
	resp = c.resp
	resp.header = resp.header.Clone()
	if resp.header == nil {
		resp.header = http.Header{}
	}
	resp.header.Set("idempotent-replay", "true")
	return fp, resp, true
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
	req, decodeErr := decodeBatch(body, s.known[info.ObjectType])

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settleLocked(now)

	fp, replay, done := s.replayLocked(r, key, hasKey, body, now, entry)
	if done {
		return replay
	}

	resp := s.runImportLocked(info, req, decodeErr, fault, entry, now)
	// Only completed non-5xx responses are kept; an import that "failed" with
	// a 5xx after being applied (FaultErrorAfterApply) executes again on retry.
	if hasKey && resp.status < 500 && fault.Kind != FaultErrorAfterApply {
		s.claims[key] = &claim{fingerprint: fp, at: now, resp: resp}
	}
	return resp
}

func (s *Server) runImportLocked(info RequestInfo, req *batch, decodeErr error, fault Fault, entry *LogEntry, now time.Time) response {
	rid := entry.RequestID
	if decodeErr != nil {
		var re *requestError
		if errors.As(decodeErr, &re) {
			return errorResponse(rid, http.StatusBadRequest, re.code, re.message)
		}
		return errorResponse(rid, http.StatusBadRequest, "invalid_request", decodeErr.Error())
	}
	entry.Objects = len(req.items)
	s.stats.Imports++
	s.stats.Rows += len(req.items)
	j := &job{
		object:    info.ObjectType,
		opts:      req.opts,
		total:     len(req.items),
		createdAt: now,
		updatedAt: now,
	}
	if len(req.items) < s.opts.SyncThreshold {
		s.stats.SyncImports++
		j.results = s.applyRows(info.ObjectType, req.items, req.opts, now)
		j.status = StatusComplete
		j.count(j.results)
		return response{status: http.StatusOK, body: s.encodeJob(j)}
	}

	s.stats.AsyncImports++
	j.id = uuid.NewString()
	j.rows = req.items
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
