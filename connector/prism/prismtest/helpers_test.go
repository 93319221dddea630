package prismtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

const (
	team = "2b0f4b5e-6a53-4a58-9f6b-0d5bbf1f7a10"
	key  = "sk_test_secret"
)

var t0 = time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)

// env is one fake on a loopback port plus a plain client.
type env struct {
	t     *testing.T
	ts    *prismtest.TestServer
	clock *prismtest.Clock
	hc    *http.Client
}

func newEnv(t *testing.T, opts prismtest.Options) *env {
	t.Helper()
	clock := prismtest.NewClock(t0)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.APIKey == "" {
		opts.APIKey = key
	}
	if opts.TeamID == "" {
		opts.TeamID = team
	}
	ts := prismtest.NewServer(t, opts)
	// No keep-alive: with a reused connection net/http transparently retries
	// a request carrying Idempotency-Key once when the connection dies, which
	// would hide the fault under test.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	return &env{t: t, ts: ts, clock: clock, hc: hc}
}

type reply struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode body %q: %v", r.body, err)
	}
	return m
}

func (r reply) job(t *testing.T) wireJob {
	t.Helper()
	var j wireJob
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		t.Fatalf("decode job %q: %v", r.body, err)
	}
	return j
}

func (r reply) code(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	code, _ := m["code"].(string)
	return code
}

// Test-side wire types, written from the brief (not shared with the fake).
type wireJob struct {
	JobID     *string      `json:"job_id"`
	Status    string       `json:"status"`
	Total     int          `json:"total"`
	Processed int          `json:"processed"`
	Succeeded int          `json:"succeeded"`
	Failed    int          `json:"failed"`
	CreatedAt string       `json:"created_at"`
	UpdatedAt string       `json:"updated_at"`
	ExpiresAt string       `json:"expires_at"`
	Error     *wireErr     `json:"error"`
	Results   []wireResult `json:"results"`
}

type wireResult struct {
	InputIndex *int     `json:"input_index"`
	ID         *string  `json:"id"`
	Created    bool     `json:"created"`
	Existing   bool     `json:"existing"`
	Updated    bool     `json:"updated"`
	Error      *wireErr `json:"error"`
}

type wireErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type req struct {
	method  string
	path    string // relative to the base URL
	apiKey  *string
	idemKey *string
	header  map[string]string
	body    string
}

func (e *env) do(r req) reply {
	e.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, e.ts.URL+r.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if r.apiKey == nil {
		hr.Header.Set("x-api-key", key)
	} else if *r.apiKey != "" {
		hr.Header.Set("x-api-key", *r.apiKey)
	}
	if r.idemKey != nil {
		hr.Header["Idempotency-Key"] = []string{*r.idemKey}
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := e.hc.Do(hr)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (e *env) mustDo(r req) reply {
	e.t.Helper()
	rep := e.do(r)
	if rep.err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, rep.err)
	}
	return rep
}

// importReq builds an import of object with the given body.
func importReq(object, body string) req {
	return req{path: "/v2/prism/" + team + "/" + object + "/import", body: body}
}

func withKey(r req, k string) req { r.idemKey = &k; return r }

func pollReq(jobID string) req {
	return req{method: http.MethodGet, path: "/v2/prism/" + team + "/imports/" + jobID}
}

// objects renders n objects {"default":{"email":"user<i>@x.test","n":i}}.
func objects(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"default":{"email":"user%d@x.test","n":%d}}`, i, i)
	}
	b.WriteString("]")
	return b.String()
}

func ptr[T any](v T) *T { return &v }

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// httptestServer serves h and closes it when the test ends.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
