package mapping

import (
	"context"
	"strings"
	"testing"
	"time"
)

const deletesFile = `syncs:
  - name: people
    reconcile: "@daily"
    source:
      table: people
      key: [id]
      cursor: updated_at
      deleted: deleted_at
    target:
      object: contact
      dedupe_by: external_id
      on_delete: archive
      archive:
        status: { value: archived }
        score: { value: 0 }
    properties:
      external_id: { column: id, required: true }
`

func TestParseDeletes(t *testing.T) {
	f, fs := Parse("m.yaml", []byte(deletesFile))
	if fs.HasErrors() {
		t.Fatalf("findings: %v", fs)
	}
	s := f.Syncs[0]
	if s.Source.Deleted != "deleted_at" || s.Reconcile != "@daily" || s.Target.OnDelete != OnDeleteArchive || !s.Deletes() {
		t.Errorf("parsed %+v %+v reconcile %q", s.Source, s.Target, s.Reconcile)
	}
	obj, err := s.ArchiveObject()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(obj), `{"default":{"status":"archived","score":0}}`; got != want {
		t.Errorf("ArchiveObject = %s; want %s", got, want)
	}

	// on_delete defaults to delete once deletes are asked for, and stays
	// unset (no deletes) otherwise.
	f, fs = Parse("m.yaml", []byte(strings.NewReplacer("      on_delete: archive\n", "", "      archive:\n        status: { value: archived }\n        score: { value: 0 }\n", "").Replace(deletesFile)))
	if fs.HasErrors() || f.Syncs[0].Target.OnDelete != OnDeleteDelete {
		t.Errorf("default on_delete = %q (findings %v); want delete", f.Syncs[0].Target.OnDelete, fs)
	}
	plain := strings.NewReplacer("    reconcile: \"@daily\"\n", "", "      deleted: deleted_at\n", "", "      on_delete: archive\n", "", "      archive:\n        status: { value: archived }\n        score: { value: 0 }\n", "").Replace(deletesFile)
	f, fs = Parse("m.yaml", []byte(plain))
	if fs.HasErrors() || f.Syncs[0].Deletes() {
		t.Errorf("a sync without delete settings has deletes on (%q, %v)", f.Syncs[0].Target.OnDelete, fs)
	}
}

func TestParseDeletesFindings(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad on_delete", "on_delete: archive", "on_delete: purge", `m.yaml:12:18: target.on_delete: "purge" is not one of delete, archive, ignore`},
		{"archive without properties", "      archive:\n        status: { value: archived }\n        score: { value: 0 }\n", "", "m.yaml:12:18: target.on_delete: archive needs target.archive"},
		{"archive without archive mode", "on_delete: archive", "on_delete: delete", "m.yaml:13:7: target.archive is only used with on_delete: archive"},
		{"archive from a column", "score: { value: 0 }", "score: { column: id }", `m.yaml:15:9: target.archive: property "score" must be a constant`},
		{"archive without dedupe", "      dedupe_by: external_id\n", "", "m.yaml:11:18: target.on_delete: archive needs target.dedupe_by"},
		{"bad reconcile", `reconcile: "@daily"`, `reconcile: "every day"`, `m.yaml:3:16: reconcile: invalid cron spec "every day"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := Parse("m.yaml", []byte(strings.Replace(deletesFile, tc.from, tc.to, 1)))
			if !strings.Contains(fs.Error(), tc.want) {
				t.Errorf("findings:\n%v\nwant one starting %q", fs, tc.want)
			}
		})
	}
}

// TestCheckSourceDeletedColumn: validate finds a missing soft-delete
// column and one of a type that cannot say "deleted", at the node to edit.
func TestCheckSourceDeletedColumn(t *testing.T) {
	conn := liveDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, `CREATE TABLE deleters (id int PRIMARY KEY, updated_at timestamptz NOT NULL, deleted_at timestamptz, gone boolean, note text);
		CREATE INDEX ON deleters (updated_at, id)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ column, want string }{
		{"deleted_at", ""},
		{"gone", ""},
		{"note", `m.yaml:8:16: sync people: source.deleted: column "note" is text; a soft-delete column must be a timestamp`},
		{"missing", `m.yaml:8:16: sync people: source.deleted: column "missing" not found in the source`},
	} {
		f, fs := Parse("m.yaml", []byte(strings.NewReplacer("deleted: deleted_at", "deleted: "+tc.column, "table: people", "table: deleters").Replace(deletesFile)))
		if fs.HasErrors() {
			t.Fatal(fs)
		}
		got := CheckSource(ctx, conn, f.Syncs[0]).Errors().Error()
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("deleted: %s: findings %q; want %q", tc.column, got, tc.want)
		}
	}
}
