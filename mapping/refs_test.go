package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// relationsFile is the example: people link to companies.
const relationsFile = `syncs:
  - name: people
    source: { table: public.people, key: [id], cursor: updated_at }
    target: { object: contact, dedupe_by: external_id, update_existing: true }
    properties:
      external_id: external_id
      email: email
      organization: { ref: companies, column: company_id }
  - name: companies
    source: { table: public.companies, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id, update_existing: true }
    properties: { external_id: external_id, name: name }
`

func TestParseRefs(t *testing.T) {
	f, fs := Parse("rel.yaml", []byte(relationsFile))
	if f == nil {
		t.Fatalf("parse:\n%s", fs)
	}
	people, _ := f.Sync("people")
	companies, _ := f.Sync("companies")
	org := people.Properties[2]
	if org.Kind != FromRef || org.Ref != "companies" || !slices.Equal(org.RefColumns, []string{"company_id"}) {
		t.Errorf("organization = %+v", org)
	}
	if got := people.Columns(); !slices.Equal(got, []string{"external_id", "email", "company_id"}) {
		t.Errorf("Columns() = %v: a ref's columns must be read", got)
	}
	if got := people.References(); !slices.Equal(got, []string{"companies"}) {
		t.Errorf("References() = %v", got)
	}
	if got := companies.Referrers(); !slices.Equal(got, []string{"people"}) {
		t.Errorf("Referrers() = %v", got)
	}
	if len(people.Referrers()) != 0 || len(companies.References()) != 0 {
		t.Error("no sync links to people, companies links to nothing")
	}
	// companies is written second but referenced: it passes first.
	if got := names(Order(f.Syncs)); !slices.Equal(got, []string{"companies", "people"}) {
		t.Errorf("Order = %v", got)
	}
	// The link takes part in the mapping's fingerprint.
	plain := strings.Replace(relationsFile, "{ ref: companies, column: company_id }", "company_id", 1)
	g, _ := Parse("rel.yaml", []byte(plain))
	gp, _ := g.Sync("people")
	if gp.Fingerprint() == people.Fingerprint() {
		t.Error("a ref and a plain column share a fingerprint")
	}
	cols := strings.Replace(relationsFile, "column: company_id", "columns: [company_id]", 1)
	h, _ := Parse("rel.yaml", []byte(cols))
	hp, _ := h.Sync("people")
	if hp.Fingerprint() != people.Fingerprint() {
		t.Error("column: C and columns: [C] are the same link")
	}
}

