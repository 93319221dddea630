// Package mapping reads the declarative mapping file that tells prismsync which
// PostgreSQL rows become which Prism objects, and turns one sync of that file
// into an Encoder that writes a row straight into a JSON import body.
//
// The work is split in two stages on purpose. Parse and Load check everything
// that can be checked offline (YAML shape, unknown keys, slugs, cron specs,
// transforms) and report every finding as FILE:LINE:COL so a user can fix a
// file in one pass. Sync.Compile then binds the sync to the real column list of
// the source query, because only the database knows the column types, and
// rejects combinations that could never encode (for example a bytea column
// without an encode transform). After that, Encoder.Append is the hot path: it
// appends one object per row into a caller-owned buffer without building maps,
// and the key order is the file order so request bodies are byte-stable.
//
// CheckSource is the third, optional stage behind `prismsync validate`: it
// asks the live database what only it knows (do the key and cursor columns
// exist, is the key unique, is the cursor NOT NULL and indexed) and reports
// the answers as findings at the same FILE:LINE:COL positions, which is why
// the parser keeps the position of every source node.
//
// Files, in the order a mapping file and then a row pass through them:
// parse.go (YAML -> File, with findings; model.go holds the types,
// finding.go the findings), live.go (CheckSource), compile.go (a Sync and
// the query's columns -> Encoder), encode.go (Encoder.Append: row -> object
// bytes), eval.go (one value -> JSON: straight for a bare column, else
// through transforms, map and type), transform.go (those steps: parsed,
// checked statically and applied, side by side so the rules agree) and
// json.go (the JSON token writers). fingerprint.go hashes a sync's mapping.
//
// refs.go holds relations: a property {ref: SYNC, column: C} sends the
// Micro record id of SYNC's row whose key is in C (an array column sends
// several). Parse checks that SYNC exists, that the ref gives one column
// per key column of it and that no refs lead in a circle; Levels orders
// syncs so that a referenced sync passes first. The encoder does not know
// record ids: AppendResolved asks a Resolver (the engine's record ledger)
// for them, after RefKeys listed every key of a batch so that one lookup
// serves it, and a key without a record makes the row wait
// (*MissingRefError) instead of sending a null or wrong link.
//
// The complete user reference (every key, the type encoding table, transforms
// and defaults) lives in the README's "Mapping reference".
package mapping
