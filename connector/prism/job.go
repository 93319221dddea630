package prism

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Job statuses.
const (
	StatusProcessing = "processing"
	StatusComplete   = "complete"
	StatusFailed     = "failed"
)

// Job is an import job: the answer of an import request or of a poll.
type Job struct {
	// ID is the async job id; "" for a synchronous import (results inline,
	// nothing to poll).
	ID     string
	Status string // StatusProcessing, StatusComplete or StatusFailed (or a newer value)
	Total  int    // rows in the import
	// Processed, Succeeded and Failed are progress counters; zero when the
	// server did not send them.
	Processed, Succeeded, Failed int
	// Error describes a job-level failure (Status == StatusFailed).
	Error *JobError
	// Results has one entry per input row once the job is complete; use
	// RowResults to map them to rows.
	Results   []Result
	ExpiresAt time.Time // zero if not sent
	// Polls counts the GET requests (including retried attempts) spent on this
	// job by Job and Wait; it feeds the monthly request budget.
	Polls int
	// Replayed is true when the server answered from its idempotency store
	// (response header idempotent-replay: true).
	Replayed bool
	// RequestID of the response that produced this Job, for support.
	RequestID string

	acceptedAt time.Time     // when Import got the 202; used to learn job durations
	pollHint   time.Duration // Retry-After on a 202, if the server sent one
	// ran is how long a terminal job took by the server's own clock
	// (updated_at - created_at), when both carry sub-second digits; 0 if
	// unknown. It is the exact duration that poll timing can only bound.
	ran time.Duration
}

// Terminal reports whether the job is finished (complete or failed).
func (j *Job) Terminal() bool {
	return j.Status == StatusComplete || j.Status == StatusFailed
}

// Err returns the job-level failure as an error, or nil when the job did not
// fail. Row failures in a complete job are not job failures; see RowResults.
func (j *Job) Err() error {
	if j.Status != StatusFailed {
		return nil
	}
	if j.Error == nil {
		return &JobError{Message: "import job failed without an error description"}
	}
	return j.Error
}

// JobError is the job-level "error" of a failed job. The job may already have
// written some rows; treat it as partially applied.
type JobError struct {
	Code, Message string
}

func (e *JobError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("prism: import job failed: %s: %s", e.Code, e.Message)
	}
	return "prism: import job failed: " + e.Message
}

// Result is the outcome of one input row.
type Result struct {
	// InputIndex is the row's 0-based position in the request as sent by the
	// server, or -1 when the server does not send input_index (older API).
	InputIndex int
	ID         string // record id; may be "" for errored (or, unconfirmed, skipped) rows
	Created    bool   // a new record was created
	Existing   bool   // matched an existing record through dedupe_by
	Updated    bool   // the matched record was patched (update_existing)
	Error      *RowError
}

// RowError is a per-row failure: a data problem of that row, not retryable.
type RowError struct {
	Code, Message string
}

func (e *RowError) Error() string {
	if e.Code != "" {
		return e.Code + ": " + e.Message
	}
	return e.Message
}

// RowResults returns exactly one Result per input row, element i belonging to
// row i of the request. Rows are placed by input_index when the server sends
// it and by array order otherwise (older API shape). It fails instead of
// guessing when the job is not complete, when the number of results differs
// from n or from the job's total, or when indexes are missing, duplicated or
// out of range; the caller should then re-check the batch rather than advance.
func (j *Job) RowResults(n int) ([]Result, error) {
	if j.Status != StatusComplete {
		if err := j.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("prism: row results: job %q is %q, not complete", j.ID, j.Status)
	}
	if len(j.Results) != n {
		return nil, fmt.Errorf("prism: row results: got %d results for %d rows", len(j.Results), n)
	}
	if j.Total != n {
		return nil, fmt.Errorf("prism: row results: job total %d differs from %d rows", j.Total, n)
	}
	if n == 0 || j.Results[0].InputIndex < 0 {
		for i, r := range j.Results {
			if r.InputIndex >= 0 {
				return nil, fmt.Errorf("prism: row results: result %d has input_index but result 0 has none", i)
			}
		}
		return append([]Result(nil), j.Results...), nil
	}
	out := make([]Result, n)
	seen := make([]bool, n)
	for i, r := range j.Results {
		switch {
		case r.InputIndex < 0:
			return nil, fmt.Errorf("prism: row results: result %d has no input_index but others do", i)
		case r.InputIndex >= n:
			return nil, fmt.Errorf("prism: row results: input_index %d out of range for %d rows", r.InputIndex, n)
		case seen[r.InputIndex]:
			return nil, fmt.Errorf("prism: row results: duplicate input_index %d", r.InputIndex)
		}
		seen[r.InputIndex] = true
		out[r.InputIndex] = r
	}
	return out, nil
}

