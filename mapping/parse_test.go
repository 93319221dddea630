package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadValid(t *testing.T) {
	f, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Syncs) != 2 {
		t.Fatalf("got %d syncs", len(f.Syncs))
	}
	s, ok := f.Sync("people")
	if !ok {
		t.Fatal("sync people not found")
	}
	if s.Schedule != "@every 1m" || s.BatchSize != 200 {
		t.Errorf("schedule %q batch %d", s.Schedule, s.BatchSize)
	}
	wantSrc := Source{Table: "public.people", Key: []string{"id"}, Cursor: "updated_at"}
	if !reflect.DeepEqual(s.Source, wantSrc) {
		t.Errorf("source = %+v", s.Source)
	}
	wantTgt := Target{Object: "contact", DedupeBy: "external_id", CaseInsensitive: true, UpdateExisting: true, ListID: "00000000-0000-0000-0000-000000000000"}
	if s.Target != wantTgt {
		t.Errorf("target = %+v", s.Target)
	}
	var slugs []string
	for _, p := range s.Properties {
		slugs = append(slugs, p.Slug)
	}
	if got := strings.Join(slugs, ","); got != "external_id,email,source_system,full_name,phone,status" {
		t.Errorf("property order = %s", got)
	}
	if got := strings.Join(s.Columns(), ","); got != "id,email,first_name,last_name,mobile,phone,state" {
		t.Errorf("Columns() = %s", got)
	}
	st := s.Properties[5]
	if st.Unmapped != UnmappedReject || st.Map["a"] != "active" {
		t.Errorf("status property = %+v", st)
	}
	if len(s.ListProperties) != 1 || s.ListProperties[0].Value != "lead" {
		t.Errorf("list properties = %+v", s.ListProperties)
	}

	// Defaults.
	o, _ := f.Sync("orgs")
	if o.Schedule != "" || o.BatchSize != DefaultBatchSize || o.Target.Object != "organization" || !o.Target.UpdateExisting || o.Target.CaseInsensitive {
		t.Errorf("defaults not applied: %+v", o)
	}
	if !reflect.DeepEqual(o.Source.Key, []string{"id"}) || o.Source.Query == "" {
		t.Errorf("orgs source = %+v", o.Source)
	}
	if got := strings.Join(o.Columns(), ","); got != "name" {
		t.Errorf("Columns() dedupe = %s", got)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("unexpected warnings:\n%s", f.Warnings)
	}
}

// TestParseInvalid checks that one pass reports every problem, in file
// order, with the position of the offending key or value.
func TestParseInvalid(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, fs := Parse("invalid.yaml", data)
	if f != nil {
		t.Error("File must be nil when there are errors")
	}
	var got strings.Builder
	for _, x := range fs {
		got.WriteString(x.String())
		got.WriteByte('\n')
	}
	golden(t, "invalid", []byte(got.String()))
}

func TestParseFindings(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // substrings of the findings, in order
	}{
		{"syntax error", "syncs:\n  - name: a\n    x: [1, 2\n", []string{"f.yaml:2:1: yaml: did not find expected ',' or ']'"}},
		{"empty", "", []string{"f.yaml:1:1: empty mapping file"}},
		{"not a mapping", "- a\n", []string{"f.yaml:1:1: mapping file: expected a mapping, got a list"}},
		{"unknown top key", "syncs: []\nversion: 2\n", []string{"f.yaml:1:8: syncs: the list is empty", `f.yaml:2:1: mapping file: unknown key "version"`}},
		{"missing keys", "syncs:\n  - {}\n", []string{"f.yaml:2:5: sync: missing required key name", "2:5: sync: missing required key source", "2:5: sync: missing required key properties"}},
		{"source needs key and cursor", "syncs:\n  - name: a\n    source: {}\n    properties: {x: y}\n",
			[]string{"3:13: source: one of table or query is required", "3:13: source: missing required key key", "3:13: source: missing required key cursor"}},
		{"wrong scalar kinds", "syncs:\n  - name: 5\n    batch_size: many\n    source: {table: t, key: [1], cursor: c}\n    target: {case_insensitive: maybe}\n    properties: {x: 3}\n",
			[]string{"2:11: name: expected a string, got int 5", "3:17: batch_size: expected an integer", "4:30: source.key: expected a string, got int 1", "5:32: target.case_insensitive: expected true or false", "6:21: property x: expected a string, got int 3"}},
		{"duplicate key", "syncs:\n  - name: a\n    name: b\n", []string{"2:5: sync a: missing required key source", "2:5: sync a: missing required key properties", `3:5: sync: duplicate key "name" (first at line 2)`}},
		{"template errors", "syncs:\n  - name: a\n    source: {table: t, key: id, cursor: c}\n    properties:\n      a: {template: \"x}\"}\n      b: {template: \"{}\"}\n",
			[]string{"5:21: property a.template: unmatched '}'", "6:21: property b.template: bad placeholder"}},
		{"value pipeline checked offline", "syncs:\n  - name: a\n    source: {table: t, key: id, cursor: c}\n    properties:\n      a: {value: 5, transform: [upper]}\n",
			[]string{"5:10: property a: transform upper needs text, got number"}},
		{"map rules", "syncs:\n  - name: a\n    source: {table: t, key: id, cursor: c}\n    properties:\n      a: {column: a, map_default: x}\n      b: {column: b, map: {}, map_default: x, unmapped: keep}\n",
			[]string{"5:22: property a: map_default needs map", "6:27: property b.map: must not be empty", "6:57: property b.unmapped: keep conflicts with map_default"}},
		{"bad transform args", "syncs:\n  - name: a\n    source: {table: t, key: id, cursor: c}\n    properties:\n      a: {column: a, transform: [trim(1), encode(b32), join, \"default\", \"split(x\"]}\n",
			[]string{"transform trim takes no argument", "bad encode", "bad join(SEP)", "bad default(VALUE)", "missing ')'"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, fs := Parse("f.yaml", []byte(tc.src))
			if f != nil {
				t.Fatal("expected errors")
			}
			all := fs.Error()
			if len(fs) != len(tc.want) {
				t.Errorf("got %d findings, want %d:\n%s", len(fs), len(tc.want), all)
			}
			for i, w := range tc.want {
				if i >= len(fs) || !strings.Contains(fs[i].String(), w) {
					t.Errorf("finding %d: want it to contain %q; all:\n%s", i, w, all)
				}
			}
		})
	}
}

