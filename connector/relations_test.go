package connector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/mapping"
)

// Companies and the people who work there: a person links to a company
// (organization) and, through company_ids, to several (orgs). updated_at
// comes from a sequence of past seconds, so every insert and update is a
// change after the last one and below any commit horizon.
const relationsSchema = `
CREATE SEQUENCE tick;
CREATE FUNCTION tick() RETURNS timestamptz LANGUAGE sql AS $$ SELECT timestamptz '2026-01-01' + nextval('tick') * interval '1 second' $$;
CREATE TABLE companies (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	bad text,
	updated_at timestamptz NOT NULL DEFAULT tick());
CREATE TABLE people (
	id bigint PRIMARY KEY,
	email text NOT NULL,
	company_id bigint,
	company_ids bigint[],
	updated_at timestamptz NOT NULL DEFAULT tick());`

const relationsMapping = `syncs:
  - name: people
    source: { table: public.people, key: [id], cursor: updated_at }
    target: { object: contact, dedupe_by: external_id, update_existing: true }
    properties:
      external_id: { column: id, type: string, required: true }
      email: email
      organization: { ref: companies, column: company_id }
      orgs: { ref: companies, column: company_ids, omit_null: true }
  - name: companies
    source: { table: public.companies, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id, update_existing: true }
    properties:
      external_id: { column: id, type: string, required: true }
      name: name
      bad: { column: bad, omit_null: true }
`

// relationsFake declares the links as Micro would type them; a company
// whose row sets "bad" uses a slug the workspace lacks, so the API refuses
// that row (a parent rejected by the API).
func relationsFake() prismtest.Options {
	return prismtest.Options{
		Refs: map[string]map[string]prismtest.RefProperty{"contact": {
			"organization": {Object: "organization"},
			"orgs":         {Object: "organization", Multi: true},
		}},
		KnownSlugs: map[string][]string{"organization": {"external_id", "name"}},
	}
}

type relEnv struct {
	*env
	file *mapping.File
}

func newRelEnv(t *testing.T, opts prismtest.Options) *relEnv {
	t.Helper()
	e := &relEnv{env: newEnv(t, opts)}
	e.exec(relationsSchema)
	f, fs := mapping.Parse("relations.yaml", []byte(relationsMapping))
	if fs.HasErrors() {
		t.Fatal(fs)
	}
	e.file = f
	return e
}

func (e *relEnv) sync(name string) *mapping.Sync {
	s, ok := e.file.Sync(name)
	if !ok {
		e.t.Fatalf("no sync %s", name)
	}
	return s
}

// round passes every sync once, referenced syncs first, as once and the
// daemon's rounds do, and returns the summaries by sync.
func (e *relEnv) round(tune ...func(*connector.Syncer)) map[string]connector.Summary {
	e.t.Helper()
	out := map[string]connector.Summary{}
	for _, s := range mapping.Order(e.file.Syncs) {
		sy := e.syncer(s)
		for _, f := range tune {
			f(sy)
		}
		sum, err := sy.Once(context.Background())
		if err != nil {
			e.t.Fatalf("pass of %s: %v", s.Name, err)
		}
		out[s.Name] = sum
	}
	return out
}

