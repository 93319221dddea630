package prismtest

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// KindStatus keys request counts by kind and HTTP status (0: no response,
// the connection was dropped or the request abandoned).
type KindStatus struct {
	Kind   Kind
	Status int
}

// Stats are counters since New or the last Reset. Requests are counted when
// they end, so a request held by FaultHang shows up once it is released.
type Stats struct {
	Requests     int                // every request, whatever happened to it (counted on arrival)
	ByKind       map[Kind]int       // requests per kind
	ByStatus     map[int]int        // requests per status (0 = dropped)
	ByKindStatus map[KindStatus]int // requests per kind and status
	Dropped      int                // connections closed without a response
	RateLimited  int                // 429s from RatePerSecond/MonthlyLimit (not injected ones)
	Faults       int                // injected or random faults that fired
	Conflicts    int                // 409 responses
	Replays      int                // responses replayed for an Idempotency-Key

	Imports       int // import requests executed (not replays, not refused)
	SyncImports   int
	AsyncImports  int
	JobsCompleted int
	JobsFailed    int
	Rows          int // objects received by executed imports

	Creates   int // records created
	Updates   int // dedupe matches patched (update_existing)
	Skips     int // dedupe matches skipped
	RowErrors int // rows refused with a per-row error

	BatchDeletes  int // batch/delete requests executed (not replays, not refused)
	BatchUpdates  int // batch/update requests executed
	Deletes       int // records deleted (batch/delete and DELETE by id)
	RecordUpdates int // records patched by batch/update
	Restores      int // deleted records restored

	Polls    int            // successful job polls
	JobPolls map[string]int // successful polls per job id
}

func newStats() Stats {
	return Stats{
		ByKind:       map[Kind]int{},
		ByStatus:     map[int]int{},
		ByKindStatus: map[KindStatus]int{},
		JobPolls:     map[string]int{},
	}
}

func (st Stats) clone() Stats {
	st.ByKind = maps.Clone(st.ByKind)
	st.ByStatus = maps.Clone(st.ByStatus)
	st.ByKindStatus = maps.Clone(st.ByKindStatus)
	st.JobPolls = maps.Clone(st.JobPolls)
	return st
}

// Stats returns a snapshot of the counters (after completing due jobs).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	return s.stats.clone()
}

// LogEntry is one request as the fake saw it. The API key is never logged.
type LogEntry struct {
	RequestID      string
	Time           time.Time // on Options.Now, when the request arrived
	Method         string
	Path           string
	Kind           Kind
	ObjectType     string
	JobID          string // polled job, or job created by an async import
	IdempotencyKey string
	Status         int       // 0 when no response was sent
	Replay         bool      // idempotent replay
	Fault          FaultKind // "" when none fired
	Objects        int       // objects in an executed import
}

// Log returns a copy of the request log, oldest first.
func (s *Server) Log() []LogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// Record is a stored object as the fake holds it. Property values are as
// decoded from JSON: string, json.Number, bool, nil or []any of those.
type Record struct {
	ID         string
	ObjectType string
	Properties map[string]any
	List       json.RawMessage // objects[].list of the last write that had one
	ListID     string          // options.list_id (or crm_id) of the last write that had one
	Updates    int             // times patched by update_existing
	Matches    int             // times matched by dedupe (skipped or patched)
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func (st *objectStore) export(object string, n seq) Record {
	r := st.rec(n)
	return Record{
		ID:         r.id.String(),
		ObjectType: object,
		Properties: decodeProps(st.text.get(r.props)),
		List:       slices.Clone(st.lists[n]),
		ListID:     st.listIDs[r.listID],
		Updates:    int(r.updates),
		Matches:    int(r.matches),
		CreatedAt:  st.times[r.created],
		UpdatedAt:  st.times[r.updated],
	}
}

// Records returns copies of the records of an object type in creation order
// (after completing due jobs), deleted ones left out.
func (s *Server) Records(object string) []Record { return s.export(object, false) }

// export returns copies of the records of an object type that are deleted
// (or not), in creation order, after completing due jobs.
func (s *Server) export(object string, deleted bool) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	st := s.objects[object]
	if st == nil {
		return nil
	}
	var out []Record
	if !deleted {
		out = make([]Record, 0, st.n-st.deleted)
	}
	for n := seq(1); n <= st.n; n++ {
		if st.rec(n).deleted == deleted {
			out = append(out, st.export(object, n))
		}
	}
	return out
}

// Count returns how many live (not deleted) records an object type has.
func (s *Server) Count(object string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	if st := s.objects[object]; st != nil {
		return int(st.n - st.deleted)
	}
	return 0
}

// Record returns one live record by id.
func (s *Server) Record(object, id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	st := s.objects[object]
	if st == nil {
		return Record{}, false
	}
	// Only the canonical spelling is an id, as when ids were kept as strings.
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return Record{}, false
	}
	if n := st.record(u); n != 0 && !st.rec(n).deleted {
		return st.export(object, n), true
	}
	return Record{}, false
}

// Find returns the records whose property slug equals value, compared the
// way case-sensitive dedupe compares (so value may be a string, an int, a
// json.Number or a bool; 42 and "42" are equal). It uses the dedupe index.
func (s *Server) Find(object, slug string, value any) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	st := s.objects[object]
	if st == nil {
		return nil
	}
	switch value.(type) {
	case string, bool, json.Number, nil:
	default:
		// Go numbers compare by their JSON text, as the wire values do.
		b, err := json.Marshal(value)
		if err != nil {
			return nil
		}
		value = json.Number(b)
	}
	key, ok := dedupeValue(value, false)
	if !ok {
		return nil
	}
	var out []Record
	st.eachMatch(st.index(indexKey{slug, false}), []byte(key), func(n seq) bool {
		out = append(out, st.export(object, n))
		return true
	})
	return out
}

// Job describes an async job for tests.
type Job struct {
	ID         string
	ObjectType string
	Status     string
	Total      int
	Processed  int
	Succeeded  int
	Failed     int
	Polls      int
	CreatedAt  time.Time
	DueAt      time.Time // when it completes (or completed)
	ExpiresAt  time.Time
	Expired    bool // expired through ExpireJob or FaultExpireJob
}

// Job returns an async job by id (after completing due jobs). Expired jobs
// are still returned, with Expired or ExpiresAt telling why polls get 404.
func (s *Server) Job(id string) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(s.now())
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, false
	}
	return Job{
		ID: j.id, ObjectType: j.object, Status: j.status,
		Total: j.total, Processed: j.processed, Succeeded: j.succeeded, Failed: j.failed,
		Polls: j.polls, CreatedAt: j.createdAt, DueAt: j.dueAt, ExpiresAt: j.expiresAt,
		Expired: j.expired,
	}, true
}

// Clock is a settable clock for Options.Now, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
