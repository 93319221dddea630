package connector

import (
	"context"
	"slices"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// Preview is what a pass would send for some rows: nothing is journaled,
// sent or committed.
type Preview struct {
	Rows     int                 // rows read
	Bodies   [][]byte            // one import request body per batch, byte for byte
	Invalid  []checkpoint.Reject // rows kept out of the requests, with their reasons
	Deferred []checkpoint.Reject // rows that would wait for another sync's record
	Warnings []RowWarning        // values the mapping changed
	// Unchanged holds the keys of rows left out because Micro already has
	// their object (with Syncer.Fingerprints set, as a pass would).
	Unchanged [][]string
}

// Preview reads up to limit rows of w (normally: after the checkpoint) and
// builds the request bodies exactly as a pass would, in batches of the
// sync's batch_size, links resolved through the Store's record ledger (with
// no Store, every link is missing and its row would be deferred), leaving
// out rows whose fingerprint says Micro has their object already (when
// Fingerprints is set). It takes no lease and changes nothing: fingerprints
// and records are only read.
func (s *Syncer) Preview(ctx context.Context, w Window) (Preview, error) {
	var pv Preview
	src, enc, err := s.open(ctx)
	if err != nil {
		return pv, err
	}
	rows, err := src.Page(ctx, w)
	if err != nil {
		return pv, err
	}
	pv.Rows = len(rows)
	warn := func(r row, w mapping.Warning) {
		pv.Warnings = append(pv.Warnings, RowWarning{RowKey: r.pos.Key, Warning: w})
	}
	from := w.After
	for len(rows) > 0 {
		n := min(len(rows), s.Sync.BatchSize)
		b, err := s.build(ctx, enc, from, rows[:n], warn)
		if err != nil {
			return pv, err
		}
		rows, from = rows[n:], b.To
		pv.Invalid = append(pv.Invalid, b.invalid...)
		pv.Deferred = append(pv.Deferred, b.deferred...)
		all := b.sent
		if b, err = s.skipUnchanged(ctx, b, true); err != nil {
			return pv, err
		}
		// skipUnchanged keeps the order: what is missing was skipped.
		for i, kept := 0, 0; i < len(all); i++ {
			if kept < len(b.sent) && slices.Equal(b.sent[kept].pos.Key, all[i].pos.Key) {
				kept++
				continue
			}
			pv.Unchanged = append(pv.Unchanged, all[i].pos.Key)
		}
		if len(b.sent) > 0 {
			pv.Bodies = append(pv.Bodies, b.Body)
		}
	}
	return pv, nil
}

// RowWarning is a value the mapping changed on its way (the row is sent).
type RowWarning struct {
	RowKey []string
	mapping.Warning
}
