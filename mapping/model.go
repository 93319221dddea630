package mapping

import (
	"fmt"
	"strconv"
)

// File is a parsed, valid mapping file.
type File struct {
	Path  string
	Syncs []*Sync
	// Warnings are the warning findings of the parse that produced the file.
	Warnings Findings
}

// Sync returns the sync with the given name.
func (f *File) Sync(name string) (*Sync, bool) {
	for _, s := range f.Syncs {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// Default values applied by Parse when a key is absent.
const (
	DefaultBatchSize = 10000
	MinBatchSize     = 1
	MaxBatchSize     = 10000
	DefaultObject    = "organization"
)

// Objects lists the Prism object types a sync may target.
var objects = []string{"organization", "contact", "identity", "deal", "action", "document", "engagement"}

// Sync is one entry of the file's syncs list: where rows come from, where
// they go, and how each row becomes an object.
type Sync struct {
	Name     string
	Schedule string // "" means the daemon's default schedule
	Source   Source
	Target   Target
	// BatchSize is the number of rows per import request (1..10000, default
	// 10000: every request counts against Micro's monthly quota, so fewer,
	// larger ones carry more rows for it).
	BatchSize int
	// Properties become the object's "default" map, in this order.
	Properties []Property
	// ListProperties become the object's "list" map; nil when not configured.
	ListProperties []Property
	// Archive are the properties (target.archive) set on a record instead
	// of deleting it (OnDeleteArchive); constants only, since a row deleted
	// from the source has no columns left to read.
	Archive []Property
	// Reconcile is the optional cron schedule on which the daemon looks for
	// rows gone from the source (hard deletes); "" = only on demand
	// (prismsync reconcile).
	Reconcile string

	file      string
	line, col int
	// at locates the source's nodes for the findings of CheckSource.
	at sourcePositions
	// referrers are the syncs with a ref property naming this one, in file
	// order; set by Parse.
	referrers []string
}

// position is a 1-based line and column in the mapping file; zero when the
// node was absent.
type position struct{ line, col int }

// sourcePositions keeps where each part of a sync's source was written, so
// that a problem only the database can reveal (a missing key column, an
// unindexed cursor) is still reported at the exact node to edit.
type sourcePositions struct {
	source, table, query, key, cursor     position
	deleted, onDelete, archive, reconcile position
	keys                                  []position // one per Source.Key column
	// queryText maps offsets in Source.Query back to the file, when the
	// query's YAML form allows it exactly; nil otherwise.
	queryText *textPositions
}

// Source says which rows to read.
type Source struct {
	Table  string   // schema-qualified or bare table name; exclusive with Query
	Query  string   // a SELECT, wrapped as a subquery by the reader; exclusive with Table
	Key    []string // unique row key: tie-breaker for the cursor and row identity
	Cursor string   // column whose value is checkpointed
	// Deleted is the optional soft-delete column (timestamp or boolean): a
	// row where it is non-NULL (a timestamp) or true (a boolean) is deleted
	// in Micro (or archived) by the normal pass.
	Deleted string
}

// Target says which Prism object type receives the rows and how matches are
// handled.
type Target struct {
	Object          string
	DedupeBy        string // a property slug, "" for none
	CaseInsensitive bool
	UpdateExisting  bool // default true for a sync, unlike the API which skips matches
	ListID          string
	// OnDelete is what a deleted row does to its record: OnDeleteDelete
	// (the default when deletes are configured), OnDeleteArchive (set the
	// Archive properties instead) or OnDeleteIgnore. "" when the sync has
	// no deletes configured.
	OnDelete string
}

// The values of target.on_delete.
const (
	OnDeleteDelete  = "delete"
	OnDeleteArchive = "archive"
	OnDeleteIgnore  = "ignore"
)

// SourceKind tells where a property's value comes from.
type SourceKind int

// The ways a property can get its value.
const (
	FromColumn SourceKind = iota + 1
	FromValue
	FromTemplate
	FromCoalesce
	// FromRef is a link to another sync's record: the Micro record id of
	// the referenced sync's row whose key is in RefColumns.
	FromRef
)

// Unmapped policies for values not found in a property's map.
const (
	UnmappedKeep    = "keep"
	UnmappedReject  = "reject"
	UnmappedDefault = "default"
)

// Property is one slug of the target object and the recipe for its value.
type Property struct {
	Slug string
	Kind SourceKind
	// Column is set for FromColumn.
	Column string
	// Value is the constant for FromValue: nil, bool, string, Number or []any
	// of those.
	Value any
	// Template is the raw template text for FromTemplate, e.g. "{first} {last}".
	Template string
	// Coalesce lists the columns for FromCoalesce; the first non-NULL wins.
	Coalesce []string
	// Ref names the sync whose records a FromRef property links to, and
	// RefColumns the columns that hold that sync's key, in its key's order:
	// one column (column:, which may be an array for a multi-ref) or one
	// per key column (columns:).
	Ref        string
	RefColumns []string
	// Type is an optional coercion: string, number, boolean, date, datetime, array.
	Type string
	// Transforms run in order after the value is read.
	Transforms []Transform
	// Map translates values (typically to select option slugs); nil when unset.
	Map map[string]any
	// MapDefault is used for unmapped values when Unmapped is "default".
	MapDefault any
	// Unmapped is keep, reject or default; only meaningful with Map.
	Unmapped string
	Required bool
	OmitNull bool

	tmpl      []tmplPart
	file      string
	line, col int
	refAt     position // the ref: value, for findings about the target
	colsAt    position // the column: or columns: value
	target    *Sync    // the sync Ref names, once Parse found it
}

// Number is a numeric constant from the mapping file, kept as its JSON number
// text so no float rounding happens between the file and the wire.
type Number string

// Transform is one step of a property's transform list.
type Transform struct {
	Name string // trim, lower, upper, null_if_empty, truncate, split, join, json_string, default, encode
	Arg  string // SEP for split/join, VALUE for default, base64|hex for encode
	N    int    // N for truncate
}

func (t Transform) String() string {
	switch t.Name {
	case "truncate":
		return "truncate(" + strconv.Itoa(t.N) + ")"
	case "split", "join", "default", "encode":
		return t.Name + "(" + t.Arg + ")"
	}
	return t.Name
}

type tmplPart struct {
	lit string
	col string // "" for a literal part
}

// Columns returns every source column the properties and list properties
// reference, deduplicated, in file order. Key and cursor columns are not
// included unless a property uses them.
func (s *Sync) Columns() []string {
	var out []string
	seen := map[string]bool{}
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, ps := range [][]Property{s.Properties, s.ListProperties} {
		for i := range ps {
			for _, c := range ps[i].columns() {
				add(c)
			}
		}
	}
	return out
}

func (p *Property) columns() []string {
	switch p.Kind {
	case FromColumn:
		return []string{p.Column}
	case FromCoalesce:
		return p.Coalesce
	case FromRef:
		return p.RefColumns
	case FromTemplate:
		var out []string
		for _, part := range p.tmpl {
			if part.col != "" {
				out = append(out, part.col)
			}
		}
		return out
	}
	return nil
}

// References returns the names of the syncs this sync's ref properties link
// to, deduplicated, in file order.
func (s *Sync) References() []string {
	var out []string
	for _, ps := range [][]Property{s.Properties, s.ListProperties} {
		for i := range ps {
			if ps[i].Kind == FromRef && !contains(out, ps[i].Ref) {
				out = append(out, ps[i].Ref)
			}
		}
	}
	return out
}

// Referrers returns the names of the syncs whose ref properties link to
// this one, in file order: the syncs whose rows must be re-sent when one of
// this sync's records is replaced by another.
func (s *Sync) Referrers() []string { return s.referrers }

// Deletes reports whether deleted rows leave Micro: the sync has a
// soft-delete column, a reconcile schedule or an on_delete other than
// ignore.
func (s *Sync) Deletes() bool {
	return s.Target.OnDelete != "" && s.Target.OnDelete != OnDeleteIgnore
}

// ArchiveObject is the object a batch/update sets on a record instead of
// deleting it (on_delete: archive): {"default":{...}} of the archive
// properties, encoded as the mapping encodes constants.
func (s *Sync) ArchiveObject() ([]byte, error) {
	if len(s.Archive) == 0 {
		return nil, fmt.Errorf("sync %s: on_delete: archive without archive properties", s.Name)
	}
	enc, err := (&Sync{Name: s.Name, Properties: s.Archive}).Compile(nil)
	if err != nil {
		return nil, fmt.Errorf("sync %s: archive properties: %w", s.Name, err)
	}
	out, _, err := enc.Append(nil, []any{}, nil)
	if err != nil {
		return nil, fmt.Errorf("sync %s: archive properties: %w", s.Name, err)
	}
	return out, nil
}
