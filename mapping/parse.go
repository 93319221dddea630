package mapping

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

var (
	// slugRe is the rule for property slugs. Prism derives slugs from names in
	// lower snake case; being stricter than the API costs nothing and catches
	// typos such as "Email" or "first-name" before a request fails.
	slugRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	// syncNameRe keeps sync names safe to use as checkpoint keys, metric labels
	// and file names.
	syncNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	// identRe is one part of an unquoted table name; the reader quotes it, so
	// the name is used verbatim (case-sensitive).
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)
	// yamlLineRe extracts the line number from yaml.v3 syntax errors, which
	// carry it only in the message text.
	yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

var propertyTypes = []string{"string", "number", "boolean", "date", "datetime", "array"}

// Load reads and parses a mapping file. When the file has errors it returns a
// *FindingsError listing all of them (warnings included). Warnings of a valid
// file are kept in File.Warnings.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mapping file: %w", err)
	}
	f, fs := Parse(path, data)
	if fs.HasErrors() {
		return nil, &FindingsError{Findings: fs}
	}
	return f, nil
}

// Parse parses and validates a mapping file without touching any database.
// It returns every finding (errors and warnings) in file order; the File is
// nil when any finding is an error.
func Parse(filename string, data []byte) (*File, Findings) {
	p := &parser{file: filename}
	f := p.parse(data)
	p.findings.sort()
	if p.findings.HasErrors() {
		return nil, p.findings
	}
	f.Warnings = p.findings
	return f, p.findings
}

type parser struct {
	file     string
	findings Findings
	lines    []string // the file's lines, to locate text inside block scalars
}

func (p *parser) add(sev Severity, line, col int, format string, args ...any) {
	p.findings = append(p.findings, Finding{
		File: p.file, Line: line, Col: col, Severity: sev,
		Message: fmt.Sprintf(format, args...),
	})
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.add(SeverityError, n.Line, n.Column, format, args...)
}

func (p *parser) warnf(n *yaml.Node, format string, args ...any) {
	p.add(SeverityWarning, n.Line, n.Column, format, args...)
}

func (p *parser) parse(data []byte) *File {
	f := &File{Path: p.file}
	p.lines = strings.Split(string(data), "\n")
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := 1, err.Error()
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = "yaml: " + m[2]
		}
		p.add(SeverityError, line, 1, "%s", msg)
		return f
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(SeverityError, 1, 1, "empty mapping file: want a top-level syncs list")
		return f
	}
	root := deref(doc.Content[0])
	top, ok := p.fields(root, "mapping file", "syncs")
	if !ok {
		return f
	}
	syncsNode, ok := top.get("syncs")
	if !ok {
		p.errorf(root, "missing required key syncs")
		return f
	}
	if syncsNode.Kind != yaml.SequenceNode {
		p.errorf(syncsNode, "syncs: expected a list, got %s", kindName(syncsNode))
		return f
	}
	if len(syncsNode.Content) == 0 {
		p.errorf(syncsNode, "syncs: the list is empty")
	}
	names := map[string]int{}
	for _, item := range syncsNode.Content {
		s := p.sync(deref(item))
		if s == nil {
			continue
		}
		if s.Name != "" {
			if first, dup := names[s.Name]; dup {
				p.add(SeverityError, s.line, s.col, "duplicate sync name %q (first at line %d)", s.Name, first)
			} else {
				names[s.Name] = s.line
			}
		}
		f.Syncs = append(f.Syncs, s)
	}
	p.resolveRefs(f.Syncs)
	return f
}

// fields is a YAML mapping whose keys were checked for duplicates and
// against the allowed set.
type fields struct {
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
}

func (fs fields) get(k string) (*yaml.Node, bool) {
	n, ok := fs.vals[k]
	return n, ok
}

func (fs fields) key(k string) *yaml.Node { return fs.keys[k] }

func (p *parser) fields(n *yaml.Node, what string, allowed ...string) (fields, bool) {
	fs := fields{keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping, got %s", what, kindName(n))
		return fs, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "%s: keys must be plain strings", what)
			continue
		}
		if first, dup := fs.keys[k.Value]; dup {
			p.errorf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, first.Line)
			continue
		}
		if allowed != nil && !contains(allowed, k.Value) {
			p.errorf(k, "%s: unknown key %q (allowed: %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		fs.keys[k.Value] = k
		fs.vals[k.Value] = v
	}
	return fs, true
}