func TestLevels(t *testing.T) {
	src := `syncs:
  - {name: deals, source: {table: d, key: id, cursor: c}, properties: {org: {ref: orgs, column: o}, who: {ref: people, column: p}}}
  - {name: people, source: {table: p, key: id, cursor: c}, properties: {org: {ref: orgs, column: o}}}
  - {name: notes, source: {table: n, key: id, cursor: c}, properties: {x: x}}
  - {name: orgs, source: {table: o, key: id, cursor: c}, properties: {x: x}}
  - {name: tasks, source: {table: t, key: id, cursor: c}, properties: {deal: {ref: deals, column: d}}}
`
	f, fs := Parse("l.yaml", []byte(src))
	if f == nil {
		t.Fatal(fs)
	}
	var got [][]string
	for _, l := range Levels(f.Syncs) {
		got = append(got, names(l))
	}
	want := [][]string{{"notes", "orgs"}, {"people"}, {"deals"}, {"tasks"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Levels = %v, want %v", got, want)
	}
	// A subset is ordered by the refs among its members only.
	people, _ := f.Sync("people")
	tasks, _ := f.Sync("tasks")
	deals, _ := f.Sync("deals")
	if got := names(Order([]*Sync{tasks, people, deals})); !slices.Equal(got, []string{"people", "deals", "tasks"}) {
		t.Errorf("Order(subset) = %v", got)
	}
	if got := names(Order([]*Sync{tasks})); !slices.Equal(got, []string{"tasks"}) {
		t.Errorf("Order(one) = %v", got)
	}
	orgs, _ := f.Sync("orgs")
	if got := orgs.Referrers(); !slices.Equal(got, []string{"deals", "people"}) {
		t.Errorf("orgs.Referrers() = %v", got)
	}
}

func names(ss []*Sync) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// TestParseRefFindings pins every finding about refs, position and message.
func TestParseRefFindings(t *testing.T) {
	head := "syncs:\n"
	sync := func(name, key, props string) string {
		return "  - name: " + name + "\n    source: {table: t, key: " + key + ", cursor: c}\n    properties:\n      " + props + "\n"
	}
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown sync", head + sync("a", "id", "x: {ref: compnies, column: c}"),
			[]string{`f.yaml:5:16: sync a: property x.ref: no sync named "compnies" in this file (have: a)`}},
		{"column count", head + sync("a", "[k1, k2]", "x: x") + sync("b", "id", "y: {ref: a, column: a_id}\n      z: {ref: a, columns: [k1]}\n      w: {ref: a, columns: [k1, k2]}"),
			[]string{
				`f.yaml:9:27: sync b: property y: sync a is keyed by 2 column(s) (k1, k2) but the ref gives 1 (a_id); list one column per key column, in the key's order`,
				`f.yaml:10:28: sync b: property z: sync a is keyed by 2 column(s) (k1, k2) but the ref gives 1 (k1); list one column per key column, in the key's order`,
			}},
		{"two-sync cycle", head + sync("a", "id", "x: {ref: b, column: b}") + sync("b", "id", "y: {ref: a, column: a}"),
			[]string{`f.yaml:5:16: sync a: property x.ref: reference cycle: a -> b -> a; a ref may only point at a sync that does not link back`}},
		{"three-sync cycle beside a good ref", head + sync("a", "id", "x: {ref: c, column: c}") + sync("b", "id", "y: {ref: a, column: a}") +
			sync("c", "id", "z: {ref: b, column: b}\n      ok: {ref: d, column: d}") + sync("d", "id", "w: w"),
			[]string{`f.yaml:5:16: sync a: property x.ref: reference cycle: a -> c -> b -> a;`}},
		{"cycle with a side loop names every sync in it", head + sync("a", "id", "x: {ref: b, column: b}") +
			sync("b", "id", "y: {ref: a, column: a}\n      z: {ref: c, column: c}") + sync("c", "id", "w: {ref: b, column: b}"),
			[]string{`f.yaml:5:16: sync a: property x.ref: reference cycle: a -> b -> a (syncs in the cycle: a, b, c);`}},
		{"self reference", head + sync("a", "id", "parent: {ref: a, column: parent_id}"),
			[]string{`f.yaml:5:21: sync a: property parent.ref: sync a refers to itself;`}},
		{"shape of a ref", head + sync("a", "id", "x: x") + sync("b", "id",
			"p: {ref: a}\n      q: {ref: a, column: c, columns: [c]}\n      r: {ref: a, column: c, transform: [trim], type: string}\n      s: {column: c, columns: [c]}\n      t: {ref: 5, column: c}\n      u: {ref: a, columns: []}"),
			[]string{
				`f.yaml:9:10: property p: a ref needs column (the column holding the referenced sync's key) or columns (one per key column)`,
				`f.yaml:10:30: property q: set column (one key column) or columns (a compound key), not both`,
				`f.yaml:11:30: property r: transform cannot be used with ref`,
				`f.yaml:11:49: property r: type cannot be used with ref`,
				`f.yaml:12:22: property s: columns is only for a ref`,
				`f.yaml:13:16: property t.ref: expected a string, got int 5`,
				`f.yaml:14:28: property u.columns: at least one column is required`,
			}},
		{"dedupe on a ref", head + "  - name: a\n    source: {table: t, key: id, cursor: c}\n    target: {dedupe_by: org}\n    properties:\n      org: {ref: b, column: b, required: true}\n" + sync("b", "id", "x: x"),
			[]string{`f.yaml:4:25: target.dedupe_by: property "org" is a ref; dedupe on a property of the record itself`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, fs := Parse("f.yaml", []byte(tc.src))
			if f != nil {
				t.Fatal("expected errors")
			}
			if len(fs) != len(tc.want) {
				t.Errorf("got %d findings, want %d:\n%s", len(fs), len(tc.want), fs)
			}
			for i, w := range tc.want {
				if i >= len(fs) || !strings.HasPrefix(fs[i].String(), w) {
					t.Errorf("finding %d: want prefix %q; all:\n%s", i, w, fs)
				}
			}
		})
	}
}

