package prism

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is a successful (2xx, decoded) answer.
type response struct {
	job      *Job
	raw      []byte // the body, for the record endpoints (job is nil)
	replayed bool   // idempotent-replay: true, for the record endpoints
	header   http.Header
	attempts int
}

// do sends one logical request with retries and names the operation in
// the error, once: what it wraps (an *APIError, a transport error) says
// only what went wrong with the request.
func (c *Client) do(ctx context.Context, op, method, u string, body []byte, key string) (*response, error) {
	resp, err := c.retry(ctx, op, method, u, body, key)
	if err != nil {
		return nil, fmt.Errorf("prism: %s: %w", op, err)
	}
	return resp, nil
}

// retry makes the attempts of one request. Attempts are strictly
// sequential, so one idempotency key is never on the wire twice at once
// (from this call); every attempt passes the rate limiter, gets a fresh
// reader over the same body bytes, and is reported to OnRequest.
func (c *Client) retry(ctx context.Context, op, method, u string, body []byte, key string) (*response, error) {
	start := c.cfg.Now()
	for attempt := 1; ; attempt++ {
		if err := c.limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("rate limiter: %w", err)
		}
		resp, retryErr, delay, err := c.attempt(ctx, op, method, u, body, key, attempt)
		if err != nil {
			return nil, err
		}
		if resp != nil {
			resp.attempts = attempt
			return resp, nil
		}
		// retryErr is transient; decide whether another attempt is allowed.
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), retryErr)
		}
		var ae *APIError
		if errors.As(retryErr, &ae) && ae.RetryAfter > c.cfg.MaxRetryAfter {
			return nil, fmt.Errorf("server asked to wait %s, more than %s: %w", ae.RetryAfter, c.cfg.MaxRetryAfter, retryErr)
		}
		if attempt >= c.cfg.MaxAttempts {
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt, retryErr)
		}
		if delay < 0 {
			delay = c.backoff(attempt)
		}
		if c.cfg.Now().Add(delay).Sub(start) > c.cfg.MaxElapsed {
			return nil, fmt.Errorf("giving up after %d attempts, retry in %s would exceed %s: %w",
				attempt, delay, c.cfg.MaxElapsed, retryErr)
		}
		c.log.WarnContext(ctx, "prism: retrying request", "op", op, "attempt", attempt, "delay", delay, "err", retryErr)
		if err := c.cfg.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("%w (last error: %w)", err, retryErr)
		}
	}
}

// attempt performs one HTTP exchange. It returns exactly one of: a decoded
// response; a transient error with the server-requested delay (-1 if none);
// or a final error.
func (c *Client) attempt(ctx context.Context, op, method, u string, body []byte, key string, n int) (
	resp *response, retryErr error, delay time.Duration, finalErr error) {
	delay = -1
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	req.Header.Set("x-api-key", c.apiKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}

	var metered func(sent int)
	if c.cfg.Meter != nil {
		done, err := c.cfg.Meter(ctx)
		if err != nil {
			return nil, nil, 0, err // the request is not made
		}
		metered = done
	}
	// Whether the request left this machine decides whether Micro may
	// have counted it: a refused connection, a DNS or TLS failure never
	// writes the headers. A transport that resends on a dead keep-alive
	// connection writes them twice.
	var sent atomic.Int32
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { sent.Add(1) }}))

	began := time.Now()
	info := RequestInfo{Method: method, Op: op, Attempt: n}
	report := func(err error) {
		info.Err = err
		info.Duration = time.Since(began)
		info.Sent = int(sent.Load())
		if metered != nil {
			metered(info.Sent)
		}
		c.log.DebugContext(ctx, "prism: request", "op", op, "method", method, "attempt", n,
			"status", info.Status, "duration", info.Duration, "request_id", info.RequestID, "err", err)
		if c.cfg.OnRequest != nil {
			c.cfg.OnRequest(ctx, info)
		}
	}

	hr, err := c.hc.Do(req)
	if err != nil {
		err = c.redactErr(err)
		report(err)
		if ctx.Err() != nil {
			return nil, nil, 0, ctx.Err()
		}
		// Network errors (reset, EOF, timeout, refused) are all retried: the
		// idempotency key makes a resend safe even if the first one landed.
		// A refused redirect is a configuration problem and not retried.
		if errors.Is(err, errRedirectRefused) {
			return nil, nil, 0, err
		}
		return nil, fmt.Errorf("send: %w", err), -1, nil
	}
	defer hr.Body.Close()
	info.Status = hr.StatusCode
	info.RequestID = hr.Header.Get("x-request-id")
	raw, readErr := readBody(hr.Body)
	if readErr != nil {
		readErr = c.redactErr(readErr)
		report(readErr)
		if ctx.Err() != nil {
			return nil, nil, 0, ctx.Err()
		}
		return nil, fmt.Errorf("read HTTP %d response: %w", hr.StatusCode, readErr), -1, nil
	}

	if hr.StatusCode >= 200 && hr.StatusCode < 300 && op != opImport && op != opPoll {
		// The record endpoints answer their own shapes; their callers
		// decode them (records.go).
		if !json.Valid(raw) {
			err := fmt.Errorf("%w: response is not JSON", errMalformed)
			report(err)
			return nil, fmt.Errorf("HTTP %d: %w", hr.StatusCode, err), -1, nil
		}
		report(nil)
		return &response{raw: raw, header: hr.Header, replayed: strings.EqualFold(hr.Header.Get("idempotent-replay"), "true")}, nil, 0, nil
	}
	if hr.StatusCode >= 200 && hr.StatusCode < 300 {
		job, err := decodeJob(raw)
		if err != nil {
			report(err)
			if errors.Is(err, errMalformed) {
				return nil, fmt.Errorf("HTTP %d: %w", hr.StatusCode, err), -1, nil
			}
			return nil, nil, 0, fmt.Errorf("HTTP %d: %w", hr.StatusCode, err)
		}
		job.Replayed = strings.EqualFold(hr.Header.Get("idempotent-replay"), "true")
		job.RequestID = info.RequestID
		if job.RequestID == "" {
			job.RequestID = requestIDFromBody(raw)
		}
		report(nil)
		return &response{job: job, header: hr.Header}, nil, 0, nil
	}

	apiErr := newAPIError(op, hr.StatusCode, hr.Header, raw, c.redact)
	info.RequestID = apiErr.RequestID
	if d, ok := retryAfter(hr.Header, c.cfg.Now()); ok {
		apiErr.RetryAfter = d
		delay = d
	}
	report(apiErr)
	// x-should-retry: false is the server saying "do not"; honour it. The
	// opposite (true on a 4xx) is ignored: 409s in particular are permanent.
	if retryableStatus(hr.StatusCode) && !strings.EqualFold(hr.Header.Get("x-should-retry"), "false") {
		return nil, apiErr, delay, nil
	}
	return nil, nil, 0, apiErr
}

func requestIDFromBody(raw []byte) string {
	var w struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return ""
	}
	return w.RequestID
}

// backoff is BackoffBase·2^(n-1) capped at BackoffMax, minus up to 25 %
// jitter so that many clients do not retry in lockstep.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.BackoffMax
	if n-1 < 32 {
		if e := c.cfg.BackoffBase << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

// retryAfter reads retry-after-ms (milliseconds) or Retry-After (seconds or
// an HTTP date). Negative or unparsable values are ignored.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < float64(365*24*time.Hour/time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || s > float64(365*24*time.Hour/time.Second) {
			return 0, false
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
