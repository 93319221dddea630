package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Position is where a sync has read up to: the cursor value and key values of
// the last row confirmed, as PostgreSQL text representations (exact; the
// engine casts them back). The zero Position means "from the start".
type Position struct {
	Cursor string   `json:"cursor"`
	Key    []string `json:"key"`
}

// IsZero reports whether p means "from the start".
func (p Position) IsZero() bool { return p.Cursor == "" && len(p.Key) == 0 }

// Equal reports whether p and q are the same position (a nil and an empty Key
// are the same).
func (p Position) Equal(q Position) bool {
	return p.Cursor == q.Cursor && slices.Equal(p.Key, q.Key)
}

// String is for logs; cursor and key values are row data the operator already
// sees in their own database, not secrets.
func (p Position) String() string {
	if p.IsZero() {
		return "(start)"
	}
	return fmt.Sprintf("cursor=%q key=%q", p.Cursor, p.Key)
}

// State is what Load knows about one sync.
type State struct {
	Position    Position
	Exists      bool      // false for a sync never seen
	Fingerprint string    // mapping fingerprint recorded with the last commit ("" if none)
	Batches     int64     // batches committed so far
	UpdatedAt   time.Time // time of the last commit
}

// Batch is one journaled batch: written before its POST and removed when
// committed, so that after a crash the engine knows which requests may have
// reached the API and can replay them with the same idempotency key and body.
type Batch struct {
	Sync     string
	Key      string // idempotency key (unique per sync)
	Attempt  int
	From, To Position // From = position before the batch; To = position of its last row
	Rows     int
	Body     []byte // exact request body; stored gzip-compressed, returned decompressed
	Object   string // target object type (URL path segment)
	// Kind is what the batch asks of Micro: "" (KindImport) an import,
	// KindDelete a batch/delete of record ids, KindArchive a batch/update
	// setting the archive properties on record ids.
	Kind      string
	JobID     string // "" until the API returned one
	CreatedAt time.Time
	// RowKeys holds the source row key of each object in Body, in order, so
	// a batch settled after a restart can still name the rows its job
	// refused.
	RowKeys [][]string
	// Held are the rows of the batch's range kept out of Body: refused by
	// the mapping, or deferred. Its commit records them; they are journaled
	// with it so that a batch settled after a crash records them too,
	// instead of the checkpoint moving past them unrecorded.
	Held []Reject
}

// Reject is a row that was not delivered: refused by the mapping or the
// API, or deferred because it links to a row of another sync that has no
// Micro record yet. Rows are identified by their key values (PostgreSQL text
// representations), so a row rejected again on a later run updates the same
// record.
type Reject struct {
	Sync      string
	RowKey    []string
	Code      string
	Message   string
	Payload   []byte
	Attempts  int
	FirstSeen time.Time
	LastSeen  time.Time
	// WaitSync and WaitKey are set for a deferred row: it is sent once the
	// row WaitKey of sync WaitSync has a record in the ledger.
	WaitSync string
	WaitKey  []string
}

// Deferred reports whether r is a row waiting for another sync's record
// rather than a row that was refused.
func (r Reject) Deferred() bool { return r.WaitSync != "" }

// Batch kinds (Batch.Kind).
const (
	KindImport  = ""
	KindDelete  = "delete"
	KindArchive = "archive"
)

// Record states in the ledger (RecordState.State, LedgerEntry.State).
const (
	StateLive     = ""
	StateDeleted  = "deleted"  // deleted in Micro; RecordIDs does not return it
	StateArchived = "archived" // the archive properties were set on it
)

// RecordState is what the ledger holds about one row: its record id ("" if
// none) and the record's state.
type RecordState struct {
	ID    string
	State string
}

// LedgerEntry is one record of the ledger as LedgerPage lists it. After is
// the page cursor to continue after it.
type LedgerEntry struct {
	RowKey []string
	ID     string
	State  string
	After  string
}

// Record is what a delivered row became in Micro: the id the import result
// returned for it, for a created record and a dedupe match alike.
type Record struct {
	RowKey []string
	ID     string // a UUID, canonical form
}

// RecordRef names a row of a sync whose record id a lookup wants.
type RecordRef struct {
	Sync   string
	RowKey []string
}

