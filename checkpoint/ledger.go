package checkpoint

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// The record ledger: per sync and row key, the Micro record id the import
// result returned for the row. Keys are encoded as fingerprints encode
// them (fingerprintKey), so both stores and both tables agree.

// ledgerSave is one commit's ledger reduced to what a store applies: per
// encoded key the last id given, the ids parsed.
type ledgerSave struct {
	keys      []string
	ids       []string // canonical UUIDs, aligned with keys
	referrers []string
	// deleted and archived are the encoded keys to mark (Ledger.Deleted,
	// Ledger.Archived).
	deleted, archived []string
	// fresh: insert keys instead of upserting them (Ledger.Fresh).
	fresh bool
}

func (p ledgerSave) empty() bool {
	return len(p.keys) == 0 && len(p.deleted) == 0 && len(p.archived) == 0
}

func prepareLedger(owner string, l Ledger) (ledgerSave, error) {
	p := ledgerSave{fresh: l.Fresh}
	for _, k := range l.Deleted {
		p.deleted = append(p.deleted, fingerprintKey(k))
	}
	for _, k := range l.Archived {
		p.archived = append(p.archived, fingerprintKey(k))
	}
	if len(l.Records) == 0 {
		return p, nil
	}
	last := make(map[string]int, len(l.Records))
	order := make([]string, 0, len(l.Records))
	for i, r := range l.Records {
		u, err := uuid.Parse(r.ID)
		if err != nil || u.String() != r.ID {
			return p, fmt.Errorf("checkpoint: record of row %q of sync %q: id %q is not a UUID", r.RowKey, owner, r.ID)
		}
		e := fingerprintKey(r.RowKey)
		if _, seen := last[e]; !seen {
			order = append(order, e)
		}
		last[e] = i
	}
	for _, e := range order {
		p.keys = append(p.keys, e)
		p.ids = append(p.ids, l.Records[last[e]].ID)
	}
	for _, r := range l.Referrers {
		if r != "" && !slices.Contains(p.referrers, r) {
			p.referrers = append(p.referrers, r)
		}
	}
	return p, nil
}

// parseRowKey inverts fingerprintKey.
func parseRowKey(e string) ([]string, error) {
	if strings.HasPrefix(e, "x") {
		b, err := hex.DecodeString(e[1:])
		if err != nil {
			return nil, fmt.Errorf("checkpoint: stored row key %q: %w", e, err)
		}
		e = string(b)
	}
	var out []string
	for e != "" {
		i := strings.IndexByte(e, ':')
		if i <= 0 {
			return nil, fmt.Errorf("checkpoint: stored row key %q is malformed", e)
		}
		n, err := strconv.Atoi(e[:i])
		end := i + 1 + n
		if err != nil || n < 0 || end >= len(e) || e[end] != ';' {
			return nil, fmt.Errorf("checkpoint: stored row key %q is malformed", e)
		}
		out = append(out, e[i+1:end])
		e = e[end+1:]
	}
	return out, nil
}

// prepareCommit checks what a commit writes beyond a position: deferrals
// whole and record ids that are UUIDs, before anything is written.
func prepareCommit(sync string, rejects []Reject, l Ledger) (ledgerSave, error) {
	for _, r := range rejects {
		if err := checkReject(sync, r); err != nil {
			return ledgerSave{}, err
		}
	}
	return prepareLedger(RejectOwner(sync), l)
}

// checkReject keeps a deferral's two fields together.
func checkReject(sync string, r Reject) error {
	if (r.WaitSync == "") != (len(r.WaitKey) == 0) {
		return fmt.Errorf("checkpoint: reject of row %q of sync %q: a deferred row needs both WaitSync and WaitKey", r.RowKey, sync)
	}
	return nil
}

// sortDeferred orders deferred rows oldest first, then by row key.
func sortDeferred(rs []Reject) {
	slices.SortFunc(rs, func(a, b Reject) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return slices.Compare(a.RowKey, b.RowKey)
	})
}

// sameKind reports whether an upserted reject continues the story of the
// stored one: refused then refused again, or deferred then deferred again.
// Otherwise (a refused row now waits, or a waiting row was now refused) its
// FirstSeen and Attempts start over, so a deferral's age is how long it has
// waited.
func sameKind(old, r Reject) bool { return old.Deferred() == r.Deferred() }
