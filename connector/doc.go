// Package connector is the sync engine: it follows one row from PostgreSQL to
// the CRM.
//
//	read   a page of rows after the checkpoint, in keyset order (source.go)
//	map    each row to an object with the mapping's Encoder
//	batch  the objects into one import request body
//	submit journal the batch, then POST it with a deterministic Idempotency-Key
//	await  the job (polling when the API answered 202)
//	advance the checkpoint past the batch, in the same store transaction that
//	       records the rows the API rejected
//
// The checkpoint moves only after the API confirmed the batch. Because the
// batch is journaled (body and key) before it is sent, a crash at any instant
// is settled on the next start by polling the journaled job or resending the
// identical bytes under the same key, which the API recognises as a replay.
//
// The engine talks to its collaborators through small interfaces declared
// here (Store, API), so each can be faked or swapped in tests.
package connector