// Ledger is what a commit adds to the record ledger.
type Ledger struct {
	Records []Record
	// Referrers are the syncs whose rows link to this sync's records. When
	// a record id replaces another one (the record was re-created), each
	// referrer gets a Relink of that row, so that its rows that link to the
	// old record are sent again.
	Referrers []string
	// Deleted are rows whose record was deleted in Micro, Archived rows
	// whose record got the archive properties: their ledger entries are
	// marked (a deleted record is no longer a link target) and their change
	// fingerprints dropped, so that the row, live again, is sent again. A
	// row in Records is live again, whatever its mark was.
	Deleted  [][]string
	Archived [][]string
	// Fresh says that no row of Records is expected in the ledger yet (the
	// engine found no change fingerprint for any of them): the store may
	// insert them without looking for older ids. It is a hint, never
	// trusted: a key found after all makes the commit go again as an
	// upsert, with the same outcome.
	Fresh bool
}

// Relink says that the record of row RowKey of sync RefSync was replaced
// at Since: the rows that link to it must be sent again.
type Relink struct {
	RefSync string
	RowKey  []string
	Since   time.Time
}

// Store is the concrete surface both implementations offer. The engine
// declares its own, smaller interface.
type Store interface {
	// Load returns the state of sync. A sync that committed before but whose
	// position is gone is an error wrapping ErrCheckpointMissing.
	Load(ctx context.Context, sync string) (State, error)
	// Journal inserts b, or replaces the batch with the same Sync and Key.
	Journal(ctx context.Context, b Batch) error
	// SetJobID records the API's job id for a journaled batch.
	SetJobID(ctx context.Context, sync, key, jobID string) error
	// Pending returns the journaled batches of sync, oldest first.
	Pending(ctx context.Context, sync string) ([]Batch, error)
	// Drop forgets a journaled batch without advancing the position.
	Drop(ctx context.Context, sync, key string) error
	// Commit atomically removes journal entry key (if any), sets the position
	// and fingerprint, counts the batch, upserts rejects and deletes the
	// rejects whose RowKey is in resolved.
	Commit(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string) error
	// CommitRecords is Commit that also, in the same transaction, writes
	// the ledger's records (replacing a row's older id) and queues a Relink
	// for each referrer of a row whose id was replaced. Records and rejects
	// belong to RejectOwner(sync). An ID that is not a canonical UUID is an
	// error.
	CommitRecords(ctx context.Context, sync, key string, to Position, fingerprint string, rejects []Reject, resolved [][]string, ledger Ledger) error
	// RecordIDs returns the ledger's record id for each ref ("" when none),
	// aligned with refs, in one round trip.
	RecordIDs(ctx context.Context, refs []RecordRef) ([]string, error)
	// RecordStates returns the ledger's record id and state for each key
	// of sync (zero when none), aligned with keys, in one round trip.
	RecordStates(ctx context.Context, sync string, keys [][]string) ([]RecordState, error)
	// LedgerPage lists up to limit records of sync that are not deleted,
	// in the ledger's own key order, after the entry whose After is after
	// ("" = from the start): reconcile streams the ledger through it.
	LedgerPage(ctx context.Context, sync, after string, limit int) ([]LedgerEntry, error)
	// CountRecords counts the records of sync that are not deleted.
	CountRecords(ctx context.Context, sync string) (int, error)
	// Deferred lists the deferred rows of sync, oldest first.
	Deferred(ctx context.Context, sync string) ([]Reject, error)
	// CountDeferred counts the deferred rows of sync ("" = all syncs).
	CountDeferred(ctx context.Context, sync string) (int, error)
	// Relinks lists the relinks queued for sync.
	Relinks(ctx context.Context, sync string) ([]Relink, error)
	// DropRelinks removes the given relinks of sync, unless one was queued
	// again after its Since.
	DropRelinks(ctx context.Context, sync string, relinks []Relink) error
	// Rejects lists rejects of sync ("" = all syncs), deferred rows
	// included, most recently seen first; limit <= 0 means no limit.
	Rejects(ctx context.Context, sync string, limit int) ([]Reject, error)
	// CountRejects counts rejects of sync ("" = all syncs), deferred rows
	// included.
	CountRejects(ctx context.Context, sync string) (int, error)
	// Syncs lists the syncs that have a position or a commit history, sorted.
	Syncs(ctx context.Context) ([]string, error)
	// Overviews returns, sorted by name, the state at a glance of every
	// sync (state name) the store holds anything of, read in one snapshot
	// with a few statements whatever the number of syncs: what every
	// replica's metrics show.
	Overviews(ctx context.Context) ([]Overview, error)
	// Forget deletes everything stored about sync: position, history,
	// journal, rejects, change fingerprints, records, relinks and its last
	// run. It is the deliberate way to start a sync over.
	Forget(ctx context.Context, sync string) error

	// Fingerprints returns the stored hash for each row key (nil when none),
	// aligned with keys, in one round trip.
	Fingerprints(ctx context.Context, sync string, keys [][]string) ([][]byte, error)
	// SaveFingerprints stores sums[i] for keys[i] (upsert), replacing older
	// ones, in one statement. An empty sums[i] deletes the stored hash; when
	// a key repeats, its last sum wins. A sum may be at most 64 bytes.
	SaveFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error
	// AddFingerprints does what SaveFingerprints does, for keys that had no
	// fingerprint when they were looked up: a store may then write them
	// without looking for an existing one first (a key that has one by now
	// is still replaced).
	AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error
	// HasFingerprints reports whether any fingerprint of sync is stored.
	HasFingerprints(ctx context.Context, sync string) (bool, error)

	// RecordRun appends r to the run history of sync under the next
	// sequence number (r.Sync and r.Seq are ignored) and drops the oldest
	// entries beyond keep (at least 1), without scanning the history.
	RecordRun(ctx context.Context, sync string, r Run, keep int) error
	// LastRun returns the last recorded run of sync; false if none.
	LastRun(ctx context.Context, sync string) (Run, bool, error)
	// History lists the recorded runs of sync ("" = all syncs), newest
	// first (by Finished across syncs, by Seq within one); limit <= 0
	// means no limit.
	History(ctx context.Context, sync string, limit int) ([]Run, error)
	// AddRequests adds n to the API request count of month ("2026-11",
	// UTC calendar month), shared by every process using the store.
	AddRequests(ctx context.Context, month string, n int) error
	// TakeRequests adds n (negative gives requests back; the count never
	// goes below 0) to month's count if the result stays at or below limit,
	// or whatever the result when limit < 0, atomically with every other
	// process. It returns the count afterwards, or the unchanged count
	// and false when n did not fit.
	TakeRequests(ctx context.Context, month string, n, limit int) (total int, ok bool, err error)
	// Requests returns the API request count of month (0 if none).
	Requests(ctx context.Context, month string) (int, error)
	// Turns returns every sync's turn in the request budget, by sync name.
	Turns(ctx context.Context) ([]Turn, error)
	// SaveTurn replaces the turn of t.Sync.
	SaveTurn(ctx context.Context, t Turn) error
	// TryLock takes the lease on sync without waiting: ok is false when
	// another holder has it. The lease ends with release (safe to call more
	// than once) or when the holding process dies, so another replica can
	// take over.
	TryLock(ctx context.Context, sync string) (release func(), ok bool, err error)

	Close() error
}

