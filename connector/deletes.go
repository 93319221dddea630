package connector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/mapping"
)

// Deletes. The record ledger says which rows have a record in Micro: a key
// in the ledger is a record to delete when its row is deleted. A row whose
// soft-delete column says so is handled by the normal pass, in order with
// the other changes of its page; a row gone from the source (a hard
// delete) is found by Reconcile. Either way the record ids are sent in
// batch/delete requests of at most prism.MaxBatchItems ids (or batch/update
// requests setting the archive properties, with on_delete: archive), each
// journaled before it is sent under a deterministic Idempotency-Key and
// committed, with the ledger's marks, in one store transaction, exactly as
// imports are.
//
// A row that is live again after its record was deleted is sent by the
// normal import: Micro's dedupe does not match deleted records, so it is
// created anew and the ledger takes the new id (relinking the rows of other
// syncs that link to it); an archived record is matched by dedupe and
// updated. Either way one live record remains, and the row counts as
// restored.

// DefaultMaxDeleteShare is Syncer.MaxDeleteShare's default.
const DefaultMaxDeleteShare = 0.1

// ledgerPageSize is how many ledger keys reconcile holds and probes the
// source for at once: memory stays bounded whatever the table's size, and
// the probe's parameters stay well below PostgreSQL's 65,535.
const ledgerPageSize = 1000

// DeleteShareError refuses a reconcile that would delete (or archive) more
// than Syncer.MaxDeleteShare of a sync's records: an emptied table, a
// DATABASE_URL pointing at the wrong database or a broken query look
// exactly like that. Nothing was sent.
type DeleteShareError struct {
	Sync     string
	Gone     int     // records whose rows are not in the source
	Records  int     // records the ledger holds for the sync
	MaxShare float64 // Syncer.MaxDeleteShare
}

func (e *DeleteShareError) Error() string {
	return fmt.Sprintf("reconcile would remove %d of the %d Micro records of sync %s (%.0f%%), more than MAX_DELETE_SHARE=%g allows; "+
		"nothing was deleted. An emptied table, a wrong DATABASE_URL or a broken query looks like this: check the source, "+
		"then run \"prismsync reconcile --sync %s --dry-run\" to see the keys and \"prismsync reconcile --sync %s --yes\" to go ahead",
		e.Gone, e.Records, e.Sync, 100*float64(e.Gone)/float64(max(e.Records, 1)), e.MaxShare, e.Sync, e.Sync)
}

// describeDeleted adds the soft-delete flag to the select list: true when
// a timestamp column is not NULL or a boolean column is true.
func (s *source) describeDeleted(ctx context.Context, column string) error {
	col := "src." + pgx.Identifier{column}.Sanitize()
	rows, err := s.pool.Query(ctx, "SELECT "+col+" FROM "+s.from+" LIMIT 0")
	if err != nil {
		return fmt.Errorf("describe soft-delete column %q: %w", column, err)
	}
	oid := rows.FieldDescriptions()[0].DataTypeOID
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("describe soft-delete column %q: %w", column, err)
	}
	var expr string
	switch oid {
	case pgtype.BoolOID:
		expr = "coalesce(" + col + ", false)"
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		expr = "(" + col + " IS NOT NULL)"
	default:
		return fmt.Errorf("soft-delete column %q must be a timestamp or a boolean (OID %d)", column, oid)
	}
	s.selectList += ", " + expr
	s.deleted = true
	return nil
}

// sends reports whether b makes a request: objects to import or record
// ids to delete or archive.
func (b *built) sends() bool { return len(b.sent) > 0 || len(b.ids) > 0 }

