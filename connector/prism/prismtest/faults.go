package prismtest

import (
	"net/http"
	"strings"
	"time"
)

// FaultKind names a scripted misbehaviour.
type FaultKind string

// Fault kinds. "Applied" means the import took effect (a sync import wrote its
// rows, an async one created its job) before the fault hit.
const (
	// FaultStatus answers Status (default 503) with Retry-After/Header,
	// before authentication and without applying anything.
	FaultStatus FaultKind = "status"
	// FaultDropBeforeRead closes the connection before reading the request.
	FaultDropBeforeRead FaultKind = "drop_before_read"
	// FaultDropAfterApply applies the request, stores its response for
	// Idempotency-Key replay, then closes the connection without answering.
	FaultDropAfterApply FaultKind = "drop_after_apply"
	// FaultErrorAfterApply applies the request, then answers Status (default
	// 500). Being a 5xx it is not stored, so a retry with the same key runs
	// the import again (only dedupe prevents duplicates).
	FaultErrorAfterApply FaultKind = "error_after_apply"
	// FaultMalformed applies the request and stores its response, but sends
	// only the first half of the JSON body (with a matching Content-Length).
	FaultMalformed FaultKind = "malformed"
	// FaultHang holds the request, applying nothing, until the client gives
	// up (its context ends) or Server.Close is called; then drops it.
	FaultHang FaultKind = "hang"
	// FaultDelay waits Delay (or until the request ends) and then serves the
	// request normally.
	FaultDelay FaultKind = "delay"
	// FaultFailJob makes the async job created by the matched import end
	// "failed" with Code/Message after applying its first AppliedRows rows
	// (-1: all). Sync imports never consume it.
	FaultFailJob FaultKind = "fail_job"
	// FaultExpireJob expires the job of the matched poll, which gets 404.
	FaultExpireJob FaultKind = "expire_job"
)

// Fault is one scripted misbehaviour. Injected faults are consumed once, in
// FIFO order: a request takes the first queued fault whose Match accepts it
// and whose Kind applies to the request (FaultExpireJob only to polls,
// FaultFailJob only to imports that become async jobs).
type Fault struct {
	Kind FaultKind
	// Match selects requests; nil matches any. It runs under the Server's
	// lock, so it must not call the Server.
	Match func(RequestInfo) bool
	// Status for FaultStatus (default 503) and FaultErrorAfterApply (default 500).
	Status int
	// RetryAfter is sent verbatim as Retry-After: delay seconds ("2") or an
	// HTTP-date (time.Format(http.TimeFormat)).
	RetryAfter string
	// Header holds extra response headers, e.g. "retry-after-ms" or
	// "x-should-retry".
	Header http.Header
	// Delay for FaultDelay.
	Delay time.Duration
	// Code and Message go into the error body (FaultStatus,
	// FaultErrorAfterApply) or the failed job's error (FaultFailJob).
	Code, Message string
	// AppliedRows for FaultFailJob: how many leading rows were written before
	// the job failed; -1 means all of them. The brief says to assume a failed
	// job may have written some.
	AppliedRows int
}

// TransientFaults is the default pool for Options.FaultRate: faults a
// correct client survives by retrying with the same Idempotency-Key. It
// leaves out FaultErrorAfterApply (duplicates unless dedupe is on), FaultHang
// (needs client timeouts) and the job faults.
func TransientFaults() []Fault {
	return []Fault{
		{Kind: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: "0"},
		{Kind: FaultStatus, Status: http.StatusInternalServerError},
		{Kind: FaultStatus, Status: http.StatusBadGateway},
		{Kind: FaultStatus, Status: http.StatusServiceUnavailable, RetryAfter: "0"},
		{Kind: FaultDropBeforeRead},
		{Kind: FaultDropAfterApply},
		{Kind: FaultMalformed},
	}
}

// InjectFault queues faults (see Fault for the matching rules).
func (s *Server) InjectFault(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// PendingFaults reports how many injected faults have not fired yet.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

// ClearFaults drops all queued faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// ExpireJob makes a job unpollable (404) as if its retention had ended. Its
// effects still happen when it completes. It reports whether the job exists.
func (s *Server) ExpireJob(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if ok {
		j.expired = true
	}
	return ok
}

// takeFaultLocked picks the fault for a request at its start: the first
// applicable queued one, else maybe a random one.
func (s *Server) takeFaultLocked(info RequestInfo) (Fault, bool) {
	for i, f := range s.faults {
		if f.Kind == FaultFailJob || (f.Kind == FaultExpireJob && info.Kind != KindPoll) {
			continue
		}
		if f.Match == nil || f.Match(info) {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			s.stats.Faults++
			return f, true
		}
	}
	if s.opts.FaultRate > 0 && len(s.opts.RandomFaults) > 0 && s.rng.Float64() < s.opts.FaultRate {
		f := s.opts.RandomFaults[s.rng.IntN(len(s.opts.RandomFaults))]
		if f.Kind == FaultExpireJob && info.Kind != KindPoll || f.Kind == FaultFailJob {
			return Fault{}, false
		}
		s.stats.Faults++
		return f, true
	}
	return Fault{}, false
}

// takeJobFaultLocked picks a FaultFailJob for an import that became a job.
func (s *Server) takeJobFaultLocked(info RequestInfo) (Fault, bool) {
	for i, f := range s.faults {
		if f.Kind == FaultFailJob && (f.Match == nil || f.Match(info)) {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			s.stats.Faults++
			return f, true
		}
	}
	return Fault{}, false
}

func (s *Server) faultResponse(f Fault, rid string) response {
	status := f.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
		if f.Kind == FaultErrorAfterApply {
			status = http.StatusInternalServerError
		}
	}
	code, message := f.Code, f.Message
	if code == "" {
		code = strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
		if status == http.StatusTooManyRequests {
			code = "rate_limited"
		}
	}
	if message == "" {
		message = "injected fault: " + http.StatusText(status)
	}
	resp := errorResponse(rid, status, code, message)
	resp.header = f.Header.Clone()
	if f.RetryAfter != "" {
		if resp.header == nil {
			resp.header = http.Header{}
		}
		resp.header.Set("Retry-After", f.RetryAfter)
	}
	return resp
}