// wireJob is the response shape of both POST /import and GET /imports/{id}.
// Pointers tell "absent" from zero; unknown fields are ignored.
type wireJob struct {
	JobID     *string         `json:"job_id"`
	Status    string          `json:"status"`
	Total     *int            `json:"total"`
	Processed *int            `json:"processed"`
	Succeeded *int            `json:"succeeded"`
	Failed    *int            `json:"failed"`
	Error     json.RawMessage `json:"error"`
	Results   json.RawMessage `json:"results"` // decodeResults

	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	// Summary is the pre-2026-05-20 shape, used only to fill in the total.
	Summary *struct {
		Total *int `json:"total"`
	} `json:"summary"`
}

type wireResult struct {
	InputIndex *int            `json:"input_index"`
	ID         string          `json:"id"` // null and absent both leave ""; no pointer to allocate per row
	Created    bool            `json:"created"`
	Existing   bool            `json:"existing"`
	Updated    bool            `json:"updated"`
	Error      json.RawMessage `json:"error"`
}

// errMalformed marks a 2xx body that is not valid JSON (typically cut off in
// transit); such an answer is retried because the server replays the stored
// response under the same Idempotency-Key.
var errMalformed = errors.New("malformed JSON response")

// decodeJob parses a job body. Syntax errors wrap errMalformed (retryable);
// a body that parses but is not a job wraps ErrUnexpectedResponse.
func decodeJob(body []byte) (*Job, error) {
	w, results, err := parseJob(body)
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w (%d bytes): %w", errMalformed, len(body), err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnexpectedResponse, err)
	}
	if w.Status == "" {
		return nil, fmt.Errorf("%w: no job status in the response", ErrUnexpectedResponse)
	}
	j := &Job{Status: w.Status}
	if w.JobID != nil {
		j.ID = *w.JobID
	}
	switch {
	case w.Total != nil:
		j.Total = *w.Total
	case w.Summary != nil && w.Summary.Total != nil:
		j.Total = *w.Summary.Total
	default:
		// Old synchronous answers carry no total; the results are the rows.
		j.Total = len(results)
	}
	j.Processed = deref(w.Processed)
	j.Succeeded = deref(w.Succeeded)
	j.Failed = deref(w.Failed)
	if re := decodeRowError(w.Error); re != nil {
		j.Error = &JobError{Code: re.Code, Message: re.Message}
	}
	if w.ExpiresAt != "" {
		// A bad timestamp must not lose a finished job's results.
		if t, err := time.Parse(time.RFC3339Nano, w.ExpiresAt); err == nil {
			j.ExpiresAt = t
		}
	}
	if j.Terminal() {
		j.ran = serverDuration(w.CreatedAt, w.UpdatedAt)
	}
	if len(results) > 0 {
		j.Results = make([]Result, len(results))
		for i, wr := range results {
			r := Result{InputIndex: -1, Created: wr.Created, Existing: wr.Existing, Updated: wr.Updated}
			if wr.InputIndex != nil {
				r.InputIndex = *wr.InputIndex
				if r.InputIndex < 0 {
					return nil, fmt.Errorf("%w: negative input_index %d", ErrUnexpectedResponse, r.InputIndex)
				}
			}
			r.ID = wr.ID
			r.Error = decodeRowError(wr.Error)
			j.Results[i] = r
		}
	}
	return j, nil
}

// parseJob decodes an answer as json.Unmarshal into a wireJob with its
// results as []wireResult would (a *json.SyntaxError means a cut-off or
// garbled body). The results, most of the body, are decoded apart
// (decodeResults), after a json.Valid of the whole: then encoding/json
// scans them once, where decoding them as a member of the job scanned them
// twice and reflected over every value.
func parseJob(body []byte) (w wireJob, results []wireResult, err error) {
	if json.Valid(body) {
		if rest, raw, ok := withoutResults(body); ok {
			if err := json.Unmarshal(rest, &w); err != nil {
				return w, nil, err
			}
			w.Results = nil
			results, err = decodeResults(raw)
			return w, results, err
		}
	}
	// Anything else, as encoding/json decodes it (the outer Results hides
	// the embedded one).
	var whole struct {
		wireJob
		Results []wireResult `json:"results"`
	}
	err = json.Unmarshal(body, &whole)
	whole.wireJob.Results = nil
	return whole.wireJob, whole.Results, err
}

// serverDuration is updated - created when both are RFC 3339 times with a
// fractional second: whole-second stamps are too coarse to time a poll.
func serverDuration(created, updated string) time.Duration {
	if !strings.Contains(created, ".") || !strings.Contains(updated, ".") {
		return 0
	}
	c, err1 := time.Parse(time.RFC3339Nano, created)
	u, err2 := time.Parse(time.RFC3339Nano, updated)
	if err1 != nil || err2 != nil || !u.After(c) {
		return 0
	}
	return u.Sub(c)
}

// decodeRowError accepts both error shapes: {code, message} (current) and a
// plain string (before 2026-05-20). null, "" and {} mean no error.
func decodeRowError(raw json.RawMessage) *RowError {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil
		}
		return &RowError{Message: s}
	}
	var o struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &o) == nil {
		if o.Code == "" && o.Message == "" {
			return nil
		}
		return &RowError{Code: o.Code, Message: o.Message}
	}
	// Some other JSON value (number, array): keep it rather than lose it.
	return &RowError{Message: string(raw)}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
