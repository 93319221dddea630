package prism

import (
	"encoding/json"
	"strconv"
)

// ImportOptions are the "options" of an import request. Zero values are
// omitted from the body, so an empty ImportOptions produces no "options" key
// at all and the server's defaults apply.
type ImportOptions struct {
	// DedupeBy is the property slug existing records are matched on.
	DedupeBy string
	// CaseInsensitive makes dedupe matching case-insensitive
	// (sent as camelCase "caseInsensitive", as the API spells it).
	CaseInsensitive bool
	// UpdateExisting patches a matched record instead of skipping it (the
	// server's default for a dedupe match is to skip).
	UpdateExisting bool
	// CreateMissingOptions turns unknown select values into new options
	// instead of failing the row.
	CreateMissingOptions bool
	// ListID is the list (UUID) the import runs in the context of.
	ListID string
}

// appendImportBody appends the import request body for objects to dst.
func appendImportBody(dst []byte, objects [][]byte, opts ImportOptions) []byte {
	dst = append(dst, `{"objects":[`...)
	for i, obj := range objects {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, obj...)
	}
	dst = append(dst, ']')
	dst = appendOptions(dst, opts)
	return append(dst, '}')
}

// EncodeImportBodyShared returns the import request body for objects, each
// of which must already be one encoded JSON object such as {"default":{...}}
// (as produced by the mapping package). The elements are copied verbatim, so
// the result is byte-for-byte deterministic for the same input; that matters
// because a retried request must carry identical bytes under the same
// Idempotency-Key, and because idempotency keys may be derived from a hash of
// the body.
//
// The body is a buffer of exactly its size that then holds the only copy of
// the objects: on return each objects[i] is a slice of the body (same
// bytes). A batch in flight thus keeps its objects once, not once in the
// body and again in the buffers they were encoded into.
func EncodeImportBodyShared(objects [][]byte, opts ImportOptions) []byte {
	size := len(`{"objects":[]}`) + len(appendOptions(nil, opts))
	for i, obj := range objects {
		size += len(obj)
		if i > 0 {
			size++ // comma
		}
	}
	body := appendImportBody(make([]byte, 0, size), objects, opts)
	off := len(`{"objects":[`)
	for i, obj := range objects {
		end := off + len(obj)
		objects[i] = body[off:end:end]
		off = end + 1 // the comma
	}
	return body
}

// appendOptions writes the options in a fixed order (not map order) so the
// bytes never change between runs.
func appendOptions(dst []byte, opts ImportOptions) []byte {
	if opts == (ImportOptions{}) {
		return dst
	}
	dst = append(dst, `,"options":{`...)
	first := true
	key := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = strconv.AppendQuote(dst, name)
		dst = append(dst, ':')
	}
	if opts.DedupeBy != "" {
		key("dedupe_by")
		dst = appendJSONString(dst, opts.DedupeBy)
	}
	if opts.CaseInsensitive {
		key("caseInsensitive")
		dst = append(dst, "true"...)
	}
	if opts.UpdateExisting {
		key("update_existing")
		dst = append(dst, "true"...)
	}
	if opts.CreateMissingOptions {
		key("create_missing_options")
		dst = append(dst, "true"...)
	}
	if opts.ListID != "" {
		key("list_id")
		dst = appendJSONString(dst, opts.ListID)
	}
	return append(dst, '}')
}

// appendJSONString uses encoding/json rather than strconv.Quote because Go
// quoting (\x00, \U0001f600 escapes) is not valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		// json.Marshal of a string cannot fail (invalid UTF-8 is replaced).
		panic("prism: marshal string: " + err.Error())
	}
	return append(dst, b...)
}
