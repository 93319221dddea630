package connector_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// Passes against an unreachable Micro spend none of the month's budget:
// a request that never left this machine cannot have been counted there.
func TestUnreachableAPISpendsNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 50) g`)
	clock := prismtest.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	b := budget.New(e.store, budget.Config{Limit: 1000, Reserve: budget.DefaultReserve, Now: clock.Now})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there: every connection is refused
	api, err := prism.New(prism.Config{BaseURL: closed, APIKey: "k", TeamID: e.team, RateLimit: -1, MaxAttempts: 3,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }, Meter: b.Meter})
	if err != nil {
		t.Fatal(err)
	}
	sy := e.syncer(mappingFor(t, 100, true))
	sy.API, sy.Budget = api, b
	for pass := range 3 {
		if _, err := sy.Once(ctx); err == nil {
			t.Fatalf("pass %d against a closed port succeeded", pass)
		}
		if n := e.requestsIn("2026-12"); n != 0 {
			t.Fatalf("after pass %d against an unreachable API the month counts %d requests, want 0", pass, n)
		}
	}
	// Micro comes back: the journaled batch goes out, counted as Micro saw it.
	sy.Budget = e.withBudget(t, clock, 1000, budget.DefaultReserve)
	sy.API = e.api
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkFake()
	if got, want := e.requestsIn("2026-12"), e.fake.Stats().Requests; got != want || got == 0 {
		t.Fatalf("the month counts %d requests, Micro saw %d", got, want)
	}
}
