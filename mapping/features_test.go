package mapping

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

var featureCols = []Column{
	{Name: "id", OID: pgtype.Int8OID},
	{Name: "first", OID: pgtype.TextOID},
	{Name: "last", OID: pgtype.TextOID},
	{Name: "email", OID: pgtype.VarcharOID},
	{Name: "tags", OID: pgtype.TextArrayOID},
	{Name: "score", OID: pgtype.NumericOID},
	{Name: "flag", OID: pgtype.TextOID},
	{Name: "doc", OID: pgtype.JSONBOID},
	{Name: "blob", OID: pgtype.ByteaOID},
	{Name: "born", OID: pgtype.DateOID},
}

func featureRow() []any {
	return []any{int64(7), " Ada ", "Lovelace", "ADA@Example.COM ", []any{"a", nil, "b"}, num(42, 0), "yes",
		map[string]any{"k": "v", "a": []any{1.0}}, []byte{0xde, 0xad}, nil}
}

type featureCase struct {
	name   string
	props  string // the properties block, one property per line (6-space indented after the first)
	target string // optional target block
	row    func(r []any)
	want   string // expected "default" object, or "" when an error is expected
	code   string // expected RowError code
	dedupe string
}

func TestEncodeFeatures(t *testing.T) {
	cases := []featureCase{
		{name: "short form and constant", props: "id: id\n      src: {value: postgres}\n      n: {value: 1.50}\n      ok: {value: true}\n      none: {value: null}\n      list: {value: [a, 1]}",
			want: `{"id":7,"src":"postgres","n":1.50,"ok":true,"none":null,"list":["a",1]}`},
		{name: "trim lower", props: "email: {column: email, transform: [trim, lower]}", want: `{"email":"ada@example.com"}`},
		{name: "upper truncate", props: "x: {column: last, transform: [upper, truncate(4)]}", want: `{"x":"LOVE"}`},
		{name: "truncate counts runes", props: "x: {column: first, transform: [truncate(2)]}", row: func(r []any) { r[1] = "éèê" }, want: `{"x":"éè"}`},
		{name: "template", props: `name: {template: "{first} {last}", transform: [trim]}`, want: `{"name":"Ada  Lovelace"}`},
		{name: "template NULL renders empty", props: `name: {template: "{{{first}}}-{id}"}`, row: func(r []any) { r[1] = nil }, want: `{"name":"{}-7"}`},
		{name: "coalesce", props: "x: {coalesce: [born, first]}", want: `{"x":" Ada "}`},
		{name: "coalesce all NULL", props: "x: {coalesce: [born, email]}", row: func(r []any) { r[3] = nil }, want: `{"x":null}`},
		{name: "null_if_empty", props: "x: {column: first, transform: [trim, null_if_empty]}", row: func(r []any) { r[1] = "  " }, want: `{"x":null}`},
		{name: "default", props: "x: {column: born, transform: [\"default(unknown)\"]}", want: `{"x":"unknown"}`},
		{name: "split join", props: `x: {column: first, transform: [trim, "split(d)"]}` + "\n      y: {column: tags, transform: [\"join(, )\"]}",
			want: `{"x":["A","a"],"y":"a, b"}`},
		{name: "split empty is empty array", props: `x: {column: first, transform: ["split(,)"]}`, row: func(r []any) { r[1] = "" }, want: `{"x":[]}`},
		{name: "json_string object", props: "x: {column: doc, transform: [json_string]}", want: `{"x":"{\"a\":[1],\"k\":\"v\"}"}`},
		{name: "json object without json_string", props: "x: doc", code: CodeInvalidValue},
		{name: "encode base64 hex", props: "b: {column: blob, transform: [encode(base64)]}\n      h: {column: blob, transform: [encode(hex)]}", want: `{"b":"3q0=","h":"dead"}`},
		{name: "map keep", props: "x: {column: flag, map: {yes: opt_yes}}", row: func(r []any) { r[6] = "maybe" }, want: `{"x":"maybe"}`},
		{name: "map hit", props: "x: {column: flag, map: {\"yes\": opt_yes}}", want: `{"x":"opt_yes"}`},
		{name: "map default", props: "x: {column: flag, map: {no: n}, map_default: other}", want: `{"x":"other"}`},
		{name: "map reject", props: "x: {column: flag, map: {no: n}, unmapped: reject}", code: CodeUnmappedValue},
		{name: "map array elementwise", props: "x: {column: tags, map: {a: A}}", want: `{"x":["A",null,"b"]}`},
		{name: "map number via text", props: "x: {column: score, map: {\"42\": answer}}", want: `{"x":"answer"}`},
		{name: "type boolean", props: "x: {column: flag, type: boolean}", want: `{"x":true}`},
		{name: "type boolean fails", props: "x: {column: first, type: boolean}", code: CodeCoercionFailed},
		{name: "type number from text", props: "x: {column: first, transform: [trim], type: number}", row: func(r []any) { r[1] = " 0012.5 " }, want: `{"x":12.5}`},
		{name: "type number keeps exact digits", props: "x: {column: first, type: number}", row: func(r []any) { r[1] = "12345678901234567890" }, want: `{"x":12345678901234567890}`},
		{name: "type number fails", props: "x: {column: first, type: number}", code: CodeCoercionFailed},
		{name: "type string from number", props: "x: {column: score, type: string}", want: `{"x":"42"}`},
		{name: "type date from text", props: "x: {column: first, type: date}", row: func(r []any) { r[1] = "2024-03-01T23:30:00-02:00" }, want: `{"x":"2024-03-02"}`},
		{name: "type datetime from text", props: "x: {column: first, type: datetime}", row: func(r []any) { r[1] = "2024-03-01 10:00:00" }, want: `{"x":"2024-03-01T10:00:00Z"}`},
		{name: "type array wraps scalar", props: "x: {column: first, type: array}", want: `{"x":[" Ada "]}`},
		{name: "type keeps NULL", props: "x: {column: born, type: number}", want: `{"x":null}`},
		{name: "required missing", props: "x: {column: born, required: true}", code: CodeMissingRequired},
		{name: "required empty after transform", props: "x: {column: first, transform: [trim], required: true}", row: func(r []any) { r[1] = " " }, code: CodeMissingRequired},
		{name: "required NaN", props: "x: {column: score, required: true}", row: func(r []any) { r[5] = pgtype.Numeric{NaN: true, Valid: true} }, code: CodeMissingRequired},
		{name: "omit_null", props: "a: {column: born, omit_null: true}\n      b: id\n      c: {column: born, omit_null: true}", want: `{"b":7}`},
		{name: "omit_null first", props: "a: {column: born, omit_null: true}\n      b: {column: born, omit_null: true}", want: `{}`},
		{name: "null is sent by default", props: "a: born", want: `{"a":null}`},
		{name: "dedupe", props: "email: {column: email, transform: [trim], required: true}\n      id: id",
			target: "    target: {dedupe_by: email, case_insensitive: true}\n",
			want:   `{"email":"ADA@Example.COM","id":7}`, dedupe: "ada@example.com"},
		{name: "dedupe case sensitive number", props: "id: id\n      email: email", target: "    target: {dedupe_by: id}\n",
			want: `{"id":7,"email":"ADA@Example.COM "}`, dedupe: "7"},
		{name: "dedupe NULL", props: "id: born", target: "    target: {dedupe_by: id}\n", want: `{"id":null}`, dedupe: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSync(t, tc.props, tc.target)
			e, err := s.Compile(featureCols)
			if err != nil {
				t.Fatal(err)
			}
			row := featureRow()
			if tc.row != nil {
				tc.row(row)
			}
			out, dedupe, err := e.Append([]byte("X"), row, nil)
			if tc.code != "" {
				var re *RowError
				if !errors.As(err, &re) || re.Code != tc.code {
					t.Fatalf("got error %v, want code %s", err, tc.code)
				}
				if string(out) != "X" {
					t.Errorf("dst changed on error: %q", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(out), `X{"default":`+tc.want+`}`; got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			if dedupe != tc.dedupe {
				t.Errorf("dedupe = %q, want %q", dedupe, tc.dedupe)
			}
		})
	}
}

func TestEncodeListProperties(t *testing.T) {
	s := mustSync(t, "id: id\n    list_properties:\n      stage: {value: new}\n      who: {template: \"{last}\", required: true}",
		"    target: {list_id: 00000000-0000-0000-0000-000000000001}\n")
	e, err := s.Compile(featureCols)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := e.Append(nil, featureRow(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"default":{"id":7},"list":{"stage":"new","who":"Lovelace"}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
	// An error in a list property still leaves dst untouched.
	row := featureRow()
	row[2] = nil
	if out, _, err := e.Append([]byte("keep"), row, nil); err == nil || string(out) != "keep" {
		t.Errorf("got %q, %v; want unchanged dst and an error", out, err)
	}
}

func TestEncodeRowLength(t *testing.T) {
	e, err := mustSync(t, "id: id").Compile(featureCols)
	if err != nil {
		t.Fatal(err)
	}
	var re *RowError
	if _, _, err := e.Append(nil, []any{int64(1)}, nil); !errors.As(err, &re) || re.Code != CodeInvalidRow {
		t.Errorf("short row: got %v", err)
	}
}

// TestCompileErrors checks that Compile reports every problem at once, each
// with the property's position.
func TestCompileErrors(t *testing.T) {
	s := mustSync(t, "a: missing\n"+
		"      b: blob\n"+
		"      c: {column: id, transform: [trim]}\n"+
		"      d: {column: tags, transform: [upper]}\n"+
		"      e: {column: blob, transform: [json_string]}\n"+
		"      f: {template: \"{blob} {nope}\"}\n"+
		"      g: {column: first, transform: [encode(hex)]}\n"+
		"      h: {coalesce: [first, nope2]}\n"+
		"      i: {column: dup}\n"+
		"      j: {column: iv}\n"+
		"      ok: {column: doc}")
	cols := append(append([]Column{}, featureCols...), Column{Name: "dup", OID: 25}, Column{Name: "dup", OID: 25}, Column{Name: "iv", OID: pgtype.IntervalOID})
	_, err := s.Compile(cols)
	var fe *FindingsError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want *FindingsError", err)
	}
	want := []string{
		`test.yaml:5:7: sync s: property a: column "missing" not found (have: id, first, last, email, tags, score, flag, doc, blob, born, dup, dup, iv)`,
		`test.yaml:6:7: sync s: property b: bytea needs transform encode(base64) or encode(hex)`,
		`test.yaml:7:7: sync s: property c: transform trim needs text, got number`,
		`test.yaml:8:7: sync s: property d: transform upper needs text, got array`,
		`test.yaml:9:7: sync s: property e: transform json_string does not take bytea; use encode(base64) or encode(hex)`,
		`test.yaml:10:7: sync s: property f: template column "blob" is bytea and cannot be rendered as text`,
		`test.yaml:10:7: sync s: property f: column "nope" not found (have: id, first, last, email, tags, score, flag, doc, blob, born, dup, dup, iv)`,
		`test.yaml:11:7: sync s: property g: transform encode(hex) needs bytea, got text`,
		`test.yaml:12:7: sync s: property h: column "nope2" not found (have: id, first, last, email, tags, score, flag, doc, blob, born, dup, dup, iv)`,
		`test.yaml:13:7: sync s: property i: column "dup" is ambiguous: the query returns it more than once`,
		`test.yaml:14:7: sync s: property j: column "iv" has unsupported type interval (OID 1186); cast it in a query (e.g. iv::text)`,
	}
	got := fe.Findings
	if len(got) != len(want) {
		t.Fatalf("got %d findings:\n%s", len(got), got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("finding %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}
