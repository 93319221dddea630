package prism

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults applied by New to zero Config fields. These three are exported
// for callers that report or scale them (the benchmark does).
const (
	DefaultRateLimit       = 10 // requests per second, the documented per-key limit
	DefaultFirstPoll       = 2 * time.Second
	DefaultMaxPollInterval = 30 * time.Second
)

// The other defaults of New; Config's field comments name them.
const (
	defaultBaseURL       = "https://developers.micro.so"
	defaultMaxAttempts   = 5
	defaultMaxElapsed    = 10 * time.Minute
	defaultBackoffBase   = 500 * time.Millisecond
	defaultBackoffMax    = 30 * time.Second
	defaultMaxRetryAfter = 5 * time.Minute
	defaultTimeout       = 60 * time.Second
)

const (
	opImport = "import"
	opPoll   = "poll"

	// maxResponseBody bounds how much of a response is read; a complete job
	// of a large batch is well below this.
	maxResponseBody = 64 << 20
)

// Config configures a Client. Zero fields get the defaults named here.
type Config struct {
	BaseURL string // default https://developers.micro.so
	APIKey  string // sent as x-api-key; never logged
	TeamID  string // UUID from Settings → API

	// HTTPClient sends the requests; default has a 60 s timeout. The client
	// is copied, and redirects to another host are refused unless the given
	// client has its own CheckRedirect, because net/http would forward the
	// x-api-key header to any host.
	HTTPClient *http.Client

	// RateLimit is the client-side limit in requests per second for every
	// request (imports, polls, retries): at most that many start in any one
	// second (see windowLimiter); negative disables it. Default
	// DefaultRateLimit.
	RateLimit float64

	// MaxAttempts bounds the attempts of one request (first try + retries);
	// MaxElapsed bounds the time spent on them, including backoff. A retry
	// whose delay would overrun MaxElapsed is not made. Defaults 5 and 10
	// minutes.
	MaxAttempts int
	MaxElapsed  time.Duration
	// Backoff before retry n (n = 1, 2, ...) is BackoffBase·2^(n-1), capped
	// at BackoffMax, minus up to 25 % random jitter. Defaults 500 ms and
	// 30 s.
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter caps how long a server-requested Retry-After is honoured;
	// a longer request ends the retries with the *APIError (RetryAfter set),
	// so the caller can schedule the batch instead of holding a goroutine.
	// Default 5 minutes.
	MaxRetryAfter time.Duration

	// FirstPoll is the delay before the first poll of an async job (raised
	// to the learned typical job duration once jobs have been seen), after
	// which the interval doubles up to MaxPollInterval. Defaults
	// DefaultFirstPoll and DefaultMaxPollInterval.
	FirstPoll, MaxPollInterval time.Duration

	// Sleep waits d or until ctx is done; injectable so tests run instantly.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used for MaxElapsed, HTTP-date Retry-After and learned
	// job durations. Default time.Now.
	Now func() time.Time

	Logger *slog.Logger // default discards
	// OnRequest is called after every HTTP attempt (for metrics) with the
	// context the request was made with, so a caller can find in it what it
	// put there (the sync a request is for). It must be safe for
	// concurrent use.
	OnRequest func(ctx context.Context, info RequestInfo)
	// Meter, when set, is asked before every HTTP attempt (the monthly
	// request budget): an error stops the request before it is made and
	// ends the call with that error, never retried. The returned done is
	// called after the attempt with RequestInfo.Sent.
	Meter func(ctx context.Context) (done func(sent int), err error)
	// UserAgent overrides the default "prismsync/<module version>".
	UserAgent string
}

// RequestInfo describes one HTTP attempt.
type RequestInfo struct {
	Method    string
	Op        string // "import" or "poll"
	Status    int    // 0 when no response arrived
	Err       error  // transport or decode error of this attempt, nil on success
	Duration  time.Duration
	Attempt   int // 1 for the first try
	RequestID string
	// Sent is how often the request was written to a connection: 0 when
	// it never left this machine (connection refused, DNS or TLS failure),
	// so Micro cannot have counted it; 2 when the transport resent it on
	// a connection that died.
	Sent int
}

