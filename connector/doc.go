// Package connector is the sync engine: it follows one row from PostgreSQL to
// the CRM.
//
//	read   the rows after the checkpoint, in keyset order, up to the pass's
//	       bound, behind which no late commit can still appear: one ordered
//	       query per pass, fetched a batch at a time
//	map    each row to an object with the mapping's Encoder
//	batch  the objects into one import request body
//	submit journal the batch, then POST it with a deterministic Idempotency-Key
//	await  the job (polling when the API answered 202)
//	advance the checkpoint past the batch, in the same store transaction that
//	       records the rows the API rejected
//
// A ref property links a row to the Micro record of a row of another sync:
// building a batch looks every link up in the record ledger at once, and a
// row whose linked row has no record yet is deferred (recorded with code
// missing_reference) instead of being sent with a null or wrong link. After
// its window, each pass of a sync with links revisits its deferred rows whose
// records have come, and the rows that link to a record that was replaced,
// and sends them at the checkpoint, which does not move for them.
//
// The checkpoint moves only after the API confirmed the batch. Because the
// batch is journaled (body and key) before it is sent, a crash at any instant
// is settled on the next start by polling the journaled job or resending the
// identical bytes under the same key, which the API recognises as a replay.
//
// The engine talks to its collaborators through small interfaces declared
// here (Store, API, Budget, Fingerprints), so each can be faked or swapped in
// tests.
//
// The files follow the steps:
//
//	connector.go  the interfaces, Summary, the errors a pass ends with
//	syncer.go     Syncer: a pass (Once), Retry, Count; settling the journal
//	pool.go       ConfigurePool: the session settings the engine relies on
//	horizon.go    the bound of a pass: commit horizon or value guard
//	source.go     read: the source's columns, keyset windows, pages for preview
//	scan.go       read: a pass's window as one server-side cursor, in snapshots
//	              of bounded age (decode.go decodes the column values,
//	              position.go prints positions as PostgreSQL does)
//	batch.go      map, batch: request body, fingerprints, idempotency key
//	pipeline.go   batches in flight, committed in order; bisecting
//	deliver.go    submit, await: budget, send, poll, settle, new attempts
//	commit.go     advance: checkpoint, rejects, record ledger, fingerprints, reject share
//	refs.go       links: resolving them, deferred rows, revisits and relinks
//	preview.go    what a pass would send, sending nothing
//	observer.go   what the engine reports, for metrics; WithSyncName
package connector
