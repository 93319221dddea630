package checkpoint

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgExec runs sql on the database at dsn outside any store.
func pgExec(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func pgHarness() harness {
	return harness{
		newLoc: func(t *testing.T) string { return pgtest.NewDB(t) },
		open: func(t *testing.T, dsn string) (Store, error) {
			return Open(context.Background(), "postgres", dsn)
		},
		dropPosition: func(t *testing.T, dsn, sync string) {
			pgExec(t, dsn, `DELETE FROM prismsync.positions WHERE sync = $1`, sync)
		},
		setVersion: func(t *testing.T, dsn string, v int) {
			pgExec(t, dsn, `INSERT INTO prismsync.schema_version (version) VALUES ($1)`, v)
		},
		openReadOnly: func(t *testing.T, dsn string) (Store, error) {
			return OpenReadOnly(context.Background(), "postgres", dsn)
		},
	}
}

func TestPostgresStore(t *testing.T) { testStore(t, pgHarness()) }

// A read-only store runs no DDL, in sessions that could not write anyway,
// and refuses a schema older than the one it reads instead of migrating it.
func TestPostgresReadOnlySchema(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	if _, err := OpenReadOnly(ctx, "postgres", dsn); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), "schema prismsync") {
		t.Fatalf("OpenReadOnly of a fresh database = %v, want ErrNoStore naming schema prismsync", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	must(t, err)
	defer conn.Close(ctx)
	var schemas int
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'prismsync'`).Scan(&schemas))
	if schemas != 0 {
		t.Fatal("OpenReadOnly created schema prismsync")
	}

	w, err := Open(ctx, "postgres", dsn)
	must(t, err)
	must(t, w.Close())
	r, err := OpenReadOnly(ctx, "postgres", dsn)
	must(t, err)
	var ro string
	must(t, r.(*PGStore).pool.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&ro))
	must(t, r.Close())
	if ro != "on" {
		t.Errorf("read-only store's sessions have default_transaction_read_only = %s", ro)
	}

	pgExec(t, dsn, `DELETE FROM prismsync.schema_version WHERE version = $1`, SchemaVersion())
	if _, err := OpenReadOnly(ctx, "postgres", dsn); !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "older") {
		t.Errorf("OpenReadOnly of an older schema = %v, want ErrUnsupportedVersion saying it is older", err)
	}
	var v int
	must(t, conn.QueryRow(ctx, `SELECT max(version) FROM prismsync.schema_version`).Scan(&v))
	if v != SchemaVersion()-1 {
		t.Errorf("schema version %d after a read-only open, want %d (not migrated)", v, SchemaVersion()-1)
	}
}

func TestPostgresConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	// Many stores racing to create the schema on a fresh database must all
	// succeed, and then work side by side.
	const n = 8
	stores := make([]Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(ctx, "", dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	a, b := stores[0], stores[1]
	must(t, a.Journal(ctx, batch("orgs", "k1", Position{}, pos("1"), "x")))
	must(t, b.Commit(ctx, "orgs", "k1", pos("1"), "fp", nil, nil))
	must(t, a.Commit(ctx, "orgs", "k2", pos("2"), "fp", nil, nil))
	st, err := b.Load(ctx, "orgs")
	must(t, err)
	p, err := a.Pending(ctx, "orgs")
	must(t, err)
	if st.Batches != 2 || !st.Position.Equal(pos("2")) || len(p) != 0 {
		t.Errorf("state %+v, pending %v", st, keys(p))
	}

	var versions int
	conn, err := pgx.Connect(ctx, dsn)
	must(t, err)
	defer conn.Close(ctx)
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM prismsync.schema_version`).Scan(&versions))
	if versions != SchemaVersion() {
		t.Errorf("schema_version has %d rows, want %d (one per migration, applied once)", versions, SchemaVersion())
	}
}

func TestPostgresCommitIsAtomic(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	s, err := Open(ctx, "postgres", dsn)
	must(t, err)
	defer s.Close()
	must(t, s.Journal(ctx, batch("orgs", "k1", Position{}, pos("1"), "x")))
	must(t, s.Commit(ctx, "orgs", "k0", pos("0"), "fp0", []Reject{{RowKey: []string{"r"}, Code: "old"}}, nil))

	// Make the last statement of the next commit fail: a trigger refuses
	// the reject with code 'boom'.
	pgExec(t, dsn, `
		CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.code = 'boom' THEN RAISE EXCEPTION 'boom'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON prismsync.rejects FOR EACH ROW EXECUTE FUNCTION public.boom();`)

	err = s.Commit(ctx, "orgs", "k1", pos("1"), "fp1",
		[]Reject{{RowKey: []string{"new"}, Code: "ok"}, {RowKey: []string{"x"}, Code: "boom"}}, [][]string{{"r"}})
	if err == nil {
		t.Fatal("commit succeeded despite the failing trigger")
	}
	st, err := s.Load(ctx, "orgs")
	must(t, err)
	p, err := s.Pending(ctx, "orgs")
	must(t, err)
	rs, err := s.Rejects(ctx, "orgs", 0)
	must(t, err)
	if !st.Position.Equal(pos("0")) || st.Fingerprint != "fp0" || st.Batches != 1 || len(p) != 1 ||
		len(rs) != 1 || rs[0].Code != "old" {
		t.Errorf("failed commit left changes: state %+v, pending %v, rejects %+v", st, keys(p), rs)
	}
}

func TestPostgresExistingPool(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	must(t, err)
	defer pool.Close()
	s, err := openPostgres(ctx, pool)
	must(t, err)
	must(t, s.Commit(ctx, "orgs", "k", pos("1"), "", nil, nil))
	must(t, s.Close())
	// The pool is the caller's: Close must leave it usable.
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("store Close closed the caller's pool: %v", err)
	}
}

// A role that cannot CREATE may still use a schema that is already current.
func TestPostgresNoDDLWhenCurrent(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	s, err := Open(ctx, "", dsn)
	must(t, err)
	must(t, s.Close())

	if pgtest.Cluster() == nil {
		t.Skip("needs the throwaway cluster (creates a role)")
	}
	role := "ro_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	pgExec(t, dsn, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '`+role+`') THEN CREATE ROLE `+role+` LOGIN; END IF;
	END $$`)
	pgExec(t, dsn, `GRANT USAGE ON SCHEMA prismsync TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA prismsync TO `+role)

	cfg, err := pgxpool.ParseConfig(dsn)
	must(t, err)
	cfg.ConnConfig.User = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err)
	defer pool.Close()
	// The role really cannot create: otherwise this test proves nothing.
	if _, err := pool.Exec(ctx, `CREATE SCHEMA should_fail`); err == nil {
		t.Fatal("role unexpectedly has CREATE on the database")
	}
	s2, err := openPostgres(ctx, pool)
	if err != nil {
		t.Fatalf("open as a role without CREATE: %v", err)
	}
	must(t, s2.Commit(ctx, "orgs", "k", pos("1"), "", nil, nil))
}

func TestPostgresOpenErrorsHideSecrets(t *testing.T) {
	ctx := context.Background()
	const secret = "s3cr3t-Passw0rd"
	for _, dsn := range []string{
		"postgres://prism:" + secret + "@127.0.0.1:1/db?connect_timeout=2", // nothing listens on port 1
		"postgres://prism:" + secret + "@[::1/db",                          // malformed URL
		"host=127.0.0.1 port=1 password=" + secret + " connect_timeout=2",  // key=value form
		"host=127.0.0.1 port=notanumber password='" + secret + "' user=x",  // invalid key=value
	} {
		s, err := Open(ctx, "postgres", dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open succeeded for an unusable DSN")
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}