func (p *parser) sync(n *yaml.Node) *Sync {
	s := &Sync{BatchSize: DefaultBatchSize, file: p.file, line: n.Line, col: n.Column}
	s.Target = Target{Object: DefaultObject, UpdateExisting: true}
	fs, ok := p.fields(n, "sync", "name", "schedule", "source", "target", "batch_size", "properties", "list_properties", "reconcile")
	if !ok {
		return nil
	}
	what := "sync"
	if v, ok := fs.get("name"); ok {
		if name, ok := p.str(v, "name"); ok {
			if !syncNameRe.MatchString(name) {
				p.errorf(v, "name: %q is not a valid sync name (want %s)", name, syncNameRe)
			}
			s.Name = name
			s.line, s.col = v.Line, v.Column
			what = "sync " + name
		}
	} else {
		p.errorf(n, "sync: missing required key name")
	}
	if v, ok := fs.get("schedule"); ok {
		if spec, ok := p.str(v, "schedule"); ok {
			if _, err := cron.ParseStandard(spec); err != nil {
				p.errorf(v, "schedule: invalid cron spec %q: %v", spec, err)
			}
			s.Schedule = spec
		}
	}
	if v, ok := fs.get("reconcile"); ok {
		s.at.reconcile = position{v.Line, v.Column}
		if spec, ok := p.str(v, "reconcile"); ok {
			if _, err := cron.ParseStandard(spec); err != nil {
				p.errorf(v, "reconcile: invalid cron spec %q: %v", spec, err)
			}
			s.Reconcile = spec
		}
	}
	if v, ok := fs.get("source"); ok {
		s.Source = p.source(v, &s.at)
	} else {
		p.errorf(n, "%s: missing required key source", what)
	}
	if v, ok := fs.get("batch_size"); ok {
		if bs, ok := p.integer(v, "batch_size"); ok {
			if bs < MinBatchSize || bs > MaxBatchSize {
				p.errorf(v, "batch_size: %d is out of range %d..%d", bs, MinBatchSize, MaxBatchSize)
			}
			s.BatchSize = bs
		}
	}
	if v, ok := fs.get("properties"); ok {
		s.Properties = p.properties(v, "properties")
		if v.Kind == yaml.MappingNode && len(v.Content) == 0 {
			p.errorf(v, "properties: at least one property is required")
		}
	} else {
		p.errorf(n, "%s: missing required key properties", what)
	}
	if v, ok := fs.get("list_properties"); ok {
		s.ListProperties = p.properties(v, "list_properties")
		if v.Kind == yaml.MappingNode && len(v.Content) == 0 {
			p.warnf(v, "list_properties is empty; no list field is sent")
			s.ListProperties = nil
		}
	}
	var targetFields fields
	if v, ok := fs.get("target"); ok {
		targetFields = p.target(v, &s.Target)
	}
	p.checkTarget(s, targetFields, n)
	p.checkDeletes(s, targetFields)
	return s
}