// Overview is one sync's state at a glance (see Store.Overviews).
type Overview struct {
	Sync      string
	Position  Position  // zero before the first commit
	Committed time.Time // time of the last commit; zero if none
	InFlight  int       // journaled batches, sent or about to be, not yet committed
	Rejects   int       // rows refused by the mapping or the API (deferred rows not included)
	Deferred  int       // rows waiting for another sync's record (Reject.Deferred)
	LastRun   Run       // the last recorded pass, if HasRun
	HasRun    bool
}

// Run records one pass of a sync, for "prismsync history", the status
// page and "prismsync status" (the last one).
type Run struct {
	Sync     string // set on reading
	Seq      int64  // 1 for the sync's first recorded pass, then +1; set by RecordRun
	Started  time.Time
	Finished time.Time
	OK       bool
	Error    string // "" when OK
	// Budget says the month's request budget stopped the pass (OK is
	// false) or held rows back until the month turns (OK is true).
	Budget    bool
	Rows      int // rows read
	Sent      int // objects the API confirmed
	Created   int
	Updated   int
	Existing  int // matched on dedupe_by and left as they were
	Unchanged int // skipped: Micro already has their object (fingerprints)
	Invalid   int // refused by the mapping
	Rejected  int // refused by the API
	Deferred  int // held back until the rows they refer to are delivered
	// Deleted, Archived and Restored count the records the pass deleted
	// in Micro, archived instead (on_delete: archive) and brought back for
	// rows that were deleted before and are live again.
	Deleted  int
	Archived int
	Restored int
	Requests int // API requests the pass made, polls included
	// Checkpoint is the sync's position when the pass ended.
	Checkpoint Position
}

