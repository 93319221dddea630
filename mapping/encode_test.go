package mapping

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// typeCase is one driver value of one column type, shaped exactly as pgx v5
// rows.Values() returns it (see TestPostgresTypes for the proof).
type typeCase struct {
	name string
	oid  uint32
	val  any
	want string // the JSON value, or "error: CODE"
	warn string // expected warning code, if any
}

func num(i int64, exp int32) pgtype.Numeric {
	return pgtype.Numeric{Int: big.NewInt(i), Exp: exp, Valid: true}
}

func bigNum(s string, exp int32) pgtype.Numeric {
	n, _ := new(big.Int).SetString(s, 10)
	return pgtype.Numeric{Int: n, Exp: exp, Valid: true}
}

var uuidBytes = [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}

func typeCases() []typeCase {
	ts := time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)
	cet := time.FixedZone("CET", 3600)
	return []typeCase{
		{"text", pgtype.TextOID, "héllo", `"héllo"`, ""},
		{"text escapes", pgtype.TextOID, "q\"b\\n\nt\tc\x01\u2028\u2029<&>", `"q\"b\\n\nt\tc\u0001\u2028\u2029<&>"`, ""},
		{"text invalid utf8", pgtype.TextOID, "a\xffb", `"a` + "\ufffd" + `b"`, WarnInvalidUTF8},
		{"text null", pgtype.TextOID, nil, `null`, ""},
		{"varchar", pgtype.VarcharOID, "v", `"v"`, ""},
		{"bpchar keeps padding", pgtype.BPCharOID, "ab ", `"ab "`, ""},
		{"int2", pgtype.Int2OID, int16(-32768), `-32768`, ""},
		{"int4", pgtype.Int4OID, int32(2147483647), `2147483647`, ""},
		{"int8 2^53", pgtype.Int8OID, int64(1 << 53), `9007199254740992`, ""},
		{"int8 -2^53", pgtype.Int8OID, int64(-1 << 53), `-9007199254740992`, ""},
		{"int8 2^53+1 as string", pgtype.Int8OID, int64(1<<53 + 1), `"9007199254740993"`, ""},
		{"int8 min as string", pgtype.Int8OID, int64(math.MinInt64), `"-9223372036854775808"`, ""},
		{"int8 null", pgtype.Int8OID, nil, `null`, ""},
		{"numeric keeps scale", pgtype.NumericOID, num(1234500, -4), `123.4500`, ""},
		{"numeric negative fraction", pgtype.NumericOID, num(-5, -2), `-0.05`, ""},
		{"numeric positive exponent", pgtype.NumericOID, num(12, 3), `12000`, ""},
		{"numeric zero", pgtype.NumericOID, num(0, 0), `0`, ""},
		{"numeric 15 digits", pgtype.NumericOID, num(123456789012345, -5), `1234567890.12345`, ""},
		{"numeric 16 digits as string", pgtype.NumericOID, num(1234567890123456, -5), `"12345678901.23456"`, ""},
		{"numeric trailing zeros not significant", pgtype.NumericOID, bigNum("100000000000000000000", -20), `1.00000000000000000000`, ""},
		{"numeric tiny as string", pgtype.NumericOID, num(1, -400), `"0.` + strings.Repeat("0", 399) + `1"`, ""},
		{"numeric NaN", pgtype.NumericOID, pgtype.Numeric{NaN: true, Valid: true}, `null`, WarnNonFinite},
		{"numeric Infinity", pgtype.NumericOID, pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, `null`, WarnNonFinite},
		{"numeric null", pgtype.NumericOID, nil, `null`, ""},
		{"real", pgtype.Float4OID, float32(0.1), `0.1`, ""},
		{"real tiny", pgtype.Float4OID, float32(1e-7), `1e-7`, ""},
		{"real NaN", pgtype.Float4OID, float32(math.NaN()), `null`, WarnNonFinite},
		{"double", pgtype.Float8OID, 0.1, `0.1`, ""},
		{"double big", pgtype.Float8OID, 1e300, `1e+300`, ""},
		{"double -Inf", pgtype.Float8OID, math.Inf(-1), `null`, WarnNonFinite},
		{"double negative zero", pgtype.Float8OID, math.Copysign(0, -1), `-0`, ""}, // as encoding/json writes it
		{"real negative zero", pgtype.Float4OID, float32(math.Copysign(0, -1)), `-0`, ""},
		{"bool", pgtype.BoolOID, false, `false`, ""},
		{"date", pgtype.DateOID, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), `"2024-02-29"`, ""},
		{"date infinity", pgtype.DateOID, pgtype.Infinity, `null`, WarnInfinite},
		{"date BC", pgtype.DateOID, time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC), `error: invalid_value`, ""},
		{"timestamp", pgtype.TimestampOID, ts, `"2024-02-29T13:14:15.123456Z"`, ""},
		{"timestamp -infinity", pgtype.TimestampOID, pgtype.NegativeInfinity, `null`, WarnInfinite},
		{"timestamptz to UTC", pgtype.TimestamptzOID, time.Date(2024, 1, 1, 1, 0, 0, 0, cet), `"2024-01-01T00:00:00Z"`, ""},
		{"timestamptz year 10000", pgtype.TimestamptzOID, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), `error: invalid_value`, ""},
		{"uuid", pgtype.UUIDOID, uuidBytes, `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, ""},
		{"uuid wrapper", pgtype.UUIDOID, pgtype.UUID{Bytes: uuidBytes, Valid: true}, `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, ""},
		{"json scalar", pgtype.JSONOID, "s", `"s"`, ""},
		{"json number", pgtype.JSONBOID, 1.5, `1.5`, ""},
		{"json array", pgtype.JSONBOID, []any{1.0, "two", nil, true, []any{}}, `[1,"two",null,true,[]]`, ""},
		{"json object rejected", pgtype.JSONBOID, map[string]any{"a": 1.0}, `error: invalid_value`, ""},
		{"json object in array rejected", pgtype.JSONBOID, []any{map[string]any{}}, `error: invalid_value`, ""},
		{"enum (user OID)", 70000, "happy", `"happy"`, ""},
		{"int4[] with NULL", pgtype.Int4ArrayOID, []any{int32(1), nil, int32(3)}, `[1,null,3]`, ""},
		{"text[] empty", pgtype.TextArrayOID, []any{}, `[]`, ""},
		{"date[]", pgtype.DateArrayOID, []any{time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), nil}, `["2024-01-01",null]`, ""},
		{"timestamptz[]", pgtype.TimestamptzArrayOID, []any{time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}, `["2024-01-01T00:00:00Z"]`, ""},
		{"uuid[]", pgtype.UUIDArrayOID, []any{uuidBytes}, `["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]`, ""},
		{"numeric[]", pgtype.NumericArrayOID, []any{num(15, -1), bigNum("12345678901234567", 0)}, `[1.5,"12345678901234567"]`, ""},
		{"int8[] big", pgtype.Int8ArrayOID, []any{int64(1<<53 + 1)}, `["9007199254740993"]`, ""},
		{"float8[] NaN", pgtype.Float8ArrayOID, []any{math.NaN()}, `[null]`, WarnNonFinite},
		// pgx returns these wrappers only when asked to, but both paths take them.
		{"date wrapper", pgtype.DateOID, pgtype.Date{Time: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), Valid: true}, `"2024-02-29"`, ""},
		{"date wrapper infinity", pgtype.DateOID, pgtype.Date{InfinityModifier: pgtype.Infinity, Valid: true}, `null`, WarnInfinite},
		{"timestamp wrapper", pgtype.TimestampOID, pgtype.Timestamp{Time: ts, Valid: true}, `"2024-02-29T13:14:15.123456Z"`, ""},
		{"timestamptz wrapper null", pgtype.TimestamptzOID, pgtype.Timestamptz{}, `null`, ""},
		{"timestamptz wrapper year 10000", pgtype.TimestamptzOID, pgtype.Timestamptz{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Valid: true}, `error: invalid_value`, ""},
		{"uuid wrapper null", pgtype.UUIDOID, pgtype.UUID{}, `null`, ""},
		{"bytes of a user type rejected", 70000, []byte("x"), `error: invalid_value`, ""},
		{"unknown driver value rejected", 70000, struct{}{}, `error: unsupported_value`, ""},
	}
}

