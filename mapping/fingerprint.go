package mapping

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// fingerprintVersion changes when the canonical form below changes, so an
// upgrade that reshapes it is seen as a mapping change rather than silently
// colliding.
const fingerprintVersion = 1

// Fingerprint is a stable hash (hex SHA-256) of everything that decides what
// a row turns into: source, target and both property lists. The name,
// schedule and batch size are left out because changing them does not change
// the objects sent. The daemon compares it with the stored one to notice
// mapping changes.
func (s *Sync) Fingerprint() string {
	type prop struct {
		Slug       string         `json:"slug"`
		Kind       SourceKind     `json:"kind"`
		Column     string         `json:"column,omitempty"`
		Value      any            `json:"value,omitempty"`
		Template   string         `json:"template,omitempty"`
		Coalesce   []string       `json:"coalesce,omitempty"`
		Ref        string         `json:"ref,omitempty"`
		RefColumns []string       `json:"ref_columns,omitempty"`
		Type       string         `json:"type,omitempty"`
		Transforms []string       `json:"transforms,omitempty"`
		Map        map[string]any `json:"map,omitempty"`
		MapDefault any            `json:"map_default,omitempty"`
		Unmapped   string         `json:"unmapped,omitempty"`
		Required   bool           `json:"required,omitempty"`
		OmitNull   bool           `json:"omit_null,omitempty"`
	}
	conv := func(ps []Property) []prop {
		out := make([]prop, len(ps))
		for i, p := range ps {
			cp := prop{Slug: p.Slug, Kind: p.Kind, Column: p.Column, Template: p.Template, Coalesce: p.Coalesce, Ref: p.Ref, RefColumns: p.RefColumns,
				Type: p.Type, Unmapped: p.Unmapped, Required: p.Required, OmitNull: p.OmitNull}
			if p.Kind == FromValue {
				cp.Value = typedLiteral(p.Value)
			}
			for _, t := range p.Transforms {
				cp.Transforms = append(cp.Transforms, t.String())
			}
			if p.Map != nil {
				cp.Map = make(map[string]any, len(p.Map))
				for k, v := range p.Map {
					cp.Map[k] = typedLiteral(v)
				}
				cp.MapDefault = typedLiteral(p.MapDefault)
			}
			out[i] = cp
		}
		return out
	}
	canon := struct {
		V        int    `json:"v"`
		Source   Source `json:"source"`
		Target   Target `json:"target"`
		Props    []prop `json:"properties"`
		ListProp []prop `json:"list_properties,omitempty"`
	}{V: fingerprintVersion, Source: s.Source, Target: s.Target, Props: conv(s.Properties), ListProp: conv(s.ListProperties)}
	// encoding/json writes struct fields in declaration order and map keys
	// sorted, so the bytes are canonical.
	b, err := json.Marshal(canon)
	if err != nil {
		// Only plain strings, bools and slices are marshalled; this cannot fail.
		panic("mapping: fingerprint: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// typedLiteral tags a constant with its kind so 5 and "5" hash differently.
func typedLiteral(v any) any {
	switch x := v.(type) {
	case nil:
		return map[string]any{"null": true}
	case string:
		return map[string]any{"s": x}
	case Number:
		return map[string]any{"n": string(x)}
	case bool:
		return map[string]any{"b": x}
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = typedLiteral(el)
		}
		return map[string]any{"a": out}
	}
	return nil
}
