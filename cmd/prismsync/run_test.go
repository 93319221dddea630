package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
	"github.com/prismsync/prismsync/mapping"
)

// On the first signal the daemon stops scheduling and gives the in-flight
// batch SHUTDOWN_TIMEOUT; a batch that does not finish by then is abandoned
// without advancing the checkpoint, and stays journaled for the next start,
// which settles it. daemon returns nil (exit 0) either way.
func TestDaemonShutdownAbandonsInFlightBatch(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, title text, changed timestamptz NOT NULL);
		INSERT INTO items SELECT g, 'item ' || g, timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(1, 50) g`); err != nil {
		t.Fatal(err)
	}
	pool, err := openPool(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := checkpoint.Open(ctx, "postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f, findings := mapping.Parse("m.yaml", []byte(`syncs:
  - name: items
    schedule: "@every 1h"
    source: { table: items, key: [id], cursor: changed }
    target: { object: deal }
    properties: { ext: id, title: title }
`))
	if findings.HasErrors() {
		t.Fatal(findings)
	}

	fake := prismtest.New(prismtest.Options{})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	defer fake.Close()
	arrived := make(chan struct{})
	fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultHang, Match: func(ri prismtest.RequestInfo) bool {
		if ri.Kind == prismtest.KindImport {
			close(arrived)
			return true
		}
		return false
	}})
	api, err := prism.New(prism.Config{BaseURL: srv.URL, APIKey: "k", TeamID: uuid.NewString(), RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	newSyncer := func(s *mapping.Sync) *connector.Syncer {
		return &connector.Syncer{Sync: s, DB: pool, Store: store, API: api}
	}
	runPass := func(ctx context.Context, sy *connector.Syncer) (connector.Summary, bool, error) {
		sum, err := sy.Once(ctx)
		return sum, true, err
	}

	dctx, signal := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- daemon(dctx, slog.New(slog.DiscardHandler), 200*time.Millisecond, f.Syncs, newSyncer, runPass, nil, heartbeat{})
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the first pass never sent its batch")
	}
	signal() // SIGTERM while the batch hangs in the API
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon returned %v, want nil (exit 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not give up the hung batch after SHUTDOWN_TIMEOUT")
	}
	st, err := store.Load(ctx, "items")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Position.IsZero() {
		t.Fatalf("abandoned batch advanced the checkpoint to %v", st.Position)
	}
	pending, err := store.Pending(ctx, "items")
	if err != nil || len(pending) != 1 {
		t.Fatalf("journal holds %d batches (err %v), want the abandoned one", len(pending), err)
	}

	// The next start settles it: the same key and bytes, applied once.
	sum, err := newSyncer(f.Syncs[0]).Once(ctx)
	if err != nil || sum.Resumed != 1 || sum.Created != 50 {
		t.Fatalf("restart: summary %+v, err %v: want the journaled batch settled, 50 created", sum, err)
	}
	if n := len(fake.Records("deal")); n != 50 {
		t.Fatalf("fake holds %d deals, want 50", n)
	}
}
