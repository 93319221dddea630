package bench

import (
	"context"
	"net/http"
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

// batchTimer is a connector.Observer that averages batch durations.
type batchTimer struct {
	mu    sync.Mutex
	n     int
	total time.Duration
}

func (b *batchTimer) PassFinished(connector.Summary, error) {}
func (b *batchTimer) InFlight(string, int)                  {}
func (b *batchTimer) BatchDone(_ string, r connector.BatchReport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.total += r.Duration
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