func (p *parser) source(n *yaml.Node, at *sourcePositions) Source {
	var src Source
	at.source = position{n.Line, n.Column}
	fs, ok := p.fields(n, "source", "table", "query", "key", "cursor", "deleted")
	if !ok {
		return src
	}
	tn, hasTable := fs.get("table")
	qn, hasQuery := fs.get("query")
	if hasTable {
		at.table = position{tn.Line, tn.Column}
	}
	if hasQuery {
		at.query = position{qn.Line, qn.Column}
	}
	switch {
	case hasTable && hasQuery:
		p.errorf(fs.key("query"), "source: set exactly one of table or query, not both")
	case !hasTable && !hasQuery:
		p.errorf(n, "source: one of table or query is required")
	}
	if hasTable {
		if t, ok := p.str(tn, "source.table"); ok {
			parts := strings.Split(t, ".")
			valid := len(parts) <= 2
			for _, part := range parts {
				valid = valid && identRe.MatchString(part)
			}
			if !valid {
				p.errorf(tn, "source.table: %q is not a table name (want table or schema.table, unquoted identifiers)", t)
			}
			src.Table = t
		}
	}
	if hasQuery {
		if q, ok := p.str(qn, "source.query"); ok {
			q = strings.TrimSpace(q)
			switch {
			case q == "":
				p.errorf(qn, "source.query: must not be empty")
			case strings.HasSuffix(q, ";"):
				p.errorf(qn, "source.query: must not end with ';' (it is wrapped as a subquery)")
			}
			src.Query = q
			at.queryText = p.textPositions(qn, q)
		}
	}
	if v, ok := fs.get("key"); ok {
		at.key = position{v.Line, v.Column}
		src.Key, at.keys = p.columnList(v, "source.key")
		if v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
			p.errorf(v, "source.key: at least one column is required")
		}
	} else {
		p.errorf(n, "source: missing required key key")
	}
	if v, ok := fs.get("cursor"); ok {
		at.cursor = position{v.Line, v.Column}
		if c, ok := p.str(v, "source.cursor"); ok {
			if c == "" {
				p.errorf(v, "source.cursor: must not be empty")
			}
			src.Cursor = c
		}
	} else {
		p.errorf(n, "source: missing required key cursor")
	}
	if v, ok := fs.get("deleted"); ok {
		at.deleted = position{v.Line, v.Column}
		if c, ok := p.str(v, "source.deleted"); ok {
			if c == "" {
				p.errorf(v, "source.deleted: must not be empty")
			}
			src.Deleted = c
		}
	}
	return src
}

func (p *parser) target(n *yaml.Node, t *Target) fields {
	fs, ok := p.fields(n, "target", "object", "dedupe_by", "case_insensitive", "update_existing", "list_id", "on_delete", "archive")
	if !ok {
		return fs
	}
	if v, ok := fs.get("object"); ok {
		if o, ok := p.str(v, "target.object"); ok {
			if !contains(objects, o) {
				p.errorf(v, "target.object: %q is not one of %s", o, strings.Join(objects, ", "))
			}
			t.Object = o
		}
	}
	if v, ok := fs.get("dedupe_by"); ok {
		if d, ok := p.str(v, "target.dedupe_by"); ok {
			t.DedupeBy = d
		}
	}
	if v, ok := fs.get("case_insensitive"); ok {
		t.CaseInsensitive, _ = p.boolean(v, "target.case_insensitive")
	}
	if v, ok := fs.get("update_existing"); ok {
		t.UpdateExisting, _ = p.boolean(v, "target.update_existing")
	}
	if v, ok := fs.get("on_delete"); ok {
		if o, ok := p.str(v, "target.on_delete"); ok {
			if o != OnDeleteDelete && o != OnDeleteArchive && o != OnDeleteIgnore {
				p.errorf(v, "target.on_delete: %q is not one of delete, archive, ignore", o)
			}
			t.OnDelete = o
		}
	}
	if v, ok := fs.get("list_id"); ok {
		if id, ok := p.str(v, "target.list_id"); ok {
			// Only the canonical 36-character form: uuid.Parse also accepts
			// braces and urn: prefixes, which the API may not.
			if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
				p.errorf(v, "target.list_id: %q is not a UUID", id)
			}
			t.ListID = id
		}
	}
	return fs
}

