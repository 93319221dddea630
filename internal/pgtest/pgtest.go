// Package pgtest gives each test its own PostgreSQL database.
//
// A package's TestMain calls Main, which starts one throwaway cluster for the
// test binary (see internal/pgtemp) unless TEST_DATABASE_URL points at a server
// to use instead. NewDB then creates a fresh database per test and drops it
// when the test ends. Without PostgreSQL the tests that need it are skipped,
// except under CI=true, where a missing PostgreSQL fails the run.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prismsync/prismsync/internal/pgtemp"
)

// state is per test binary: Main sets it once before any test runs.
var (
	adminDSN   string
	cluster    *pgtemp.Cluster
	unavailErr error
	counter    atomic.Int64
)

// Main starts (or finds) PostgreSQL, runs the tests and cleans up.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Fuzz workers re-run TestMain but only run fuzz targets, and the fuzzer
	// kills them without letting Main clean up: start nothing there.
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			unavailErr = fmt.Errorf("not started in a fuzz worker")
			return m.Run()
		}
	}
	if dsn := os.Getenv("TEST_DATABASE_URL"); dsn != "" {
		adminDSN = dsn
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := pgtemp.Start(ctx, pgtemp.Options{})
	cancel()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "pgtest: CI=true and PostgreSQL could not be started: %v\n", err)
			return 1
		}
		unavailErr = err
		return m.Run()
	}
	cluster = c
	adminDSN = c.DSN("")
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
	}
	return code
}

// Cluster returns the throwaway cluster Main started, or nil when the tests
// use TEST_DATABASE_URL (restart tests skip then).
func Cluster() *pgtemp.Cluster { return cluster }

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDB creates a database for this test and returns its DSN. The database is
// dropped when the test ends.
func NewDB(t testing.TB) string {
	t.Helper()
	if adminDSN == "" {
		if unavailErr != nil {
			t.Skipf("PostgreSQL unavailable: %v", unavailErr)
		}
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain")
	}
	name := strings.ToLower(t.Name())
	name = nonWord.ReplaceAllString(name, "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%s_%d", os.Getpid(), name, counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := pgtemp.CreateDB(ctx, adminDSN, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminDSN)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return dsn
}
