package connector

import (
	"encoding/hex"
	"testing"

	"github.com/prismsync/prismsync/mapping"
)

// Fingerprints stored by earlier versions are compared with new ones: if
// what is hashed changes, every row is sent once more after an upgrade. A
// deliberate change must update these values and say so in the release notes.
// (The values were cross-checked with an independent sha256 of the same bytes.)
func TestFingerprintIsStable(t *testing.T) {
	s := &Syncer{}
	object := []byte(`{"default":{"name":"Ada","n":1}}`)
	var reused fingerprinter // as build uses one, row after row
	for _, tt := range []struct {
		target mapping.Target
		want   string
	}{
		{mapping.Target{Object: "organization", UpdateExisting: true}, "22a5164f37c6d6c0212f76d22bd5e165"},
		{mapping.Target{Object: "contact", DedupeBy: "email", CaseInsensitive: true, ListID: "1f0e9d2c-3b4a-4958-8776-a5b4c3d2e1f0"}, "e1ef41aa39f19d0e53d5ed3140cd7170"},
	} {
		s.fpPrefix = fingerprintPrefix(tt.target)
		got := hex.EncodeToString(s.fingerprint(object))
		if got != tt.want {
			t.Errorf("fingerprint under %+v = %s, want %s", tt.target, got, tt.want)
		}
		reused.sum(s.fpPrefix, []byte(`{"default":{}}`))
		if got := hex.EncodeToString(reused.sum(s.fpPrefix, object)); got != tt.want {
			t.Errorf("fingerprint under %+v, after another = %s, want %s", tt.target, got, tt.want)
		}
	}
}