// checkTarget runs the checks that need both the target and the properties.
func (p *parser) checkTarget(s *Sync, fs fields, syncNode *yaml.Node) {
	t := s.Target
	if t.DedupeBy != "" {
		v, _ := fs.get("dedupe_by")
		var prop *Property
		for i := range s.Properties {
			if s.Properties[i].Slug == t.DedupeBy {
				prop = &s.Properties[i]
			}
		}
		if prop != nil && prop.Kind == FromRef {
			p.errorf(v, "target.dedupe_by: property %q is a ref; dedupe on a property of the record itself", t.DedupeBy)
		} else if prop == nil {
			slugs := make([]string, len(s.Properties))
			for i := range s.Properties {
				slugs[i] = s.Properties[i].Slug
			}
			p.errorf(v, "target.dedupe_by: %q is not a mapped property (have: %s)", t.DedupeBy, strings.Join(slugs, ", "))
		} else if !prop.Required {
			p.warnf(v, "target.dedupe_by: property %q is not required; rows where it is NULL cannot match and create new records", t.DedupeBy)
		}
	}
	if t.DedupeBy == "" {
		if k := fs.key("case_insensitive"); k != nil && t.CaseInsensitive {
			p.warnf(k, "target.case_insensitive has no effect without dedupe_by")
		}
		if k := fs.key("update_existing"); k != nil && t.UpdateExisting {
			p.warnf(k, "target.update_existing has no effect without dedupe_by")
		}
	}
	if len(s.ListProperties) > 0 && t.ListID == "" {
		p.warnf(syncNode, "sync %s: list_properties without target.list_id; the API may not know which list they belong to", s.Name)
	}
}

func (p *parser) properties(n *yaml.Node, what string) []Property {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping of slug to spec, got %s", what, kindName(n))
		return nil
	}
	fs, _ := p.fields(n, what) // duplicate keys are reported here
	var props []Property
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || fs.key(k.Value) != k {
			continue // already reported
		}
		if !slugRe.MatchString(k.Value) {
			p.errorf(k, "%s: malformed slug %q (want lower case letters, digits and _, starting with a letter, at most 64 chars)", what, k.Value)
		}
		prop := p.property(k, v)
		props = append(props, prop)
	}
	return props
}

func (p *parser) property(k, n *yaml.Node) Property {
	prop := Property{Slug: k.Value, file: p.file, line: k.Line, col: k.Column}
	what := "property " + k.Value
	if n.Kind == yaml.ScalarNode {
		// Short form: slug: column.
		if c, ok := p.str(n, what); ok {
			if c == "" {
				p.errorf(n, "%s: column name must not be empty", what)
			}
			prop.Kind, prop.Column = FromColumn, c
		}
		return prop
	}
	fs, ok := p.fields(n, what, "column", "value", "template", "coalesce", "ref", "columns", "type", "transform", "map", "map_default", "unmapped", "required", "omit_null")
	if !ok {
		return prop
	}
	if _, ok := fs.get("ref"); ok {
		p.refProperty(&prop, fs, n, what)
		return prop
	}
	if k := fs.key("columns"); k != nil {
		p.errorf(k, "%s: columns is only for a ref (write ref: SYNC with columns: [a, b]; for a value use column: or coalesce:)", what)
	}
	var sources []string
	for _, src := range []string{"column", "value", "template", "coalesce"} {
		if _, ok := fs.get(src); ok {
			sources = append(sources, src)
		}
	}
	switch len(sources) {
	case 0:
		p.errorf(n, "%s: needs exactly one source: column, value, template or coalesce", what)
	case 1:
	default:
		p.errorf(fs.key(sources[1]), "%s: set exactly one source, got %s", what, strings.Join(sources, " and "))
	}
	if v, ok := fs.get("column"); ok {
		if c, ok := p.str(v, what+".column"); ok {
			if c == "" {
				p.errorf(v, "%s.column: must not be empty", what)
			}
			prop.Kind, prop.Column = FromColumn, c
		}
	}
	if v, ok := fs.get("value"); ok {
		val, ok := p.literal(v, what+".value", true)
		if ok {
			prop.Kind, prop.Value = FromValue, val
		}
	}
	if v, ok := fs.get("template"); ok {
		if t, ok := p.str(v, what+".template"); ok {
			parts, err := parseTemplate(t)
			if err != nil {
				p.errorf(v, "%s.template: %v", what, err)
			} else if len(parts) > 0 && !hasColumn(parts) {
				p.warnf(v, "%s.template: no {column} placeholder; use value for a constant", what)
			}
			prop.Kind, prop.Template, prop.tmpl = FromTemplate, t, parts
		}
	}
	if v, ok := fs.get("coalesce"); ok {
		cols := p.stringList(v, what+".coalesce")
		if len(cols) == 0 {
			p.errorf(v, "%s.coalesce: at least one column is required", what)
		}
		prop.Kind, prop.Coalesce = FromCoalesce, cols
	}
	if v, ok := fs.get("type"); ok {
		if t, ok := p.str(v, what+".type"); ok {
			if !contains(propertyTypes, t) {
				p.errorf(v, "%s.type: %q is not one of %s", what, t, strings.Join(propertyTypes, ", "))
			}
			prop.Type = t
		}
	}
	if v, ok := fs.get("transform"); ok {
		items := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			items = v.Content
		}
		for _, it := range items {
			it = deref(it)
			s, ok := p.str(it, what+".transform")
			if !ok {
				continue
			}
			tr, err := parseTransform(s)
			if err != nil {
				p.errorf(it, "%s.transform: %v", what, err)
				continue
			}
			prop.Transforms = append(prop.Transforms, tr)
		}
	}
	p.propertyMap(&prop, fs, what)
	p.nullRules(&prop, fs, what)
	// Value and template sources have a known kind without a database, so
	// their transform chain is checked here rather than waiting for Compile.
	if len(sources) == 1 && (prop.Kind == FromValue || prop.Kind == FromTemplate) {
		start := kindOfLiteral(prop.Value)
		if prop.Kind == FromTemplate {
			start = kString
		}
		if _, problems := checkPipeline(start, &prop); len(problems) > 0 {
			for _, pr := range problems {
				p.errorf(n, "%s: %s", what, pr)
			}
		}
	}
	return prop
}

