package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/mapping"
)

// built is a batch ready to send plus what the engine needs to interpret
// the API's answer: which source row each object came from.
type built struct {
	checkpoint.Batch
	sent    []row // rows in request order
	objects [][]byte
	invalid []checkpoint.Reject
	// deferred are rows that link to a row of another sync without a
	// record yet: recorded (code missing_reference) and sent by a later
	// pass once that record exists.
	deferred []checkpoint.Reject
	// gone are keys of rows a revisit looked for and did not find: their
	// deferrals end with the batch's commit.
	gone [][]string
	// removed are rows the soft-delete column marks deleted, kept out of
	// the import; withDeletes turns them into delete batches. restored
	// are keys of sent rows whose record was deleted or archived before.
	removed  []row
	restored [][]string
	// ids are the record ids of a delete or archive batch, aligned with
	// its RowKeys.
	ids       []string
	unchanged int  // rows left out because the API already has their object
	read      int  // rows read from the source for this batch
	journaled bool // Batch is (or may be) in the journal
	// ticket holds the requests the budget reserved for the batch; its
	// API calls carry it, and it is given back when the batch ends.
	ticket *budget.Ticket
}

// build maps a page into one request. Rows the mapping refuses and rows whose
// dedupe value repeats inside the batch are kept out of the request and
// recorded as rejects, so one bad row never blocks the rows behind it. Links
// to other syncs' records are resolved with one ledger lookup for the whole
// page; a row whose link has no record yet is kept out and deferred.
//
// warn is told about values the mapping had to change (NaN sent as null,
// invalid UTF-8 replaced): the row is sent, and noted.
func (s *Syncer) build(ctx context.Context, enc *mapping.Encoder, from checkpoint.Position, rows []row, warn func(row, mapping.Warning)) (built, error) {
	b := built{sent: make([]row, 0, len(rows))}
	resolve, err := s.resolver(ctx, enc, rows)
	if err != nil {
		return b, err
	}
	seen := make(map[string]bool, len(rows))
	var h fingerprinter
	// Every object is a slice of buf and lives until its batch commits. A
	// buffer that grew by doubling would keep each outgrown array alive
	// through those slices, so size it from the previous batch up front.
	buf := make([]byte, 0, s.bodyHint+s.bodyHint/8)
	for _, r := range rows {
		if r.deleted {
			r.values = nil
			b.removed = append(b.removed, r)
			continue
		}
		start := len(buf)
		out, dedupe, err := enc.AppendResolved(buf, r.values, resolve, func(w mapping.Warning) { warn(r, w) })
		var miss *mapping.MissingRefError
		if errors.As(err, &miss) {
			b.deferred = append(b.deferred, s.deferral(r, miss))
			continue
		}
		if err != nil {
			b.invalid = append(b.invalid, s.reject(r, rowErrorCode(err), err.Error(), nil))
			continue
		}
		if dedupe != "" {
			if seen[dedupe] {
				b.invalid = append(b.invalid, s.reject(r, "duplicate_in_batch",
					fmt.Sprintf("%s value %q already appears in this batch; the row is retried when it changes again", s.Sync.Target.DedupeBy, dedupe), out[start:]))
				buf = out[:start]
				continue
			}
			seen[dedupe] = true
		}
		buf = out
		r.object = buf[start:len(buf):len(buf)]
		// The decoded column values are not needed once the row is
		// encoded; dropping them keeps in-flight batches small.
		r.values = nil
		if s.Fingerprints != nil {
			r.sum = h.sum(s.fpPrefix, r.object)
		}
		b.sent = append(b.sent, r)
	}
	s.bodyHint = max(s.bodyHint, len(buf))
	nb := s.buildRows(b.sent, from)
	nb.invalid, nb.deferred, nb.removed = b.invalid, b.deferred, b.removed
	nb.To = rows[len(rows)-1].pos
	return nb, nil
}

// held are the rows of b's range kept out of its body, as its commit
// records them: refused by the mapping, then deferred.
func (b *built) held() []checkpoint.Reject {
	if len(b.invalid)+len(b.deferred) == 0 {
		return nil
	}
	return append(append(make([]checkpoint.Reject, 0, len(b.invalid)+len(b.deferred)), b.invalid...), b.deferred...)
}

// settled is a batch read back from the journal, with the rows it held
// back sorted again into refused and deferred ones.
func settled(jb checkpoint.Batch) built {
	b := built{Batch: jb}
	for _, r := range jb.Held {
		if r.WaitSync != "" {
			b.deferred = append(b.deferred, r)
		} else {
			b.invalid = append(b.invalid, r)
		}
	}
	return b
}

