package prism

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/google/uuid"
)

// idempotencyNamespace is the UUIDv5 namespace of prismsync idempotency keys.
// It is fixed forever: changing it would change every key and make in-flight
// batches re-execute instead of replay after an upgrade.
const idempotencyNamespace = "6f1d3c2e-8b4a-5e7f-9a0b-2c4d6e8f1a3b"

// IdempotencyKey derives the Idempotency-Key of one send of a batch: the
// UUIDv5 (SHA-1, fixed namespace) of the sync name, the batch's starting
// position, the SHA-256 of the exact body bytes and the attempt number.
//
// The same inputs always give the same key, so a process that crashed while
// sending can recompute the key after a restart and be replayed by the server
// instead of importing twice. The attempt number exists because a key may
// only ever be used with one body and for 24 hours: after a terminal failure,
// an expired key (409 idempotency_key_stale) or a re-send of identical
// content in a later run, the caller bumps attempt to get a fresh key. It
// does not cover retries of one request: those reuse the key unchanged.
//
// Fields are length-prefixed so that ("a:b", "c") and ("a", "b:c") differ.
func IdempotencyKey(sync string, start string, body []byte, attempt int) string {
	sum := sha256.Sum256(body)
	var b []byte
	b = append(b, "prismsync-import-v1"...)
	for _, f := range []string{sync, start, hex.EncodeToString(sum[:]), strconv.Itoa(attempt)} {
		b = append(b, '|')
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
	}
	return uuid.NewSHA1(uuid.MustParse(idempotencyNamespace), b).String()
}
