package mapping

import (
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// Relations between syncs: a ref property links a row to the Micro record
// of a row of another sync. Parse checks that the referenced sync exists,
// that the ref gives one column per key column of it, and that no chain of
// refs leads back to where it started; Levels orders syncs so that a
// referenced sync passes before the syncs that link to it.

// resolveRefs checks every ref property against the file's syncs and
// records, on each referenced sync, who links to it.
func (p *parser) resolveRefs(syncs []*Sync) {
	byName := make(map[string]*Sync, len(syncs))
	var names []string
	for _, s := range syncs {
		if s.Name != "" && byName[s.Name] == nil {
			byName[s.Name] = s
			names = append(names, s.Name)
		}
	}
	for _, s := range syncs {
		s.eachRef(func(prop *Property) {
			if prop.Ref == "" {
				return // reported by the parser
			}
			t := byName[prop.Ref]
			if t == nil {
				p.add(SeverityError, prop.refAt.line, prop.refAt.col, "sync %s: property %s.ref: no sync named %q in this file (have: %s)",
					s.Name, prop.Slug, prop.Ref, strings.Join(names, ", "))
				return
			}
			if n, k := len(prop.RefColumns), len(t.Source.Key); n > 0 && k > 0 && n != k {
				p.add(SeverityError, prop.colsAt.line, prop.colsAt.col,
					"sync %s: property %s: sync %s is keyed by %d column(s) (%s) but the ref gives %d (%s); list one column per key column, in the key's order",
					s.Name, prop.Slug, t.Name, k, strings.Join(t.Source.Key, ", "), n, strings.Join(prop.RefColumns, ", "))
			}
			prop.target = t
			if !slices.Contains(t.referrers, s.Name) {
				t.referrers = append(t.referrers, s.Name)
			}
		})
	}
	p.checkCycles(syncs, byName)
}

// eachRef calls fn with every ref property of s, properties first.
func (s *Sync) eachRef(fn func(*Property)) {
	for _, ps := range [][]Property{s.Properties, s.ListProperties} {
		for i := range ps {
			if ps[i].Kind == FromRef {
				fn(&ps[i])
			}
		}
	}
}

// checkCycles reports each group of syncs whose refs lead in a circle
// (a strongly connected component of the reference graph, or a sync that
// refers to itself), once, at the first ref in file order that stays
// inside the group. The engine passes referenced syncs first; in a circle
// no sync can go first.
func (p *parser) checkCycles(syncs []*Sync, byName map[string]*Sync) {
	for _, group := range components(syncs, byName) {
		member := func(name string) bool {
			return slices.ContainsFunc(group, func(s *Sync) bool { return s.Name == name })
		}
		if len(group) == 1 && !slices.Contains(group[0].References(), group[0].Name) {
			continue
		}
		path := cyclePath(group[0], byName, member)
		var at *Property
		group[0].eachRef(func(prop *Property) {
			if at == nil && member(prop.Ref) {
				at = prop
			}
		})
		names := make([]string, len(group))
		for i, s := range group {
			names[i] = s.Name
		}
		msg := "reference cycle: " + strings.Join(path, " -> ")
		if len(group) == 1 {
			msg = "sync " + group[0].Name + " refers to itself"
		} else if len(group) > len(path)-1 {
			msg += " (syncs in the cycle: " + strings.Join(names, ", ") + ")"
		}
		p.add(SeverityError, at.refAt.line, at.refAt.col, "sync %s: property %s.ref: %s; a ref may only point at a sync that does not link back, because the sync referenced is passed first",
			group[0].Name, at.Slug, msg)
	}
}

// components returns the strongly connected components of the reference
// graph (Tarjan), each in file order, ordered by their first member.
func components(syncs []*Sync, byName map[string]*Sync) [][]*Sync {
	index := make(map[*Sync]int)
	low := make(map[*Sync]int)
	onStack := make(map[*Sync]bool)
	var stack []*Sync
	var out [][]*Sync
	var visit func(s *Sync)
	visit = func(s *Sync) {
		index[s] = len(index)
		low[s] = index[s]
		stack = append(stack, s)
		onStack[s] = true
		for _, name := range s.References() {
			t := byName[name]
			switch {
			case t == nil:
			case !hasKey(index, t):
				visit(t)
				low[s] = min(low[s], low[t])
			case onStack[t]:
				low[s] = min(low[s], index[t])
			}
		}
		if low[s] != index[s] {
			return
		}
		var group []*Sync
		for {
			t := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[t] = false
			group = append(group, t)
			if t == s {
				break
			}
		}
		out = append(out, group)
	}
	for _, s := range syncs {
		if byName[s.Name] == s && !hasKey(index, s) {
			visit(s)
		}
	}
	pos := make(map[*Sync]int, len(syncs))
	for i, s := range syncs {
		pos[s] = i
	}
	for _, g := range out {
		slices.SortFunc(g, func(a, b *Sync) int { return pos[a] - pos[b] })
	}
	slices.SortFunc(out, func(a, b []*Sync) int { return pos[a[0]] - pos[b[0]] })
	return out
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// cyclePath is a shortest chain of refs from start back to start that stays
// inside the group (breadth first, refs in file order).
func cyclePath(start *Sync, byName map[string]*Sync, member func(string) bool) []string {
	prev := map[string]string{}
	queue := []string{start.Name}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, next := range byName[cur].References() {
			if !member(next) {
				continue
			}
			if next == start.Name {
				path := []string{start.Name}
				for at := cur; at != start.Name; at = prev[at] {
					path = append(path, at)
				}
				path = append(path, start.Name)
				slices.Reverse(path[1 : len(path)-1])
				return path
			}
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return []string{start.Name, start.Name}
}

// Levels orders syncs for a pass over all of them: every sync comes in a
// level after the levels of the syncs it refers to (among those given), so
// running the levels one after the other, the syncs of a level side by
// side, passes a referenced sync before the syncs that link to it. Within a
// level the given order is kept. A sync in a reference cycle (which Parse
// refuses) goes in the last level.
func Levels(syncs []*Sync) [][]*Sync {
	level := make(map[string]int, len(syncs))
	given := make(map[string]*Sync, len(syncs))
	for _, s := range syncs {
		given[s.Name] = s
	}
	var depth func(s *Sync, seen []string) int
	depth = func(s *Sync, seen []string) int {
		if l, ok := level[s.Name]; ok {
			return l
		}
		if slices.Contains(seen, s.Name) {
			return len(syncs) // a cycle: last
		}
		d := 0
		for _, name := range s.References() {
			if t := given[name]; t != nil && t != s {
				d = max(d, depth(t, append(seen, s.Name))+1)
			}
		}
		d = min(d, len(syncs))
		level[s.Name] = d
		return d
	}
	var out [][]*Sync
	for _, s := range syncs {
		d := depth(s, nil)
		for len(out) <= d {
			out = append(out, nil)
		}
		out[d] = append(out[d], s)
	}
	return slices.DeleteFunc(out, func(l []*Sync) bool { return len(l) == 0 })
}

// Order is Levels flattened: syncs in an order in which every referenced
// sync comes before the syncs that link to it.
func Order(syncs []*Sync) []*Sync {
	var out []*Sync
	for _, l := range Levels(syncs) {
		out = append(out, l...)
	}
	return out
}

// Ref describes one ref property of an Encoder.
type Ref struct {
	Slug    string
	Sync    string   // the referenced sync
	Columns []string // the columns holding its key, in its key's order
	Multi   bool     // one array column: the value is an array of record ids
}

// Resolver returns the Micro record id of the row of Refs()[ref].Sync whose
// key is key (PostgreSQL's text of each key value), and whether there is
// one.
type Resolver func(ref int, key []string) (id string, ok bool)

// CodeMissingReference is the code of a row that waits for a referenced
// row's record.
const CodeMissingReference = "missing_reference"

// MissingRefError says that a row links to a row of another sync that has
// no Micro record yet: not synced, rejected, or not committed yet. The row
// is not invalid; it waits.
type MissingRefError struct {
	Property string
	Sync     string   // the referenced sync
	Key      []string // the referenced row's key
}

func (e *MissingRefError) Error() string {
	return "property " + e.Property + ": waits for the Micro record of sync " + e.Sync + " row " + KeyText(e.Key) + " (" + CodeMissingReference + ")"
}

// KeyText writes a row key for messages: [7] or [eu,7].
func KeyText(key []string) string { return "[" + strings.Join(key, ",") + "]" }

// refSpec is a compiled ref property.
type refSpec struct {
	index int    // into Encoder.refs
	cols  []int  // the key columns in the row
	trim  []bool // char(n): PostgreSQL's text of it has no trailing blanks
	multi bool
}

// Refs returns the encoder's ref properties; the ref argument of a
// Resolver and of RefKeys' callback indexes it.
func (e *Encoder) Refs() []Ref { return e.refs }

// RefKeys calls fn with every key row links to, ref by ref (for a
// multi-ref, every element), so a caller can look all of a batch's keys up
// at once before encoding it. NULL links call nothing; a value of a type a
// ref cannot hold is skipped here and refused by AppendResolved.
func (e *Encoder) RefKeys(row []any, fn func(ref int, key []string)) {
	if len(e.refs) == 0 || len(row) != e.ncols {
		return
	}
	for _, cs := range [][]compiled{e.props, e.list} {
		for i := range cs {
			if r := cs[i].ref; r != nil {
				r.keys(row, func(key []string) error { fn(r.index, key); return nil }) //nolint:errcheck // fn returns none
			}
		}
	}
}

// keys calls fn with each key of the row's link; found is false for a NULL
// link (a NULL array, or a NULL in any column of a compound key).
func (r *refSpec) keys(row []any, fn func(key []string) error) (found bool, err error) {
	if r.multi {
		v := row[r.cols[0]]
		if v == nil {
			return false, nil
		}
		arr, ok := v.([]any)
		if !ok {
			return false, errUnsupported(v)
		}
		for _, el := range arr {
			k, ok, err := refKeyText(el, r.trim[0])
			if err != nil {
				return false, err
			}
			if !ok {
				continue // a NULL element links to nothing
			}
			if err := fn([]string{k}); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	key := make([]string, len(r.cols))
	for i, col := range r.cols {
		k, ok, err := refKeyText(row[col], r.trim[i])
		if err != nil || !ok {
			return false, err
		}
		key[i] = k
	}
	return true, fn(key)
}

// appendRef writes a ref property's value: the record id (or ids) its key
// links to, null for a NULL link.
func (c *compiled) appendRef(dst []byte, row []any, resolve Resolver) ([]byte, error) {
	r := c.ref
	mark := len(dst)
	if r.multi {
		dst = append(dst, '[')
	}
	n := 0
	found, err := r.keys(row, func(key []string) error {
		var id string
		ok := false
		if resolve != nil {
			id, ok = resolve(r.index, key)
		}
		if !ok {
			return &MissingRefError{Property: c.p.Slug, Sync: c.p.Ref, Key: key}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = appendString(dst, id, new(bool))
		return nil
	})
	switch {
	case err != nil:
		return dst[:mark], err
	case !found:
		return append(dst[:mark], "null"...), nil
	case r.multi:
		return append(dst, ']'), nil
	}
	return dst, nil
}

// refKeyText is PostgreSQL's text of one key value, as the referenced
// sync's positions and record ledger hold it; ok is false for NULL.
func refKeyText(v any, trim bool) (string, bool, error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		if trim {
			x = strings.TrimRight(x, " ")
		}
		return x, true, nil
	case int16:
		return strconv.FormatInt(int64(x), 10), true, nil
	case int32:
		return strconv.FormatInt(int64(x), 10), true, nil
	case int64:
		return strconv.FormatInt(x, 10), true, nil
	case [16]byte:
		return string(appendUUID(nil, x)), true, nil
	case pgtype.UUID:
		if !x.Valid {
			return "", false, nil
		}
		return string(appendUUID(nil, x.Bytes)), true, nil
	}
	return "", false, errUnsupported(v)
}

// refTypeName names a column type for a ref column's error message.
func refTypeName(oid uint32, ct colType) string {
	names := map[colKind]string{
		ckDynamic: "a user-defined type", ckFloat: "floating point", ckNumeric: "numeric", ckBool: "boolean",
		ckDate: "date", ckTimestamp: "timestamp", ckTimestamptz: "timestamptz", ckJSON: "json", ckBytes: "bytea",
		ckInt: "integer", ckText: "text", ckUUID: "uuid",
	}
	switch {
	case ct.kind == ckArray:
		return "an array of " + names[ct.elem] + " (an array column must be the ref's only column)"
	case names[ct.kind] != "":
		return names[ct.kind]
	}
	return oidName(oid)
}