// checkLinks checks the CRM against the tables: every company without
// "bad" is one organization; every person whose companies all have a
// record is one contact whose organization is its company's record id and
// whose orgs are its companies' record ids, in order; a person waiting for
// a company is in the CRM only if stale names it (delivered before, with
// its old link). Every request was an import (or a replay of one).
func (e *relEnv) checkLinks(stale ...int64) {
	e.t.Helper()
	ctx := context.Background()
	orgs := e.records("organization")
	contacts := e.records("contact")
	rows, err := e.pool.Query(ctx, "SELECT id, bad IS NULL FROM companies")
	if err != nil {
		e.t.Fatal(err)
	}
	want := 0
	for rows.Next() {
		var id int64
		var good bool
		if err := rows.Scan(&id, &good); err != nil {
			e.t.Fatal(err)
		}
		if _, ok := orgs[fmt.Sprint(id)]; good && !ok {
			e.t.Errorf("company %d has no organization", id)
		}
		if good {
			want++
		}
	}
	rows.Close()
	if len(orgs) != want {
		e.t.Errorf("%d organizations for %d deliverable companies", len(orgs), want)
	}

	rows, err = e.pool.Query(ctx, "SELECT id, company_id, company_ids FROM people ORDER BY id")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	present := 0
	for rows.Next() {
		var id int64
		var one *int64
		var many []*int64
		if err := rows.Scan(&id, &one, &many); err != nil {
			e.t.Fatal(err)
		}
		c, delivered := contacts[fmt.Sprint(id)]
		if delivered {
			present++
		}
		waits := false
		link := func(company *int64) any {
			if company == nil {
				return nil
			}
			o, ok := orgs[fmt.Sprint(*company)]
			if !ok {
				waits = true
				return "(none yet)"
			}
			return o.ID
		}
		wantOrg := link(one)
		var wantOrgs any
		if many != nil {
			list := []any{}
			for _, m := range many {
				if m != nil {
					list = append(list, link(m))
				}
			}
			wantOrgs = list
		}
		switch {
		case waits && delivered && !slices.Contains(stale, id):
			e.t.Errorf("person %d waits for a company but is in the CRM: %v", id, c.Properties)
		case waits:
		case !delivered:
			e.t.Errorf("person %d is not in the CRM although its companies are", id)
		default:
			if got := c.Properties["organization"]; fmt.Sprint(got) != fmt.Sprint(wantOrg) {
				e.t.Errorf("person %d: organization = %v, want %v", id, got, wantOrg)
			}
			got, has := c.Properties["orgs"]
			if has != (wantOrgs != nil) || fmt.Sprint(got) != fmt.Sprint(wantOrgs) {
				e.t.Errorf("person %d: orgs = %v (present %v), want %v", id, got, has, wantOrgs)
			}
		}
	}
	if len(contacts) != present {
		e.t.Errorf("%d contacts, %d of them for rows of the table", len(contacts), present)
	}
	st := e.fake.Stats()
	if st.Requests != st.Imports+st.Replays || st.ByKind[prismtest.KindOther] != 0 {
		e.t.Errorf("requests %d, imports %d, replays %d, polls %d: every request must be an import", st.Requests, st.Imports, st.Replays, st.Polls)
	}
}

// records returns the fake's records of object by external_id, failing on
// a duplicate.
func (e *relEnv) records(object string) map[string]prismtest.Record {
	e.t.Helper()
	out := map[string]prismtest.Record{}
	for _, r := range e.fake.Records(object) {
		k := fmt.Sprint(r.Properties["external_id"])
		if _, dup := out[k]; dup {
			e.t.Errorf("%s %s is in the CRM twice", object, k)
		}
		out[k] = r
	}
	return out
}

// deferred returns the keys of people waiting, and for what.
func (e *relEnv) deferred() []string {
	e.t.Helper()
	ds, err := e.store.Deferred(context.Background(), "people")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		if d.Code != mapping.CodeMissingReference || !d.Deferred() {
			e.t.Errorf("deferred row %+v", d)
		}
		out = append(out, fmt.Sprintf("%s->%s%v", strings.Join(d.RowKey, ","), d.WaitSync, d.WaitKey))
	}
	slices.Sort(out)
	return out
}

func (e *relEnv) imports() int { return e.fake.Stats().Imports }

