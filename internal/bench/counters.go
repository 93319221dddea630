package bench

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
)

// requestCounter counts the client's HTTP attempts (prism.Config.OnRequest
// is called concurrently).
type requestCounter struct {
	total, imports, polls, async, retries, failed atomic.Int64
}

func (c *requestCounter) observe(_ context.Context, ri prism.RequestInfo) {
	c.total.Add(1)
	switch ri.Op {
	case "import":
		c.imports.Add(1)
		if ri.Status == http.StatusAccepted {
			c.async.Add(1)
		}
	case "poll":
		c.polls.Add(1)
	}
	if ri.Attempt > 1 {
		c.retries.Add(1)
	}
	if ri.Status < 200 || ri.Status > 299 {
		c.failed.Add(1)
	}
}

// batchTimer is a connector.Observer that averages batch durations and
// keeps the time between consecutive commits.
type batchTimer struct {
	mu    sync.Mutex
	n     int
	total time.Duration
	last  time.Time // the previous commit, or the start of the pass
	gaps  []time.Duration
}

func (b *batchTimer) PassFinished(connector.Summary, error) {}
func (b *batchTimer) InFlight(string, int)                  {}
func (b *batchTimer) BatchDone(_ string, r connector.BatchReport) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.total += r.Duration
	b.gaps = append(b.gaps, now.Sub(b.last))
	b.last = now
}

// start marks the start of the pass, from which the first gap counts.
func (b *batchTimer) start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = time.Now()
}

// gapsAfterFirst returns the time to the first commit and the later gaps,
// sorted.
func (b *batchTimer) gapsAfterFirst() (time.Duration, []time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.gaps) == 0 {
		return 0, nil
	}
	return b.gaps[0], slices.Sorted(slices.Values(b.gaps[1:]))
}

func (b *batchTimer) mean() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return 0
	}
	return b.total / time.Duration(b.n)
}

var _ connector.Observer = (*batchTimer)(nil)
