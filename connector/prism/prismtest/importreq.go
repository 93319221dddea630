package prismtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
)

// importRequest is a decoded and validated import body.
type importRequest struct {
	rows []row
	opts importOptions
}

type importOptions struct {
	dedupeBy        string // "" = no dedupe
	caseInsensitive bool
	updateExisting  bool
	listID          string
}

// row is one object of an import. A row with err set is refused on its own
// (per-row error) while the other rows go ahead.
type row struct {
	props map[string]any // values: string, json.Number, bool, nil, []any of those
	list  json.RawMessage
	err   *wireError
}

// requestError is a whole-request 400.
type requestError struct {
	code, message string
}

func (e *requestError) Error() string { return e.code + ": " + e.message }

func badRequest(code, format string, args ...any) error {
	return &requestError{code: code, message: fmt.Sprintf(format, args...)}
}

// decodeImport parses an import body in one streaming pass. Field names are
// matched exactly, unlike the encoding/json struct decoder which would
// accept "Objects" or "CaseInsensitive" (a forgotten struct tag in a
// client), and unknown fields are refused so that client typos surface.
//
// It is the reference decoder: decodeBatch tries the cheaper scanImport
// first and comes here for every body that one declines, which includes
// every body that is refused; FuzzScanImport holds the two together.
func decodeImport(body []byte, known map[string]bool) (*importRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	malformed := func(err error) error {
		return badRequest("invalid_request", "malformed JSON body: %v", err)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, badRequest("invalid_request", "body must be a JSON object")
	}
	req := &importRequest{}
	sawObjects := false
	for dec.More() {
		name, err := objectKey(dec)
		if err != nil {
			return nil, malformed(err)
		}
		switch name {
		case "objects":
			tok, err := dec.Token()
			if err != nil {
				return nil, malformed(err)
			}
			if tok == nil {
				return nil, badRequest("invalid_request", "objects is required")
			}
			if tok != json.Delim('[') {
				return nil, badRequest("invalid_request", "objects must be an array")
			}
			sawObjects = true
			for dec.More() {
				var r row
				if err := decodeObject(dec, known, &r); err != nil {
					var re *requestError
					if errors.As(err, &re) {
						re.message = fmt.Sprintf("objects[%d]: %s", len(req.rows), re.message)
					}
					return nil, err
				}
				req.rows = append(req.rows, r)
			}
			if err := expectDelim(dec, ']'); err != nil {
				return nil, malformed(err)
			}
		case "options":
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, malformed(err)
			}
			if err := decodeOptions(raw, known, &req.opts); err != nil {
				return nil, err
			}
		default:
			return nil, badRequest("invalid_request", "unknown field %q", name)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("invalid_request", "trailing data after the JSON body")
	}
	if !sawObjects {
		return nil, badRequest("invalid_request", "objects is required")
	}
	if req.rows == nil {
		req.rows = []row{}
	}
	return req, nil
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("expected %v, found %v", d, tok)
	}
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	name, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("expected an object key, found %v", tok)
	}
	return name, nil
}

func decodeOptions(raw json.RawMessage, known map[string]bool, o *importOptions) error {
	if raw == nil || isNull(raw) {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return badRequest("invalid_request", "options must be an object")
	}
	var crmID string
	for k, v := range m {
		var err error
		switch k {
		case "dedupe_by":
			o.dedupeBy, err = decodeDedupeBy(v)
		case "caseInsensitive":
			err = decodeBool(k, v, &o.caseInsensitive)
		case "update_existing":
			err = decodeBool(k, v, &o.updateExisting)
		case "create_missing_options", "require_list_stage":
			// Accepted for shape fidelity; the fake has no select options or
			// list stages to apply them to.
			var ignored bool
			err = decodeBool(k, v, &ignored)
		case "list_id":
			err = decodeUUID(k, v, &o.listID)
		case "crm_id":
			err = decodeUUID(k, v, &crmID)
		default:
			err = badRequest("invalid_request", "unknown option %q", k)
		}
		if err != nil {
			return err
		}
	}
	if crmID != "" {
		if o.listID != "" && !strings.EqualFold(o.listID, crmID) {
			return badRequest("invalid_request", "options.list_id and its deprecated alias crm_id differ")
		}
		o.listID = crmID
	}
	if o.dedupeBy != "" && known != nil && !known[o.dedupeBy] {
		return badRequest("unknown_property", "dedupe_by names unknown property %q", o.dedupeBy)
	}
	return nil
}