func encodeOne(t *testing.T, e *Encoder, row []any) (string, []string, error) {
	t.Helper()
	var warns []string
	dst := []byte("prefix")
	out, _, err := e.Append(dst, row, func(w Warning) { warns = append(warns, w.Code) })
	if err != nil {
		if string(out) != "prefix" {
			t.Fatalf("on error dst must be unchanged, got %q", out)
		}
		return "", warns, err
	}
	if !json.Valid(out[len("prefix"):]) {
		t.Fatalf("invalid JSON: %s", out)
	}
	return string(out[len("prefix"):]), warns, nil
}

// TestEncodeTypes covers every supported column type on both paths: the fast
// path (bare column) and the general path used when a property has
// transforms, which must produce identical bytes.
func TestEncodeTypes(t *testing.T) {
	for _, tc := range typeCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSync(t, "v: c")
			e, err := s.Compile([]Column{{Name: "c", OID: tc.oid}})
			if err != nil {
				t.Fatal(err)
			}
			for _, fast := range []bool{true, false} {
				e.props[0].fast = fast
				got, warns, err := encodeOne(t, e, []any{tc.val})
				if err != nil {
					var re *RowError
					if !errors.As(err, &re) {
						t.Fatalf("fast=%v: error %T is not a *RowError", fast, err)
					}
					got = "error: " + re.Code
					if re.Property != "v" {
						t.Errorf("fast=%v: RowError.Property = %q, want v", fast, re.Property)
					}
				} else {
					got = strings.TrimSuffix(strings.TrimPrefix(got, `{"default":{"v":`), "}}")
				}
				if got != tc.want {
					t.Errorf("fast=%v: got %s, want %s", fast, got, tc.want)
				}
				if w := strings.Join(warns, ","); w != tc.warn {
					t.Errorf("fast=%v: warnings %q, want %q", fast, w, tc.warn)
				}
			}
		})
	}
}
