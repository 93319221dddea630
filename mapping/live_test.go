package mapping

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"

	"github.com/prismsync/prismsync/internal/pgtest"
)

// liveDB returns a connection to a fresh database holding
// testdata/live_schema.sql.
func liveDB(t *testing.T) *pgx.Conn {
	t.Helper()
	if !pgStarted {
		t.Skip("PostgreSQL not started while fuzzing")
	}
	dsn := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	schema, err := os.ReadFile(filepath.Join("testdata", "live_schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(schema)); err != nil {
		t.Fatalf("load schema: %v", err)
	}
	return conn
}

// checkFile runs CheckSource over every sync of a fixture and returns the
// findings as FILE:LINE:COL lines.
func checkFile(t *testing.T, q Querier, name string) []string {
	t.Helper()
	path := filepath.Join("testdata", name)
	f, err := Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	var out []string
	for _, s := range f.Syncs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, fd := range CheckSource(ctx, q, s) {
			out = append(out, strings.TrimPrefix(fd.String(), path+":"))
		}
		cancel()
	}
	return out
}

var _ Querier = (*pgxpool.Pool)(nil)

func TestCheckSourceGood(t *testing.T) {
	conn := liveDB(t)
	if got := checkFile(t, conn, "live_good.yaml"); len(got) > 0 {
		t.Errorf("findings for a good mapping:\n%s", strings.Join(got, "\n"))
	}
}

// TestCheckSourceBad pins every finding of the bad fixture, position and
// message, so a change of either is a deliberate one.
func TestCheckSourceBad(t *testing.T) {
	conn := liveDB(t)
	want := []string{
		// loose: no unique key, nullable key, timestamp cursor with a NULL, no index.
		`5:12: warning: sync loose: source.key: (ref) is not covered by a unique index or constraint on public.loose; rows with equal (cursor, key) values can be skipped at a page boundary (add a primary key or a unique index)`,
		`5:13: warning: sync loose: source.key: column "ref" is nullable; a row whose key is NULL stops the sync (add NOT NULL to public.loose)`,
		`6:15: warning: sync loose: source.cursor: column "seen" is timestamp without time zone; the commit horizon compares it as UTC, so it must hold UTC times (timestamptz avoids this)`,
		`6:15: sync loose: source.cursor: column "seen" is NULL in 1 row; that row is never synced (fill it and add NOT NULL, or coalesce it in a query)`,
		`6:15: warning: sync loose: source.cursor: no index on public.loose starts with (seen, ref), so every page may scan the table; create one with: CREATE INDEX CONCURRENTLY ON "public"."loose" ("seen", "ref");`,
		`9:7: sync loose: property picture: column "nope" not found (have: ref, name, seen)`,
		// notes: a missing key column, a text cursor, a transform that does not fit.
		`11:44: sync notes: source.key: column "missing" not found in the source (have: id, lang, body, rev, tag)`,
		`11:62: sync notes: source.cursor: column "tag" is text; a cursor must be timestamptz, timestamp, date, smallint, integer, bigint or numeric`,
		`14:7: sync notes: property rev: transform lower needs text, got number`,
		// notes_rev: nullable cursor without NULLs; an index on the cursor alone is not enough.
		`16:53: warning: sync notes_rev: source.cursor: column "rev" is nullable; rows where it is NULL would never be synced (add NOT NULL to public.notes)`,
		`16:53: warning: sync notes_rev: source.cursor: no index on public.notes starts with (rev, lang, id), so every page may scan the table; create one with: CREATE INDEX CONCURRENTLY ON "public"."notes" ("rev", "lang", "id");`,
		// typo: the error points inside the literal block, at the bad name.
		`23:14: sync typo: source.query: relation "peeple" does not exist`,
		// computed: a cursor the query computes cannot be checked.
		`32:15: warning: sync computed: source.cursor: column "changed" may be NULL (the query computes it); rows where it is NULL would never be synced`,
		`32:15: warning: sync computed: source.cursor: cannot check for an index on (changed, id): column "changed" is computed by the query; make sure the source can be read in that order by an index`,
		`35:7: sync computed: property photo: column "photo" not found (have: id, email, changed)`,
		// view: nothing can be said about a view's indexes or NOT NULLs.
		`37:36: warning: sync view: source.key: cannot check that (id) is unique: public.people_v is a view`,
		`37:50: warning: sync view: source.cursor: column "updated_at" may be NULL (view public.people_v does not say); rows where it is NULL would never be synced`,
		`37:50: warning: sync view: source.cursor: cannot check for an index on (updated_at, id): public.people_v is a view; make sure the source can be read in that order by an index`,
		`41:21: sync missing_table: source.table: relation "public.nope" does not exist`,
		// tickets: a partial unique index does not make the key unique.
		`45:35: warning: sync tickets: source.key: (no) is not covered by a unique index or constraint on public.tickets; rows with equal (cursor, key) values can be skipped at a page boundary (add a primary key or a unique index)`,
		// typo_inline: inside a double-quoted one-line query.
		`49:62: sync typo_inline: source.query: column "emial" does not exist (hint: Perhaps you meant to reference the column "people.email".)`,
		// typo_folded: folded text cannot be mapped back; the query node is reported.
		`53:14: sync typo_folded: source.query: relation "peeple" does not exist`,
	}
	got := checkFile(t, conn, "live_bad.yaml")
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("finding %d:\n got: %s\nwant: %s", i, g, w)
		}
	}
}

