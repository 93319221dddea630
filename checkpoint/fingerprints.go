package checkpoint

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxFingerprintSum bounds one stored hash. The engine stores 16-32 byte
// digests; anything much larger is a caller mistake that would bloat the
// store (the file store rewrites every sum on every change).
const maxFingerprintSum = 64

// fingerprintKey encodes a row key for the fingerprint tables and maps: the
// length-prefixed form of rejectKey ("2:42;"), which keeps ["a,b"] and
// ["a","b"] apart. PostgreSQL text cannot hold NUL or invalid UTF-8 (nor can
// a JSON object key round-trip it), so such a key is stored as "x" and the
// hex of its encoding instead; "x" never starts a length-prefixed key (it
// starts with a digit or is empty), so the two forms cannot collide.
func fingerprintKey(k []string) string {
	e := rejectKey(k)
	if utf8.ValidString(e) && !strings.Contains(e, "\x00") {
		return e
	}
	return "x" + hex.EncodeToString([]byte(e))
}

// fingerprintSave is one SaveFingerprints call reduced to what a store
// applies: per encoded key the last sum given (later entries win, so a
// caller's duplicates cannot make a single upsert statement touch a row
// twice) and the keys whose sum is empty, which are deleted.
type fingerprintSave struct {
	keys []string // encoded, to upsert, aligned with sums
	sums [][]byte
	gone []string // encoded, to delete
}

func prepareFingerprints(sync string, keys [][]string, sums [][]byte) (fingerprintSave, error) {
	if err := checkSync(sync); err != nil {
		return fingerprintSave{}, err
	}
	if len(keys) != len(sums) {
		return fingerprintSave{}, fmt.Errorf("checkpoint: save fingerprints of sync %q: %d keys but %d sums", sync, len(keys), len(sums))
	}
	last := make(map[string]int, len(keys))
	order := make([]string, 0, len(keys))
	for i, k := range keys {
		if n := len(sums[i]); n > maxFingerprintSum {
			return fingerprintSave{}, fmt.Errorf("checkpoint: save fingerprints of sync %q: sum of %d bytes, at most %d", sync, n, maxFingerprintSum)
		}
		e := fingerprintKey(k)
		if _, seen := last[e]; !seen {
			order = append(order, e)
		}
		last[e] = i
	}
	p := fingerprintSave{keys: make([]string, 0, len(order)), sums: make([][]byte, 0, len(order))}
	for _, e := range order {
		sum := sums[last[e]]
		if len(sum) == 0 {
			p.gone = append(p.gone, e)
			continue
		}
		p.keys = append(p.keys, e)
		p.sums = append(p.sums, sum)
	}
	return p, nil
}