// refProperty parses the link form {ref: SYNC, column: C} or {ref: SYNC,
// columns: [a, b]}. Whether SYNC exists and its key fits is decided once
// every sync is parsed (resolveRefs).
func (p *parser) refProperty(prop *Property, fs fields, n *yaml.Node, what string) {
	prop.Kind = FromRef
	rn, _ := fs.get("ref")
	prop.refAt = position{rn.Line, rn.Column}
	if ref, ok := p.str(rn, what+".ref"); ok {
		if ref == "" {
			p.errorf(rn, "%s.ref: must name a sync", what)
		}
		prop.Ref = ref
	}
	cn, hasColumn := fs.get("column")
	csn, hasColumns := fs.get("columns")
	switch {
	case hasColumn && hasColumns:
		p.errorf(fs.key("columns"), "%s: set column (one key column) or columns (a compound key), not both", what)
	case hasColumn:
		prop.colsAt = position{cn.Line, cn.Column}
		if c, ok := p.str(cn, what+".column"); ok {
			if c == "" {
				p.errorf(cn, "%s.column: must not be empty", what)
			} else {
				prop.RefColumns = []string{c}
			}
		}
	case hasColumns:
		prop.colsAt = position{csn.Line, csn.Column}
		prop.RefColumns, _ = p.columnList(csn, what+".columns")
		if csn.Kind == yaml.SequenceNode && len(csn.Content) == 0 {
			p.errorf(csn, "%s.columns: at least one column is required", what)
		}
	default:
		p.errorf(n, "%s: a ref needs column (the column holding the referenced sync's key) or columns (one per key column)", what)
	}
	// A link's value is a record id the engine looks up; reshaping it
	// could only make it point elsewhere.
	for _, k := range []string{"value", "template", "coalesce", "type", "transform", "map", "map_default", "unmapped"} {
		if kn := fs.key(k); kn != nil {
			p.errorf(kn, "%s: %s cannot be used with ref (the value sent is the referenced record's id)", what, k)
		}
	}
	p.nullRules(prop, fs, what)
}

// nullRules reads required and omit_null, which every kind of property
// takes.
func (p *parser) nullRules(prop *Property, fs fields, what string) {
	if v, ok := fs.get("required"); ok {
		prop.Required, _ = p.boolean(v, what+".required")
	}
	if v, ok := fs.get("omit_null"); ok {
		prop.OmitNull, _ = p.boolean(v, what+".omit_null")
		if prop.Required && prop.OmitNull {
			p.warnf(fs.key("omit_null"), "%s: omit_null has no effect on a required property", what)
		}
	}
}