// TestCheckSourceWritesNothing gives CheckSource a query that would delete
// rows if it were ever run outside a read-only transaction.
func TestCheckSourceWritesNothing(t *testing.T) {
	conn := liveDB(t)
	if _, err := conn.Exec(context.Background(),
		`CREATE FUNCTION zap() RETURNS int LANGUAGE sql AS 'DELETE FROM loose RETURNING 1'`); err != nil {
		t.Fatal(err)
	}
	f, fs := Parse("w.yaml", []byte(`syncs:
  - name: w
    source:
      query: "SELECT ref, name, seen FROM loose WHERE zap() = 1"
      key: [ref]
      cursor: seen
    properties: {name: name}
`))
	if f == nil {
		t.Fatal(fs)
	}
	got := CheckSource(context.Background(), conn, f.Syncs[0])
	var msgs []string
	for _, fd := range got {
		msgs = append(msgs, fd.String())
	}
	joined := strings.Join(msgs, "\n")
	if !got.HasErrors() || !strings.Contains(joined, "read-only transaction") {
		t.Errorf("want an error from the read-only transaction, got:\n%s", joined)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM loose").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("loose has %d rows after CheckSource, want 2", n)
	}
}

// TestCheckSourceUnreachable: a database that cannot be used is one error
// at the sync, not a panic or a silent pass.
func TestCheckSourceUnreachable(t *testing.T) {
	s := mustSync(t, "a: a")
	q := beginFunc(func(context.Context, pgx.TxOptions) (pgx.Tx, error) {
		return nil, errors.New("connection refused")
	})
	got := CheckSource(context.Background(), q, s)
	want := "test.yaml:2:11: sync s: cannot check the source: connection refused"
	if len(got) != 1 || got[0].String() != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

type beginFunc func(context.Context, pgx.TxOptions) (pgx.Tx, error)

func (f beginFunc) BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error) { return f(ctx, o) }

var _ Querier = beginFunc(nil)

