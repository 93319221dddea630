package prism

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestAppendImportBody(t *testing.T) {
	objs := [][]byte{[]byte(`{"default":{"name":"A"}}`), []byte(`{"default":{"name":"B","n":1}}`)}
	tests := []struct {
		name string
		objs [][]byte
		opts ImportOptions
		want string
	}{
		{"no options", objs, ImportOptions{}, `{"objects":[{"default":{"name":"A"}},{"default":{"name":"B","n":1}}]}`},
		{"no objects", nil, ImportOptions{}, `{"objects":[]}`},
		{"all options", objs[:1], ImportOptions{DedupeBy: "domain", CaseInsensitive: true, UpdateExisting: true,
			CreateMissingOptions: true, ListID: "8e0c7a52-5d3c-4f7e-a7b0-0c1d2e3f4a5b"},
			`{"objects":[{"default":{"name":"A"}}],"options":{"dedupe_by":"domain","caseInsensitive":true,` +
				`"update_existing":true,"create_missing_options":true,"list_id":"8e0c7a52-5d3c-4f7e-a7b0-0c1d2e3f4a5b"}}`},
		{"only case-insensitive", objs[:1], ImportOptions{CaseInsensitive: true},
			`{"objects":[{"default":{"name":"A"}}],"options":{"caseInsensitive":true}}`},
		{"escaping", objs[:1], ImportOptions{DedupeBy: "we\"ird\x00<slug>"},
			`{"objects":[{"default":{"name":"A"}}],"options":{"dedupe_by":"we\"ird\u0000\u003cslug\u003e"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendImportBody(nil, tt.objs, tt.opts)
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
			// Deterministic: a second encoding is byte-identical.
			if again := appendImportBody(nil, tt.objs, tt.opts); string(again) != string(got) {
				t.Errorf("not deterministic: %s vs %s", again, got)
			}
		})
	}
}

func TestAppendImportBodyKeepsPrefix(t *testing.T) {
	buf := []byte("prefix:")
	got := appendImportBody(buf, [][]byte{[]byte(`{}`)}, ImportOptions{ListID: "x"})
	if string(got) != `prefix:{"objects":[{}],"options":{"list_id":"x"}}` {
		t.Errorf("got %s", got)
	}
}

func FuzzAppendImportBody(f *testing.F) {
	f.Add(`{"default":{"a":1}}`, "slug", "list", true, false)
	f.Add(`{}`, "", "", false, false)
	f.Add(`{"default":{"s":"\u2028"}}`, "\xff", "\"", true, true)
	f.Fuzz(func(t *testing.T, obj, dedupe, list string, ci, upd bool) {
		if !json.Valid([]byte(obj)) {
			t.Skip()
		}
		body := appendImportBody(nil, [][]byte{[]byte(obj), []byte(obj)}, ImportOptions{DedupeBy: dedupe, ListID: list, CaseInsensitive: ci, UpdateExisting: upd})
		var got struct {
			Objects []json.RawMessage `json:"objects"`
			Options map[string]any    `json:"options"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("invalid body %q: %v", body, err)
		}
		if len(got.Objects) != 2 {
			t.Fatalf("objects = %d", len(got.Objects))
		}
		if (dedupe == "" && list == "" && !ci && !upd) != (got.Options == nil) {
			t.Fatalf("options presence wrong: %s", body)
		}
	})
}

func TestEncodeImportBodyShared(t *testing.T) {
	opts := ImportOptions{DedupeBy: "email", UpdateExisting: true, ListID: "1f0e9d2c-3b4a-4958-8776-a5b4c3d2e1f0"}
	for _, objs := range [][]string{nil, {`{"default":{}}`}, {`{"default":{"a":1}}`, `{"default":{"b":"x,y"}}`, `{}`}} {
		var objects, orig [][]byte
		for _, o := range objs {
			objects = append(objects, []byte(o))
			orig = append(orig, []byte(o))
		}
		want := appendImportBody(nil, orig, opts)
		body := EncodeImportBodyShared(objects, opts)
		if !bytes.Equal(body, want) {
			t.Fatalf("body %s, want %s", body, want)
		}
		if cap(body) != len(body) {
			t.Errorf("%d objects: cap %d for a %d-byte body", len(objs), cap(body), len(body))
		}
		for i, o := range objects {
			if !bytes.Equal(o, orig[i]) {
				t.Errorf("object %d = %s, want %s", i, o, orig[i])
			}
			if cap(o) != len(o) {
				t.Errorf("object %d: cap %d > len %d (appending would overwrite the body)", i, cap(o), len(o))
			}
			// It must be a view of the body, not a copy.
			if len(o) > 0 && &o[0] != &body[bytes.Index(body, orig[i])] {
				t.Errorf("object %d is not a slice of the body", i)
			}
		}
	}
}
