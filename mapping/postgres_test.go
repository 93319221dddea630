package mapping

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// pgStarted is false when TestMain skipped PostgreSQL (fuzzing).
var pgStarted bool

func TestMain(m *testing.M) {
	// The fuzzer re-runs TestMain in each worker process and kills workers
	// when it is done: starting PostgreSQL there is slow and would leak
	// clusters. Fuzz targets need no database.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	pgStarted = true
	pgtest.Main(m)
}

const typesSchema = `
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN email AS text;
CREATE TABLE t (
	id int PRIMARY KEY,
	c_text text, c_varchar varchar(20), c_char char(3), c_name name,
	c_int2 smallint, c_int4 int, c_int8 bigint,
	c_numeric numeric, c_numeric_scale numeric(12,2),
	c_real real, c_double double precision,
	c_bool boolean, c_date date, c_ts timestamp, c_tstz timestamptz,
	c_uuid uuid, c_json json, c_jsonb jsonb, c_bytea bytea,
	c_enum mood, c_domain email,
	c_int_arr int[], c_text_arr text[], c_date_arr date[], c_uuid_arr uuid[],
	c_numeric_arr numeric[], c_jsonb_arr jsonb[], c_enum_arr mood[], c_int_2d int[]
);
INSERT INTO t VALUES
(1, 'hello', 'varchar', 'ab', 'a_name', 12, 1234567, 1234567890123,
 '123.4500', 19.99, 1.5, 0.1, true, '2024-02-29', '2024-02-29 13:14:15.123456',
 '2024-02-29 13:14:15.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1, "two", null]', '"scalar"', '\xdeadbeef',
 'happy', 'x@example.com', '{1,2,3}', '{a,b}', '{2024-01-01}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
 '{1.5,2}', ARRAY['1'::jsonb, '"s"'::jsonb], '{happy,sad}', '{{1,2},{3,4}}'),
(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(3, E'quote" back\\ nl\n tab\t ctl\x01 emoji 😀 ls\u2028', '', '', '', -32768, -2147483648, 9007199254740993,
 'NaN', -0.50, 'NaN', 'Infinity', false, 'infinity', '-infinity',
 'infinity', '00000000-0000-0000-0000-000000000000', 'null', '[{"a":1}]', '',
 'sad', '', '{}', '{NULL,""}', '{NULL}', '{}',
 '{NULL,0.000}', '{}', '{}', '{}'),
(4, 'x', 'x', 'x', 'x', 32767, 2147483647, -9007199254740992,
 '12345678901234567890.5', 0, '1e-7', '1e300', true, '0001-01-01', '9999-12-31 23:59:59.999999',
 '1970-01-01 00:00:00+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"obj": true}', '{"b": [1, 2], "a": "<&>"}', '\x',
 'happy', 'y', '{NULL}', '{"with,comma","quote\""}', '{}', '{}',
 '{1e20,123456789012345.6}', '{}', '{}', '{}'),
(5, 'x', 'x', 'x', 'x', 0, 0, 9223372036854775807,
 '-Infinity', -0.01, '-Infinity', '-0', true, '4713-01-01 BC', '294276-12-31 23:59:59',
 '2000-01-01 00:00:00+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '9007199254740993', 'true', '\x00ff',
 'happy', 'y', '{-1}', '{}', '{}', '{}',
 '{}', '{}', '{}', '{}');
`

// TestPostgresTypes checks, against a real PostgreSQL, both the Go types pgx
// v5 rows.Values() returns for every supported column type and how each is
// encoded, including NULL and the special values (NaN, infinity, 2^53+1).
func TestPostgresTypes(t *testing.T) {
	if !pgStarted {
		t.Skip("PostgreSQL not started while fuzzing")
	}
	dsn := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, typesSchema); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT * FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var cols []Column
	for _, fd := range rows.FieldDescriptions() {
		cols = append(cols, Column{Name: fd.Name, OID: fd.DataTypeOID})
	}
	var data [][]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	// One single-property encoder per column keeps the golden file readable
	// as a table: column, Go type from pgx, JSON on the wire.
	encoders := make([]*Encoder, len(cols))
	for i, c := range cols {
		spec := "v: " + c.Name
		if c.Name == "c_bytea" {
			spec = "v: {column: c_bytea, transform: [encode(base64)]}"
		}
		s := mustSync(t, spec)
		enc, err := s.Compile(cols)
		if err != nil {
			t.Fatalf("compile %s: %v", c.Name, err)
		}
		encoders[i] = enc
	}
	var out strings.Builder
	for _, row := range data {
		fmt.Fprintf(&out, "row %v\n", row[0])
		for i, c := range cols {
			var warns []string
			got, _, err := encoders[i].Append(nil, row, func(w Warning) { warns = append(warns, w.Code) })
			res := string(got)
			if err != nil {
				res = "error: " + err.Error()
			}
			res = strings.TrimSuffix(strings.TrimPrefix(res, `{"default":{"v":`), "}}")
			fmt.Fprintf(&out, "  %-16s %-22T %s", c.Name, row[i], res)
			if len(warns) > 0 {
				fmt.Fprintf(&out, "  warnings: %s", strings.Join(warns, ","))
			}
			out.WriteByte('\n')
		}
	}
	golden(t, "postgres_types", []byte(out.String()))

	// Types without a defined encoding are refused at Compile, with a hint.
	s := mustSync(t, "v: c_interval\n      w: c_time")
	_, err = s.Compile([]Column{{Name: "c_interval", OID: 1186}, {Name: "c_time", OID: 1083}})
	if err == nil || !strings.Contains(err.Error(), "interval (OID 1186)") || !strings.Contains(err.Error(), "time (OID 1083)") {
		t.Errorf("compile of unsupported types: got %v", err)
	}
}