// Client talks to the import API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	apiKey    string
	teamID    string
	hc        *http.Client
	limiter   *windowLimiter // nil: no limit
	cfg       Config         // defaults applied
	log       *slog.Logger
	userAgent string

	mu       sync.Mutex
	inFlight map[string]struct{} // idempotency keys being sent
	perRow   float64             // learned async job duration per row, in seconds (0: none yet)
	exact    bool                // perRow comes from the server's own job timestamps
}

var objectRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// New validates cfg, applies defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = defaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("prism: config: base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("prism: config: base URL %q: want http(s)://host", cfg.BaseURL)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("prism: config: base URL: must not carry credentials, query or fragment")
	}
	if _, err := uuid.Parse(cfg.TeamID); err != nil {
		return nil, fmt.Errorf("prism: config: team id %q is not a UUID", cfg.TeamID)
	}
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("prism: config: API key is empty")
	}
	for name, d := range map[string]time.Duration{
		"MaxElapsed": cfg.MaxElapsed, "BackoffBase": cfg.BackoffBase, "BackoffMax": cfg.BackoffMax,
		"MaxRetryAfter": cfg.MaxRetryAfter, "FirstPoll": cfg.FirstPoll, "MaxPollInterval": cfg.MaxPollInterval,
	} {
		if d < 0 {
			return nil, fmt.Errorf("prism: config: %s is negative (%s)", name, d)
		}
	}
	if cfg.MaxAttempts < 0 {
		return nil, errors.New("prism: config: MaxAttempts must not be negative")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.MaxElapsed, defaultMaxElapsed)
	def(&cfg.BackoffBase, defaultBackoffBase)
	def(&cfg.BackoffMax, defaultBackoffMax)
	def(&cfg.MaxRetryAfter, defaultMaxRetryAfter)
	def(&cfg.FirstPoll, DefaultFirstPoll)
	def(&cfg.MaxPollInterval, DefaultMaxPollInterval)
	if cfg.MaxPollInterval < cfg.FirstPoll {
		cfg.MaxPollInterval = cfg.FirstPoll
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Timeout = defaultTimeout
	}
	if hc.CheckRedirect == nil {
		hc.CheckRedirect = sameHostRedirect
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "prismsync/" + moduleVersion()
	}
	return &Client{
		base:      base,
		apiKey:    cfg.APIKey,
		teamID:    cfg.TeamID,
		hc:        &hc,
		limiter:   newRateLimiter(cfg.RateLimit),
		cfg:       cfg,
		log:       cfg.Logger,
		userAgent: ua,
		inFlight:  make(map[string]struct{}),
	}, nil
}

var errRedirectRefused = errors.New("refusing redirect")

// sameHostRedirect refuses redirects that would carry x-api-key elsewhere.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return fmt.Errorf("%w to %s://%s: it would leak the API key", errRedirectRefused, req.URL.Scheme, req.URL.Host)
	}
	return nil
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// sleepCtx waits d or until ctx is done, whichever comes first; it is the
// default Config.Sleep and the rate limiter's wait.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Import submits one batch: body (see EncodeImportBodyShared) is POSTed to
// /v2/prism/{teamId}/{object}/import under idempotencyKey, and retried on
// 408, 429, 5xx, network errors and cut-off 2xx bodies with the same key and
// the same bytes. The returned Job is final when the import ran synchronously;
// otherwise it has Status "processing" and an ID to pass to Wait. A job-level
// failure is returned as a Job with Status "failed" (see Job.Err), not as an
// error. Non-retryable answers are *APIError.
func (c *Client) Import(ctx context.Context, object, idempotencyKey string, body []byte) (*Job, error) {
	if !objectRE.MatchString(object) {
		return nil, fmt.Errorf("prism: import: invalid object type %q", object)
	}
	if n := len(idempotencyKey); n == 0 || n > 255 {
		return nil, fmt.Errorf("prism: import: idempotency key must be 1-255 characters, got %d", n)
	}
	// A full json.Valid over a multi-megabyte body cost 8% of a sync's
	// CPU; the body comes from EncodeImportBodyShared, whose output is
	// fuzzed to be valid JSON, so only its outline is checked here.
	if t := bytes.TrimSpace(body); len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' {
		return nil, errors.New("prism: import: body is not a JSON object")
	}
	if !c.claimKey(idempotencyKey) {
		return nil, fmt.Errorf("prism: import %s: %w", idempotencyKey, ErrKeyInUse)
	}
	defer c.releaseKey(idempotencyKey)

	u := c.endpoint("v2", "prism", c.teamID, object, "import")
	resp, err := c.do(ctx, opImport, http.MethodPost, u, body, idempotencyKey)
	if err != nil {
		return nil, err
	}
	j := resp.job
	// Wait schedules its first poll from here, so job durations are
	// learned from here too: timing them from before the POST would add
	// the upload to every sample and keep first polls late for good.
	j.acceptedAt = c.cfg.Now()
	if !j.Terminal() && j.ID == "" {
		// The body is preferred, but Location is the documented pointer.
		j.ID = jobIDFromLocation(resp.header.Get("Location"))
		if j.ID == "" {
			return nil, fmt.Errorf("prism: import: %w: status %q without job_id or Location", ErrUnexpectedResponse, j.Status)
		}
	}
	if !j.Terminal() {
		if d, ok := retryAfter(resp.header, c.cfg.Now()); ok {
			j.pollHint = d
		}
	}
	return j, nil
}