func TestParseWarnings(t *testing.T) {
	src := `syncs:
  - name: a
    source: {table: t, key: id, cursor: c}
    target: {dedupe_by: x, update_existing: false}
    properties:
      x: {column: x, omit_null: true}
      y: {template: "static"}
    list_properties: {s: y}
  - name: b
    source: {table: t, key: id, cursor: c}
    target: {case_insensitive: true}
    properties: {x: x}
    list_properties: {}
`
	f, fs := Parse("w.yaml", []byte(src))
	if f == nil {
		t.Fatalf("warnings must not fail the parse:\n%s", fs)
	}
	want := []string{
		`w.yaml:2:5: warning: sync a: list_properties without target.list_id`,
		`w.yaml:4:25: warning: target.dedupe_by: property "x" is not required`,
		`w.yaml:7:21: warning: property y.template: no {column} placeholder`,
		`w.yaml:11:14: warning: target.case_insensitive has no effect without dedupe_by`,
		`w.yaml:13:22: warning: list_properties is empty`,
	}
	if len(fs) != len(want) || fs.HasErrors() {
		t.Fatalf("got:\n%s", fs)
	}
	for i, w := range want {
		if !strings.HasPrefix(fs[i].String(), w) {
			t.Errorf("finding %d = %s, want prefix %s", i, fs[i], w)
		}
	}
	if len(f.Warnings) != len(want) || len(fs.Warnings()) != len(want) || len(fs.Errors()) != 0 {
		t.Error("warnings not kept on the File")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
	_, err := Load("testdata/invalid.yaml")
	var fe *FindingsError
	if !errors.As(err, &fe) || !fe.Findings.HasErrors() {
		t.Fatalf("got %v, want *FindingsError", err)
	}
	if !strings.HasPrefix(err.Error(), "testdata/invalid.yaml:3:15: schedule: invalid cron spec") {
		t.Errorf("error text starts %q", strings.SplitN(err.Error(), "\n", 2)[0])
	}
}

func TestFingerprint(t *testing.T) {
	base := mustSync(t, `email: {column: email, transform: [trim], map: {a: b}}`)
	if base.Fingerprint() != mustSync(t, `email: {column: email, transform: [trim], map: {a: b}}`).Fingerprint() {
		t.Fatal("same mapping, different fingerprint")
	}
	if len(base.Fingerprint()) != 64 {
		t.Errorf("fingerprint %q is not hex SHA-256", base.Fingerprint())
	}
	same := []*Sync{
		mustSync(t, `email: {column: email, transform: [trim], map: {a: b}}`, "    schedule: \"@hourly\"\n    batch_size: 10\n"),
	}
	for _, s := range same {
		if s.Fingerprint() != base.Fingerprint() {
			t.Error("schedule/batch_size must not change the fingerprint")
		}
	}
	differ := []*Sync{
		mustSync(t, `email: {column: email, transform: [lower], map: {a: b}}`),
		mustSync(t, `email: {column: email, transform: [trim], map: {a: c}}`),
		mustSync(t, `email: {column: mail, transform: [trim], map: {a: b}}`),
		mustSync(t, `email: {column: email, transform: [trim], map: {a: b}}`, "    target: {object: contact}\n"),
		mustSync(t, `email: {column: email, transform: [trim], map: {a: b}, required: true}`),
		mustSync(t, `email: {column: email, transform: [trim], map: {a: b}}`+"\n    list_properties: {x: {value: 1}}"),
	}
	seen := map[string]int{base.Fingerprint(): -1}
	for i, s := range differ {
		fp := s.Fingerprint()
		if j, dup := seen[fp]; dup {
			t.Errorf("variant %d has the same fingerprint as %d", i, j)
		}
		seen[fp] = i
	}
	// A constant's type matters: 5 and "5" encode differently.
	if mustSync(t, `x: {value: 5}`).Fingerprint() == mustSync(t, `x: {value: "5"}`).Fingerprint() {
		t.Error("number and string constants share a fingerprint")
	}
}

// TestDocsExample keeps the example in the README's mapping reference honest: the YAML there
// is testdata/example.yaml and the JSON line below is quoted in the docs.
func TestDocsExample(t *testing.T) {
	f, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Sync("people")
	cols := []Column{{"id", 20}, {"email", 25}, {"first_name", 25}, {"last_name", 25}, {"mobile", 25}, {"phone", 25}, {"state", 25}}
	e, err := s.Compile(cols)
	if err != nil {
		t.Fatal(err)
	}
	out, dedupe, err := e.Append(nil, []any{int64(42), " Ada@Example.com", "Ada", nil, nil, nil, "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"default":{"external_id":"42","email":"ada@example.com","full_name":"Ada","status":"active","source_system":"postgres"},"list":{"stage":"lead"}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if dedupe != "42" {
		t.Errorf("dedupe = %q", dedupe)
	}
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	if !strings.Contains(string(doc), want) || !strings.Contains(string(doc), string(mustRead(t, "testdata/example.yaml"))) {
		t.Error("README.md no longer shows testdata/example.yaml and its output")
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
