package checkpoint

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Fingerprints implements connector.Fingerprints with one query, whatever
// the number of keys: the primary key (sync, row_key) answers row_key =
// ANY($2) with one index probe per key.
func (s *PGStore) Fingerprints(ctx context.Context, sync string, keys [][]string) ([][]byte, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = fingerprintKey(k)
	}
	// Duplicates would only make the array longer; the answer is mapped back
	// by key below.
	uniq := slices.Clone(enc)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	rows, err := s.pool.Query(ctx, `
		SELECT row_key, sum FROM prismsync.fingerprints WHERE sync = $1 AND row_key = ANY($2::text[])`, sync, uniq)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: fingerprints of sync %q: %w", sync, err)
	}
	found := make(map[string][]byte, len(uniq))
	var (
		k   string
		sum []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k, &sum}, func() error {
		found[k] = sum // Scan allocates a fresh slice per row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: fingerprints of sync %q: %w", sync, err)
	}
	for i, e := range enc {
		if sum, ok := found[e]; ok {
			out[i] = slices.Clone(sum) // a caller may modify one without touching another with the same key
		}
	}
	return out, nil
}

// SaveFingerprints implements connector.Fingerprints with one statement:
// an upsert from unnest of two arrays, plus a delete for keys whose sum is
// empty (nil deletes the stored one). When keys repeat, the last one wins.
func (s *PGStore) SaveFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	p, err := prepareFingerprints(sync, keys, sums)
	if err != nil {
		return err
	}
	if len(p.keys) == 0 && len(p.gone) == 0 {
		return nil
	}
	if err := s.writable(); err != nil {
		return err
	}
	// The CTE and the INSERT see the same snapshot; a key is in one list or
	// the other, never both, so their order does not matter.
	_, err = s.pool.Exec(ctx, `
		WITH gone AS (
			DELETE FROM prismsync.fingerprints WHERE sync = $1 AND row_key = ANY($2::text[])
		)
		INSERT INTO prismsync.fingerprints AS f (sync, row_key, sum)
		SELECT $1, u.k, u.s FROM unnest($3::text[], $4::bytea[]) AS u(k, s)
		ON CONFLICT (sync, row_key) DO UPDATE SET sum = EXCLUDED.sum`,
		sync, pgStrings(p.gone), pgStrings(p.keys), pgBytes(p.sums))
	if err != nil {
		return fmt.Errorf("checkpoint: save %d fingerprint(s) of sync %q: %w", len(p.keys)+len(p.gone), sync, err)
	}
	return nil
}

// pgStrings and pgBytes send an empty array rather than NULL for nil.
func pgStrings(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func pgBytes(v [][]byte) [][]byte {
	if v == nil {
		return [][]byte{}
	}
	return v
}
