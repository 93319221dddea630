package prismtest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults applied by New when the corresponding Options field is zero.
const (
	DefaultSyncThreshold  = 100
	DefaultJobTTL         = 7 * 24 * time.Hour
	DefaultIdempotencyTTL = 24 * time.Hour
)

// Options configure a Server. The zero value is useful: any non-empty API key
// and any team id are accepted, batches under 100 objects run synchronously,
// async jobs complete on their first poll and nothing is rate limited.
type Options struct {
	// APIKey is the expected x-api-key; "" accepts any non-empty key.
	APIKey string
	// TeamID is the expected {teamId} path segment; "" accepts any.
	TeamID string

	// SyncThreshold: imports with fewer objects run synchronously (200), the
	// rest become async jobs (202). 0 means DefaultSyncThreshold; a negative
	// value makes every import async.
	SyncThreshold int
	// JobDuration is how long an async job stays "processing", measured on Now.
	// 0 completes it on the first request after the POST (usually its poll).
	JobDuration time.Duration
	// JobTTL is how long a job can be polled after it was created; 0 means
	// DefaultJobTTL (7 days).
	JobTTL time.Duration
	// IdempotencyTTL is how long the first claim of an Idempotency-Key is
	// kept; 0 means DefaultIdempotencyTTL (24h).
	IdempotencyTTL time.Duration
	// Now is the clock for job completion and expiry, the idempotency window,
	// rate limits and timestamps; nil means time.Now. See Clock for a
	// settable one. (Latency and FaultDelay use real time.)
	Now func() time.Time

	// MaxBodyBytes rejects larger request bodies with 413; 0 means no limit
	// (the brief documents none).
	MaxBodyBytes int64
	// KnownSlugs, when it has an entry for an object type, restricts the
	// property slugs of that type: any other slug is a per-row
	// "unknown_property" error, and an unknown dedupe_by slug a 400.
	KnownSlugs map[string][]string
	// Refs declares reference properties, per object type and slug:
	// Refs["contact"]["organization"] = RefProperty{Object: "organization"}.
	// A row whose value of such a slug is neither null nor the id of a live
	// record of that type (an array of them for Multi) gets the per-row
	// error "invalid_reference".
	Refs map[string]map[string]RefProperty
	// OmitInputIndex emulates the older response shape whose results carry
	// no input_index (they are then only in input order).
	OmitInputIndex bool

	// RatePerSecond limits requests per sliding second; 0 is unlimited.
	// Every authenticated request counts (polls and 404s included); requests
	// refused with 429 do not. Over the limit: 429 "rate_limited" with
	// Retry-After in whole seconds.
	RatePerSecond int
	// MonthlyLimit caps requests per calendar month (UTC, on Now); 0 is
	// unlimited. Over it: 429 "monthly_limit_exceeded", Retry-After until the
	// next month.
	MonthlyLimit int

	// FaultRate is the probability (0..1) that a request without a scripted
	// fault gets a random one from RandomFaults, drawn from a source seeded
	// with Seed so that a failing crash test can be replayed.
	FaultRate float64
	Seed      int64
	// RandomFaults is the pool for FaultRate; nil means TransientFaults().
	RandomFaults []Fault

	// Latency is added to every request (for benchmarks); it ends early when
	// the request's context does.
	Latency time.Duration
}

// Kind classifies a request for fault matching, statistics and the log.
type Kind string

// Request kinds.
const (
	KindImport Kind = "import" // POST /v2/prism/{teamId}/{objectType}/import
	KindPoll   Kind = "poll"   // GET /v2/prism/{teamId}/imports/{jobId}
	KindOther  Kind = "other"  // anything else (answered 404/405)
)

// RequestInfo describes a request as far as it is known before its body is
// read; fault Match functions receive it.
type RequestInfo struct {
	Kind           Kind
	Method         string
	Path           string
	TeamID         string
	ObjectType     string // import requests
	JobID          string // poll requests
	RecordID       string // DELETE by id and restore
	IdempotencyKey string
}

