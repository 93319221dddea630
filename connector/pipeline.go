package connector

import (
	"context"
	"sync"
	"time"

	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/mapping"
)

// flight is one batch on its way: sent by its own goroutine, committed in
// order by the pipeline.
type flight struct {
	batch built
	done  chan struct{}
	res   []prism.Result
	rep   BatchReport
	err   error
}

// harmless reports whether the completed flight's commit cannot end the
// pass by itself: it succeeded and has no rejected rows for MaxRejectShare
// to count. (A store failure during the commit still can; the batch sent
// meanwhile is journaled and settled by the next pass.)
func (f *flight) harmless() bool {
	if f.err != nil || len(f.batch.invalid) > 0 || len(f.batch.deferred) > 0 {
		return false
	}
	for _, r := range f.res {
		if r.Error != nil {
			return false
		}
	}
	return true
}

// pipeline keeps up to max batches in flight and commits them strictly in
// order, so the checkpoint only ever covers a prefix of confirmed batches.
type pipeline struct {
	s     *Syncer
	fp    string
	sum   *Summary
	max   int
	queue []*flight
	wg    sync.WaitGroup
	// held rows the budget's pace kept for a later pass, and when it is
	// due; set by read before it returns, read by run after feed.
	held     int
	nextSend time.Time
	spent    bool
	// look: the sync has stored fingerprints, so rows are looked up
	// (a first pass has none to find).
	look bool
}

func (p *pipeline) run(ctx context.Context, src *source, enc *mapping.Encoder, w Window) error {
	err := p.feed(ctx, src, enc, w)
	p.sum.Held, p.sum.NextSend, p.sum.BudgetSpent = p.held, p.nextSend, p.spent
	if err != nil {
		// Let what is in flight finish (its journal entries stay for the
		// next run unless committed here), but commit nothing past a failure.
		p.wg.Wait()
		if cerr := p.drain(ctx, true); cerr != nil {
			p.s.logger().Warn("could not commit completed batches after a failure", "err", cerr)
		}
		return err
	}
	return p.drain(ctx, true)
}