func (p *parser) propertyMap(prop *Property, fs fields, what string) {
	mn, hasMap := fs.get("map")
	dn, hasDefault := fs.get("map_default")
	un, hasUnmapped := fs.get("unmapped")
	if hasMap {
		if mfs, ok := p.fields(mn, what+".map"); ok {
			prop.Map = map[string]any{}
			for i := 0; i+1 < len(mn.Content); i += 2 {
				k, v := mn.Content[i], deref(mn.Content[i+1])
				if mfs.key(k.Value) != k {
					continue
				}
				if val, ok := p.literal(v, what+".map."+k.Value, false); ok {
					prop.Map[k.Value] = val
				}
			}
			if len(mn.Content) == 0 {
				p.errorf(mn, "%s.map: must not be empty", what)
			}
		}
	}
	if hasDefault {
		if !hasMap {
			p.errorf(fs.key("map_default"), "%s: map_default needs map", what)
		}
		prop.MapDefault, _ = p.literal(dn, what+".map_default", false)
		prop.Unmapped = UnmappedDefault
	}
	if hasUnmapped {
		if !hasMap {
			p.errorf(fs.key("unmapped"), "%s: unmapped needs map", what)
		}
		if u, ok := p.str(un, what+".unmapped"); ok {
			switch {
			case u != UnmappedKeep && u != UnmappedReject && u != UnmappedDefault:
				p.errorf(un, "%s.unmapped: %q is not one of keep, reject, default", what, u)
			case u == UnmappedDefault && !hasDefault:
				p.errorf(un, "%s.unmapped: default needs map_default", what)
			case u != UnmappedDefault && hasDefault:
				p.errorf(un, "%s.unmapped: %s conflicts with map_default (use unmapped: default or drop map_default)", what, u)
			}
			prop.Unmapped = u
		}
	}
	if hasMap && prop.Unmapped == "" {
		prop.Unmapped = UnmappedKeep
	}
}

// literal converts a YAML constant into nil, bool, string, Number or []any.
func (p *parser) literal(n *yaml.Node, what string, allowList bool) (any, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				p.errorf(n, "%s: %v", what, err)
				return nil, false
			}
			return b, true
		case "!!int", "!!float":
			num, err := yamlNumber(n)
			if err != nil {
				p.errorf(n, "%s: %v", what, err)
				return nil, false
			}
			return num, true
		default:
			// !!str, and !!timestamp for unquoted dates: keep the text.
			if !utf8.ValidString(n.Value) {
				p.errorf(n, "%s: not valid UTF-8", what)
				return nil, false
			}
			return n.Value, true
		}
	case yaml.SequenceNode:
		if !allowList {
			p.errorf(n, "%s: expected a scalar, got a list", what)
			return nil, false
		}
		out := make([]any, 0, len(n.Content))
		for _, it := range n.Content {
			v, ok := p.literal(deref(it), what, false)
			if !ok {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	}
	p.errorf(n, "%s: expected a scalar, got %s", what, kindName(n))
	return nil, false
}

// yamlNumber turns a YAML int or float into JSON number text. Plain decimal
// text is kept as written; other YAML spellings (0x1F, 1_000, +5, .5) are
// normalised.
func yamlNumber(n *yaml.Node) (Number, error) {
	if isJSONNumber(n.Value) {
		return Number(n.Value), nil
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err != nil {
			return "", fmt.Errorf("integer %q out of range", n.Value)
		}
		return Number(strconv.FormatInt(i, 10)), nil
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return "", fmt.Errorf("bad number %q", n.Value)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("%q is not a finite number", n.Value)
	}
	return Number(appendFloat(nil, f, 64)), nil
}

func (p *parser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "%s: expected a string, got %s", what, kindName(n))
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		p.errorf(n, "%s: not valid UTF-8", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.errorf(n, "%s: expected true or false, got %s", what, kindName(n))
		return false, false
	}
	return b, true
}

func (p *parser) integer(n *yaml.Node, what string) (int, bool) {
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		p.errorf(n, "%s: expected an integer, got %s", what, kindName(n))
		return 0, false
	}
	return i, true
}

// stringList accepts a list of strings or a single string as a shorthand.
func (p *parser) stringList(n *yaml.Node, what string) []string {
	out, _ := p.columnList(n, what)
	return out
}