// withDeletes splits a page's batch when some of its rows were
// soft-deleted: the import of its live rows first, then the deletes (or
// archives) of the deleted rows' records, at most prism.MaxBatchItems per
// request. Only the last part moves the checkpoint to the page's end, so a
// crash between the parts reads the page again rather than skip a delete
// (the imported rows are then unchanged for the fingerprints). Each part
// starts at the page's start: they differ by kind and by their first row.
func (s *Syncer) withDeletes(ctx context.Context, b built) ([]built, error) {
	if !s.Sync.Deletes() || (len(b.sent) == 0 && len(b.removed) == 0) {
		b.gone = append(b.gone, rowKeys(b.removed)...) // on_delete: ignore
		b.removed = nil
		return []built{b}, nil
	}
	keys := append(rowKeys(b.sent), rowKeys(b.removed)...)
	states, err := s.Store.RecordStates(ctx, checkpoint.RejectOwner(s.name()), keys)
	if err != nil {
		return nil, err
	}
	for i, r := range b.sent {
		if states[i].State != checkpoint.StateLive {
			b.restored = append(b.restored, r.pos.Key)
		}
	}
	kind := checkpoint.KindDelete
	if s.Sync.Target.OnDelete == mapping.OnDeleteArchive {
		kind = checkpoint.KindArchive
	}
	var ids []string
	var idKeys [][]string
	for j, r := range b.removed {
		st := states[len(b.sent)+j]
		switch {
		case st.ID == "" || st.State == checkpoint.StateDeleted:
			// Never delivered, or deleted already: nothing to do but end
			// any reject or deferral it had.
			b.gone = append(b.gone, r.pos.Key)
		case kind == checkpoint.KindArchive && st.State == checkpoint.StateArchived:
			b.gone = append(b.gone, r.pos.Key)
		default:
			ids = append(ids, st.ID)
			idKeys = append(idKeys, r.pos.Key)
		}
	}
	b.removed = nil
	if len(ids) == 0 {
		return []built{b}, nil
	}
	end := b.To
	b.To = b.From
	parts := []built{b}
	for len(ids) > 0 {
		n := min(len(ids), prism.MaxBatchItems)
		to := b.From
		if n == len(ids) {
			to = end
		}
		parts = append(parts, s.recordBatch(kind, b.From, to, ids[:n], idKeys[:n]))
		ids, idKeys = ids[n:], idKeys[n:]
	}
	return parts, nil
}

func rowKeys(rows []row) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = r.pos.Key
	}
	return out
}

// recordBatch is one batch/delete (or archive batch/update) request for
// ids, the records of the rows keys.
func (s *Syncer) recordBatch(kind string, from, to checkpoint.Position, ids []string, keys [][]string) built {
	var body []byte
	if kind == checkpoint.KindArchive {
		body = prism.EncodeUpdateBody(ids, s.archive)
	} else {
		body = prism.EncodeDeleteBody(ids)
	}
	b := built{ids: ids, Batch: checkpoint.Batch{
		Sync: s.name(), Kind: kind, Attempt: 1, From: from, To: to, Rows: len(ids),
		Body: body, Object: s.Sync.Target.Object, RowKeys: keys,
	}}
	b.Key = s.batchKey(from, body, b.Attempt)
	return b
}

// sendRecords sends a journaled delete or archive batch. An id Micro does
// not know (any more) counts as deleted: the record is gone, which is what
// was asked. A 409 on the key earns one new attempt, as for imports.
func (s *Syncer) sendRecords(ctx context.Context, b *checkpoint.Batch) ([]prism.Result, BatchReport, error) {
	start := time.Now()
	rep := BatchReport{Rows: b.Rows}
	for {
		rep.Attempts++
		var items []prism.ItemResult
		var err error
		if b.Kind == checkpoint.KindArchive {
			items, _, err = s.API.BatchUpdate(ctx, b.Object, b.Key, b.Body)
		} else {
			items, _, err = s.API.BatchDelete(ctx, b.Object, b.Key, b.Body)
		}
		rep.Duration = time.Since(start)
		if err != nil {
			rep.Outcome = "error"
			if prism.IsIdempotencyConflict(err) && rep.Attempts < 2 {
				if err := s.nextAttempt(ctx, b); err != nil {
					return nil, rep, err
				}
				continue
			}
			if prism.IsPermanent(err) {
				return nil, rep, &PermanentError{err}
			}
			return nil, rep, err
		}
		rep.Outcome = "complete"
		res := make([]prism.Result, len(items))
		for i, it := range items {
			res[i] = prism.Result{InputIndex: i, ID: it.ID}
			if !it.OK && !it.NotFound {
				res[i].Error = it.Error
			}
		}
		return res, rep, nil
	}
}

// commitRecordBatch commits a delete or archive batch: the done records are
// marked in the ledger (and their fingerprints dropped), the ids Micro
// refused recorded as rejects of their rows, and the checkpoint moved to
// the batch's end, in one store transaction.
func (s *Syncer) commitRecordBatch(ctx context.Context, f *flight, fp string, sum *Summary) error {
	b := f.batch
	rep := &f.rep
	rep.Kind = b.Kind
	var done [][]string
	var rejects []checkpoint.Reject
	for i, r := range f.res {
		if i >= len(b.RowKeys) {
			break
		}
		if r.Error != nil {
			code := r.Error.Code
			if code == "" {
				code = "rejected"
			}
			rejects = append(rejects, checkpoint.Reject{Sync: b.Sync, RowKey: b.RowKeys[i], Code: code,
				Message: fmt.Sprintf("Micro refused to %s record %s: %s", b.Kind, r.ID, r.Error.Message)})
			rep.Rejected++
			continue
		}
		done = append(done, b.RowKeys[i])
	}
	ledger := checkpoint.Ledger{Referrers: s.Sync.Referrers()}
	if b.Kind == checkpoint.KindArchive {
		ledger.Archived = done
		rep.Archived = len(done)
	} else {
		ledger.Deleted = done
		rep.Deleted = len(done)
	}
	resolved := append(append([][]string(nil), b.gone...), done...)
	if err := s.Store.CommitRecords(ctx, b.Sync, b.Key, b.To, fp, rejects, resolved, ledger); err != nil {
		return err
	}
	s.observer().BatchDone(s.Sync.Name, *rep)
	sum.Deleted += rep.Deleted
	sum.Archived += rep.Archived
	sum.Rejected += rep.Rejected
	sum.Batches++
	sum.Position = b.To
	return nil
}