func (c *Client) claimKey(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.inFlight[key]; busy {
		return false
	}
	c.inFlight[key] = struct{}{}
	return true
}

func (c *Client) releaseKey(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inFlight, key)
}

// jobIDFromLocation takes the last path segment of a Location such as
// /v2/prism/{team}/imports/{jobId}; its format is undocumented, so anything
// without an "imports" segment before the id is ignored.
func jobIDFromLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || segs[len(segs)-2] != "imports" {
		return ""
	}
	id, err := url.PathUnescape(segs[len(segs)-1])
	if err != nil {
		return ""
	}
	return id
}

// Job fetches an async import job once (GET /v2/prism/{teamId}/imports/{id}),
// retrying transient failures. A 404 matches ErrJobNotFound. The returned
// Job's Polls is the number of GET attempts made.
func (c *Client) Job(ctx context.Context, jobID string) (*Job, error) {
	if jobID == "" {
		return nil, errors.New("prism: poll: empty job id")
	}
	u := c.endpoint("v2", "prism", c.teamID, "imports", jobID)
	resp, err := c.do(ctx, opPoll, http.MethodGet, u, nil, "")
	if err != nil {
		return nil, err
	}
	resp.job.Polls = resp.attempts
	if resp.job.ID == "" {
		resp.job.ID = jobID
	}
	return resp.job, nil
}

// Wait polls job until it is complete or failed and returns the final Job,
// whose Polls adds the requests spent here to job.Polls. It sleeps before
// each poll: first the expected job duration (what earlier jobs took per
// row, times this job's rows; FirstPoll until jobs have been seen; never
// before a Retry-After sent with the 202). After a learned first poll misses,
// polls follow at 1/8 of it, doubling; otherwise at FirstPoll·2, ·4, ...;
// always capped at MaxPollInterval, because every poll counts against the
// monthly quota.
// A terminal job is returned as is. Bound the total wait with ctx.
func (c *Client) Wait(ctx context.Context, job *Job) (*Job, error) {
	if job == nil {
		return nil, errors.New("prism: wait: nil job")
	}
	if job.Terminal() {
		return job, nil
	}
	if job.ID == "" {
		return nil, fmt.Errorf("prism: wait: job in status %q has no id", job.Status)
	}
	polls := job.Polls
	est, learned := c.firstPollDelay(job)
	// The estimate counts from the 202 (that is how it is learned), not
	// from now: the caller may have spent time in between (recording the
	// job id), which would otherwise make every first poll that much late.
	delay := est
	if !job.acceptedAt.IsZero() {
		delay = max(0, est-c.cfg.Now().Sub(job.acceptedAt))
	}
	next := c.cfg.FirstPoll
	for first := true; ; first = false {
		if err := c.cfg.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("prism: wait for job %s: %w", job.ID, err)
		}
		pollAt := c.cfg.Now()
		cur, err := c.Job(ctx, job.ID)
		if cur != nil {
			polls += cur.Polls
		}
		if err != nil {
			return nil, fmt.Errorf("prism: wait for job %s after %d polls: %w", job.ID, polls, err)
		}
		cur.Polls = polls
		if cur.Terminal() {
			cur.acceptedAt = job.acceptedAt
			c.learn(job, cur.ran, pollAt, first)
			c.log.DebugContext(ctx, "prism: import job finished", "job_id", cur.ID, "status", cur.Status, "polls", polls)
			return cur, nil
		}
		if learned && first {
			// The job runs a little longer than learned: step in small
			// increments of that duration rather than doubling it.
			next = max(est/8, minPollDelay)
		} else {
			next *= 2
		}
		next = min(next, c.cfg.MaxPollInterval)
		delay = next
	}
}

