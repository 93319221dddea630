package connector

import (
	"context"
	"encoding/binary"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// The decoder's contract is "what rows.Values() returns", so every test here
// decodes each row twice from the same raw bytes, once with the decoder and
// once with Values, and compares.

const everythingSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE everything (
	id        bigint PRIMARY KEY,
	i2        smallint,
	i4        integer,
	i8        bigint,
	f4        real,
	f8        double precision,
	flag      boolean,
	name      text,
	email     text,
	vc        varchar(20),
	bp        char(6),
	nm        name,
	uid       uuid,
	day       date,
	ts        timestamp,
	tstz      timestamptz,
	amount    numeric(14,2),
	num       numeric,
	tags      text[],
	ints      int4[],
	bigs      int8[],
	nums      numeric[],
	days      date[],
	stamps    timestamptz[],
	naive     timestamp[],
	uids      uuid[],
	flags     boolean[],
	floats    float8[],
	grid      int4[],
	doc       jsonb,
	raw_json  json,
	span      interval,
	addr      inet,
	feeling   mood,
	feelings  mood[],
	seats     positive,
	blob      bytea,
	at_time   time,
	cash      money,
	ch        "char"
);
INSERT INTO everything (id) VALUES (1);
INSERT INTO everything VALUES (2,
	12, 1234, 1234567890123, 1.5, 3.141592653589793, true,
	'Ada Lovelace', 'ada@example.com', 'short', 'ab', 'pg_name',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+05:30',
	1234.50, 123.4500,
	'{a,b,"c d"}', '{1,NULL,3}', '{9223372036854775807,-9223372036854775808}', '{1.5,NaN,-2,0,Infinity,-Infinity}',
	'{2024-01-01,infinity,NULL}', '{"2024-01-01 00:00:00+00",-infinity}', '{"2024-01-01 12:00:00.5",infinity}',
	'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{t,f,NULL}', '{1.5,NaN,-Infinity}', '{{1,2},{3,4}}',
	'{"a": [1, 2.5, "x", null, true], "b": {"c": 1e300}}', '[1,"two"]', '1 year 2 mons 3 days 04:05:06.789',
	'192.168.0.1/24', 'happy', '{sad,happy}', 3, '\x00ff', '12:34:56.789', 12.34, 'x');
INSERT INTO everything VALUES (3,
	-32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity', false,
	'', '', '', '', '',
	'00000000-0000-0000-0000-000000000000', 'infinity', '-infinity', 'infinity',
	'NaN', 'Infinity',
	'{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
	'{}', 'null', '0', '::1', 'sad', '{}', 1, '', '00:00', 0, ' ');
INSERT INTO everything VALUES (4,
	32767, 2147483647, 9223372036854775807, 'Infinity', '-0', true,
	'unicode ✓ 日本語 — 🚀', ' Spaced@EXAMPLE.com ', 'x', 'abcdef', 'a_name',
	'ffffffff-ffff-ffff-ffff-ffffffffffff', '4713-01-01 BC', '4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00',
	0.00, '-Infinity',
	'{"",NULL,"with,comma","quo\"te"}', '{NULL}', '{0}', '{0.00,100,1e20,-0.001,NULL}',
	'{-infinity,"4713-01-01 BC",5874897-12-31}', '{infinity,"1999-12-31 23:59:59.999999+00"}', '{"1999-12-31 23:59:59.999999"}',
	'{NULL,NULL}', '{t}', '{-0,1e308}', '{{NULL,1},{2,NULL}}',
	'[]', '{"k": "v"}', '-1 days -00:00:00.000001', '10.0.0.0/8', 'ok', '{ok,NULL}', 2147483647, '\x', '23:59:59.999999', -92233720368547758.08, 'z');
INSERT INTO everything VALUES (5,
	0, 0, 0, 0, 1e308, NULL,
	'x', NULL, NULL, NULL, NULL,
	NULL, '5874897-12-31', '294276-12-31 23:59:59.999999', '1900-01-01 00:00:00.000001+00',
	0.01, '1234567890123456789012345678901234567890.123456789',
	'{{a,b},{c,d}}', '[0:2]={1,2,3}', NULL, '{1234567890123456789012.5}', NULL, NULL, NULL, NULL, NULL, NULL, '{{{1}}}',
	'"a string"', '3.5', '-178000000 years', 'fe80::1/64', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO everything VALUES (6,
	255, 256, -1, -1.5, 2.5e-308, true,
	'trailing  ', NULL, 'v', 'z', NULL,
	NULL, '2000-01-01', '2000-01-01 00:00:00', '1970-01-01 00:00:00+00',
	100000000.00, 100000000,
	NULL, NULL, NULL, '{0.0000001,123456789012345678.9,99999999999999999999}', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
`

// everythingQuery also selects position columns the way source does.
const everythingQuery = `SELECT *, (tstz)::text AS cursor_text, (id)::text AS key_text, 'unknown literal' AS lit
FROM everything ORDER BY id`

func TestRowDecoderMatchesValues(t *testing.T) {
	conn := decodeTestConn(t, everythingSchema)
	modes := []struct {
		name string
		opts []any
	}{
		{"default formats", nil},
		{"all text", []any{pgx.QueryResultFormats{pgx.TextFormatCode}}},
		{"all binary", []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}},
		{"simple protocol", []any{pgx.QueryExecModeSimpleProtocol}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			dec := compareWithValues(t, conn, everythingQuery, mode.opts...)
			if mode.name == "default formats" {
				// The comparison proves little if everything fell back
				// to DecodeValue: check the fast paths were taken.
				assertKinds(t, dec, map[string]decodeKind{
					"id": decodeInt8, "i2": decodeInt2, "i4": decodeInt4, "f4": decodeFloat4, "f8": decodeFloat8,
					"flag": decodeBool, "name": decodeText, "vc": decodeText, "bp": decodeText, "nm": decodeText,
					"uid": decodeUUID, "day": decodeDate, "ts": decodeTimestamp, "tstz": decodeTimestamptz,
					"amount": decodeNumeric, "tags": decodeArray, "doc": decodeCodec, "feeling": decodeUnknownText,
					"key_text": decodeText, "lit": decodeText,
				})
				for _, c := range dec.cols {
					switch c.name {
					case "tags", "ints", "bigs", "nums", "days", "stamps", "naive", "uids", "flags", "floats":
						if c.elem == nil {
							t.Errorf("column %q: array elements have no direct path", c.name)
						}
					}
				}
			}
		})
	}
	t.Run("session time zone", func(t *testing.T) {
		// Binary timestamps do not depend on it, but the ::text position
		// columns and every text-format value do.
		for _, tz := range []string{"Asia/Kathmandu", "America/St_Johns"} {
			if _, err := conn.Exec(context.Background(), "SET TimeZone = '"+tz+"'"); err != nil {
				t.Fatal(err)
			}
			compareWithValues(t, conn, everythingQuery)
			compareWithValues(t, conn, everythingQuery, pgx.QueryResultFormats{pgx.TextFormatCode})
		}
	})
}

// TestRowDecoderScanLocation registers timestamp codecs with a ScanLocation,
// as an application may: the decoder must honour the connection's codecs,
// elements of arrays included.
func TestRowDecoderScanLocation(t *testing.T) {
	conn := decodeTestConn(t, everythingSchema)
	if _, err := conn.Exec(context.Background(), "SET TimeZone = 'Asia/Kathmandu'"); err != nil {
		t.Fatal(err)
	}
	m := conn.TypeMap()
	m.RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.FixedZone("UTC+9", 9*60*60)}})
	m.RegisterType(&pgtype.Type{Name: "timestamp", OID: pgtype.TimestampOID,
		Codec: &pgtype.TimestampCodec{ScanLocation: time.FixedZone("UTC-3:30", -(3*60+30)*60)}})
	dec := compareWithValues(t, conn, everythingQuery)
	assertKinds(t, dec, map[string]decodeKind{"ts": decodeTimestamp, "tstz": decodeTimestamptz})
	compareWithValues(t, conn, everythingQuery, pgx.QueryResultFormats{pgx.TextFormatCode})
}

// TestRowDecoderNumerics compares thousands of numerics of every size and
// scale, since the int64 shortcut re-implements pgx's arithmetic.
func TestRowDecoderNumerics(t *testing.T) {
	conn := decodeTestConn(t, "")
	const q = `
WITH v AS (
	SELECT i,
		((i::bigint * 104729) % 1000000007)::numeric * 10::numeric ^ ((i % 41) - 20) AS n
	FROM generate_series(1, 4000) AS i
)
SELECT n, -n, round(n, i % 9), n::numeric(50, 10), trunc(n), n * 0, (n * 10::numeric ^ (i % 25))::numeric(80, 4),
	ARRAY[n, -n, round(n, i % 5), NULL, 0::numeric(10, 3)],
	(i % 10000)::numeric / 10::numeric ^ (i % 30)
FROM v ORDER BY i`
	compareWithValues(t, conn, q)
	compareWithValues(t, conn, `SELECT x::numeric, ARRAY[x::numeric] FROM unnest(ARRAY[
		'0', '0.00', '-0.00', '1', '-1', '10', '100', '1000', '10000', '100000000', '1e20', '1e-20', '0.1', '0.01',
		'0.0001', '0.00001', '1.10', '123.4500', '-999999999999.99', '9999999999999999', '99999999999999999',
		'999999999999999999', '9223372036854775807', '9223372036854775808', '-9223372036854775808',
		'0.9223372036854775807', '92233720368547758.07', '1e131071', '1e-16383', 'NaN', 'Infinity', '-Infinity'
	]) AS x`)
}

func TestRowDecoderErrorsNameTheColumn(t *testing.T) {
	m := pgtype.NewMap()
	for _, tc := range []struct {
		oid uint32
		src []byte
	}{
		{pgtype.Int4OID, []byte{1, 2, 3}},
		{pgtype.Int8OID, []byte{1}},
		{pgtype.BoolOID, []byte{1, 1}},
		{pgtype.UUIDOID, []byte{1, 2}},
		{pgtype.DateOID, []byte{0x7f, 0xff, 0xff, 0xfe}}, // beyond the last date
		{pgtype.NumericOID, []byte{0, 2, 0, 0, 0, 0, 0, 0, 0}},
		{pgtype.TextArrayOID, []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 9}},
	} {
		dec := newRowDecoder(m, []pgconn.FieldDescription{{Name: "seats", DataTypeOID: tc.oid, Format: pgtype.BinaryFormatCode}})
		_, err := dec.decode([][]byte{tc.src})
		dt, _ := m.TypeForOID(tc.oid)
		_, want := dt.Codec.DecodeValue(m, tc.oid, pgtype.BinaryFormatCode, tc.src)
		if err == nil || want == nil {
			t.Errorf("OID %d % x: decoder error %v, DecodeValue error %v; want both to fail", tc.oid, tc.src, err, want)
			continue
		}
		if !strings.Contains(err.Error(), `column "seats"`) || !strings.Contains(err.Error(), want.Error()) {
			t.Errorf("OID %d: error %q should name the column and carry %q", tc.oid, err, want)
		}
	}
}

// FuzzRowDecoder feeds arbitrary bytes as a binary value of each type with a
// direct path: the decoder must agree with the codec's DecodeValue, value for
// value, and fail exactly when it fails.
func FuzzRowDecoder(f *testing.F) {
	m := pgtype.NewMap()
	oids := []uint32{pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.Float4OID, pgtype.Float8OID,
		pgtype.BoolOID, pgtype.TextOID, pgtype.UUIDOID, pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID,
		pgtype.NumericOID, pgtype.TextArrayOID, pgtype.Int4ArrayOID, pgtype.DateArrayOID,
		pgtype.TimestamptzArrayOID, pgtype.BoolArrayOID, pgtype.UUIDArrayOID, pgtype.Float8ArrayOID}
	seed := func(oid uint32, v any) {
		buf, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			f.Fatalf("encode %v as OID %d: %v", v, oid, err)
		}
		f.Add(uint8(slices.Index(oids, oid)), buf)
	}
	for _, s := range []string{"0", "1", "-1.5", "123.4500", "100000000", "100000000000000000000", "0.000001", "NaN", "Infinity",
		"9999999999999999.99", "-0.01", "1234567890123456789012.5"} {
		var n pgtype.Numeric
		if err := n.Scan(s); err != nil {
			f.Fatal(err)
		}
		seed(pgtype.NumericOID, n)
	}
	seed(pgtype.Int2OID, int16(-2))
	seed(pgtype.Int4OID, int32(1<<30))
	seed(pgtype.Int8OID, int64(math.MinInt64))
	seed(pgtype.Float4OID, float32(1.5))
	seed(pgtype.Float8OID, math.Inf(-1))
	seed(pgtype.BoolOID, true)
	seed(pgtype.TextOID, "héllo")
	seed(pgtype.UUIDOID, [16]byte{1, 2, 3})
	seed(pgtype.DateOID, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))
	seed(pgtype.TimestampOID, time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC))
	seed(pgtype.TimestamptzOID, pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true})
	seed(pgtype.TextArrayOID, []string{"a", "", "c"})
	seed(pgtype.Int4ArrayOID, []any{int32(1), nil, int32(3)})
	seed(pgtype.DateArrayOID, []any{})
	seed(pgtype.TimestamptzArrayOID, [][]time.Time{{time.Unix(0, 1000)}, {time.Unix(1, 0)}})
	f.Fuzz(func(t *testing.T, which uint8, src []byte) {
		oid := oids[int(which)%len(oids)]
		dt, _ := m.TypeForOID(oid)
		if oid == pgtype.NumericOID && len(src) >= 8 {
			// pgx scales a numeric one big.Int multiplication or division
			// per decimal digit of weight and scale: quadratic, seconds
			// for the extremes, which the fuzzer then reports as a hang.
			// The int64 shortcut gives up long before such sizes.
			weight, dscale := int16(binary.BigEndian.Uint16(src[2:])), int16(binary.BigEndian.Uint16(src[6:]))
			if weight > 1000 || weight < -1000 || dscale > 1000 {
				return
			}
		}
		dec := newRowDecoder(m, []pgconn.FieldDescription{{Name: "c", DataTypeOID: oid, Format: pgtype.BinaryFormatCode}})
		got, err := dec.decode([][]byte{src})
		want, wantErr := dt.Codec.DecodeValue(m, oid, pgtype.BinaryFormatCode, src)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("OID %d % x: decoder error %v, DecodeValue error %v", oid, src, err, wantErr)
		}
		if err == nil && !sameValue(got[0], want) {
			t.Fatalf("OID %d % x: decoder %#v, DecodeValue %#v", oid, src, got[0], want)
		}
	})
}

// BenchmarkDecodePage reads a page of 5,000 rows shaped like prismsync's
// benchmark table (plus the ::text position columns source selects) with
// rows.Values() and with the decoder. "query" includes running the query and
// reading the rows off the wire; "decode" decodes captured raw rows only,
// Values' way (Codec.DecodeValue per value) or the decoder's.
func BenchmarkDecodePage(b *testing.B) {
	const rowsPerPage = 5000
	conn := decodeTestConn(b, `
CREATE TABLE customers (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	email      text,
	seats      integer,
	revenue    numeric(14,2),
	active     boolean,
	signed_up  date,
	updated_at timestamptz NOT NULL,
	tags       text[],
	external   uuid
);
INSERT INTO customers
SELECT i, 'Customer ' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,
	i % 500, round((i * 37.17)::numeric % 1000000, 2), i % 3 = 0, date '2020-01-01' + i % 1500,
	timestamptz '2024-01-01 00:00:00+00' + i * interval '73.456789 seconds',
	CASE i % 4 WHEN 0 THEN '{}' WHEN 1 THEN ARRAY['vip'] ELSE ARRAY['tag' || i % 7, 'emea', 'b2b'] END,
	md5(i::text)::uuid
FROM generate_series(1, 5000) AS i;
ANALYZE customers;`)
	const q = `SELECT src.id, src.name, src.email, src.seats, src.revenue, src.active, src.signed_up, src.updated_at,
	src.tags, src.external, (src.updated_at)::text, (src.id)::text
FROM customers AS src ORDER BY src.updated_at, src.id LIMIT 5000`
	ctx := context.Background()

	perRow := func(b *testing.B, page func()) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for b.Loop() {
			page()
		}
		runtime.ReadMemStats(&after)
		rows := float64(b.N * rowsPerPage)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/rows, "allocs/row")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/rows, "B/row")
	}
	readPage := func(b *testing.B, decode func(pgx.Rows) ([]any, error)) {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			if _, err := decode(rows); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != rowsPerPage {
			b.Fatalf("read %d rows: %v", n, err)
		}
	}
	b.Run("query/Values", func(b *testing.B) {
		perRow(b, func() { readPage(b, func(r pgx.Rows) ([]any, error) { return r.Values() }) })
	})
	b.Run("query/decoder", func(b *testing.B) {
		perRow(b, func() {
			var dec *rowDecoder
			readPage(b, func(r pgx.Rows) ([]any, error) {
				if dec == nil {
					dec = newRowDecoder(r.Conn().TypeMap(), r.FieldDescriptions())
				}
				return dec.decode(r.RawValues())
			})
		})
	})

	// Capture the page's raw bytes once for the decode-only comparison.
	var raw [][][]byte
	var fds []pgconn.FieldDescription
	readPage(b, func(r pgx.Rows) ([]any, error) {
		fds = r.FieldDescriptions()
		row := make([][]byte, len(r.RawValues()))
		for i, v := range r.RawValues() {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		raw = append(raw, row)
		return nil, nil
	})
	m := conn.TypeMap()
	b.Run("decode/Values", func(b *testing.B) {
		perRow(b, func() {
			for _, row := range raw {
				vals := make([]any, 0, len(fds))
				for i, fd := range fds {
					// The body of (*baseRows).Values for a known OID.
					if row[i] == nil {
						vals = append(vals, nil)
						continue
					}
					dt, _ := m.TypeForOID(fd.DataTypeOID)
					v, err := dt.Codec.DecodeValue(m, fd.DataTypeOID, fd.Format, row[i])
					if err != nil {
						b.Fatal(err)
					}
					vals = append(vals, v)
				}
				// Keep the decoded row, as Values' caller would.
				runtime.KeepAlive(vals)
			}
		})
	})
	b.Run("decode/decoder", func(b *testing.B) {
		perRow(b, func() {
			dec := newRowDecoder(m, fds)
			for _, row := range raw {
				if _, err := dec.decode(row); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// decodeTestConn opens one connection (so session settings and registered
// types stay put) to a fresh database with the given schema.
func decodeTestConn(tb testing.TB, schema string) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDB(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	if schema != "" {
		if _, err := conn.Exec(ctx, schema); err != nil {
			tb.Fatalf("schema: %v", err)
		}
	}
	return conn
}

// compareWithValues runs the query and checks, row by row and column by
// column, that the decoder returns exactly what rows.Values() returns for the
// same raw bytes, or fails where Values fails. It returns the decoder it used.
func compareWithValues(t *testing.T, conn *pgx.Conn, sql string, args ...any) *rowDecoder {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var dec *rowDecoder
	n := 0
	for rows.Next() {
		fds := rows.FieldDescriptions()
		if dec == nil {
			dec = newRowDecoder(rows.Conn().TypeMap(), fds)
		}
		got, decErr := dec.decode(rows.RawValues())
		want, err := rows.Values()
		if (decErr != nil) != (err != nil) {
			t.Fatalf("row %d: decoder error %v, Values error %v", n, decErr, err)
		}
		if err != nil {
			t.Logf("row %d: both fail: %v", n, decErr)
			return dec
		}
		for i := range want {
			if !sameValue(got[i], want[i]) {
				t.Errorf("row %d, column %q (OID %d, format %d): decoder %#v (%T), Values %#v (%T)",
					n, fds[i].Name, fds[i].DataTypeOID, fds[i].Format, got[i], got[i], want[i], want[i])
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("query returned no rows")
	}
	return dec
}

// sameValue is reflect.DeepEqual, except that a NaN equals a NaN and a
// float's sign must match (DeepEqual uses ==, for which NaN != NaN and
// -0 == 0).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y)) && math.Signbit(x) == math.Signbit(y)
	case float32:
		y, ok := b.(float32)
		return ok && sameValue(float64(x), float64(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func assertKinds(t *testing.T, dec *rowDecoder, want map[string]decodeKind) {
	t.Helper()
	seen := 0
	for _, c := range dec.cols {
		if k, ok := want[c.name]; ok {
			seen++
			if c.kind != k {
				t.Errorf("column %q (OID %d, format %d) decodes with kind %d, want %d", c.name, c.oid, c.format, c.kind, k)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d columns to check", seen, len(want))
	}
}