// countRestored counts the rows of an import batch that were deleted or
// archived before and that Micro now confirmed live.
func countRestored(b built, res []prism.Result) int {
	if len(b.restored) == 0 {
		return 0
	}
	was := make(map[string]bool, len(b.restored))
	for _, k := range b.restored {
		was[keyString(k)] = true
	}
	n := 0
	for i, r := range res {
		if r.Error == nil && i < len(b.RowKeys) && was[keyString(b.RowKeys[i])] {
			n++
		}
	}
	return n
}

// ReconcileOptions steer Reconcile.
type ReconcileOptions struct {
	// DryRun lists the keys (through Gone) and sends nothing.
	DryRun bool
	// Yes overrides the MaxDeleteShare guard: the operator looked.
	Yes bool
	// Gone, when set, is told each row key reconcile found gone from the
	// source, as it is found (DryRun lists them with it).
	Gone func(key []string)
}

// Reconcile finds the records of rows gone from the source (hard deletes)
// and deletes them in Micro (or archives them), per on_delete. The ledger
// is read in pages in its key order, and each page's keys are looked up in
// the source with one statement (index probes of the key columns), so
// neither side is ever held whole in memory. A first walk counts what is
// gone; more than MaxDeleteShare of the sync's records refuses (a
// *DeleteShareError, nothing sent) unless o.Yes; a second walk sends. The
// checkpoint does not move. The caller must hold the sync's lease.
func (s *Syncer) Reconcile(ctx context.Context, o ReconcileOptions) (Summary, error) {
	start := time.Now()
	sum := Summary{Sync: s.Sync.Name}
	err := s.reconcile(WithSyncName(ctx, s.Sync.Name), o, &sum)
	sum.Duration = time.Since(start)
	if err != nil {
		err = fmt.Errorf("sync %s: reconcile: %w", s.Sync.Name, err)
	}
	if o.DryRun {
		return sum, err
	}
	if s.Paced {
		// The daemon never overrides the guard: the refusal stays, and
		// every pass reports it (the sync is failing), until a reconcile
		// finds no more than the share gone (the operator fixed the source
		// or ran prismsync reconcile --yes).
		var dse *DeleteShareError
		switch {
		case errors.As(err, &dse):
			s.refusal.Store(&err)
		case err == nil:
			s.refusal.Store(nil)
		}
	}
	s.observer().PassFinished(sum, err)
	return sum, err
}

// refused is the daemon's standing reconcile refusal, if any.
func (s *Syncer) refused() error {
	if p := s.refusal.Load(); p != nil {
		return fmt.Errorf("waiting for an operator: %w", *p)
	}
	return nil
}

