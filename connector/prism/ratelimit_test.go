package prism

import (
	"context"
	"testing"
	"time"
)

func TestWindowLimiter(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		n    int
		per  time.Duration
	}{
		{10, 10, time.Second}, {2.5, 2, 800 * time.Millisecond}, {0.5, 1, 2 * time.Second}, {1, 1, time.Second},
	} {
		l := newRateLimiter(tt.rate)
		if l.n != tt.n || l.per != tt.per {
			t.Errorf("rate %g: %d per %v, want %d per %v", tt.rate, l.n, l.per, tt.n, tt.per)
		}
	}
	if newRateLimiter(-1) != nil || newRateLimiter(0) != nil {
		t.Error("a rate <= 0 must mean no limiter")
	}

	// 10/s on a fake clock: ten starts at once, the 11th waits until the
	// first leaves the window, and never more than 10 in any second.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(10)
	l.now = func() time.Time { return now }
	var starts []time.Time
	for len(starts) < 35 {
		if d := l.reserve(); d > 0 {
			now = now.Add(d)
			continue
		}
		starts = append(starts, now)
		// A poll and the POST it frees come 5 ms apart; then a pause.
		if len(starts)%2 == 0 {
			now = now.Add(5 * time.Millisecond)
		} else {
			now = now.Add(70 * time.Millisecond)
		}
	}
	for i := range starts {
		if i >= 10 && starts[i].Sub(starts[i-10]) < time.Second {
			t.Fatalf("start %d at %v is within 1s of start %d at %v: 11 requests in one second",
				i, starts[i].Sub(starts[0]), i-10, starts[i-10].Sub(starts[0]))
		}
	}
	// The first ten went without waiting: requests that come in pairs are
	// not spaced 100 ms apart as a token bucket of burst 1 would.
	if d := starts[9].Sub(starts[0]); d != 5*70*time.Millisecond+4*5*time.Millisecond {
		t.Errorf("10th start after %v, want 370ms (no waiting)", d)
	}
}

func TestWindowLimiterWaitHonoursContext(t *testing.T) {
	l := newRateLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("second start within the window did not wait for the cancelled context")
	}
	var none *windowLimiter
	if err := none.Wait(context.Background()); err != nil {
		t.Fatalf("nil limiter: %v", err)
	}
}
