package checkpoint

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenSpec(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		spec, dsn string
		wantErr   string // "" = success
		wantType  string
	}{
		{spec: "file:" + filepath.Join(dir, "a.json"), wantType: "*checkpoint.FileStore"},
		{spec: "file:", wantErr: "needs a path"},
		{spec: "", dsn: "", wantErr: "DATABASE_URL is empty"},
		{spec: "postgres", dsn: "", wantErr: "DATABASE_URL is empty"},
		{spec: "sqlite:x.db", wantErr: `unknown store "sqlite:x.db"`},
		{spec: "Postgres", wantErr: "unknown store"},
	} {
		if tc.wantErr != "" {
			// OpenReadOnly reads specs the same way.
			if r, err := OpenReadOnly(ctx, tc.spec, tc.dsn); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("OpenReadOnly(%q) = %v, want error containing %q", tc.spec, err, tc.wantErr)
				if r != nil {
					r.Close()
				}
			}
		}
		s, err := Open(ctx, tc.spec, tc.dsn)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Open(%q) = %v, want error containing %q", tc.spec, err, tc.wantErr)
			}
			if s != nil {
				s.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.spec, err)
			continue
		}
		if got := typeName(s); got != tc.wantType {
			t.Errorf("Open(%q) = %s, want %s", tc.spec, got, tc.wantType)
		}
		s.Close()
	}
}

func typeName(s Store) string {
	switch s.(type) {
	case *FileStore:
		return "*checkpoint.FileStore"
	case *PGStore:
		return "*checkpoint.PGStore"
	}
	return "?"
}

func TestPositionIsZero(t *testing.T) {
	for _, tc := range []struct {
		p    Position
		zero bool
	}{
		{Position{}, true},
		{Position{Key: []string{}}, true},
		{Position{Cursor: "0"}, false},
		{Position{Key: []string{""}}, false},
	} {
		if got := tc.p.IsZero(); got != tc.zero {
			t.Errorf("%#v.IsZero() = %v, want %v", tc.p, got, tc.zero)
		}
	}
}

// The backfill state name is stored, so it must never change; its rejects
// belong to the sync.
func TestBackfillState(t *testing.T) {
	if got := BackfillState("people"); got != "people~backfill" {
		t.Errorf("BackfillState(people) = %q, want people~backfill", got)
	}
	for name, owner := range map[string]string{BackfillState("people"): "people", "people": "people", "~x": "~x"} {
		if got := RejectOwner(name); got != owner {
			t.Errorf("RejectOwner(%q) = %q, want %q", name, got, owner)
		}
	}
}