func (s *Syncer) reconcile(ctx context.Context, o ReconcileOptions, sum *Summary) error {
	if s.Sync.Target.OnDelete == mapping.OnDeleteIgnore {
		return &PermanentError{errors.New("on_delete is ignore: reconcile has nothing to do")}
	}
	fp := s.Sync.Fingerprint()
	if !o.DryRun {
		if err := s.settlePending(ctx, fp, sum); err != nil {
			return err
		}
	}
	state, err := s.Store.Load(ctx, s.name())
	if err != nil {
		return err
	}
	sum.Position = state.Position
	src, _, err := s.open(ctx)
	if err != nil {
		return err
	}
	owner := checkpoint.RejectOwner(s.name())
	records, err := s.Store.CountRecords(ctx, owner)
	if err != nil {
		return err
	}
	kind := checkpoint.KindDelete
	if s.Sync.Target.OnDelete == mapping.OnDeleteArchive {
		kind = checkpoint.KindArchive
	}
	// A record archived already is not archived again.
	wanted := func(e checkpoint.LedgerEntry) bool {
		return kind == checkpoint.KindDelete || e.State != checkpoint.StateArchived
	}
	if o.DryRun || !o.Yes {
		gone := 0
		err := s.walkGone(ctx, src, owner, wanted, func(es []checkpoint.LedgerEntry) error {
			gone += len(es)
			for _, e := range es {
				if o.Gone != nil {
					o.Gone(e.RowKey)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		sum.Gone = gone
		max := s.MaxDeleteShare
		if max == 0 {
			max = DefaultMaxDeleteShare
		}
		if o.DryRun || gone == 0 {
			return nil
		}
		if max > 0 && float64(gone) > max*float64(records) {
			return &PermanentError{&DeleteShareError{Sync: s.Sync.Name, Gone: gone, Records: records, MaxShare: max}}
		}
		sum.Gone = 0 // counted again as they are sent
	}
	p := &pipeline{s: s, fp: fp, sum: sum, max: 1}
	var ids []string
	var keys [][]string
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		b := s.recordBatch(kind, sum.Position, sum.Position, ids, keys)
		ids, keys = nil, nil
		// Explicit commands are never paced; the daemon's reconcile is
		// (Paced), and a held batch ends the reconcile for now: the next
		// one finds the rest.
		t, d, held, err := s.admit(ctx, len(b.ids), s.Paced)
		if err != nil {
			return err
		}
		if held {
			sum.Held, sum.NextSend, sum.BudgetSpent = sum.Held+len(b.ids), d.Next, d.Spent
			return errHeld
		}
		b.ticket = t
		return p.add(ctx, b)
	}
	err = s.walkGone(ctx, src, owner, wanted, func(es []checkpoint.LedgerEntry) error {
		for _, e := range es {
			sum.Gone++
			if o.Gone != nil {
				o.Gone(e.RowKey)
			}
			ids = append(ids, e.ID)
			keys = append(keys, e.RowKey)
			if len(ids) == prism.MaxBatchItems {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if errors.Is(err, errHeld) {
		err = nil
	}
	if err != nil {
		p.wg.Wait()
		if cerr := p.drain(ctx, true); cerr != nil {
			s.logger().Warn("could not commit completed delete batches after a failure", "err", cerr)
		}
		return err
	}
	return p.drain(ctx, true)
}

// errHeld ends a reconcile whose next batch waits for the budget's pace.
var errHeld = errors.New("held for the request budget's pace")

// walkGone pages through the ledger of owner and calls fn with the entries
// (those wanted) whose rows the source no longer has, page by page.
func (s *Syncer) walkGone(ctx context.Context, src *source, owner string, wanted func(checkpoint.LedgerEntry) bool, fn func([]checkpoint.LedgerEntry) error) error {
	after := ""
	for {
		page, err := s.Store.LedgerPage(ctx, owner, after, ledgerPageSize)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].After
		var probe []checkpoint.LedgerEntry
		for _, e := range page {
			if wanted(e) {
				probe = append(probe, e)
			}
		}
		missing, err := src.missing(ctx, probe)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			if err := fn(missing); err != nil {
				return err
			}
		}
		if len(page) < ledgerPageSize {
			return nil
		}
	}
}

// missing returns the entries whose keys the source has no row for, in one
// READ ONLY statement: the keys go in as arrays, cast to the key columns'
// types, and each is probed with NOT EXISTS, which an index on the key
// (every sync's key should be unique, hence indexed) answers from the
// index alone.
func (s *source) missing(ctx context.Context, es []checkpoint.LedgerEntry) ([]checkpoint.LedgerEntry, error) {
	if len(es) == 0 {
		return nil, nil
	}
	nkey := len(s.types) - 1
	cols := make([][]string, nkey)
	for _, e := range es {
		if len(e.RowKey) != nkey {
			return nil, fmt.Errorf("ledger key %v has %d values but the mapping's key has %d columns", e.RowKey, len(e.RowKey), nkey)
		}
		for i, v := range e.RowKey {
			cols[i] = append(cols[i], v)
		}
	}
	var params, names, eqs []string
	args := make([]any, nkey)
	for i := range nkey {
		args[i] = cols[i]
		params = append(params, fmt.Sprintf("$%d::text[]", i+1))
		names = append(names, fmt.Sprintf("k%d", i))
		eqs = append(eqs, fmt.Sprintf("u.k%d::%s", i, s.types[i+1]))
	}
	sql := fmt.Sprintf("SELECT u.i FROM unnest(%s) WITH ORDINALITY AS u(%s, i) WHERE NOT EXISTS (SELECT 1 FROM %s WHERE (%s) = (%s))",
		strings.Join(params, ", "), strings.Join(names, ", "), s.from, strings.Join(s.ordering[1:], ", "), strings.Join(eqs, ", "))
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin reconcile read: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a read-only transaction has nothing to lose
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reconcile: look up %d keys in the source: %w", len(es), err)
	}
	var out []checkpoint.LedgerEntry
	var i int64
	_, err = pgx.ForEachRow(rows, []any{&i}, func() error {
		out = append(out, es[i-1])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: look up %d keys in the source: %w", len(es), err)
	}
	return out, tx.Commit(ctx)
}
