package prism

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error codes the API is documented to return in the "code" field.
const (
	CodeIdempotencyKeyMismatch = "idempotency_key_mismatch"
	CodeIdempotencyKeyStale    = "idempotency_key_stale"
)

var (
	// ErrJobNotFound reports a 404 from the job endpoint: the job id is wrong
	// or the job expired (jobs are kept for 7 days). The two cases cannot be
	// told apart, so per-row outcomes must be stored as soon as a job is
	// terminal. Test with errors.Is.
	ErrJobNotFound = errors.New("import job not found or expired")

	// ErrKeyInUse reports an Import with an Idempotency-Key that another
	// Import on the same Client is still sending; two attempts with one key
	// at once have undocumented server behaviour, so the client refuses.
	ErrKeyInUse = errors.New("idempotency key already in flight")

	// ErrUnexpectedResponse reports a well-formed JSON answer that does not
	// look like an import job (for example no "status"). Retrying would only
	// replay it, so it is permanent.
	ErrUnexpectedResponse = errors.New("unexpected response")
)

// maxErrorBody bounds APIError.Body so a large HTML error page does not end
// up in every log line.
const maxErrorBody = 2048

// APIError is a non-2xx answer from the API. For retryable statuses (408,
// 429, 5xx) it is what remains after the client gave up retrying.
type APIError struct {
	Op        string // "import" or "poll"
	Status    int    // HTTP status code
	Code      string // "code" from the error body, if any
	Message   string // "message" from the error body, if any
	RequestID string // request_id from the body, else the x-request-id header
	// Errors are the per-field findings of a 400, if the server sent any.
	Errors []FieldError
	// RetryAfter is the server's requested delay on 429/503, if any.
	RetryAfter time.Duration
	// Body is the raw response body, truncated; log it, support asks for it.
	Body string
}

// FieldError is one element of an error body's "errors" array.
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
	Code    string `json:"code,omitempty"`
}

// Error describes the answer and what to do about it. The Client's error
// around it names the operation ("prism: import: HTTP 400 ...").
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	for i, fe := range e.Errors {
		if i == 5 {
			fmt.Fprintf(&b, " (and %d more)", len(e.Errors)-i)
			break
		}
		if fe.Field != "" {
			fmt.Fprintf(&b, "; %s: %s", fe.Field, fe.Message)
		} else {
			fmt.Fprintf(&b, "; %s", fe.Message)
		}
	}
	if hint := e.hint(); hint != "" {
		fmt.Fprintf(&b, " (%s)", hint)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request_id %s]", e.RequestID)
	}
	return b.String()
}

func (e *APIError) hint() string {
	switch {
	case e.Status == http.StatusUnauthorized:
		return "no or empty API key"
	case e.Status == http.StatusForbidden:
		return "API key invalid, revoked or without access to this team"
	case e.isIdempotencyConflict():
		if e.isStale() {
			return "idempotency key older than 24h: mint a new key, never reuse an expired one"
		}
		return "idempotency key already used with a different body or path: mint a new key for a new body"
	case e.isTooLarge():
		return "request body too large: send smaller batches"
	case e.Status == http.StatusNotFound && e.Op == opPoll:
		return "job id wrong or job expired after 7 days"
	case e.isEndpointNotFound():
		return "check the base URL, the team id and the object type"
	case e.Status == http.StatusTooManyRequests:
		return "rate limit or monthly request quota exhausted"
	case e.Status >= 500:
		return "server error, retries exhausted"
	case e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity:
		return "the request was rejected: check the mapping (property slugs, value types) and import options"
	}
	return ""
}

// Is makes errors.Is(err, ErrJobNotFound) true for a 404 on a poll.
func (e *APIError) Is(target error) bool {
	return target == ErrJobNotFound && e.Op == opPoll && e.Status == http.StatusNotFound
}

// Temporary reports whether the status is one the client retries (408, 429,
// 5xx); such an error means the retry budget ran out, not that the request
// is wrong.
func (e *APIError) Temporary() bool { return retryableStatus(e.Status) }