// Children inserted before their parents exist wait, without holding the
// checkpoint back; the parents arrive later, the children untouched, and
// the next pass sends them with the right links. NULL links are null (or
// left out), array links lists of record ids.
func TestRelationsChildrenBeforeParents(t *testing.T) {
	e := newRelEnv(t, relationsFake())
	e.exec(`INSERT INTO people (id, email, company_id, company_ids) VALUES
		(1, 'a@x', 1, NULL), (2, 'b@x', 2, NULL), (3, 'c@x', 1, '{}'),
		(4, 'd@x', NULL, NULL), (5, 'e@x', NULL, '{1,NULL,2}'), (6, 'f@x', 2, '{2,2}')`)
	sums := e.round()
	if p := sums["people"]; p.Deferred != 5 || p.Sent != 1 || p.Rejected != 0 || p.Invalid != 0 {
		t.Fatalf("first pass of people: %+v; want person 4 (no links) sent, the 5 others deferred", p)
	}
	if got, want := e.deferred(), []string{"1->companies[1]", "2->companies[2]", "3->companies[1]", "5->companies[1]", "6->companies[2]"}; !slices.Equal(got, want) {
		t.Errorf("deferred = %v, want %v", got, want)
	}
	st, err := e.store.Load(context.Background(), "people")
	if err != nil || !slices.Equal(st.Position.Key, []string{"6"}) {
		t.Fatalf("checkpoint %v (%v): deferred rows must not hold it back", st.Position, err)
	}
	if e.imports() != 1 {
		t.Fatalf("%d imports, want 1", e.imports())
	}
	e.checkLinks()
	if c := e.records("contact")["4"]; c.Properties["organization"] != nil {
		t.Errorf("person 4 without a company: %v", c.Properties)
	} else if _, has := c.Properties["orgs"]; has {
		t.Errorf("person 4: a NULL array is left out under omit_null: %v", c.Properties)
	}

	// A pass with nothing new sends nothing.
	e.round()
	if e.imports() != 1 {
		t.Fatalf("%d imports after an idle round, want 1", e.imports())
	}

	e.exec(`INSERT INTO companies (id, name) VALUES (1, 'One'), (2, 'Two')`)
	sums = e.round()
	if c, p := sums["companies"], sums["people"]; c.Sent != 2 || p.Revisited != 5 || p.Deferred != 0 || p.Rows != 5 {
		t.Fatalf("round after the parents arrived: companies %+v, people %+v", c, p)
	}
	if got := e.deferred(); len(got) != 0 {
		t.Errorf("still deferred: %v", got)
	}
	if e.imports() != 3 {
		t.Errorf("%d imports, want 3: people, companies, the waiting people", e.imports())
	}
	e.checkLinks()
	contacts, orgs := e.records("contact"), e.records("organization")
	if got := contacts["5"].Properties["orgs"]; fmt.Sprint(got) != fmt.Sprint([]any{orgs["1"].ID, orgs["2"].ID}) {
		t.Errorf("person 5: orgs %v: NULL elements link to nothing", got)
	}
	if got := contacts["3"].Properties["orgs"]; fmt.Sprint(got) != "[]" {
		t.Errorf("person 3: orgs %v, want []", got)
	}
	if st, _ := e.store.Load(context.Background(), "people"); !slices.Equal(st.Position.Key, []string{"6"}) {
		t.Errorf("the revisit moved the checkpoint to %v", st.Position)
	}
	e.round()
	if e.imports() != 3 {
		t.Errorf("%d imports after an idle round, want 3", e.imports())
	}
}

// When the foreign key changes, the link changes on the next pass; a move to
// a company without a record yet waits, keeping the old link meanwhile.
func TestRelationsChildrenMoveBetweenParents(t *testing.T) {
	e := newRelEnv(t, relationsFake())
	e.exec(`INSERT INTO companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 3) g`)
	e.exec(`INSERT INTO people (id, email, company_id, company_ids) SELECT g, 'p' || g || '@x', g % 3 + 1, ARRAY[g % 3 + 1]
		FROM generate_series(1, 30) g`)
	e.round()
	e.checkLinks()
	before := e.imports()
	e.exec(`UPDATE people SET company_id = (company_id % 3) + 1, company_ids = ARRAY[3, company_id], updated_at = tick() WHERE id <= 20`)
	sums := e.round()
	if p := sums["people"]; p.Sent != 20 || p.Updated != 20 || p.Created != 0 {
		t.Fatalf("people after the move: %+v", p)
	}
	if e.imports() != before+1 {
		t.Errorf("%d imports for the move, want 1", e.imports()-before)
	}
	e.checkLinks()

	old := e.records("contact")["7"].Properties["organization"]
	e.exec(`UPDATE people SET company_id = 4, updated_at = tick() WHERE id = 7`)
	e.round()
	if got := e.deferred(); !slices.Equal(got, []string{"7->companies[4]"}) {
		t.Fatalf("deferred = %v", got)
	}
	if got := e.records("contact")["7"].Properties["organization"]; got != old {
		t.Errorf("a move to a company without a record changed the link to %v (was %v)", got, old)
	}
	e.checkLinks(7)
	e.exec(`INSERT INTO companies (id, name) VALUES (4, 'C4')`)
	e.round()
	e.checkLinks()
	if got := e.records("contact")["7"].Properties["organization"]; got != e.records("organization")["4"].ID {
		t.Errorf("person 7 links to %v, not company 4", got)
	}
}

