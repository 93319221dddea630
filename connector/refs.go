package connector

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/mapping"
)

// Relations: a ref property sends the Micro record id of a row of another
// sync, looked up in the record ledger that every commit writes. A row whose
// link has no record yet is deferred rather than sent with a null or wrong
// link; after its window, each pass revisits the sync's deferred rows whose
// records have come, and the rows that link to a record that was replaced,
// and sends them again (the checkpoint does not move for them).

// DefaultDeferWarnAfter is Syncer.DeferWarnAfter's default.
const DefaultDeferWarnAfter = 24 * time.Hour

// resolver looks up, in one ledger query, every record the rows link to,
// and returns what the encoder asks for a link's record id.
func (s *Syncer) resolver(ctx context.Context, enc *mapping.Encoder, rows []row) (mapping.Resolver, error) {
	refs := enc.Refs()
	if len(refs) == 0 {
		return nil, nil
	}
	type link struct{ sync, key string }
	index := make(map[link]int)
	var want []checkpoint.RecordRef
	for _, r := range rows {
		enc.RefKeys(r.values, func(ref int, key []string) {
			l := link{refs[ref].Sync, keyString(key)}
			if _, ok := index[l]; !ok {
				index[l] = len(want)
				want = append(want, checkpoint.RecordRef{Sync: l.sync, RowKey: key})
			}
		})
	}
	var ids []string
	if len(want) > 0 && s.Store != nil {
		var err error
		if ids, err = s.Store.RecordIDs(ctx, want); err != nil {
			return nil, err
		}
	}
	return func(ref int, key []string) (string, bool) {
		i, ok := index[link{refs[ref].Sync, keyString(key)}]
		if !ok || i >= len(ids) || ids[i] == "" {
			return "", false
		}
		return ids[i], true
	}, nil
}