// Server is the fake API. It is an http.Handler; all methods are safe for
// concurrent use.
type Server struct {
	opts  Options
	now   func() time.Time
	known map[string]map[string]bool
	refs  map[string][]refSlug
	done  chan struct{} // closed by Close to release hung requests
	once  sync.Once

	mu       sync.Mutex
	rng      *rand.Rand
	reqSeq   uint64
	objects  map[string]*objectStore
	jobs     map[string]*job
	pending  []*job // async jobs not yet completed, in creation (= due) order
	claims   map[string]*claim
	faults   []Fault
	window   []time.Time // ring of the last RatePerSecond admitted requests
	windowAt int
	month    int // year*12+month of the monthly counter
	monthN   int
	stats    Stats
	log      []LogEntry
	gen      uint64 // bumped by Reset so in-flight requests don't write stale log slots
}

// New returns a Server configured by opts (see Options for defaults).
func New(opts Options) *Server {
	if opts.SyncThreshold == 0 {
		opts.SyncThreshold = DefaultSyncThreshold
	}
	if opts.JobTTL <= 0 {
		opts.JobTTL = DefaultJobTTL
	}
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if opts.RandomFaults == nil {
		opts.RandomFaults = TransientFaults()
	}
	s := &Server{
		opts: opts,
		now:  opts.Now,
		done: make(chan struct{}),
		rng:  rand.New(rand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15)),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.KnownSlugs != nil {
		s.known = make(map[string]map[string]bool, len(opts.KnownSlugs))
		for object, slugs := range opts.KnownSlugs {
			set := make(map[string]bool, len(slugs))
			for _, slug := range slugs {
				set[slug] = true
			}
			s.known[object] = set
		}
	}
	s.refs = compileRefs(opts.Refs)
	s.resetLocked()
	return s
}

// Close releases requests held by FaultHang (and pending Latency or
// FaultDelay waits), which then drop their connections. It does not stop
// serving; later requests are answered normally except that they no longer
// wait. Call it before shutting down the http.Server that serves s, because
// http.Server/httptest.Server wait for running handlers.
func (s *Server) Close() {
	s.once.Do(func() { close(s.done) })
}

// Reset forgets all records, jobs, idempotency claims, queued faults,
// rate-limit state, statistics and the request log.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Server) resetLocked() {
	s.objects = make(map[string]*objectStore)
	s.jobs = make(map[string]*job)
	s.pending = nil
	s.claims = make(map[string]*claim)
	s.faults = nil
	s.window = nil
	if s.opts.RatePerSecond > 0 {
		s.window = make([]time.Time, 0, s.opts.RatePerSecond)
	}
	s.windowAt = 0
	s.month, s.monthN = 0, 0
	s.stats = newStats()
	s.log = nil
	s.gen++
}