// A parent the API refuses has no record: its children wait (deferred, not
// rejected) until it is fixed and delivered.
func TestRelationsParentRejectedByTheAPI(t *testing.T) {
	ctx := context.Background()
	e := newRelEnv(t, relationsFake())
	e.exec(`INSERT INTO companies (id, name, bad) VALUES (1, 'One', 'unknown slug'), (2, 'Two', NULL)`)
	e.exec(`INSERT INTO people (id, email, company_id) VALUES (1, 'a@x', 1), (2, 'b@x', 2), (3, 'c@x', 1)`)
	sums := e.round()
	if c, p := sums["companies"], sums["people"]; c.Rejected != 1 || p.Sent != 1 || p.Deferred != 2 || p.Rejected != 0 {
		t.Fatalf("companies %+v, people %+v", c, p)
	}
	rs, err := e.store.Rejects(ctx, "companies", 0)
	if err != nil || len(rs) != 1 || rs[0].Deferred() || rs[0].Code != "unknown_property" {
		t.Fatalf("companies' rejects: %+v (%v)", rs, err)
	}
	if n, err := e.store.CountDeferred(ctx, "companies"); err != nil || n != 0 {
		t.Errorf("companies deferred: %d, %v", n, err)
	}
	if got := e.deferred(); !slices.Equal(got, []string{"1->companies[1]", "3->companies[1]"}) {
		t.Errorf("deferred = %v", got)
	}
	e.checkLinks()
	e.exec(`UPDATE companies SET bad = NULL, updated_at = tick() WHERE id = 1`)
	sums = e.round()
	if p := sums["people"]; p.Revisited != 2 {
		t.Errorf("people after the fix: %+v", p)
	}
	e.checkLinks()
	if n, _ := e.store.CountRejects(ctx, ""); n != 0 {
		t.Errorf("%d rejects left", n)
	}
}

// A record re-created after a delete gets a new id: the rows that link to
// it are sent again (fingerprints do not skip them: they hash the resolved
// id), the others are not.
func TestRelationsRecreatedParentIsRelinked(t *testing.T) {
	e := newRelEnv(t, relationsFake())
	fp := func(sy *connector.Syncer) { sy.Fingerprints = e.store }
	e.exec(`INSERT INTO companies (id, name) VALUES (1, 'One'), (2, 'Two')`)
	e.exec(`INSERT INTO people (id, email, company_id, company_ids) VALUES
		(1, 'a@x', 1, NULL), (2, 'b@x', 2, '{2,1}'), (3, 'c@x', 2, NULL), (4, 'd@x', 1, '{1}')`)
	e.round(fp)
	e.checkLinks()
	first := e.records("organization")["1"].ID
	if !e.fake.Delete("organization", first) {
		t.Fatal("delete")
	}
	e.exec(`UPDATE companies SET name = 'One again', updated_at = tick() WHERE id = 1`)
	rows := e.fake.Stats().Rows
	sums := e.round(fp)
	again := e.records("organization")["1"]
	if again.ID == first || again.Properties["name"] != "One again" {
		t.Fatalf("company 1 was not re-created: %+v", again)
	}
	if p := sums["people"]; p.Revisited != 3 || p.Sent != 3 {
		t.Errorf("people after the re-creation: %+v; want persons 1, 2 and 4 sent again", p)
	}
	if got := e.fake.Stats().Rows - rows; got != 4 {
		t.Errorf("%d objects sent, want company 1 and the 3 people linking to it", got)
	}
	e.checkLinks()
	if rl, err := e.store.Relinks(context.Background(), "people"); err != nil || len(rl) != 0 {
		t.Errorf("relinks left: %v, %v", rl, err)
	}
	imports := e.imports()
	e.round(fp)
	if e.imports() != imports {
		t.Errorf("an idle round after the relink sent %d imports", e.imports()-imports)
	}
}

