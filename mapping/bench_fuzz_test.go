package mapping

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

var benchCols = []Column{
	{Name: "id", OID: pgtype.Int8OID},
	{Name: "name", OID: pgtype.TextOID},
	{Name: "email", OID: pgtype.VarcharOID},
	{Name: "revenue", OID: pgtype.NumericOID},
	{Name: "score", OID: pgtype.Float8OID},
	{Name: "active", OID: pgtype.BoolOID},
	{Name: "founded", OID: pgtype.DateOID},
	{Name: "updated_at", OID: pgtype.TimestamptzOID},
	{Name: "uid", OID: pgtype.UUIDOID},
	{Name: "tags", OID: pgtype.TextArrayOID},
}

// BenchmarkEncode measures a 10-column mixed row. Nine properties take the
// fast path; email is trimmed and lower-cased and is the dedupe key, which
// is where the allocations are.
func BenchmarkEncode(b *testing.B) {
	s := mustSync(b, "id: id\n      name: name\n      email: {column: email, transform: [trim, lower]}\n"+
		"      revenue: revenue\n      score: score\n      active: active\n      founded: founded\n"+
		"      updated_at: updated_at\n      uid: uid\n      tags: tags",
		"    target: {dedupe_by: id}\n")
	e, err := s.Compile(benchCols)
	if err != nil {
		b.Fatal(err)
	}
	row := []any{int64(123456), "Acme \"Widgets\" Ltd", " Sales@Acme.example ", num(1234567, -2), 4.25, true,
		time.Date(1999, 3, 4, 0, 0, 0, 0, time.UTC), time.Date(2024, 5, 6, 7, 8, 9, 123000, time.UTC), uuidBytes,
		[]any{"b2b", "emea"}}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := e.Append(buf[:0], row, nil)
		if err != nil {
			b.Fatal(err)
		}
		buf = out
	}
}

// BenchmarkEncodeFastOnly is the same row with only bare columns and no
// dedupe: the zero-allocation path.
func BenchmarkEncodeFastOnly(b *testing.B) {
	s := mustSync(b, "id: id\n      name: name\n      email: email\n      revenue: revenue\n      score: score\n"+
		"      active: active\n      founded: founded\n      updated_at: updated_at\n      uid: uid\n      tags: tags")
	e, err := s.Compile(benchCols)
	if err != nil {
		b.Fatal(err)
	}
	row := []any{int64(123456), "Acme", "sales@acme.example", num(1234567, -2), 4.25, true,
		time.Date(1999, 3, 4, 0, 0, 0, 0, time.UTC), time.Date(2024, 5, 6, 7, 8, 9, 123000, time.UTC), uuidBytes,
		[]any{"b2b", "emea"}}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, _, _ = e.Append(buf[:0], row, nil)
	}
}

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, must return
// a File exactly when there are no errors, and every finding must carry a
// position.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/valid.yaml", "testdata/invalid.yaml", "testdata/example.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("syncs:\n  - name: a\n    source: {table: t, key: id, cursor: c}\n    properties: {x: {template: \"{a}{{b}}\", transform: [\"split(,)\", \"join(;)\"]}}\n"))
	f.Add([]byte("syncs: &a [*a]\n"))
	f.Add([]byte(relationsFile))
	f.Add([]byte("syncs:\n  - {name: a, source: {table: t, key: [k, l], cursor: c}, properties: {x: {ref: b, columns: [k, l]}}}\n  - {name: b, source: {table: t, key: id, cursor: c}, properties: {y: {ref: a, column: z}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, fs := Parse("fuzz.yaml", data)
		if (file == nil) != fs.HasErrors() {
			t.Fatalf("file nil=%v but HasErrors=%v", file == nil, fs.HasErrors())
		}
		for _, x := range fs {
			if x.Line < 1 {
				t.Fatalf("finding without a line: %s", x)
			}
		}
		if file != nil {
			for _, s := range file.Syncs {
				_ = s.Fingerprint()
				_ = s.Columns()
			}
			if got := Order(file.Syncs); len(got) != len(file.Syncs) {
				t.Fatalf("Order lost syncs: %d of %d", len(got), len(file.Syncs))
			}
		}
	})
}

// FuzzEncode drives the encoder with arbitrary text, numbers and bytes
// through a mapping that exercises transforms, maps and coercions. The
// output must always be valid JSON, and on error dst must be unchanged. No
// text converts to a number, a datetime and a boolean at once, so the full
// mapping always fails at one of its coercions; the same row also goes
// through the mapping without them and through each coercion alone, so
// that successful encodings are checked too.
func FuzzEncode(f *testing.F) {
	for _, tc := range typeCases() {
		if s, ok := tc.val.(string); ok {
			f.Add(s, int64(0), 0.0, []byte(nil), "")
		}
	}
	f.Add(" Ada ", int64(1<<53+1), 1e300, []byte{0xff}, "a,b")
	f.Add("2024-01-01", int64(-1), math.Copysign(0, -1), []byte("x"), "\xff,\u2028")
	f.Add("42", int64(0), math.Inf(1), []byte{}, "")
	f.Add("yes", int64(0), math.NaN(), []byte(nil), "a")
	cols := []Column{{Name: "t", OID: pgtype.TextOID}, {Name: "i", OID: pgtype.Int8OID}, {Name: "f", OID: pgtype.Float8OID},
		{Name: "b", OID: pgtype.ByteaOID}, {Name: "l", OID: pgtype.TextOID}}
	base := "t: t\n      i: i\n      f: f\n      b: {column: b, transform: [encode(hex)]}\n" +
		"      up: {column: t, transform: [trim, upper, truncate(5)]}\n" +
		"      arr: {column: l, transform: [\"split(,)\"], map: {a: A}}\n" +
		"      joined: {column: l, transform: [\"split(,)\", \"join(|)\"]}\n" +
		"      tmpl: {template: \"{t}-{i}-{f}\"}\n      c: {coalesce: [t, l]}"
	coercions := []string{"n: {column: t, type: number}", "d: {column: t, type: datetime}", "bo: {column: t, type: boolean}"}
	target := "    target: {dedupe_by: t, case_insensitive: true}\n"
	var encoders []*Encoder
	for _, tc := range []struct{ props, extra string }{
		{base + "\n      " + strings.Join(coercions, "\n      "), target}, // all of it, as one sync
		{base, target}, {coercions[0], ""}, {coercions[1], ""}, {coercions[2], ""},
	} {
		e, err := mustSync(f, tc.props, tc.extra).Compile(cols)
		if err != nil {
			f.Fatal(err)
		}
		encoders = append(encoders, e)
	}
	f.Fuzz(func(t *testing.T, text string, i int64, fl float64, b []byte, list string) {
		for n, e := range encoders {
			out, _, err := e.Append([]byte("P"), []any{text, i, fl, b, list}, nil)
			if err != nil {
				var re *RowError
				if !errors.As(err, &re) {
					t.Fatalf("encoder %d: error %T is not a *RowError", n, err)
				}
				if string(out) != "P" {
					t.Fatalf("encoder %d: dst changed on error: %q", n, out)
				}
				continue
			}
			if !json.Valid(out[1:]) {
				t.Fatalf("encoder %d: invalid JSON: %s", n, out)
			}
		}
	})
}