var refCols = []Column{
	{Name: "id", OID: pgtype.Int8OID},
	{Name: "company_id", OID: pgtype.Int4OID},
	{Name: "company_ids", OID: pgtype.Int8ArrayOID},
	{Name: "region", OID: pgtype.BPCharOID},
	{Name: "owner", OID: pgtype.UUIDOID},
	{Name: "code", OID: pgtype.TextOID},
	{Name: "score", OID: pgtype.NumericOID},
	{Name: "codes", OID: pgtype.TextArrayOID},
}

func refRow() []any {
	owner := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	return []any{int64(1), int32(7), []any{int64(7), nil, int64(8)}, "eu  ", owner, "x-1", num(5, 0), []any{"a"}}
}

// refSyncs compiles one sync whose properties are props against refCols,
// in a file that also has the syncs a ref may point at.
func refEncoder(t *testing.T, props string) *Encoder {
	t.Helper()
	src := `syncs:
  - name: s
    source: {table: t, key: [id], cursor: id}
    properties:
      ` + props + `
  - {name: companies, source: {table: c, key: [id], cursor: c}, properties: {x: x}}
  - {name: regional, source: {table: r, key: [region, id], cursor: c}, properties: {x: x}}
  - {name: users, source: {table: u, key: [id], cursor: c}, properties: {x: x}}
`
	f, fs := Parse("refs.yaml", []byte(src))
	if f == nil {
		t.Fatalf("parse:\n%s", fs)
	}
	e, err := f.Syncs[0].Compile(refCols)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ledger resolves keys the way the record ledger does: by sync and the text
// of the key.
func ledger(e *Encoder, ids map[string]string) Resolver {
	return func(ref int, key []string) (string, bool) {
		id, ok := ids[e.Refs()[ref].Sync+KeyText(key)]
		return id, ok
	}
}

func TestEncodeRefs(t *testing.T) {
	ids := map[string]string{
		"companies[7]":   "00000000-0000-4000-8000-000000000007",
		"companies[8]":   "00000000-0000-4000-8000-000000000008",
		"regional[eu,7]": "00000000-0000-4000-8000-0000000000e7",
		"users[6ba7b810-9dad-11d1-80b4-00c04fd430c8]": "00000000-0000-4000-8000-0000000000aa",
	}
	cases := []struct {
		name  string
		props string
		row   func(r []any)
		want  string // the default object; "" when the row waits
		keys  []string
		miss  *MissingRefError
		code  string
	}{
		{name: "single", props: "org: {ref: companies, column: company_id}",
			want: `{"org":"00000000-0000-4000-8000-000000000007"}`, keys: []string{"0[7]"}},
		{name: "NULL is null", props: "org: {ref: companies, column: company_id}", row: func(r []any) { r[1] = nil },
			want: `{"org":null}`},
		{name: "NULL under omit_null is left out", props: "id: id\n      org: {ref: companies, column: company_id, omit_null: true}", row: func(r []any) { r[1] = nil },
			want: `{"id":1}`},
		{name: "NULL when required is invalid", props: "org: {ref: companies, column: company_id, required: true}", row: func(r []any) { r[1] = nil },
			code: CodeMissingRequired},
		{name: "no record yet waits", props: "id: id\n      org: {ref: companies, column: company_id}", row: func(r []any) { r[1] = int32(9) },
			miss: &MissingRefError{Property: "org", Sync: "companies", Key: []string{"9"}}, keys: []string{"0[9]"}},
		{name: "multi-ref, NULL elements link to nothing", props: "orgs: {ref: companies, column: company_ids}",
			want: `{"orgs":["00000000-0000-4000-8000-000000000007","00000000-0000-4000-8000-000000000008"]}`, keys: []string{"0[7]", "0[8]"}},
		{name: "multi-ref NULL array", props: "orgs: {ref: companies, column: company_ids}", row: func(r []any) { r[2] = nil },
			want: `{"orgs":null}`},
		{name: "multi-ref empty array", props: "orgs: {ref: companies, column: company_ids}", row: func(r []any) { r[2] = []any{} },
			want: `{"orgs":[]}`},
		{name: "multi-ref empty array when required", props: "orgs: {ref: companies, column: company_ids, required: true}", row: func(r []any) { r[2] = []any{} },
			code: CodeMissingRequired},
		{name: "multi-ref waits for any missing element", props: "orgs: {ref: companies, column: company_ids}", row: func(r []any) { r[2] = []any{int64(8), int64(3)} },
			miss: &MissingRefError{Property: "orgs", Sync: "companies", Key: []string{"3"}}, keys: []string{"0[8]", "0[3]"}},
		{name: "compound key, char(n) as PostgreSQL prints it", props: "r: {ref: regional, columns: [region, company_id]}",
			want: `{"r":"00000000-0000-4000-8000-0000000000e7"}`, keys: []string{"0[eu,7]"}},
		{name: "compound key with a NULL part is null", props: "r: {ref: regional, columns: [region, company_id]}", row: func(r []any) { r[3] = nil },
			want: `{"r":null}`},
		{name: "uuid key", props: "u: {ref: users, column: owner}",
			want: `{"u":"00000000-0000-4000-8000-0000000000aa"}`, keys: []string{"0[6ba7b810-9dad-11d1-80b4-00c04fd430c8]"}},
		{name: "text key", props: "u: {ref: users, column: code}", row: func(r []any) { r[5] = "6ba7b810-9dad-11d1-80b4-00c04fd430c8" },
			want: `{"u":"00000000-0000-4000-8000-0000000000aa"}`, keys: []string{"0[6ba7b810-9dad-11d1-80b4-00c04fd430c8]"}},
		{name: "two refs and list properties", props: "org: {ref: companies, column: company_id}\n      u: {ref: users, column: owner}",
			want: `{"org":"00000000-0000-4000-8000-000000000007","u":"00000000-0000-4000-8000-0000000000aa"}`,
			keys: []string{"0[7]", "1[6ba7b810-9dad-11d1-80b4-00c04fd430c8]"}},
		{name: "a driver value a ref cannot hold", props: "org: {ref: companies, column: company_id}", row: func(r []any) { r[1] = 7.5 },
			code: CodeUnsupportedValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := refEncoder(t, tc.props)
			row := refRow()
			if tc.row != nil {
				tc.row(row)
			}
			var keys []string
			e.RefKeys(row, func(ref int, key []string) { keys = append(keys, string(rune('0'+ref))+KeyText(key)) })
			if !slices.Equal(keys, tc.keys) {
				t.Errorf("RefKeys = %q, want %q", keys, tc.keys)
			}
			prefix := []byte("xx")
			out, _, err := e.AppendResolved(prefix, row, ledger(e, ids), nil)
			var miss *MissingRefError
			var re *RowError
			switch {
			case tc.miss != nil:
				if !errors.As(err, &miss) || !reflect.DeepEqual(miss, tc.miss) {
					t.Fatalf("got %v (%#v), want %#v", err, err, tc.miss)
				}
				if err.Error() != "property "+tc.miss.Property+": waits for the Micro record of sync "+tc.miss.Sync+" row "+KeyText(tc.miss.Key)+" (missing_reference)" {
					t.Errorf("message %q", err)
				}
			case tc.code != "":
				if !errors.As(err, &re) || re.Code != tc.code {
					t.Fatalf("got %v, want code %s", err, tc.code)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got, want := string(out), `xx{"default":`+tc.want+`}`; got != want {
					t.Errorf("got  %s\nwant %s", got, want)
				}
				return
			}
			if string(out) != "xx" {
				t.Errorf("dst changed on error: %q", out)
			}
		})
	}
	// Without a resolver every link waits.
	e := refEncoder(t, "org: {ref: companies, column: company_id}")
	if _, _, err := e.Append(nil, refRow(), nil); !errors.As(err, new(*MissingRefError)) {
		t.Errorf("Append of a row with a link: %v", err)
	}
	if want := []Ref{{Slug: "org", Sync: "companies", Columns: []string{"company_id"}}}; !reflect.DeepEqual(e.Refs(), want) {
		t.Errorf("Refs() = %+v", e.Refs())
	}
}

func TestCompileRefErrors(t *testing.T) {
	src := `syncs:
  - name: s
    source: {table: t, key: [id], cursor: id}
    properties:
      a: {ref: companies, column: score}
      b: {ref: regional, columns: [codes, id]}
      c: {ref: companies, column: nope}
      d: {ref: companies, column: codes}
  - {name: companies, source: {table: c, key: [id], cursor: c}, properties: {x: x}}
  - {name: regional, source: {table: r, key: [region, id], cursor: c}, properties: {x: x}}
`
	f, fs := Parse("refs.yaml", []byte(src))
	if f == nil {
		t.Fatal(fs)
	}
	_, err := f.Syncs[0].Compile(refCols)
	var fe *FindingsError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`refs.yaml:5:7: sync s: property a: ref column "score" is numeric; a ref column must be an integer, text or uuid column (or, alone, an array of one for a multi-ref)`,
		`refs.yaml:6:7: sync s: property b: ref column "codes" is an array of text (an array column must be the ref's only column); a ref column must be`,
		`refs.yaml:7:7: sync s: property c: column "nope" not found`,
	}
	if len(fe.Findings) != len(want) {
		t.Fatalf("got:\n%s", fe.Findings)
	}
	for i, w := range want {
		if !strings.HasPrefix(fe.Findings[i].String(), w) {
			t.Errorf("finding %d = %s\nwant prefix %s", i, fe.Findings[i], w)
		}
	}
}