var (
	// ErrCheckpointMissing means a sync committed before but its position is
	// gone. Starting from zero would resend every row, so it is never done
	// silently; see MissingCheckpointError.
	ErrCheckpointMissing = errors.New("checkpoint missing for a sync that has committed before")
	// ErrUnsupportedVersion means the store was written by a newer (or
	// unknown) prismsync format.
	ErrUnsupportedVersion = errors.New("unsupported checkpoint store version")
	// ErrCorrupt means the checkpoint file could not be decoded. It is never
	// treated as empty.
	ErrCorrupt = errors.New("checkpoint file is corrupt")
	// ErrLocked means another process (or another FileStore) holds the
	// file's lock.
	ErrLocked = errors.New("checkpoint file is in use")
	// ErrNotJournaled is returned by SetJobID for a batch that is not in the
	// journal.
	ErrNotJournaled = errors.New("batch not journaled")
	// ErrClosed is returned by a FileStore after Close.
	ErrClosed = errors.New("checkpoint store closed")
	// ErrReadOnly is returned by the writing methods of a store opened
	// with OpenReadOnly.
	ErrReadOnly = errors.New("checkpoint store opened read-only")
	// ErrNoStore means OpenReadOnly found nothing to read: no checkpoint
	// file at the path, or no schema prismsync in the database. Nothing
	// has written a checkpoint there yet.
	ErrNoStore = errors.New("checkpoint store does not exist")
)

// noStoreError says what OpenReadOnly looked for and did not find. It
// matches ErrNoStore, and its cause (a file's fs.ErrNotExist) if any.
type noStoreError struct {
	what string // "file /var/lib/prismsync/checkpoint.json", "schema prismsync"
	err  error
}

func (e *noStoreError) Error() string { return "checkpoint: " + e.what + " does not exist" }

func (e *noStoreError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrNoStore}
	}
	return []error{ErrNoStore, e.err}
}

// MissingCheckpointError is the detailed form of ErrCheckpointMissing.
type MissingCheckpointError struct {
	Sync       string
	Commits    int64     // commits the history records
	LastCommit time.Time // time of the last recorded commit
	Where      string    // where the position should have been, e.g. "table prismsync.positions"
}

func (e *MissingCheckpointError) Error() string {
	return fmt.Sprintf("checkpoint: sync %q committed %d batch(es) before (last at %s) but its position is missing from %s; "+
		"refusing to restart from the beginning, which would send every row again. "+
		"Restore the position from a backup, or, to resync everything on purpose, forget the sync's checkpoint history and run again",
		e.Sync, e.Commits, e.LastCommit.UTC().Format(time.RFC3339), e.Where)
}

func (e *MissingCheckpointError) Unwrap() error { return ErrCheckpointMissing }

// stateSep joins a sync name and the purpose of a state kept apart from the
// sync's own (SYNC~PURPOSE). Mapping sync names cannot contain it.
const stateSep = "~"

// BackfillState is the name a backfill of sync keeps its own position under
// ("people~backfill"), so the sync's live checkpoint does not move.
func BackfillState(sync string) string { return sync + stateSep + "backfill" }

// RejectOwner is the sync whose rejects a commit under name records and
// resolves. A state name of the form SYNC~PURPOSE (see BackfillState) is not
// a sync of its own: its rejects belong to SYNC, so that they show up in,
// and are retried with, SYNC's rejects, and outlive the backfill's position.
func RejectOwner(name string) string {
	if i := strings.Index(name, stateSep); i > 0 {
		return name[:i]
	}
	return name
}