func (e *APIError) isIdempotencyConflict() bool {
	if e.Status != http.StatusConflict {
		return false
	}
	switch e.Code {
	case CodeIdempotencyKeyMismatch, CodeIdempotencyKeyStale:
		return true
	case "":
		// Where the code arrives is unconfirmed; fall back to the message.
		return strings.Contains(strings.ToLower(e.Message), "idempotency")
	}
	return false
}

func (e *APIError) isStale() bool {
	if e.Code != "" {
		return e.Code == CodeIdempotencyKeyStale
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "stale") || strings.Contains(m, "expired")
}

func (e *APIError) isTooLarge() bool {
	if e.Status == http.StatusRequestEntityTooLarge {
		return true
	}
	if e.Status != http.StatusBadRequest {
		return false
	}
	code := strings.ToLower(e.Code)
	if strings.Contains(code, "too_large") || strings.Contains(code, "too_big") {
		return true
	}
	m := strings.ToLower(e.Message)
	for _, s := range []string{"too large", "too big", "payload size", "body size", "too many objects", "exceeds the maximum"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func (e *APIError) isUnauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

func (e *APIError) isEndpointNotFound() bool {
	return e.Status == http.StatusNotFound && e.Op == opImport
}

// IsUnauthorized reports a 401 or 403: the API key is missing, wrong or
// revoked, or has no access to the team. Only the configuration can fix it.
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.isUnauthorized()
}

// IsEndpointNotFound reports a 404 on an import: the base URL, the team id
// or the object type names no import endpoint. (A 404 on a poll is
// ErrJobNotFound.)
func IsEndpointNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.isEndpointNotFound()
}

// IsIdempotencyConflict reports a 409 idempotency_key_mismatch or
// idempotency_key_stale: the key must not be reused; mint a new one.
func IsIdempotencyConflict(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.isIdempotencyConflict()
}

// IsTooLarge reports a 413, or a 400 saying the body is too large: the batch
// should be split (e.g. halved) and re-sent under new keys.
func IsTooLarge(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.isTooLarge()
}

// IsPermanent reports whether sending the same request again cannot succeed:
// a non-retryable HTTP status (400, 401, 403, 404, 409, 413, 422, ...) or an
// answer that is not an import job. Network errors, exhausted retries on
// 429/5xx and context cancellation are not permanent.
func IsPermanent(err error) bool {
	if errors.Is(err, ErrUnexpectedResponse) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && !ae.Temporary()
}

// retryableStatus is the status half of the retry decision.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// wireError is the documented error body {code, message, request_id, errors, details}.
type wireError struct {
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Error     json.RawMessage `json:"error"`
	RequestID string          `json:"request_id"`
	Errors    []FieldError    `json:"errors"`
}

// newAPIError builds an APIError from a response; redact scrubs secrets out of
// anything the server echoed back.
func newAPIError(op string, status int, header http.Header, body []byte, redact func(string) string) *APIError {
	e := &APIError{Op: op, Status: status, RequestID: header.Get("x-request-id")}
	var w wireError
	if json.Unmarshal(body, &w) == nil {
		e.Code, e.Message, e.Errors = w.Code, w.Message, w.Errors
		if w.RequestID != "" {
			e.RequestID = w.RequestID
		}
		// Some gateways answer {"error": "..."} or {"error": {code, message}}.
		if e.Code == "" && e.Message == "" && len(w.Error) > 0 {
			if re := decodeRowError(w.Error); re != nil {
				e.Code, e.Message = re.Code, re.Message
			}
		}
	} else if len(body) > 0 {
		// A non-JSON body (proxy page) is still the best message we have.
		e.Message = truncate(strings.TrimSpace(string(body)), 200)
	}
	e.Body = truncate(string(body), maxErrorBody)
	e.Message = redact(e.Message)
	e.Code = redact(e.Code)
	e.Body = redact(e.Body)
	for i := range e.Errors {
		e.Errors[i].Message = redact(e.Errors[i].Message)
		e.Errors[i].Field = redact(e.Errors[i].Field)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// redactedError replaces an error whose text contains a secret; the original
// is dropped on purpose so the secret cannot be recovered through Unwrap.
type redactedError struct{ msg string }

func (e *redactedError) Error() string { return e.msg }