// skipUnchanged drops rows whose object hash equals the one stored for
// their key; the batch keeps its end position, so the checkpoint still moves
// past them. With look false the sync has no fingerprints at all (its first
// pass): every row is fresh, and there is nothing to ask the store.
func (s *Syncer) skipUnchanged(ctx context.Context, b built, look bool) (built, error) {
	if s.Fingerprints == nil || s.Force || len(b.sent) == 0 {
		return b, nil
	}
	if !look {
		for i := range b.sent {
			b.sent[i].fresh = true
		}
		return b, nil
	}
	keys := make([][]string, len(b.sent))
	for i, r := range b.sent {
		keys[i] = r.pos.Key
	}
	// Fingerprints belong to the sync, not to its state name: a backfill
	// skips what the live sync already delivered, and vice versa.
	stored, err := s.Fingerprints.Fingerprints(ctx, s.Sync.Name, keys)
	if err != nil {
		return b, err
	}
	kept := b.sent[:0:0]
	for i := range b.sent {
		r := &b.sent[i]
		if i < len(stored) && bytes.Equal(stored[i], r.sum) {
			b.unchanged++
			continue
		}
		r.fresh = i < len(stored) && stored[i] == nil
		kept = append(kept, *r)
	}
	if b.unchanged == 0 {
		return b, nil
	}
	nb := s.buildRows(kept, b.From)
	nb.invalid, nb.deferred, nb.gone, nb.unchanged, nb.To, nb.read = b.invalid, b.deferred, b.gone, b.unchanged, b.To, b.read
	nb.removed = b.removed
	return nb, nil
}

// fingerprint hashes what the API would apply for a row: its object and the
// target options that decide how it is applied.
// The target options come first (fingerprintPrefix, set by open).
//
// Stored fingerprints are compared across versions: changing what is hashed
// would resend every row once (TestFingerprintIsStable pins it).
func (s *Syncer) fingerprint(object []byte) []byte {
	var h fingerprinter
	return h.sum(s.fpPrefix, object)
}

// fingerprinter computes fingerprints one after another with one hash and
// one block of sums, instead of two allocations per row.
type fingerprinter struct {
	h    hash.Hash
	sums []byte
}

func (f *fingerprinter) sum(prefix string, object []byte) []byte {
	if f.h == nil {
		f.h = sha256.New()
	}
	f.h.Reset()
	io.WriteString(f.h, prefix) //nolint:errcheck // hash writes cannot fail
	f.h.Write(object)
	if cap(f.sums)-len(f.sums) < sha256.Size {
		f.sums = make([]byte, 0, 64*sha256.Size)
	}
	f.sums = f.h.Sum(f.sums)
	sum := f.sums[len(f.sums)-sha256.Size:]
	return sum[:16:16]
}

func fingerprintPrefix(t mapping.Target) string {
	return fmt.Sprintf("%s\x00%s\x00%t\x00%t\x00%s\x00", t.Object, t.DedupeBy, t.CaseInsensitive, t.UpdateExisting, t.ListID)
}

// buildRows makes the request for rows whose objects are already encoded.
func (s *Syncer) buildRows(rows []row, from checkpoint.Position) built {
	b := built{sent: rows, objects: make([][]byte, 0, len(rows))}
	for _, r := range rows {
		b.objects = append(b.objects, r.object)
	}
	t := s.Sync.Target
	b.Batch = checkpoint.Batch{
		Sync:    s.name(),
		Attempt: 1,
		From:    from,
		Rows:    len(rows),
		Object:  t.Object,
	}
	b.RowKeys = make([][]string, 0, len(rows))
	for _, r := range rows {
		b.RowKeys = append(b.RowKeys, r.pos.Key)
	}
	if len(rows) > 0 {
		b.To = rows[len(rows)-1].pos
		// The objects become views of the body, so the encode buffer
		// they were written to can go: each batch in flight holds its
		// objects once.
		b.Body = prism.EncodeImportBodyShared(b.objects, prism.ImportOptions{
			DedupeBy:        t.DedupeBy,
			CaseInsensitive: t.CaseInsensitive,
			UpdateExisting:  t.UpdateExisting,
			ListID:          t.ListID,
		})
		for i := range rows {
			rows[i].object = b.objects[i]
		}
		b.Key = s.batchKey(from, b.Body, b.Attempt)
	}
	return b
}

// logWarning notes a value the mapping changed on its way to the API.
func (s *Syncer) logWarning(r row, w mapping.Warning) {
	s.logger().Warn("value changed on the way to Micro", "row_key", r.pos.Key, "property", w.Property, "code", w.Code, "detail", w.Message)
}

// batchKey is a batch's Idempotency-Key: deterministic in the sync (state)
// name, the start position, the exact body and the attempt, so a resend
// after a crash is recognised. KeyNonce makes deliberate resends of the
// same rows (backfill, rejects --retry) distinct from earlier ones: their
// keys, once used, are journaled, so a crash still replays them.
func (s *Syncer) batchKey(from checkpoint.Position, body []byte, attempt int) string {
	start := positionString(from)
	if s.KeyNonce != "" {
		start += "|" + s.KeyNonce
	}
	return prism.IdempotencyKey(s.name(), start, body, attempt)
}

func positionString(p checkpoint.Position) string {
	if p.IsZero() {
		return "start"
	}
	return p.Cursor + "|" + strings.Join(p.Key, "|")
}

func rowErrorCode(err error) string {
	var re *mapping.RowError
	if errors.As(err, &re) && re.Code != "" {
		return re.Code
	}
	return "invalid_row"
}

func (s *Syncer) reject(r row, code, msg string, payload []byte) checkpoint.Reject {
	return checkpoint.Reject{Sync: s.name(), RowKey: r.pos.Key, Code: code, Message: msg, Payload: append([]byte(nil), payload...)}
}