// response is a fully built answer; imports keep it for idempotent replay.
type response struct {
	status int
	header http.Header // extra headers (Location, Retry-After, Allow, ...)
	body   []byte
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type wireErrorBody struct {
	Code      string  `json:"code"`
	Message   string  `json:"message"`
	RequestID *string `json:"request_id"`
}

func errorResponse(requestID string, status int, code, message string) response {
	body, err := json.Marshal(wireErrorBody{Code: code, Message: message, RequestID: &requestID})
	if err != nil {
		// Marshalling three strings cannot fail; keep the fake honest anyway.
		panic(fmt.Sprintf("prismtest: encode error body: %v", err))
	}
	return response{status: status, body: body}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := classify(r)
	entry := LogEntry{
		Time:           s.now(),
		Method:         r.Method,
		Path:           r.URL.Path,
		Kind:           info.Kind,
		ObjectType:     info.ObjectType,
		JobID:          info.JobID,
		IdempotencyKey: info.IdempotencyKey,
	}
	s.mu.Lock()
	s.reqSeq++
	entry.RequestID = fmt.Sprintf("req_%012x", s.reqSeq)
	fault, faulted := s.takeFaultLocked(info)
	if faulted {
		entry.Fault = fault.Kind
	}
	// The log slot is taken on arrival so the log is in arrival order even
	// when a dropped request's handler finishes after the client moved on.
	slot, gen := len(s.log), s.gen
	s.log = append(s.log, entry)
	// Counted on arrival too: a client that has its answer must never see
	// a count without its request (the rest of the statistics need the
	// outcome and follow in finish).
	s.stats.Requests++
	s.mu.Unlock()
	defer func() { s.finish(entry, slot, gen) }()
	w.Header().Set("x-request-id", entry.RequestID)

	if fault.Kind == FaultDropBeforeRead {
		drop(w)
	}
	// Read the whole body before any waiting: net/http only notices a client
	// that went away (and cancels r.Context) once the body has been consumed.
	body, bodyErr := readBody(w, r, s.opts.MaxBodyBytes)

	// Faults that happen "in front of" the application.
	switch fault.Kind {
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		drop(w)
	case FaultStatus:
		entry.Status = write(w, s.faultResponse(fault, entry.RequestID))
		return
	case FaultDelay:
		if !s.wait(r, fault.Delay) {
			drop(w)
		}
	}
	if !s.wait(r, s.opts.Latency) {
		drop(w)
	}

	resp := s.handle(r, info, body, bodyErr, fault, &entry)

	switch fault.Kind {
	case FaultDropAfterApply:
		drop(w)
	case FaultErrorAfterApply:
		resp = s.faultResponse(fault, entry.RequestID)
	case FaultMalformed:
		resp.body = resp.body[:len(resp.body)/2]
	}
	entry.Status = write(w, resp)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	var rd io.Reader = r.Body
	if limit > 0 {
		rd = http.MaxBytesReader(w, r.Body, limit)
	}
	// One allocation of the announced size instead of io.ReadAll's
	// doublings: import bodies run to megabytes. The size is only a hint;
	// the limit is still enforced by reading.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= maxPresize && (limit <= 0 || n <= limit) {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return buf.Bytes(), nil
}

// maxPresize caps the buffer readBody allocates before reading.
const maxPresize = 64 << 20

// wait blocks for d (cut short by Close), returning false if the request
// ended first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return true // shutting down: answer now rather than hold the server
	}
}

// drop closes the connection without a response and ends the handler. The
// panic is net/http's documented way to abort a handler; it is recovered by
// the server (and the deferred bookkeeping still runs).
func drop(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
	panic(http.ErrAbortHandler)
}

func write(w http.ResponseWriter, resp response) int {
	h := w.Header()
	for k, vs := range resp.header {
		h[k] = append([]string(nil), vs...)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body) // the client going away is not the fake's problem
	return resp.status
}

