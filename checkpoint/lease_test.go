package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// Two replicas on one database: a sync is held by one of them at a time,
// and the lease passes on when the holder releases it or its session dies.
func TestPostgresLeaseAcrossStores(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	open := func() Store {
		s, err := Open(ctx, "postgres", dsn)
		must(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()

	relA, ok, err := a.TryLock(ctx, "orgs")
	must(t, err)
	if !ok {
		t.Fatal("replica a did not get orgs")
	}
	if _, ok, err := b.TryLock(ctx, "orgs"); err != nil || ok {
		t.Fatalf("replica b got orgs while a holds it: %v, %v", ok, err)
	}
	relB, ok, err := b.TryLock(ctx, "contacts")
	must(t, err)
	if !ok {
		t.Fatal("replica b did not get contacts")
	}
	if _, ok, _ := a.TryLock(ctx, "contacts"); ok {
		t.Fatal("replica a got contacts while b holds it")
	}

	// Release hands over at once.
	relB()
	relA2, ok, err := a.TryLock(ctx, "contacts")
	must(t, err)
	if !ok {
		t.Fatal("contacts not free after b released it")
	}
	relA2()

	// The holder "dies": its session is terminated. PostgreSQL frees the
	// lock when the backend exits, which happens shortly after the signal,
	// so b polls like the next schedule tick would.
	conn, err := pgx.Connect(ctx, dsn)
	must(t, err)
	defer conn.Close(ctx)
	// A released lease closes its connection, and its backend exits a
	// moment later: wait until only a's lease on orgs is left.
	for wait := time.Now().Add(10 * time.Second); ; {
		var holders int
		must(t, conn.QueryRow(ctx, `
			SELECT count(DISTINCT pid) FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND pid <> pg_backend_pid()`).Scan(&holders))
		if holders == 1 {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("%d sessions hold advisory locks 10s after two leases were released, want 1", holders)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var killed int
	must(t, conn.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT pg_terminate_backend(pid) FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND pid <> pg_backend_pid()) AS t`).Scan(&killed))
	if killed != 1 {
		t.Fatalf("terminated %d sessions holding advisory locks, want 1", killed)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		relB2, ok, err := b.TryLock(ctx, "orgs")
		must(t, err)
		if ok {
			relB2()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("orgs still locked 10s after its holder's session was terminated")
		}
		time.Sleep(20 * time.Millisecond) // polling an external process, not synchronising goroutines
	}
	relA() // releasing a lease whose session is gone is harmless

	// The store's pool is unaffected by leases: it still works.
	must(t, a.Commit(ctx, "orgs", "k", pos("1"), "fp", nil, nil))
}

func TestPostgresLeaseDoesNotTakePoolSlots(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	must(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err)
	defer pool.Close()
	s, err := openPostgres(ctx, pool)
	must(t, err)
	rel, ok, err := s.TryLock(ctx, "orgs")
	must(t, err)
	if !ok {
		t.Fatal("TryLock not ok")
	}
	defer rel()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.Load(cctx, "orgs"); err != nil {
		t.Fatalf("store with a one-connection pool cannot work while holding a lease: %v", err)
	}
}

func TestFileReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if _, err := OpenReadOnly(ctx, "file:"+path, ""); !errors.Is(err, os.ErrNotExist) || !errors.Is(err, ErrNoStore) {
		t.Errorf("OpenReadOnly of a missing file = %v, want ErrNotExist and ErrNoStore", err)
	}
	w, err := OpenFile(path)
	must(t, err)
	defer w.Close()
	must(t, w.Commit(ctx, "orgs", "k", pos("7"), "fp", []Reject{{RowKey: []string{"1"}, Code: "c"}}, nil))
	must(t, w.RecordRun(ctx, "orgs", Run{OK: true, Rows: 3}, 10))
	must(t, w.AddRequests(ctx, "2026-11", 9))

	// The writer holds the lock; a read-only store opens anyway.
	r, err := OpenReadOnly(ctx, "file:"+path, "")
	must(t, err)
	st, err := r.Load(ctx, "orgs")
	must(t, err)
	run, ok, err := r.LastRun(ctx, "orgs")
	must(t, err)
	n, err := r.Requests(ctx, "2026-11")
	must(t, err)
	c, err := r.CountRejects(ctx, "orgs")
	must(t, err)
	if !st.Position.Equal(pos("7")) || !ok || run.Rows != 3 || n != 9 || c != 1 {
		t.Errorf("read-only view: state %+v, run %+v %v, requests %d, rejects %d", st, run, ok, n, c)
	}
	for name, err := range map[string]error{
		"Commit":      r.Commit(ctx, "orgs", "k2", pos("8"), "fp", nil, nil),
		"RecordRun":   r.RecordRun(ctx, "orgs", Run{}, 10),
		"AddRequests": r.AddRequests(ctx, "2026-11", 1),
		"Forget":      r.Forget(ctx, "orgs"),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", name, err)
		}
	}
	must(t, r.Close())
	must(t, r.Close())
	if _, err := r.Load(ctx, "orgs"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v, want ErrClosed", err)
	}
	// Closing the reader did not touch the writer's lock.
	if _, err := OpenFile(path); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenFile while the writer is open = %v, want ErrLocked", err)
	}
}