// keyString is a map key for a row key; length prefixes keep ["a,b"] and
// ["a","b"] apart.
func keyString(k []string) string {
	var b strings.Builder
	for _, s := range k {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// deferral records a row that waits for the record of the row it links to.
// It is stamped with the engine's clock, which also ages it.
func (s *Syncer) deferral(r row, m *mapping.MissingRefError) checkpoint.Reject {
	now := s.now()
	return checkpoint.Reject{Sync: s.name(), RowKey: r.pos.Key, Code: mapping.CodeMissingReference,
		Message:  m.Error() + "; the row is sent once that row is delivered",
		WaitSync: m.Sync, WaitKey: m.Key, FirstSeen: now, LastSeen: now}
}

// revisit sends the rows that no longer wait: deferred rows whose
// referenced row has a record now, and rows that link to a record that was
// replaced (relinks). Their batches commit at the checkpoint the window
// left, so it stays where it is. Only the live sync revisits: a backfill's
// rows are the same sync's and its next live pass sends them.
func (s *Syncer) revisit(ctx context.Context, src *source, enc *mapping.Encoder, fp string, sum *Summary) error {
	deferred, err := s.Store.Deferred(ctx, s.Sync.Name)
	if err != nil {
		return err
	}
	s.warnWaiting(deferred, sum)
	ready, err := s.ready(ctx, deferred)
	if err != nil {
		return err
	}
	var relinks []checkpoint.Relink
	if len(enc.Refs()) > 0 {
		if relinks, err = s.Store.Relinks(ctx, s.Sync.Name); err != nil {
			return err
		}
	}
	if len(ready) == 0 && len(relinks) == 0 {
		return nil
	}
	p := &pipeline{s: s, fp: fp, sum: sum, max: max(1, s.MaxInflight)}
	held, err := s.resendKeys(ctx, p, src, enc, ready)
	if err == nil && !held && len(relinks) > 0 {
		held, err = s.relink(ctx, p, src, enc, relinks)
	}
	if derr := p.drain(ctx, true); err == nil {
		err = derr
	}
	if err != nil || held {
		return err // what was not sent waits for the next pass
	}
	if len(relinks) > 0 {
		// Every row that linked to a replaced record was sent (or found
		// unchanged); a relink queued again meanwhile stays.
		return s.Store.DropRelinks(ctx, s.Sync.Name, relinks)
	}
	return nil
}

// ready returns the keys of the deferred rows whose awaited record is in
// the ledger now, with one lookup.
func (s *Syncer) ready(ctx context.Context, deferred []checkpoint.Reject) ([][]string, error) {
	if len(deferred) == 0 {
		return nil, nil
	}
	refs := make([]checkpoint.RecordRef, len(deferred))
	for i, d := range deferred {
		refs[i] = checkpoint.RecordRef{Sync: d.WaitSync, RowKey: d.WaitKey}
	}
	ids, err := s.Store.RecordIDs(ctx, refs)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for i, id := range ids {
		if id != "" {
			out = append(out, deferred[i].RowKey)
		}
	}
	return out, nil
}

// warnWaiting reports the deferred rows older than DeferWarnAfter, each once
// per Syncer, with its key and what it waits for.
func (s *Syncer) warnWaiting(deferred []checkpoint.Reject, sum *Summary) {
	after := s.DeferWarnAfter
	if after <= 0 {
		after = DefaultDeferWarnAfter
	}
	now := s.now()
	const maxLines = 10
	lines, more := 0, 0
	for _, d := range deferred {
		waited := now.Sub(d.FirstSeen)
		if waited < after {
			continue
		}
		sum.Waiting++
		k := keyString(d.RowKey)
		if s.warnedWaiting[k] {
			continue
		}
		if lines == maxLines {
			more++
			continue
		}
		if s.warnedWaiting == nil {
			s.warnedWaiting = make(map[string]bool)
		}
		s.warnedWaiting[k] = true
		lines++
		s.logger().Warn("row deferred for longer than "+after.String()+": it links to a row that has no Micro record (not synced, or rejected); fix or sync that row and it is sent",
			"row_key", d.RowKey, "waits_for_sync", d.WaitSync, "waits_for_key", d.WaitKey,
			"since", d.FirstSeen.UTC().Format(time.RFC3339), "waited", waited.Round(time.Minute))
	}
	if more > 0 {
		s.logger().Warn("more rows deferred for longer than "+after.String()+" (prismsync rejects lists them)", "rows", more)
	}
}

// resendKeys reads the rows with the given keys and sends them; a key no
// longer in the source ends its deferral.
func (s *Syncer) resendKeys(ctx context.Context, p *pipeline, src *source, enc *mapping.Encoder, keys [][]string) (held bool, err error) {
	for len(keys) > 0 {
		n := min(len(keys), s.limit())
		chunk := keys[:n]
		keys = keys[n:]
		rows, err := src.ByKeys(ctx, chunk)
		if err != nil {
			return false, err
		}
		found := make(map[string]bool, len(rows))
		for _, r := range rows {
			found[keyString(r.pos.Key)] = true
		}
		var gone [][]string
		for _, k := range chunk {
			if !found[keyString(k)] {
				gone = append(gone, k)
			}
		}
		if held, err := s.resend(ctx, p, enc, rows, gone, resendOptions{partial: s.Paced, skipUnchanged: true, revisit: true}); held || err != nil {
			return held, err
		}
	}
	return false, nil
}

// relink sends again the rows that link to a record that was replaced: they
// are found by their link columns, not their key.
func (s *Syncer) relink(ctx context.Context, p *pipeline, src *source, enc *mapping.Encoder, relinks []checkpoint.Relink) (held bool, err error) {
	bySync := make(map[string][][]string)
	for _, r := range relinks {
		bySync[r.RefSync] = append(bySync[r.RefSync], r.RowKey)
	}
	seen := make(map[string]bool)
	for _, ref := range enc.Refs() {
		keys := bySync[ref.Sync]
		for len(keys) > 0 {
			n := min(len(keys), 1000) // parameters per statement stay well below PostgreSQL's 65,535
			rows, err := src.byLink(ctx, ref, keys[:n])
			keys = keys[n:]
			if err != nil {
				return false, err
			}
			// A row linking to two replaced records is sent once.
			rows = slices.DeleteFunc(rows, func(r row) bool {
				k := keyString(r.pos.Key)
				dup := seen[k]
				seen[k] = true
				return dup
			})
			for len(rows) > 0 {
				m := min(len(rows), s.limit())
				if held, err := s.resend(ctx, p, enc, rows[:m], nil, resendOptions{partial: s.Paced, skipUnchanged: true, revisit: true}); held || err != nil {
					return held, err
				}
				rows = rows[m:]
			}
		}
	}
	return false, nil
}

type resendOptions struct {
	partial       bool // a paced pass's batch that waits for its turn
	skipUnchanged bool // fingerprints apply (not for rejects --retry, which is explicit)
	revisit       bool // counted in Summary.Revisited
}

// resend maps rows read outside the window into one batch and sends it,
// committing it at the checkpoint where it is. gone are keys whose
// deferrals end with the batch. held is true when the budget's pace keeps
// the batch for a later pass.
func (s *Syncer) resend(ctx context.Context, p *pipeline, enc *mapping.Encoder, rows []row, gone [][]string, o resendOptions) (held bool, err error) {
	pos := p.sum.Position
	b := built{}
	if len(rows) > 0 {
		if b, err = s.build(ctx, enc, pos, rows, s.logWarning); err != nil {
			return false, err
		}
		if o.skipUnchanged {
			// Look the rows up: this pass may have saved their fingerprints.
			if b, err = s.skipUnchanged(ctx, b, true); err != nil {
				return false, err
			}
		}
	}
	// The checkpoint stays where it is. A row now soft-deleted is not sent
	// again: its wait ends (its record, if any, goes with the live pass).
	b.To, b.gone = pos, append(gone, rowKeys(b.removed)...)
	b.removed = nil
	if len(b.sent) > 0 {
		t, d, held, err := s.admit(ctx, len(b.sent), o.partial)
		if err != nil {
			return false, err
		}
		if held {
			p.sum.Held, p.sum.NextSend, p.sum.BudgetSpent = p.sum.Held+len(rows), d.Next, d.Spent
			return true, nil
		}
		b.ticket = t
	}
	p.sum.Rows += len(rows)
	if o.revisit {
		p.sum.Revisited += len(b.sent)
	}
	p.sum.Invalid += len(b.invalid)
	p.sum.Deferred += len(b.deferred)
	return false, p.add(ctx, b)
}

// byLink reads the rows whose link ref points at one of keys (rows of
// ref.Sync), in keyset order. Integer and uuid columns are compared in
// their type so an index on them serves; text columns as PostgreSQL's text,
// as the ledger's keys are written.
func (s *source) byLink(ctx context.Context, ref mapping.Ref, keys [][]string) ([]row, error) {
	exprs := make([]string, len(ref.Columns))
	casts := make([]string, len(ref.Columns))
	for i, c := range ref.Columns {
		var oid uint32
		for _, f := range s.fields {
			if f.Name == c {
				oid = f.OID
			}
		}
		var typ string
		if err := s.pool.QueryRow(ctx, "SELECT $1::oid::regtype::text", oid).Scan(&typ); err != nil {
			return nil, fmt.Errorf("type of column %q: %w", c, err)
		}
		exprs[i] = "src." + pgx.Identifier{c}.Sanitize()
		elem := strings.TrimSuffix(typ, "[]")
		switch elem {
		case "smallint", "integer", "bigint", "uuid":
			casts[i] = "::text::" + elem
		default:
			exprs[i] += "::" + strings.Replace(typ, elem, "text", 1)
			casts[i] = "::text"
		}
	}
	var args []any
	param := func(v string, cast string) string {
		args = append(args, v)
		return fmt.Sprintf("$%d%s", len(args), cast)
	}
	var cond string
	if ref.Multi {
		elems := make([]string, len(keys))
		for i, k := range keys {
			elems[i] = param(k[0], casts[0])
		}
		cond = exprs[0] + " && ARRAY[" + strings.Join(elems, ", ") + "]"
	} else {
		tuples := make([]string, len(keys))
		for i, k := range keys {
			if len(k) != len(exprs) {
				return nil, fmt.Errorf("relink key %v has %d values but the link has %d columns", k, len(k), len(exprs))
			}
			ps := make([]string, len(k))
			for j, v := range k {
				ps[j] = param(v, casts[j])
			}
			tuples[i] = "(" + strings.Join(ps, ", ") + ")"
		}
		cond = "(" + strings.Join(exprs, ", ") + ") IN (" + strings.Join(tuples, ", ") + ")"
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL AND %s ORDER BY %s",
		s.selectList, s.from, s.ordering[0], cond, strings.Join(s.ordering, ", "))
	return s.read(ctx, sql, args, len(keys))
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