func decodeDedupeBy(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return "", badRequest("invalid_request", "options.dedupe_by must not be empty")
		}
		return one, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", badRequest("invalid_request", "options.dedupe_by must be a property slug or an array of one slug")
	}
	switch {
	case len(many) == 0:
		return "", badRequest("invalid_request", "options.dedupe_by must not be empty")
	case len(many) > 1:
		return "", badRequest("compound_dedupe_unsupported",
			"options.dedupe_by accepts a single property; compound dedupe over %d properties is not supported", len(many))
	case many[0] == "":
		return "", badRequest("invalid_request", "options.dedupe_by must not be empty")
	}
	return many[0], nil
}

func decodeBool(name string, raw json.RawMessage, dst *bool) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return badRequest("invalid_request", "options.%s must be a boolean", name)
	}
	return nil
}

func decodeUUID(name string, raw json.RawMessage, dst *string) error {
	if isNull(raw) {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || len(s) != 36 || uuid.Validate(s) != nil {
		return badRequest("invalid_request", "options.%s must be a UUID", name)
	}
	*dst = s
	return nil
}

func decodeObject(dec *json.Decoder, known map[string]bool, r *row) error {
	tok, err := dec.Token()
	if err != nil {
		return badRequest("invalid_request", "malformed JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return badRequest("invalid_request", "must be an object")
	}
	for dec.More() {
		name, err := objectKey(dec)
		if err != nil {
			return badRequest("invalid_request", "malformed JSON: %v", err)
		}
		switch name {
		case "default":
			r.props = nil // a repeated key replaces, as in a JSON object decode
			if err := dec.Decode(&r.props); err != nil {
				return badRequest("invalid_request", "default must be an object of property values")
			}
		case "list":
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return badRequest("invalid_request", "malformed JSON: %v", err)
			}
			r.list = nil
			if !isNull(raw) {
				if raw[0] != '{' {
					return badRequest("invalid_request", "list must be an object")
				}
				r.list = raw
			}
		default:
			return badRequest("invalid_request", "unknown field %q", name)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return badRequest("invalid_request", "malformed JSON: %v", err)
	}
	if r.props == nil {
		r.props = map[string]any{}
	}
	r.err = validateProps(r.props, known)
	return nil
}

// validateProps returns the per-row error for the lexicographically first
// offending slug, so that the message is deterministic.
func validateProps(props map[string]any, known map[string]bool) *wireError {
	var bad string
	var found *wireError
	for slug, v := range props {
		var e *wireError
		switch {
		case slug == "":
			e = &wireError{Code: "invalid_value", Message: "empty property slug"}
		case known != nil && !known[slug]:
			e = &wireError{Code: "unknown_property", Message: fmt.Sprintf("unknown property %q", slug)}
		case !validValue(v, true):
			e = &wireError{Code: "invalid_value",
				Message: fmt.Sprintf("property %q: value must be a string, number, boolean, array or null", slug)}
		}
		if e != nil && (found == nil || slug < bad) {
			bad, found = slug, e
		}
	}
	return found
}

// validValue allows scalars anywhere and arrays only at the top level.
func validValue(v any, top bool) bool {
	switch x := v.(type) {
	case nil, string, json.Number, bool:
		return true
	case []any:
		if !top {
			return false
		}
		for _, e := range x {
			if !validValue(e, false) {
				return false
			}
		}
		return true
	}
	return false
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
