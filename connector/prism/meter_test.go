package prism

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// The budget is told, per attempt, whether the request left the machine:
// a refused connection is not something Micro can have counted.
func TestMeterSeesWhatWasSent(t *testing.T) {
	s := newServer(t, resetConn, reply(200, syncOK))
	var mu sync.Mutex
	var sent []int
	c, _, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.Meter = func(context.Context) (func(int), error) {
			return func(n int) { mu.Lock(); sent = append(sent, n); mu.Unlock() }, nil
		}
	})
	if _, err := c.Import(context.Background(), "organization", "key-1", testBody()); err != nil {
		t.Fatal(err)
	}
	// The reset came after the request was written: it may have reached
	// Micro, so it counts as sent; the retry too.
	if len(sent) != 2 || sent[0] != 1 || sent[1] != 1 {
		t.Fatalf("sent per attempt = %v, want [1 1]", sent)
	}

	// Nothing listens: the connection is refused, nothing is written.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sent = nil
	var infos []RequestInfo
	c2, err := New(Config{BaseURL: "http://" + addr, APIKey: testKey, TeamID: testTeam, RateLimit: -1, MaxAttempts: 2,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Meter: func(context.Context) (func(int), error) {
			return func(n int) { mu.Lock(); sent = append(sent, n); mu.Unlock() }, nil
		},
		OnRequest: func(_ context.Context, i RequestInfo) { infos = append(infos, i) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Import(context.Background(), "organization", "key-2", testBody()); err == nil {
		t.Fatal("import to a closed port succeeded")
	}
	if len(sent) != 2 || sent[0] != 0 || sent[1] != 0 || infos[0].Sent != 0 {
		t.Fatalf("sent per refused attempt = %v (infos %+v), want [0 0]", sent, infos)
	}
}

// A meter that refuses stops the request before it is made, without retries.
func TestMeterRefusalStopsTheRequest(t *testing.T) {
	s := newServer(t) // any request fails the test
	spent := errors.New("budget spent")
	calls := 0
	c, _, _ := newTestClient(t, s, func(cfg *Config) {
		cfg.Meter = func(context.Context) (func(int), error) { calls++; return nil, spent }
	})
	_, err := c.Import(context.Background(), "organization", "key-1", testBody())
	if !errors.Is(err, spent) || calls != 1 {
		t.Fatalf("Import with a refusing meter: %v after %d calls; want the meter's error after 1", err, calls)
	}
	if _, err := c.Job(context.Background(), "job-1"); !errors.Is(err, spent) {
		t.Fatalf("poll with a refusing meter: %v", err)
	}
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}
