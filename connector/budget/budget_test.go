package budget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// memCounter is an in-memory Counter; the checkpoint stores' own
// conformance suite tests the real ones.
type memCounter struct {
	mu   sync.Mutex
	n    map[string]int
	fail error
}

func (c *memCounter) AddRequests(_ context.Context, month string, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.n[month] += n
	return nil
}

func (c *memCounter) Requests(_ context.Context, month string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[month], c.fail
}

func TestAllowStopsAtTheLimitAndResumesNextMonth(t *testing.T) {
	ctx := context.Background()
	c := &memCounter{n: map[string]int{"2026-11": 995}}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	b := New(1000, c, nil)
	b.SetClock(func() time.Time { return now })
	if ok, err := b.Allow(ctx, 3); !ok || err != nil {
		t.Fatalf("995+3 of 1000: allow=%v err=%v", ok, err)
	}
	b.Record(ctx, 3)
	if ok, _ := b.Allow(ctx, 3); ok {
		t.Fatal("998+3 of 1000 allowed")
	}
	if c.n["2026-11"] != 998 {
		t.Fatalf("counter holds %d, want 998", c.n["2026-11"])
	}
	now = time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC)
	if ok, _ := b.Allow(ctx, 3); !ok {
		t.Fatal("a new month did not reset the budget")
	}
}

func TestSharedCountAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	c := &memCounter{n: map[string]int{}}
	a, b := New(10, c, nil), New(10, c, nil)
	for range 6 {
		a.Record(ctx, 1)
	}
	if used, _, _ := b.Used(ctx); used != 6 {
		t.Fatalf("second budget sees %d requests, want the 6 the first recorded", used)
	}
	if ok, _ := b.Allow(ctx, 5); ok {
		t.Fatal("6+5 of 10 allowed")
	}
}

func TestCoalesceFollowsTheMonthsPace(t *testing.T) {
	ctx := context.Background()
	c := &memCounter{n: map[string]int{"2026-11": 500}}
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC) // 30% of November gone
	b := New(1000, c, nil)
	b.SetClock(func() time.Time { return now })
	if !b.Coalesce(ctx) {
		t.Fatal("500 of 1000 used after 30% of the month: should coalesce")
	}
	now = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) // 80% gone
	if b.Coalesce(ctx) {
		t.Fatal("500 of 1000 used after 80% of the month: should not coalesce")
	}
	if New(0, c, nil).Coalesce(ctx) {
		t.Fatal("a disabled budget coalesced")
	}
}

func TestCounterFailureIsReportedNotFatal(t *testing.T) {
	ctx := context.Background()
	c := &memCounter{n: map[string]int{}, fail: errors.New("store down")}
	b := New(10, c, nil)
	b.Record(ctx, 1) // must not panic or block
	if _, err := b.Allow(ctx, 1); err == nil {
		t.Fatal("Allow with an unreadable counter returned no error")
	}
}