// columnList is stringList that also returns where each name was written.
func (p *parser) columnList(n *yaml.Node, what string) ([]string, []position) {
	if n.Kind == yaml.ScalarNode {
		if s, ok := p.str(n, what); ok {
			if s == "" {
				p.errorf(n, "%s: column name must not be empty", what)
				return nil, nil
			}
			return []string{s}, []position{{n.Line, n.Column}}
		}
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: expected a list of column names, got %s", what, kindName(n))
		return nil, nil
	}
	var out []string
	var at []position
	seen := map[string]bool{}
	for _, it := range n.Content {
		it = deref(it)
		s, ok := p.str(it, what)
		if !ok {
			continue
		}
		switch {
		case s == "":
			p.errorf(it, "%s: column name must not be empty", what)
		case seen[s]:
			p.errorf(it, "%s: duplicate column %q", what, s)
		default:
			seen[s] = true
			out = append(out, s)
			at = append(at, position{it.Line, it.Column})
		}
	}
	return out, at
}

func deref(n *yaml.Node) *yaml.Node {
	// Bounded so a pathological alias chain cannot loop.
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		}
		return fmt.Sprintf("%s %s", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	}
	return "nothing"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasColumn(parts []tmplPart) bool {
	for _, p := range parts {
		if p.col != "" {
			return true
		}
	}
	return false
}

// parseTemplate splits "{a} and {b}" into literal and column parts. "{{" and
// "}}" stand for literal braces.
func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '}':
			return nil, fmt.Errorf("unmatched '}' at offset %d (write }} for a literal brace)", i)
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated '{' at offset %d", i)
			}
			col := strings.TrimSpace(s[i+1 : i+1+end])
			if col == "" || strings.ContainsRune(col, '{') {
				return nil, fmt.Errorf("bad placeholder at offset %d: want {column}", i)
			}
			if lit.Len() > 0 {
				parts = append(parts, tmplPart{lit: lit.String()})
				lit.Reset()
			}
			parts = append(parts, tmplPart{col: col})
			i += end + 1
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{lit: lit.String()})
	}
	return parts, nil
}

// checkDeletes settles on_delete's default and checks the delete settings
// together: delete is the default once a soft-delete column or a reconcile
// schedule asks for deletes; archive needs constant archive properties.
func (p *parser) checkDeletes(s *Sync, fs fields) {
	t := &s.Target
	if k := fs.key("on_delete"); k != nil {
		s.at.onDelete = position{k.Line, k.Column}
	}
	if k := fs.key("archive"); k != nil {
		s.at.archive = position{k.Line, k.Column}
	}
	if t.OnDelete == "" && (s.Source.Deleted != "" || s.Reconcile != "") {
		t.OnDelete = OnDeleteDelete
	}
	archive, hasArchive := fs.get("archive")
	if hasArchive {
		s.Archive = p.properties(archive, "target.archive")
	}
	valid := t.OnDelete == "" || t.OnDelete == OnDeleteDelete || t.OnDelete == OnDeleteArchive || t.OnDelete == OnDeleteIgnore
	switch {
	case !valid: // reported by target
	case t.OnDelete == OnDeleteArchive && (!hasArchive || len(s.Archive) == 0):
		v, _ := fs.get("on_delete")
		p.errorf(v, "target.on_delete: archive needs target.archive: the properties to set instead of deleting, e.g. status: { value: archived }")
	case hasArchive && t.OnDelete != OnDeleteArchive:
		p.errorf(fs.key("archive"), "target.archive is only used with on_delete: archive")
	case t.OnDelete == OnDeleteArchive && t.DedupeBy == "":
		v, _ := fs.get("on_delete")
		p.errorf(v, "target.on_delete: archive needs target.dedupe_by, so that a row that comes back updates its archived record instead of creating a second one")
	}
	for i, prop := range s.Archive {
		if prop.Kind != FromValue {
			n := archive
			if i*2 < len(archive.Content) {
				n = archive.Content[i*2]
			}
			p.errorf(n, "target.archive: property %q must be a constant ({ value: ... }): a row deleted from the source has no columns to read", prop.Slug)
		}
	}
}