func TestTextPositions(t *testing.T) {
	src := "syncs:\n" +
		"  - name: a\n" +
		"    source:\n" +
		"      query: |\n" +
		"\n" +
		"          SELECT é,\n" +
		"\n" +
		"            x FROM t\n" +
		"      key: [id]\n" +
		"      cursor: id\n" +
		"    properties: {a: a}\n" +
		"  - name: b\n" +
		"    source: {query: 'SELECT é, x FROM t', key: [id], cursor: id}\n" +
		"    properties: {a: a}\n" +
		"  - name: b2\n" +
		"    source: {query: 'SELECT ''q'', x FROM t', key: [id], cursor: id}\n" +
		"    properties: {a: a}\n" +
		"  - name: c\n" +
		"    source: {query: \"SELECT \\\"x\\\" FROM t\", key: [id], cursor: id}\n" +
		"    properties: {a: a}\n" +
		"  - name: d\n" +
		"    source:\n" +
		"      query:   SELECT é,  x FROM t\n" +
		"      key: [id]\n" +
		"      cursor: id\n" +
		"    properties: {a: a}\n"
	f, fs := Parse("p.yaml", []byte(src))
	if f == nil {
		t.Fatal(fs)
	}
	cases := []struct {
		sync string
		tok  string // the first occurrence of tok in the query is looked up
		want position
		ok   bool
	}{
		{"a", "SELECT", position{6, 11}, true},
		{"a", "é", position{6, 18}, true},
		{"a", "x", position{8, 13}, true},
		{"b", "é", position{13, 29}, true},
		{"b", "x", position{13, 32}, true},
		{"b2", "x", position{}, false},   // '' escapes: no exact mapping
		{"c", "FROM", position{}, false}, // backslash escapes: no exact mapping
		{"d", "x", position{23, 27}, true},
	}
	for _, c := range cases {
		s, _ := f.Sync(c.sync)
		tp := s.at.queryText
		if tp == nil {
			if c.ok {
				t.Errorf("sync %s: no text positions", c.sync)
			}
			continue
		}
		off := utf8.RuneCountInString(s.Source.Query[:strings.Index(s.Source.Query, c.tok)])
		got, ok := tp.at(s.Source.Query, off)
		if ok != c.ok || got != c.want {
			t.Errorf("sync %s %q: got %v %v, want %v %v", c.sync, c.tok, got, ok, c.want, c.ok)
		}
	}
}

// FuzzTextPositions: wherever a query's text is mapped back to the file,
// each character must be found at the position reported for it.
func FuzzTextPositions(f *testing.F) {
	f.Add("source:\n      query: |\n        SELECT a,\n\n          é FROM t\n", 0)
	f.Add("source: {query: 'SELECT é, x FROM t'}\n", 0)
	f.Add("source: {query: \"SELECT 'x' FROM t\"}\n", 2)
	f.Add("source:\n      query:    SELECT 1  \n", 1)
	f.Add("source:\n      query: |2\n          SELECT 1\n", 3)
	f.Fuzz(func(t *testing.T, src string, indent int) {
		indent = indent&7 + 4
		body := "syncs:\n  - name: a\n" + strings.Repeat(" ", indent) + src
		p := &parser{file: "f.yaml"}
		p.parse([]byte(body))
		var doc yaml.Node
		if yaml.Unmarshal([]byte(body), &doc) != nil {
			return
		}
		// Find every scalar value of a "query" key and check its mapping.
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			if n == nil {
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if n.Kind == yaml.MappingNode && k.Value == "query" && v.Kind == yaml.ScalarNode {
					text := strings.TrimSpace(v.Value)
					tp := p.textPositions(v, text)
					if tp == nil {
						continue
					}
					runes := []rune(text)
					for off, r := range runes {
						pos, ok := tp.at(text, off)
						if !ok {
							t.Fatalf("offset %d of %q not mapped", off, text)
						}
						if r == '\n' {
							continue
						}
						line := []rune(strings.TrimRight(p.lines[pos.line-1], "\r"))
						if pos.col < 1 || pos.col > len(line) || line[pos.col-1] != r {
							t.Fatalf("offset %d (%q) of %q mapped to %d:%d, which is not that character in %q", off, r, text, pos.line, pos.col, string(line))
						}
					}
				}
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		walk(&doc)
	})
}
