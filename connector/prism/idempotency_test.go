package prism

import (
	"testing"

	"github.com/google/uuid"
)

func TestIdempotencyKey(t *testing.T) {
	body := []byte(`{"objects":[]}`)
	k := IdempotencyKey("orgs", "lsn:0/16B3748", body, 0)
	// Frozen: a change here would break replay of batches in flight across an upgrade.
	const golden = "e7d8237d-9cb3-5053-9f9f-e4069b8b5324"
	u, err := uuid.Parse(k)
	if err != nil || u.Version() != 5 || u.Variant() != uuid.RFC4122 {
		t.Fatalf("key %q is not a UUIDv5: %v", k, err)
	}
	if k != IdempotencyKey("orgs", "lsn:0/16B3748", body, 0) {
		t.Error("not deterministic")
	}
	if k != golden {
		t.Errorf("key = %s, want frozen %s", k, golden)
	}
	seen := map[string]string{k: "base"}
	for name, other := range map[string]string{
		"sync":    IdempotencyKey("orgs2", "lsn:0/16B3748", body, 0),
		"start":   IdempotencyKey("orgs", "lsn:0/16B3749", body, 0),
		"body":    IdempotencyKey("orgs", "lsn:0/16B3748", []byte(`{"objects":[] }`), 0),
		"attempt": IdempotencyKey("orgs", "lsn:0/16B3748", body, 1),
		"shifted": IdempotencyKey("orgs|", "lsn:0/16B3748", body, 0),
		"split":   IdempotencyKey("or", "gslsn:0/16B3748", body, 0),
	} {
		if prev, dup := seen[other]; dup {
			t.Errorf("%s collides with %s", name, prev)
		}
		seen[other] = name
	}
}
