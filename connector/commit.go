package connector

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/prism"
)

// commit advances the checkpoint past a completed batch and records its
// rejects, its deferred rows and the record ids of its delivered rows (the
// ledger that links of other syncs resolve through), in one store
// transaction.
func (s *Syncer) commit(ctx context.Context, f *flight, fp string, sum *Summary) error {
	if f.batch.Kind != checkpoint.KindImport {
		return s.commitRecordBatch(ctx, f, fp, sum)
	}
	b := f.batch
	rejects := b.held()
	resolved := append([][]string(nil), b.gone...)
	var records []checkpoint.Record
	fresh := true // every recorded row had no fingerprint (see Ledger.Fresh)
	badIDs := 0
	objects := b.objects
	if b.sent == nil && len(f.res) > 0 {
		// A batch settled from the journal: its row keys are not in the
		// journal, so per-row errors are recorded under batch and index.
		objects = splitObjects(b.Body)
	}
	rep := &f.rep
	rep.Invalid = len(b.invalid)
	rep.Deferred = len(b.deferred)
	rep.Unchanged = b.unchanged
	if len(b.sent) == 0 {
		rep.Outcome = "nothing_to_send"
	}
	for i, r := range f.res {
		switch {
		case r.Error != nil:
			rep.Rejected++
			rj := checkpoint.Reject{Sync: b.Sync, Code: r.Error.Code, Message: r.Error.Message}
			switch {
			case i < len(b.sent):
				rj.RowKey = b.sent[i].pos.Key
			case i < len(b.RowKeys):
				rj.RowKey = b.RowKeys[i] // a batch settled from the journal
			default:
				// Journaled by a version that kept no row keys.
				rj.RowKey = []string{fmt.Sprintf("batch %s #%d", b.Key, i)}
			}
			if i < len(objects) {
				rj.Payload = objects[i]
			}
			if rj.Code == "" {
				rj.Code = "rejected"
			}
			rejects = append(rejects, rj)
		case r.Created:
			rep.Created++
		case r.Updated:
			rep.Updated++
		case r.Existing:
			rep.Existing++
		}
		if r.Error == nil && i < len(b.RowKeys) {
			resolved = append(resolved, b.RowKeys[i])
			switch id, ok := recordID(r.ID); {
			case ok:
				records = append(records, checkpoint.Record{RowKey: b.RowKeys[i], ID: id})
				fresh = fresh && i < len(b.sent) && b.sent[i].fresh
			case r.ID != "":
				badIDs++
			}
		}
	}
	if badIDs > 0 {
		s.logger().Warn("the API returned record ids that are not UUIDs; rows of other syncs that link to these rows wait until they get one",
			"rows", badIDs, "batch", b.Key)
	}
	rep.Restored = countRestored(b, f.res)
	// Rows without a change fingerprint have, as a rule, no record in the
	// ledger either: the store may insert theirs (it checks).
	ledger := checkpoint.Ledger{Records: records, Referrers: s.Sync.Referrers(), Fresh: fresh && len(records) > 0}
	if err := s.Store.CommitRecords(ctx, b.Sync, b.Key, b.To, fp, rejects, resolved, ledger); err != nil {
		return err
	}
	s.saveFingerprints(ctx, b, f.res)
	sum.Restored += rep.Restored
	sum.Unchanged += b.unchanged
	s.observer().BatchDone(s.Sync.Name, *rep)
	sum.Sent += len(f.res)
	sum.Created += rep.Created
	sum.Updated += rep.Updated
	sum.Existing += rep.Existing
	sum.Rejected += rep.Rejected
	sum.Polls += rep.Polls
	sum.Batches++
	sum.Position = b.To
	return nil
}

// recordID is the canonical form of a record id the API returned: ledger
// entries are UUIDs (§3 of the API brief), and a link is sent as the
// ledger holds it.
func recordID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", false
	}
	return u.String(), true
}

// saveFingerprints remembers the objects the API confirmed: rows whose key
// had no fingerprint when the pass looked are added, the others replaced.
// Losing them (a crash right after the commit) only costs a resend, so a
// failure is logged, not fatal.
func (s *Syncer) saveFingerprints(ctx context.Context, b built, res []prism.Result) {
	if s.Fingerprints == nil || len(b.sent) == 0 {
		return
	}
	var add, replace fingerprintSave
	for i, r := range res {
		if r.Error == nil && i < len(b.sent) && b.sent[i].sum != nil {
			if b.sent[i].fresh {
				add.row(b.sent[i])
			} else {
				replace.row(b.sent[i])
			}
		}
	}
	s.saveSums(ctx, s.Fingerprints.AddFingerprints, add)
	s.saveSums(ctx, s.Fingerprints.SaveFingerprints, replace)
}

// fingerprintSave collects the keys and sums of one save.
type fingerprintSave struct {
	keys [][]string
	sums [][]byte
}

func (f *fingerprintSave) row(r row) {
	f.keys = append(f.keys, r.pos.Key)
	f.sums = append(f.sums, r.sum)
}

func (s *Syncer) saveSums(ctx context.Context, save func(context.Context, string, [][]string, [][]byte) error, f fingerprintSave) {
	if len(f.keys) == 0 {
		return
	}
	if err := save(ctx, s.Sync.Name, f.keys, f.sums); err != nil {
		s.logger().Warn("could not save change fingerprints; unchanged rows may be sent again", "err", err)
	}
}

// splitObjects recovers the objects of a journaled request body so rejected
// rows of a resumed batch keep their payload.
func splitObjects(body []byte) [][]byte {
	var req struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	out := make([][]byte, len(req.Objects))
	for i, o := range req.Objects {
		out[i] = o
	}
	return out
}

// checkRejectShare fails the pass when too many of its rows were rejected.
// The batches so far are committed (their rejects recorded), so nothing is
// lost: the rejects are retried when their rows change again.
func (s *Syncer) checkRejectShare(sum *Summary) error {
	seen := sum.Sent + sum.Invalid
	bad := sum.Rejected + sum.Invalid
	if s.MaxRejectShare <= 0 || seen < 20 || float64(bad) <= s.MaxRejectShare*float64(seen) {
		return nil
	}
	return &PermanentError{&RejectShareError{Rejected: bad, Rows: seen, MaxShare: s.MaxRejectShare}}
}
