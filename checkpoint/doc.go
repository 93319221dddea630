// Package checkpoint keeps what prismsync must remember between runs, per
// sync: its position (how far it has read), the journal of batches that may
// be in flight at the API, the rows the API rejected or that wait for
// another sync's record, a few counters, the change fingerprints that let
// the engine skip rows whose object is unchanged, and the record ledger
// that turns a foreign key into a link to the right Micro record.
//
// The engine journals a batch (its idempotency key, positions and exact
// request body) before it POSTs it, and commits it only after the API
// confirmed it: Commit removes the journal entry, moves the position, counts
// the batch and records rejects in one atomic step. After a crash, Pending
// lists the batches whose fate is unknown so they can be replayed with the
// same key and body. A sync whose position has vanished although it has
// committed before makes Load fail with ErrCheckpointMissing instead of
// silently starting over and sending every row again; Forget is the
// deliberate way to start over.
//
// Two stores implement the same Store interface and pass the same
// conformance tests. Open picks one from a spec: "postgres" (the default) or
// "file:PATH". OpenReadOnly opens either for commands that only look
// ("prismsync status", "preview"): it creates, migrates and locks nothing,
// its writing methods fail with ErrReadOnly, and a store nothing has
// written yet (no file, no schema) is ErrNoStore.
//
// Files: checkpoint.go (the types, Store, errors and state names), open.go
// (Open, OpenReadOnly), conventions.go (what both stores check and
// normalise alike), fingerprints.go and compress.go (shared by both),
// overview.go (Overviews of both stores: every sync at a glance);
// postgres.go (PGStore: open and the core methods), postgres_schema.go
// (migrations), postgres_ops.go (runs, request counts, leases),
// postgres_fingerprints.go, postgres_ledger.go; file.go, file_format.go
// (the JSON document), file_ops.go, file_history.go (the run history's
// file), file_fingerprints.go, file_ledger.go and file_lock_*.go (flock);
// ledger.go is shared by both ledgers.
//
// # PostgreSQL store
//
// Tables live in schema prismsync of the database (created on first use).
// Creation and migration run in one transaction under
// pg_advisory_xact_lock(0x707269736d73796e), so any number of processes may
// open the store at once; when the schema is already current no DDL runs, so
// a role without CREATE may use a schema an administrator prepared. A
// read-only store needs the schema at exactly SchemaVersion and runs its
// sessions with default_transaction_read_only.
//
//	prismsync.schema_version  one row per applied migration (version, applied_at);
//	                          a version above SchemaVersion() is ErrUnsupportedVersion
//	prismsync.positions       sync PK, cursor_text, key_text text[], fingerprint,
//	                          batches, updated_at: the checkpoint itself
//	prismsync.sync_history    sync PK, commits, first_commit, last_commit: proof a
//	                          sync has run, kept apart from its position
//	prismsync.journal         (sync, batch_key) PK, seq, attempt, from_/to_cursor,
//	                          from_/to_key, row_count, batch_gzip bytea (body,
//	                          row keys and held rows in one gzip value; schema
//	                          version 8),
//	                          object, job_id, created_at, kind ('' import,
//	                          'delete', 'archive'; version 9); Pending orders by
//	                          created_at, seq. Entries written before version 8
//	                          keep body_gzip and the row_keys jsonb column
//	prismsync.rejects         (sync, row_key text[]) PK, code, message, payload,
//	                          attempts, first_seen, last_seen, wait_sync,
//	                          wait_key text[] (set for a deferred row; version 7)
//	prismsync.runs            sync PK, seq, history_from: the number of the sync's last
//	                          pass and the oldest one its history keeps (schema version 6)
//	prismsync.run_history     (sync, seq) PK, started_at, finished_at, ok, error, budget,
//	                          rows_read, rows_sent, rows_created, rows_updated,
//	                          rows_existing, rows_unchanged, rows_invalid, rows_rejected,
//	                          rows_deferred, requests, cursor_text, key_text,
//	                          rows_deleted, rows_archived, rows_restored (version 8): every pass
//	                          ("prismsync history"; the last one is "status"'s last run)
//	prismsync.request_counts  month PK ("2026-11"), requests: API requests used,
//	                          summed over every process
//	prismsync.fingerprints    (sync, row_key text) PK, sum bytea: change fingerprints
//	                          (schema version 3)
//	prismsync.budget_turns    sync PK, last_send, last_cost, waiting_since,
//	                          waiting_rows, due, held_at, interval_us: each sync's turn
//	                          in the request budget (Turn; schema version 5)
//	prismsync.records         (sync, row_key text) PK, record_id uuid: the record
//	                          ledger (schema version 7); state text: NULL live,
//	                          'deleted' or 'archived' (version 8, deletes)
//	prismsync.relinks         (sync, ref_sync, row_key) PK, since: rows of ref_sync
//	                          whose record was replaced, for sync to relink (version 7)
//
// RecordRun is one statement: an upsert of the sync's runs row takes the
// next seq (its row lock orders two writers) and moves history_from to the
// oldest seq kept, the pass is inserted, and the seqs from the old
// history_from up to the new one are deleted. Both ends of that range are
// index conditions and it holds only live rows, so a pass costs the same
// few buffers (about ten, TestPostgresHistoryCost, PostgreSQL 15: 0.3 ms
// per pass) whether the history holds ten passes or a thousand, and
// retention never walks the dead entries earlier deletes left for vacuum.
// A pass is about 1 kB of table and index (1,000 passes: 1 MB).
//
// TakeRequests reserves requests with one conditional upsert on the month's
// row, decided under that row's lock, so replicas never both take the last
// requests of a month.
//
// TryLock leases a sync to one replica with pg_try_advisory_lock on a
// connection of its own, outside the pool; the lock ends with release or with
// that session (a dead replica frees its syncs). The key is a 64-bit FNV hash
// of "prismsync/sync-lease/" and the sync name.
//
// The store's pool gets application_name=prismsync and a 60s
// statement_timeout unless the URL sets them, and always enable_seqscan and
// enable_bitmapscan off. Every statement a pass runs (per batch: the journal
// write, job id, fingerprint lookup and save, the commit, request counts and
// budget turns; per pass: load, pending, run records) is written as
// primary-key lookups: an upsert or a delete on the whole key, one probe per
// key behind an OFFSET 0 fence for the fingerprint lookup, and for the
// journal and rejects of one sync a range on the key's first column. With
// sequential and bitmap scans off, the planner keeps those plans whatever the
// statistics: a generic plan made while a table was small or never analyzed
// would otherwise scan a sync's rows per batch and keep doing so as the
// table grows. TestPostgresStatementPlans checks each plan on a never-analyzed
// store holding 1,000,000 fingerprints, and the plans cached while it was
// empty. A commit is one round trip: its statements go as one batch, which
// PostgreSQL runs as one implicit transaction.
//
// Positions are stored as PostgreSQL text (cursor and key values exactly as
// the source database printed them). A journaled body, its row keys and the
// rows the batch holds back (refused by the mapping or deferred, so that a
// batch settled after a crash still records them) are gzip-compressed
// together (journal_payload.go): as a jsonb column the row
// keys cost the database more than the rest of the entry, and gzip output
// costs it less CPU, and a quarter of the WAL, of letting TOAST compress the
// plain value with lz4.
//
// # Change fingerprints
//
// Fingerprints and SaveFingerprints keep, per sync and row key, the hash of
// the object the API last confirmed (connector.Fingerprints). A row key is
// stored as text in the length-prefixed form rejects use in memory
// (["42","eu"] is "2:42;2:eu;"), so ["a,b"] and ["a","b"] stay apart; a key
// holding NUL or invalid UTF-8, which PostgreSQL text and JSON object keys
// cannot carry, is stored as "x" and the hex of that form instead. A lookup
// is one query (a primary-key probe per key of unnest($2)) and a save one
// statement (an upsert from unnest of two arrays; an empty sum adds a delete
// of its key, in the same round trip) whatever the number of keys; the
// conformance suite checks 10,000 in one call. AddFingerprints writes the
// sums of keys that had none when looked up with a plain insert from unnest,
// about half the database CPU of the upsert (which takes a speculative
// insertion per row); a key stored meanwhile makes that insert fail as a
// whole, and the upsert runs instead. HasFingerprints (EXISTS, one index
// entry) lets a sync's first pass skip the lookups, which would find nothing. Sums are at most 64
// bytes; an empty sum deletes, and a key repeated in one save keeps its last
// sum. Forget deletes a sync's fingerprints with the rest.
//
// Storage cost in PostgreSQL, measured by TestPostgresFingerprintStorageCost
// on PostgreSQL 15.18: 100,000 fingerprints of a one-column bigint key (row
// keys "1:1;" to "6:100000;") with 16-byte sums, saved through
// SaveFingerprints, then pg_total_relation_size('prismsync.fingerprints') /
// 100,000:
//
//	sync "orgs", saved in key order (one call or 5,000 per call)   92.4 bytes/row
//	                                 (heap 60.3, primary key index 31.8)
//	sync "orgs", 5,000 per call in random key order                104.1 bytes/row
//	                                 (heap 60.3, index 43.5: half-full pages)
//	sync "organizations_from_erp_eu", random order                 164.7 bytes/row
//
// So plan on about 100 bytes per row for short sync names and keys. The sync
// name and the encoded key are repeated in both the heap and the index, so
// each extra byte of either costs about two. An update leaves a dead tuple
// until autovacuum reclaims it, so a table whose rows all change at once
// briefly needs up to twice that. On a 2-vCPU test machine, looking up 5,000
// keys against a table of 100,000 took 28-39 ms and saving 5,000 (half new,
// half updated) 89-110 ms (BenchmarkPostgresFingerprints5000 and ...Split).
//
// # Record ledger
//
// CommitRecords writes, in the transaction that commits a batch, the Micro
// record id the import result returned for each delivered row (created or
// matched by dedupe), per sync and row key (encoded as fingerprints encode
// it), so that a row of another sync whose foreign key names that row can
// be sent as a link to that record. An id equal to the stored one writes
// nothing; a different one replaces it and, for each referrer the commit
// names, queues a relink of the row: the referrer's rows that link to it
// are sent again with the new id. RecordIDs looks up every link of a batch,
// of any syncs, in one statement (one primary-key probe per key behind an
// OFFSET 0 fence, as the fingerprint lookup). A row that links to a row
// without a record is a deferred row: a reject with code missing_reference
// that names, in wait_sync and wait_key, the row it waits for. It is
// listed with Deferred and counted apart with CountDeferred; when it turns
// from refused to deferred or back, its first_seen and attempts start over,
// so its age is how long it has waited.
//
// Storage cost, measured by TestPostgresRecordStorageCost (go test -v -run
// RecordStorageCost ./checkpoint/) on PostgreSQL 15.18 the way fingerprints are (100,000 records of a one-column bigint
// key, committed 5,000 per batch), pg_total_relation_size('prismsync.records')
// / 100,000:
//
//	sync "orgs", in key order                           92.4 bytes/row
//	                                 (heap 60.3, primary key index 31.8)
//	sync "orgs", in random key order                    104.1 bytes/row
//	sync "organizations_from_erp_eu", random order      164.7 bytes/row
//
// The same as a fingerprint's, byte for byte: a uuid is 16 bytes, like the
// 16-byte sum. A sync with fingerprints on therefore keeps about 200 bytes
// per row for both; the two share their key and could share one row, which
// would cost a record about 16 bytes instead (not done yet: fingerprints
// are written after the commit, the ledger must be written in it).
//
// In the file store, fingerprints are an optional "fingerprints" section of
// the version 1 document ({"orgs": {"1:42;": "<base64 sum>"}}). An older
// prismsync ignores and drops it, and the rows are then sent once more. The
// whole document is rewritten on every change, so tens of thousands of
// fingerprints make every commit write megabytes: use PostgreSQL for large
// syncs with fingerprints.
//
// # File store
//
// One JSON document at PATH, mode 0600 (journaled bodies hold row data).
// Every change writes PATH.tmp, fsyncs it, renames it over PATH and fsyncs the
// directory, so the file is always either the old or the new document; Commit
// is a single rename. While a FileStore is open it holds flock(2) on
// PATH.lock; a second opener, in this or another process, fails with
// ErrLocked. The lock file is left in place on Close on purpose. That lock
// already keeps other processes out, so TryLock only keeps two holders in
// this process apart. OpenReadOnly reads a snapshot without the lock (for
// "prismsync status" next to a running daemon).
//
//	{
//	  "version": 1,
//	  "next_seq": 3,
//	  "positions": {"orgs": {"position": {"cursor": "2026-01-02 03:04:05+00", "key": ["42"]},
//	                         "fingerprint": "…", "batches": 7, "updated_at": "…"}},
//	  "history":   {"orgs": {"commits": 7, "first_commit": "…", "last_commit": "…"}},
//	  "journal":   {"orgs": [{"key": "…", "seq": 2, "attempt": 1, "from": {…}, "to": {…},
//	                          "rows": 500, "body_gzip": "<base64>", "object": "organization",
//	                          "job_id": "", "created_at": "…", "row_keys": [["1"]],
//	                          "held": [{"row_key": ["3"], "code": "…", …}]}]},
//	  "rejects":   {"orgs": [{"row_key": ["17"], "code": "…", "message": "…",
//	                          "payload": "<base64>", "attempts": 2, "first_seen": "…", "last_seen": "…"}]},
//	  "requests":  {"2026-11": 412},
//	  "fingerprints": {"orgs": {"1:42;": "<base64 sum>"}},
//	  "turns":     {"orgs": {"last_send": "…", "last_cost": 1, "interval_ns": 300000000000}},
//	  "records":   {"orgs": {"1:42;": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}},
//	  "relinks":   {"people": [{"ref_sync": "orgs", "row_key": "1:42;", "since": "…"}]},
//	  "record_states": {"orgs": {"1:43;": "deleted"}}
//	}
//
// "requests", "fingerprints", "turns", "records", "relinks",
// "record_states", a journaled batch's "kind" and a reject's "wait_sync"
// and "wait_key" were added within version 1 (an
// older prismsync ignores them). Versions before the run history kept each
// sync's last pass in a "runs" section; it becomes pass 1 of the history and
// is dropped from the document.
//
// The run history lives beside the document, in PATH.history: JSON Lines,
// one pass a line ({"sync": "orgs", "seq": 7, "started": "…", "finished": "…",
// "ok": true, "rows": 500, "sent": 498, …, "checkpoint": {…}, "from": 3}, where
// "from" is the oldest seq of the sync kept once the line was added).
// RecordRun appends and fsyncs one line instead of rewriting the document;
// when the file holds more than twice the lines kept plus 64, it is
// rewritten with the kept ones (temp file and rename). A line that does not
// decode, such as the torn end of an append cut by a crash, is skipped: the
// history informs, the checkpoint never depends on it.
//
// A "version" other than 1 is ErrUnsupportedVersion; a document that does
// not decode is ErrCorrupt (with the path), never an empty store. The file
// store rewrites the whole document on every change, journaled bodies
// included, so it suits a few syncs with small journals.
//
// # Conventions shared by both stores
//
// Times are UTC with microsecond precision. A nil and an empty key are the
// same. A reject seen again (same sync and row key) gets Attempts+1, a new
// LastSeen and the new code, message and payload; its FirstSeen stays. A
// reject's zero FirstSeen/LastSeen means "now" and Attempts below 1 means 1.
// Rejects are listed most recently seen first. Error messages never contain
// the database URL.
package checkpoint
