package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// qFingerprints looks up the stored sums of a batch's keys: one probe of
// the primary key per key. The OFFSET 0 keeps the subquery a subquery, so the
// planner cannot turn it into a join that reads every fingerprint of the
// sync (a hash join over sync = $1, or an index scan on sync filtered by
// row_key = ANY($2), which a generic plan made while the table was small, or
// before it was ever analyzed, keeps choosing as it grows; see connect for
// the settings that rule out a sequential scan per probe).
const qFingerprints = `
	SELECT k.row_key, f.sum
	FROM unnest($2::text[]) AS k(row_key)
	CROSS JOIN LATERAL (
		SELECT sum FROM prismsync.fingerprints WHERE sync = $1 AND row_key = k.row_key OFFSET 0
	) AS f`

// Fingerprints implements connector.Fingerprints with one query, whatever
// the number of keys (qFingerprints).
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
	rows, err := s.pool.Query(ctx, qFingerprints, sync, uniq)
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

// qSaveFingerprints upserts a batch's sums; the primary key is the
// conflict arbiter, so each row is one index probe.
const qSaveFingerprints = `
	INSERT INTO prismsync.fingerprints AS f (sync, row_key, sum)
	SELECT $1, u.k, u.s FROM unnest($2::text[], $3::bytea[]) AS u(k, s)
	ON CONFLICT (sync, row_key) DO UPDATE SET sum = EXCLUDED.sum`

// qDeleteFingerprint forgets the sum of a key saved with an empty one: one
// statement per key, each a probe of the primary key. The engine never
// saves empty sums, so this is not a per-batch statement. (One statement
// for all keys, row_key = ANY($2), gets a generic plan that scans every
// fingerprint of the sync when the table was empty as it was planned.)
const qDeleteFingerprint = `DELETE FROM prismsync.fingerprints WHERE sync = $1 AND row_key = $2`

// SaveFingerprints implements connector.Fingerprints with one statement
// (qSaveFingerprints), plus qDeleteFingerprint for each key whose sum is
// empty (nil deletes the stored one), in one round trip and one transaction.
// When keys repeat, the last one wins.
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
	// A key is in one list or the other, never both, so the order of the
	// statements does not matter; sent together they are one round trip and
	// one implicit transaction.
	b := &pgx.Batch{}
	for _, k := range p.gone {
		b.Queue(qDeleteFingerprint, sync, k)
	}
	if len(p.keys) > 0 {
		b.Queue(qSaveFingerprints, sync, p.keys, pgBytes(p.sums))
	}
	if b.Len() == 1 {
		_, err = s.pool.Exec(ctx, b.QueuedQueries[0].SQL, b.QueuedQueries[0].Arguments...)
	} else {
		err = s.pool.SendBatch(ctx, b).Close()
	}
	if err != nil {
		return fmt.Errorf("checkpoint: save %d fingerprint(s) of sync %q: %w", len(p.keys)+len(p.gone), sync, err)
	}
	return nil
}

// qAddFingerprints inserts sums of keys that had none when looked up. It is
// not an upsert: INSERT ... ON CONFLICT takes a speculative insertion per row
// (a probe, the insert, a confirmation), twice the database CPU of a plain
// insert, and keys new to the store are what a first sync writes, a million
// at a time.
const qAddFingerprints = `
	INSERT INTO prismsync.fingerprints (sync, row_key, sum)
	SELECT $1, u.k, u.s FROM unnest($2::text[], $3::bytea[]) AS u(k, s)`

// uniqueViolation is SQLSTATE unique_violation.
const uniqueViolation = "23505"

// AddFingerprints implements connector.Fingerprints with qAddFingerprints.
// A key stored meanwhile by someone else (a backfill of the same sync) makes
// it fail as a whole, without effect; the upsert then does the work.
func (s *PGStore) AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	p, err := prepareFingerprints(sync, keys, sums)
	if err != nil {
		return err
	}
	if len(p.gone) > 0 || len(p.keys) == 0 {
		return s.SaveFingerprints(ctx, sync, keys, sums) // deletes, or nothing to do
	}
	if err := s.writable(); err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, qAddFingerprints, sync, p.keys, p.sums)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == uniqueViolation {
		return s.SaveFingerprints(ctx, sync, keys, sums)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: add %d fingerprint(s) of sync %q: %w", len(p.keys), sync, err)
	}
	return nil
}

// qHasFingerprints stops at the sync's first fingerprint.
const qHasFingerprints = `SELECT EXISTS (SELECT FROM prismsync.fingerprints WHERE sync = $1)`

// HasFingerprints implements connector.Fingerprints.
func (s *PGStore) HasFingerprints(ctx context.Context, sync string) (bool, error) {
	if err := checkSync(sync); err != nil {
		return false, err
	}
	var has bool
	if err := s.pool.QueryRow(ctx, qHasFingerprints, sync).Scan(&has); err != nil {
		return false, fmt.Errorf("checkpoint: fingerprints of sync %q: %w", sync, err)
	}
	return has, nil
}

// pgBytes sends an empty array rather than NULL for nil.
func pgBytes(v [][]byte) [][]byte {
	if v == nil {
		return [][]byte{}
	}
	return v
}