// Two replicas share the store: whichever holds a sync's lease passes it,
// rounds overlap, and a person passed before its company commits waits for
// the next round. The end state is the same as with one process.
func TestRelationsTwoReplicas(t *testing.T) {
	ctx := context.Background()
	e := newRelEnv(t, relationsFake())
	other, err := checkpoint.Open(ctx, "postgres", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	replicas := []checkpoint.Store{e.store, other}
	pass := func(store checkpoint.Store, s *mapping.Sync) error {
		release, ok, err := store.TryLock(ctx, s.Name)
		if err != nil || !ok {
			return err
		}
		defer release()
		sy := e.syncer(s)
		sy.Store, sy.Fingerprints = store, store
		_, err = sy.Once(ctx)
		return err
	}
	roundOn := func(store checkpoint.Store) error {
		for _, s := range mapping.Order(e.file.Syncs) {
			if err := pass(store, s); err != nil {
				return err
			}
		}
		return nil
	}
	concurrent := func() {
		var wg sync.WaitGroup
		errs := make([]error, len(replicas))
		for i, store := range replicas {
			wg.Go(func() { errs[i] = roundOn(store) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	for step := range 4 {
		e.exec(`INSERT INTO people (id, email, company_id, company_ids)
			SELECT g, 'p' || g || '@x', g % 40 + 1, ARRAY[g % 40 + 1, (g + 1) % 40 + 1] FROM generate_series($1::int, $1::int + 49) g`, step*50+1)
		e.exec(`INSERT INTO companies (id, name) SELECT g, 'C' || g FROM generate_series($1::int, $1::int + 9) g`, step*10+1)
		concurrent()
	}
	// One more round each, in turn: whatever waited for a company committed
	// by the other replica goes out now.
	for _, store := range replicas {
		if err := roundOn(store); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.deferred(); len(got) != 0 {
		t.Fatalf("still deferred: %v", got)
	}
	e.checkLinks()
	if n := len(e.records("contact")); n != 200 {
		t.Errorf("%d contacts, want 200", n)
	}
}

// The process dies right after the commit of the parent batch (the ledger
// is in that commit), or right before it (the batch is journaled and sent):
// the next process links the children to the right records, creating no
// record twice.
func TestRelationsCrashBetweenParentCommitAndChildPass(t *testing.T) {
	for _, after := range []bool{true, false} {
		t.Run(fmt.Sprintf("after_commit=%v", after), func(t *testing.T) {
			ctx := context.Background()
			e := newRelEnv(t, relationsFake())
			e.exec(`INSERT INTO people (id, email, company_id) SELECT g, 'p' || g || '@x', g % 5 + 1 FROM generate_series(1, 20) g`)
			e.exec(`INSERT INTO companies (id, name) SELECT g, 'C' || g FROM generate_series(1, 5) g`)
			c := &crash{op: "Commit", n: 1, after: after, calls: map[string]int{}}
			sy := e.syncer(e.sync("companies"))
			sy.Store = c.store(e.store)
			sy.API = crashAPI{api: e.api, c: c}
			if _, err := sy.Once(ctx); !errors.Is(err, errCrashed) {
				t.Fatalf("companies pass: %v, want the crash", err)
			}
			if n := e.fake.Count("organization"); n != 5 {
				t.Fatalf("%d organizations after the crash, want the 5 sent", n)
			}
			// The restarted process: a round, referenced syncs first.
			sums := e.round()
			if p := sums["people"]; p.Sent != 20 || p.Deferred != 0 {
				t.Errorf("people after the restart: %+v", p)
			}
			if c := sums["companies"]; after == (c.Resumed != 0) {
				t.Errorf("companies after the restart: %+v (resumed from the journal only when the commit was lost)", c)
			}
			e.checkLinks()
			if st := e.fake.Stats(); st.Creates != 25 {
				t.Errorf("%d records created for 5 companies and 20 people", st.Creates)
			}
		})
	}
}

// A row that has waited longer than DeferWarnAfter is reported, with its
// key, once; time is the syncer's clock, not the wall's.
func TestDeferredRowWarnsAfterItsAge(t *testing.T) {
	e := newRelEnv(t, relationsFake())
	clock := prismtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	people := e.syncer(e.sync("people"))
	people.Now, people.Logger = clock.Now, logger
	e.exec(`INSERT INTO people (id, email, company_id) VALUES (1, 'a@x', 7), (2, 'b@x', 8)`)
	warned := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "deferred for longer than 24h") {
				out = append(out, fmt.Sprintf("%v waits for %v%v", m["row_key"], m["waits_for_sync"], m["waits_for_key"]))
			}
		}
		return out
	}
	pass := func() connector.Summary {
		t.Helper()
		sum, err := people.Once(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if sum := pass(); sum.Deferred != 2 || sum.Waiting != 0 {
		t.Fatalf("first pass: %+v", sum)
	}
	clock.Advance(23 * time.Hour)
	e.exec(`INSERT INTO companies (id, name) VALUES (8, 'Eight')`) // not synced: 2 still waits
	if sum := pass(); sum.Waiting != 0 || len(warned()) != 0 {
		t.Fatalf("after 23h: %+v, warnings %v", sum, warned())
	}
	clock.Advance(time.Hour)
	if sum := pass(); sum.Waiting != 2 {
		t.Fatalf("after 24h: %+v", sum)
	}
	if got, want := warned(), []string{"[1] waits for companies[7]", "[2] waits for companies[8]"}; !slices.Equal(got, want) {
		t.Fatalf("warnings %v, want %v", got, want)
	}
	clock.Advance(time.Hour)
	if sum := pass(); sum.Waiting != 2 || len(warned()) != 2 {
		t.Errorf("the warning repeats: %+v, %v", sum, warned())
	}
	// A row that changes but still waits keeps its age.
	e.exec(`UPDATE people SET email = 'new@x', updated_at = tick() WHERE id = 1`)
	if sum := pass(); sum.Deferred != 1 || sum.Waiting != 2 {
		t.Errorf("after the change: %+v", sum)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Preview resolves links through the ledger and lists the rows that would
// wait.
func TestPreviewResolvesLinks(t *testing.T) {
	ctx := context.Background()
	e := newRelEnv(t, relationsFake())
	e.exec(`INSERT INTO companies (id, name) VALUES (1, 'One')`)
	e.exec(`INSERT INTO people (id, email, company_id) VALUES (1, 'a@x', 1), (2, 'b@x', 2)`)
	if _, err := e.syncer(e.sync("companies")).Once(ctx); err != nil {
		t.Fatal(err)
	}
	requests := e.fake.Stats().Requests
	sy := &connector.Syncer{Sync: e.sync("people"), DB: e.pool, Store: e.store}
	pv, err := sy.Preview(ctx, connector.Window{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	one := e.records("organization")["1"].ID
	if len(pv.Bodies) != 1 || !strings.Contains(string(pv.Bodies[0]), `"organization":"`+one+`"`) {
		t.Errorf("bodies %s: want person 1 linked to %s", pv.Bodies, one)
	}
	if len(pv.Deferred) != 1 || !slices.Equal(pv.Deferred[0].RowKey, []string{"2"}) || pv.Deferred[0].WaitSync != "companies" {
		t.Errorf("deferred %+v", pv.Deferred)
	}
	if e.fake.Stats().Requests != requests {
		t.Error("preview sent a request")
	}
	if n, _ := e.store.CountDeferred(ctx, ""); n != 0 {
		t.Errorf("preview recorded %d deferrals", n)
	}
}