// minPollDelay bounds how soon a learned first poll, or a poll after it,
// may come.
const minPollDelay = 50 * time.Millisecond

// firstPollDelay is when to poll a new job first: at the learned duration
// of a job of its size once jobs have been seen (FirstPoll only until
// then), and never before a Retry-After the 202 carried.
func (c *Client) firstPollDelay(job *Job) (d time.Duration, learned bool) {
	c.mu.Lock()
	perRow := c.perRow
	c.mu.Unlock()
	d = c.cfg.FirstPoll
	if perRow > 0 && job.Total > 0 {
		est := time.Duration(perRow * float64(job.Total) * float64(time.Second)).Round(time.Millisecond)
		d, learned = max(est, minPollDelay), true
	}
	d = max(d, job.pollHint)
	// Never sleep longer than the server keeps a reasonable answer waiting.
	return min(d, c.cfg.MaxRetryAfter), learned
}

// learn keeps a moving average of how long async jobs take per row, so
// that first polls land when a job is likely done: every poll counts against
// the monthly quota, and every poll that comes late holds a slot of the
// pipeline idle.
//
// ran, the server's own created_at..updated_at, is exact: it is used with a
// 2% margin so that a job of the same size is polled just after it ends.
// Without it, pollAt (when the poll that found the job finished was sent)
// is an upper bound of the duration (the poll's own round trip is not the
// job's); when the first poll already found it finished, the sample is
// shaded down by 10% so the estimate comes down when jobs get faster.
func (c *Client) learn(job *Job, ran time.Duration, pollAt time.Time, firstPollHit bool) {
	if job.acceptedAt.IsZero() || job.Total <= 0 {
		return
	}
	took := pollAt.Sub(job.acceptedAt)
	switch {
	case ran > 0:
		took = ran + ran/50
	case firstPollHit:
		took = took * 9 / 10
	}
	if took <= 0 {
		return
	}
	sample := took.Seconds() / float64(job.Total)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perRow == 0 || (ran > 0 && !c.exact) {
		// The first exact sample replaces the estimates that poll timing
		// only bounded.
		c.perRow, c.exact = sample, ran > 0
	} else {
		c.perRow = (c.perRow + sample) / 2
	}
}

func (c *Client) endpoint(segs ...string) string {
	u := *c.base
	esc := make([]string, len(segs))
	for i, s := range segs {
		esc[i] = url.PathEscape(s)
	}
	u.Path = strings.TrimRight(c.base.Path, "/") + "/" + strings.Join(segs, "/")
	u.RawPath = strings.TrimRight(c.base.EscapedPath(), "/") + "/" + strings.Join(esc, "/")
	return u.String()
}

// redact removes the API key from text that came from elsewhere (server
// bodies, transport errors) before it reaches an error or a log line.
func (c *Client) redact(s string) string {
	if c.apiKey == "" || !strings.Contains(s, c.apiKey) {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[REDACTED]")
}

func (c *Client) redactErr(err error) error {
	if err == nil || c.apiKey == "" || !strings.Contains(err.Error(), c.apiKey) {
		return err
	}
	return &redactedError{msg: c.redact(err.Error())}
}

// readBody reads at most maxResponseBody bytes; a short read is reported so
// the attempt is retried.
func readBody(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, maxResponseBody+1))
	if err != nil {
		return nil, err
	}
	if n > maxResponseBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxResponseBody)
	}
	return buf.Bytes(), nil
}