// classify parses the path without reading the body.
func classify(r *http.Request) RequestInfo {
	info := RequestInfo{
		Kind:           KindOther,
		Method:         r.Method,
		Path:           r.URL.Path,
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 3 || parts[0] != "v2" || parts[1] != "prism" {
		return info
	}
	info.TeamID = parts[2]
	classifyRecord(&info, r.Method, parts[3:])
	if info.Kind != KindOther || len(parts) != 5 {
		return info
	}
	switch {
	case parts[3] == "imports":
		info.Kind, info.JobID = KindPoll, parts[4]
	case parts[4] == "import":
		info.Kind, info.ObjectType = KindImport, parts[3]
	}
	return info
}

func validObjectType(object string) bool {
	switch object {
	case "organization", "contact", "identity", "deal", "action", "document", "engagement":
		return true
	}
	return false
}

// handle runs authentication, rate limits and routing.
func (s *Server) handle(r *http.Request, info RequestInfo, body []byte, bodyErr error, fault Fault, entry *LogEntry) response {
	rid := entry.RequestID
	key := r.Header.Get("x-api-key")
	if key == "" {
		return errorResponse(rid, http.StatusUnauthorized, "unauthorized", "missing x-api-key header")
	}
	if s.opts.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 {
		return errorResponse(rid, http.StatusForbidden, "forbidden", "invalid or revoked API key")
	}
	if info.TeamID == "" {
		return errorResponse(rid, http.StatusNotFound, "not_found", "no such endpoint")
	}
	if s.opts.TeamID != "" && info.TeamID != s.opts.TeamID {
		return errorResponse(rid, http.StatusForbidden, "forbidden", "API key has no access to this team")
	}
	if resp, limited := s.rateLimit(rid); limited {
		return resp
	}
	switch info.Kind {
	case KindImport:
		if r.Method != http.MethodPost {
			resp := errorResponse(rid, http.StatusMethodNotAllowed, "method_not_allowed", "use POST for imports")
			resp.header = http.Header{"Allow": {http.MethodPost}}
			return resp
		}
		if !validObjectType(info.ObjectType) {
			return errorResponse(rid, http.StatusBadRequest, "invalid_object_type",
				fmt.Sprintf("unknown object type %q", info.ObjectType))
		}
		return s.handleImport(r, info, body, bodyErr, fault, entry)
	case KindPoll:
		if r.Method != http.MethodGet {
			resp := errorResponse(rid, http.StatusMethodNotAllowed, "method_not_allowed", "use GET for import jobs")
			resp.header = http.Header{"Allow": {http.MethodGet}}
			return resp
		}
		return s.handlePoll(info, fault, rid)
	case KindBatchDelete, KindBatchUpdate, KindRecordDelete, KindRestore:
		return s.handleRecord(r, info, body, bodyErr, fault, entry)
	}
	return errorResponse(rid, http.StatusNotFound, "not_found", "no such endpoint")
}

// rateLimit admits or refuses a request; refused requests do not consume
// the quota.
func (s *Server) rateLimit(rid string) (response, bool) {
	if s.opts.RatePerSecond <= 0 && s.opts.MonthlyLimit <= 0 {
		return response{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.opts.MonthlyLimit > 0 {
		u := now.UTC()
		if m := u.Year()*12 + int(u.Month()); m != s.month {
			s.month, s.monthN = m, 0
		}
		if s.monthN >= s.opts.MonthlyLimit {
			next := time.Date(u.Year(), u.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			s.stats.RateLimited++
			return limited(rid, "monthly_limit_exceeded", "monthly request limit reached", next.Sub(u)), true
		}
	}
	if n := s.opts.RatePerSecond; n > 0 {
		if len(s.window) == n {
			oldest := s.window[s.windowAt]
			if wait := oldest.Add(time.Second).Sub(now); wait > 0 {
				s.stats.RateLimited++
				return limited(rid, "rate_limited", "too many requests per second", wait), true
			}
			s.window[s.windowAt] = now
			s.windowAt = (s.windowAt + 1) % n
		} else {
			s.window = append(s.window, now)
		}
	}
	s.monthN++
	return response{}, false
}

func limited(rid, code, message string, wait time.Duration) response {
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	resp := errorResponse(rid, http.StatusTooManyRequests, code, message)
	resp.header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
	return resp
}

// finish records the request in the statistics and fills its log slot.
func (s *Server) finish(entry LogEntry, slot int, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen {
		return // Reset ran while the request was in flight
	}
	st := &s.stats
	st.ByKind[entry.Kind]++
	st.ByStatus[entry.Status]++
	st.ByKindStatus[KindStatus{entry.Kind, entry.Status}]++
	if entry.Status == 0 {
		st.Dropped++
	}
	if entry.Status == http.StatusConflict {
		st.Conflicts++
	}
	s.log[slot] = entry
}
