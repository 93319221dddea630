package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fingerprints are an optional section of a version 1 document: a file
// written before they existed opens, and one with them is still version 1.
func TestFileFingerprintsFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	older := `{"version": 1, "next_seq": 1, "positions": {"orgs": {"position": {"cursor": "5", "key": ["5"]},
		"fingerprint": "fp", "batches": 1, "updated_at": "2026-01-02T03:04:05Z"}}, "history": {}, "journal": {}, "rejects": {}}`
	must(t, os.WriteFile(path, []byte(older), 0o600))
	s, err := OpenFile(path)
	must(t, err)
	defer s.Close()
	wantFingerprints(t, s, "orgs", [][]string{{"5"}}, [][]byte{nil})
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "fingerprints") {
		t.Errorf("a store without fingerprints wrote the section:\n%s", data)
	}

	must(t, s.SaveFingerprints(ctx, "orgs", [][]string{{"5"}, {"a", "b"}, {"\xff"}}, [][]byte{[]byte("0123456789abcdef"), {1}, {2}}))
	data, err := os.ReadFile(path)
	must(t, err)
	var doc struct {
		Version      int                          `json:"version"`
		Fingerprints map[string]map[string][]byte `json:"fingerprints"`
	}
	must(t, json.Unmarshal(data, &doc))
	if doc.Version != 1 || len(doc.Fingerprints["orgs"]) != 3 {
		t.Fatalf("unexpected document:\n%s", data)
	}
	for k, sum := range map[string]string{"1:5;": "0123456789abcdef", "1:a;1:b;": "\x01", "x313aff3b": "\x02"} {
		if got := string(doc.Fingerprints["orgs"][k]); got != sum {
			t.Errorf("fingerprints.orgs[%q] = %q, want %q\n%s", k, got, sum, data)
		}
	}
	// Forgetting the only sync with fingerprints removes the section.
	must(t, s.Forget(ctx, "orgs"))
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "fingerprints") {
		t.Errorf("Forget left the section:\n%s", data)
	}
}

func TestFileFingerprintsCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"empty sync": `{"version": 1, "fingerprints": {"": {"1:1;": "AQ=="}}}`,
		"empty sum":  `{"version": 1, "fingerprints": {"orgs": {"1:1;": ""}}}`,
		"not base64": `{"version": 1, "fingerprints": {"orgs": {"1:1;": "!!"}}}`,
		"wrong type": `{"version": 1, "fingerprints": {"orgs": ["AQ=="]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			must(t, os.WriteFile(path, []byte(content), 0o600))
			s, err := OpenFile(path)
			if err == nil {
				s.Close()
				t.Fatal("open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("open = %v, want ErrCorrupt", err)
			}
		})
	}
}