// TestCheckSourceRefs checks ref columns against the referenced sync's key
// in a real database.
func TestCheckSourceRefs(t *testing.T) {
	conn := liveDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, `
		CREATE TABLE companies (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL);
		CREATE INDEX ON companies (updated_at, id);
		CREATE TABLE accounts (id uuid PRIMARY KEY, updated_at timestamptz NOT NULL);
		CREATE INDEX ON accounts (updated_at, id);
		CREATE TABLE prices (id numeric PRIMARY KEY, updated_at timestamptz NOT NULL);
		CREATE INDEX ON prices (updated_at, id);
		CREATE TABLE persons (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL,
			company_id int, company_ids bigint[], account uuid, account_code text, wrong uuid, price_id bigint);
		CREATE INDEX ON persons (updated_at, id);`); err != nil {
		t.Fatal(err)
	}
	src := `syncs:
  - name: persons
    source: {table: persons, key: [id], cursor: updated_at}
    properties:
      company: {ref: companies, column: company_id}
      companies: {ref: companies, column: company_ids}
      account: {ref: accounts, column: account}
      by_code: {ref: accounts, column: account_code}
      wrong: {ref: companies, column: wrong}
      price: {ref: prices, column: price_id}
  - {name: companies, source: {table: companies, key: [id], cursor: updated_at}, properties: {external_id: id}}
  - {name: accounts, source: {table: accounts, key: [id], cursor: updated_at}, properties: {external_id: id}}
  - {name: prices, source: {table: prices, key: [id], cursor: updated_at}, properties: {external_id: id}}
`
	f, fs := Parse("live_refs.yaml", []byte(src))
	if f == nil {
		t.Fatal(fs)
	}
	var got []string
	for _, s := range f.Syncs {
		for _, fd := range CheckSource(ctx, conn, s) {
			got = append(got, fd.String())
		}
	}
	want := []string{
		`live_refs.yaml:8:40: warning: sync persons: property by_code: column "account_code" is text but sync accounts's key column "id" is uuid; a value links only when it is written exactly as PostgreSQL prints a uuid (cast the column in a query to be sure)`,
		`live_refs.yaml:9:39: sync persons: property wrong: column "wrong" is uuid but sync companies's key column "id" is bigint; no value of one can equal a value of the other`,
		`live_refs.yaml:10:36: sync persons: property price: sync prices's key column "id" is numeric; a ref can only point at a key of integer, text or uuid columns`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzRefs drives links of every shape with arbitrary key values: the
// object is valid JSON holding exactly the resolved ids, or the row waits
// for a key RefKeys reported.
func FuzzRefs(f *testing.F) {
	f.Add(int64(7), "eu  ", "x", true, false)
	f.Add(int64(-1), "", "\xff\"", false, true)
	f.Fuzz(func(t *testing.T, id int64, region, code string, nullID, known bool) {
		e := refEncoder(t, "org: {ref: companies, column: company_id}\n      orgs: {ref: companies, column: company_ids, omit_null: true}\n"+
			"      r: {ref: regional, columns: [region, company_id]}\n      u: {ref: users, column: code}")
		row := refRow()
		row[1] = int32(id)
		if nullID {
			row[1] = nil
		}
		row[2] = []any{id, nil, id / 2}
		row[3], row[5] = region, code
		var keys []string
		e.RefKeys(row, func(ref int, key []string) { keys = append(keys, e.Refs()[ref].Sync+KeyText(key)) })
		resolve := func(ref int, key []string) (string, bool) {
			k := e.Refs()[ref].Sync + KeyText(key)
			if !slices.Contains(keys, k) {
				t.Fatalf("resolve(%s) was not among RefKeys %q", k, keys)
			}
			if !known && len(k)%2 == 0 {
				return "", false
			}
			return "id:" + k, true
		}
		out, _, err := e.AppendResolved(nil, row, resolve, nil)
		var miss *MissingRefError
		switch {
		case errors.As(err, &miss):
			if !slices.Contains(keys, miss.Sync+KeyText(miss.Key)) || len(out) != 0 {
				t.Fatalf("waits for %v, keys %q, out %q", miss, keys, out)
			}
		case err != nil:
			t.Fatal(err)
		default:
			var obj struct {
				Default map[string]any `json:"default"`
			}
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatalf("invalid JSON %q: %v", out, err)
			}
			if nullID != (obj.Default["org"] == nil) {
				t.Fatalf("org = %v with nullID %v", obj.Default["org"], nullID)
			}
		}
	})
}

// TestReadmeRelationsExample keeps the README's Relations example a valid
// mapping whose order is what the text says.
func TestReadmeRelationsExample(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	_, section, ok := strings.Cut(string(doc), "## Relations\n")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no yaml block in its Relations section")
	}
	f, fs := Parse("README.md", []byte(block))
	if f == nil {
		t.Fatalf("the README's Relations example does not parse:\n%s", fs)
	}
	people, _ := f.Sync("people")
	if got := names(Order(f.Syncs)); !slices.Equal(got, []string{"companies", "people"}) || people.Properties[2].Ref != "companies" {
		t.Errorf("order %v, people %+v", got, people.Properties)
	}
}
