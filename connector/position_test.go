package connector

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// Position texts made from binary values are PostgreSQL's own, byte for
// byte, in the engine's sessions: for the edges of each type (infinity, the
// first and last representable values, years before 1 and after 9999,
// fractions with trailing zeros) and for 20,000 random values of each.
func TestPositionTextIsPostgresText(t *testing.T) {
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	ConfigurePool(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, q := range []string{
		`SELECT v, v::text FROM (VALUES (timestamptz 'infinity'), ('-infinity'), ('4714-11-24 00:00:00+00 BC'),
			('294276-12-31 23:59:59.999999+00'), ('0001-01-01 00:00:00+00'), ('0001-12-31 23:59:59.5+00 BC'),
			('1999-12-31 23:59:59.999999+00'), ('2000-01-01 00:00:00+00'), ('2026-03-01 12:00:00.123450+00'),
			('9999-12-31 23:59:59.1+00'), ('10000-01-01 00:00:00.000001+00')) AS t(v)`,
		`SELECT v, v::text FROM (SELECT timestamptz '2000-01-01 00:00:00+00' + n * interval '1 microsecond' AS v
			FROM (SELECT (random() * 9.4e18 - 2.1e17)::bigint AS n FROM generate_series(1, 20000)) AS r) AS t`,
		`SELECT v, v::text FROM (SELECT timestamptz '2026-01-01 00:00:00+00' + (random() * 1e9)::bigint * interval '1 second' AS v
			FROM generate_series(1, 2000)) AS t`,
		`SELECT v, v::text FROM (VALUES (timestamp 'infinity'), ('-infinity'), ('4714-11-24 00:00:00 BC'),
			('0044-03-15 12:00:00.25 BC'), ('2026-03-01 12:00:00.000100')) AS t(v)`,
		`SELECT v, v::text FROM (SELECT timestamp '2000-01-01 00:00:00' + n * interval '1 microsecond' AS v
			FROM (SELECT (random() * 9.4e18 - 2.1e17)::bigint AS n FROM generate_series(1, 20000)) AS r) AS t`,
		`SELECT v, v::text FROM (VALUES (date 'infinity'), ('-infinity'), ('4714-11-24 BC'), ('5874897-12-31'),
			('0001-01-01'), ('0001-12-31 BC'), ('2026-02-28')) AS t(v)`,
		`SELECT v, v::text FROM (SELECT date '2000-01-01' + (random() * 4000000 - 2400000)::int AS v FROM generate_series(1, 20000)) AS t`,
		`SELECT v, v::text FROM (VALUES (smallint '-32768'), (32767), (0), (-1)) AS t(v)`,
		`SELECT v, v::text FROM (VALUES (integer '-2147483648'), (2147483647), (0), (-7)) AS t(v)`,
		`SELECT v, v::text FROM (VALUES (bigint '-9223372036854775808'), (9223372036854775807), (0), (42)) AS t(v)`,
		`SELECT v, v::text FROM (SELECT (random() * 1.8e19 - 9e18)::bigint AS v FROM generate_series(1, 20000)) AS t`,
	} {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		bad, n := 0, 0
		for rows.Next() {
			n++
			fd, raw := rows.FieldDescriptions()[0], rows.RawValues()
			got, ok := positionText(fd, raw[0])
			if want := string(raw[1]); !ok || got != want {
				if bad++; bad <= 5 {
					t.Errorf("OID %d: positionText = %q (ok %v), PostgreSQL prints %q", fd.DataTypeOID, got, ok, want)
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n == 0 || rows.FieldDescriptions()[0].Format != 1 {
			t.Fatalf("%d rows, format %d: the test compared nothing in binary", n, rows.FieldDescriptions()[0].Format)
		}
	}
	// A value of the wrong width is refused, not misread.
	if _, ok := positionText(pgxFieldOf(t, pool, `SELECT now()`), []byte{1, 2, 3}); ok {
		t.Error("a 3-byte timestamptz was read")
	}
}

func pgxFieldOf(t *testing.T, pool *pgxpool.Pool, sql string) pgconn.FieldDescription {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return rows.FieldDescriptions()[0]
}