// feed sends the batches that read produces, in order, while committing
// in-flight batches the moment they complete. Reading runs in its own
// goroutine so that neither the next batch's fetch, encoding and journal
// write nor a commit waits for the other: a slot freed by a completed job is
// refilled at once with a batch that is already built and journaled. read
// stays one batch ahead, so memory holds at most max+2 batches (max in
// flight, one being committed, one ready).
func (p *pipeline) feed(ctx context.Context, src *source, enc *mapping.Encoder, w Window) error {
	rctx, stop := context.WithCancel(ctx)
	batches := make(chan built)
	done := make(chan struct{})
	var rerr error
	go func() {
		defer close(done)
		defer close(batches)
		rerr = p.read(rctx, src, enc, w, batches)
	}()
	defer func() {
		stop()
		for b := range batches { // a batch the reader was handing over
			p.unjournal(ctx, b)
		}
		<-done
	}()
	in := batches // nil once read has handed over its last batch
	take := func(b built, ok bool) error {
		if !ok {
			in = nil
			return nil
		}
		p.sum.Rows += b.read
		p.sum.Invalid += len(b.invalid)
		p.sum.Deferred += len(b.deferred)
		return p.start(ctx, b)
	}
	for {
		if in == nil {
			<-done
			return rerr
		}
		var head <-chan struct{}
		if len(p.queue) > 0 {
			head = p.queue[0].done
		}
		var next <-chan built
		if len(p.queue) < p.max {
			next = in
		}
		select {
		case <-head:
			// The head's slot is free. When its commit cannot end the
			// pass, refill the slot first so that the commit's store
			// round trips overlap the next job instead of delaying it.
			if p.queue[0].harmless() {
				select {
				case b, ok := <-in:
					if err := take(b, ok); err != nil {
						return err
					}
				default:
				}
			}
			if err := p.commitHead(ctx); err != nil {
				return err
			}
		case b, ok := <-next:
			if err := take(b, ok); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read scans the window, maps each batch of rows, and hands the batches to
// feed in order. It touches no pipeline state: feed owns that. A batch with
// fewer rows than asked for is partial, and the last: the scan is at the end
// of the window.
func (p *pipeline) read(ctx context.Context, src *source, enc *mapping.Encoder, w Window, out chan<- built) error {
	s := p.s
	sc := src.scan(w, s.MaxSnapshot, s.Now)
	defer sc.release(ctx) // the budget or a shutdown may end the pass mid-window
	for {
		limit := s.limit()
		rows, err := sc.next(ctx, limit)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		partial := len(rows) < limit
		b, err := s.build(ctx, enc, w.After, rows, s.logWarning)
		if err != nil {
			return err
		}
		b.read = len(rows)
		if b, err = s.skipUnchanged(ctx, b, p.look); err != nil {
			return err
		}
		end := b.To
		parts, err := s.withDeletes(ctx, b)
		if err != nil {
			return err
		}
		for _, b := range parts {
			if b.sends() {
				n := len(b.sent) + len(b.ids)
				t, d, held, err := s.admit(ctx, n, partial)
				if err != nil {
					return err
				}
				if held {
					p.held, p.nextSend, p.spent = len(rows), d.Next, d.Spent
					return nil
				}
				b.ticket = t
			}
			// Journaled here, ahead of its slot, so that sending it later
			// costs no store round trip. A batch journaled but never sent
			// (the pass stopped first) is dropped again, or, after a crash,
			// settled by the next pass. The write is not cut short when feed
			// stops the reader: cancelled in flight it could still reach the
			// store behind an error, and be left to the next pass.
			jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err = p.journal(jctx, &b)
			cancel()
			if err != nil {
				b.journaled = true // perhaps: drop it, best effort
				p.unjournal(ctx, b)
				return err
			}
			if err := p.handOver(ctx, sc, out, b); err != nil {
				return err
			}
		}
		w.After = end
		if partial || s.stopping() {
			return nil
		}
	}
}

// handOver gives b to feed. While feed has no room for it (the batches in
// flight wait for the API), the scan's snapshot is released once it is as
// old as it may get, so a slow API never holds back vacuum on the source.
func (p *pipeline) handOver(ctx context.Context, sc *scan, out chan<- built, b built) error {
	select {
	case out <- b:
		return nil
	default:
	}
	expired, stop := sc.expiry()
	defer stop()
	select {
	case out <- b:
		return nil
	case <-expired:
		sc.release(ctx)
	case <-ctx.Done():
		p.unjournal(ctx, b)
		return ctx.Err()
	}
	select {
	case out <- b:
		return nil
	case <-ctx.Done():
		p.unjournal(ctx, b)
		return ctx.Err()
	}
}

// add journals b, starts sending it, and commits whatever completed. It
// blocks while max batches are in flight.
func (p *pipeline) add(ctx context.Context, b built) error {
	for len(p.queue) >= p.max {
		if err := p.commitHead(ctx); err != nil {
			return err
		}
	}
	if err := p.start(ctx, b); err != nil {
		return err
	}
	return p.drain(ctx, false)
}

// start journals b and sends it from its own goroutine; the caller has
// made room for it.
func (p *pipeline) start(ctx context.Context, b built) error {
	f := &flight{batch: b, done: make(chan struct{})}
	if !b.sends() {
		close(f.done) // nothing to send: only rejects to record
	} else {
		if err := p.journal(ctx, &f.batch); err != nil {
			return err
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(f.done)
			t := f.batch.ticket
			f.res, f.rep, f.err = p.s.send(budget.WithTicket(ctx, t), &f.batch.Batch)
			t.Done(ctx, outcomeOf(f.rep))
		}()
	}
	p.queue = append(p.queue, f)
	p.s.observer().InFlight(p.s.Sync.Name, len(p.queue))
	return nil
}

// journal writes b to the journal unless that is done: every batch is
// journaled before it is sent.
func (p *pipeline) journal(ctx context.Context, b *built) error {
	if b.journaled || !b.sends() {
		return nil
	}
	b.Held = b.held()
	if err := p.s.Store.Journal(ctx, b.Batch); err != nil {
		return err
	}
	b.journaled = true
	return nil
}

// unjournal removes a batch journaled ahead that will not be sent because
// the pass is ending, so the journal keeps only batches that may have
// reached the API. Best effort: an entry left behind is settled by the next
// pass like any other.
func (p *pipeline) unjournal(ctx context.Context, b built) {
	b.ticket.Done(ctx, budget.Outcome{}) // nothing was sent: every reserved request goes back
	if !b.journaled {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		p.s.logger().Debug("could not drop a batch journaled ahead; the next pass settles it", "err", err)
	}
}

// drain commits completed batches from the head of the queue; with wait it
// waits for each head to complete.
func (p *pipeline) drain(ctx context.Context, wait bool) error {
	for len(p.queue) > 0 {
		if !wait {
			select {
			case <-p.queue[0].done:
			default:
				return nil
			}
		}
		if err := p.commitHead(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipeline) commitHead(ctx context.Context) error {
	f := p.queue[0]
	select {
	case <-f.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.finish(ctx, f); err != nil {
		return err
	}
	p.queue = p.queue[1:]
	p.s.observer().InFlight(p.s.Sync.Name, len(p.queue))
	return p.s.checkRejectShare(p.sum)
}

// finish settles a batch whose send has ended: a body the API found too
// large is split and re-sent, a failure ends the pass, a success commits.
func (p *pipeline) finish(ctx context.Context, f *flight) error {
	switch {
	case f.err != nil && prism.IsTooLarge(f.err) && len(f.batch.sent) > 1:
		return p.bisect(ctx, f)
	case f.err != nil:
		p.s.observer().BatchDone(p.s.Sync.Name, f.rep)
		return f.err
	default:
		return p.s.commit(ctx, f, p.fp, p.sum)
	}
}

// bisect handles a batch the API found too large: it forgets the batch,
// halves the batch size for the rest of this Syncer's life, and sends the
// same rows again in halves (recursively), in order, before anything behind
// them is committed.
func (p *pipeline) bisect(ctx context.Context, f *flight) error {
	s := p.s
	b := f.batch
	half := max(1, len(b.sent)/2)
	s.batchSize.Store(int64(half))
	s.logger().Warn("the API refused a batch as too large; halving the batch size", "rows", len(b.sent), "batch_size", half)
	if err := s.Store.Drop(ctx, b.Sync, b.Key); err != nil {
		return err
	}
	// The rows mapped fine already; rebuild the halves from them (rejects
	// of the original build stay with the first half's commit).
	parts := [][]row{b.sent[:half], b.sent[half:]}
	from := b.From
	for i, rows := range parts {
		sub := s.buildRows(rows, from)
		if i == 0 {
			sub.invalid, sub.deferred, sub.gone = b.invalid, b.deferred, b.gone
			sub.Held = sub.held()
		}
		if i == len(parts)-1 {
			sub.To = b.To // the original end covers rows it kept out as invalid
		}
		if err := s.Store.Journal(ctx, sub.Batch); err != nil {
			return err
		}
		sf := &flight{batch: sub, done: make(chan struct{})}
		sf.res, sf.rep, sf.err = s.send(ctx, &sf.batch.Batch)
		close(sf.done)
		if err := p.finish(ctx, sf); err != nil {
			return err
		}
		from = sub.To
	}
	return nil
}

func (s *Syncer) limit() int {
	if n := int(s.batchSize.Load()); n > 0 && n < s.Sync.BatchSize {
		return n
	}
	return s.Sync.BatchSize
}
