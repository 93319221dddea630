package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
	"github.com/prismsync/prismsync/internal/pgtest"
	"github.com/prismsync/prismsync/mapping"
)

// The example, with the syncs written the other way round: people
// link to companies, which once must pass first.
const relationsYAML = `syncs:
  - name: people
    source: { table: public.people, key: [id], cursor: updated_at }
    target: { object: contact, dedupe_by: external_id, update_existing: true }
    properties:
      external_id: external_id
      email: email
      organization: { ref: companies, column: company_id }   # Micro record id of the companies
                                                              # row whose key is company_id
  - name: companies
    source: { table: public.companies, key: [id], cursor: updated_at }
    target: { object: organization, dedupe_by: external_id, update_existing: true }
    properties: { external_id: external_id, name: name }
`

func TestOnceLinksPeopleToCompanies(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE SEQUENCE tick;
		CREATE TABLE companies (id int PRIMARY KEY, external_id text NOT NULL, name text,
			updated_at timestamptz NOT NULL DEFAULT timestamptz '2026-01-01' + nextval('tick') * interval '1 second');
		CREATE TABLE people (id int PRIMARY KEY, external_id text NOT NULL, email text, company_id int,
			updated_at timestamptz NOT NULL DEFAULT timestamptz '2026-01-01' + nextval('tick') * interval '1 second');
		INSERT INTO people (id, external_id, email, company_id) SELECT g, 'p' || g, 'p' || g || '@x', g % 3 + 1 FROM generate_series(1, 9) g;
		INSERT INTO companies (id, external_id, name) SELECT g, 'c' || g, 'Company ' || g FROM generate_series(1, 3) g;`)
	mf := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(mf, []byte(relationsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := prismtest.New(prismtest.Options{Refs: map[string]map[string]prismtest.RefProperty{
		"contact": {"organization": {Object: "organization"}}}})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close)
	env := map[string]string{
		"DATABASE_URL": dsn, "MICRO_API_KEY": "k", "MICRO_TEAM_ID": uuid.NewString(),
		"MICRO_BASE_URL": srv.URL, "MAPPING_FILE": mf, "LOG_FORMAT": "json",
	}
	run := func(args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := Run(ctx, args, envconfig.MapLookuper(env), &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String(), errOut.String()
	}
	checkLinks := func() {
		t.Helper()
		orgs := map[string]string{}
		for _, r := range fake.Records("organization") {
			orgs[fmt.Sprint(r.Properties["external_id"])] = r.ID
		}
		rows, err := conn.Query(ctx, "SELECT p.external_id, c.external_id FROM people p JOIN companies c ON c.id = p.company_id")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for rows.Next() {
			var p, c string
			if err := rows.Scan(&p, &c); err != nil {
				t.Fatal(err)
			}
			if id, ok := orgs[c]; ok {
				want[p] = id
			}
		}
		rows.Close()
		got := map[string]string{}
		for _, r := range fake.Records("contact") {
			got[fmt.Sprint(r.Properties["external_id"])] = fmt.Sprint(r.Properties["organization"])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("contacts link to %v, want %v", got, want)
		}
		if st := fake.Stats(); st.Requests != st.Imports {
			t.Errorf("%d requests for %d imports", st.Requests, st.Imports)
		}
	}

	// One once links every person, though people come first in the file.
	run("once")
	checkLinks()
	if st := fake.Stats(); st.Imports != 2 || st.RowErrors != 0 {
		t.Fatalf("first once: %+v; want one import per sync", st)
	}

	// A person whose company is not there yet waits, apart from rejects.
	exec(`INSERT INTO people (id, external_id, email, company_id) VALUES (10, 'p10', 'p10@x', 4)`)
	_, log := run("once")
	if !strings.Contains(log, `"deferred":1`) {
		t.Errorf("the pass line does not count the deferred row:\n%s", log)
	}
	out, _ := run("status", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Syncs {
		if s.Name == "people" && (s.Deferred != 1 || s.Rejected != 0) {
			t.Errorf("status of people: %+v", s)
		}
	}
	out, _ = run("history", "--sync", "people", "--limit", "1", "--json")
	if !strings.Contains(out, `"deferred": 1`) {
		t.Errorf("history does not count the deferred row:\n%s", out)
	}
	out, _ = run("rejects")
	if !strings.Contains(out, "Deferred") || !strings.Contains(out, "people  10       companies [4]") {
		t.Errorf("rejects does not show the deferred row apart:\n%s", out)
	}
	out, _ = run("rejects", "--json")
	var rs []rejectJSON
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 || !rs[0].Deferred || rs[0].WaitsFor == nil ||
		rs[0].WaitsFor.Sync != "companies" || !slices.Equal(rs[0].WaitsFor.RowKey, []string{"4"}) || rs[0].Code != "missing_reference" {
		t.Errorf("rejects --json: %v %s", err, out)
	}
	// Row 1 is unchanged since its delivery; without fingerprints preview
	// shows its body too, with the link it would carry.
	env["FINGERPRINTS"] = "false"
	body, log := run("preview", "--sync", "people", "--where", "id IN (1, 10)")
	delete(env, "FINGERPRINTS")
	if !strings.Contains(log, "row (id=10): deferred: property organization: waits for the Micro record of sync companies row [4]") ||
		!strings.Contains(log, "1 deferred") {
		t.Errorf("preview does not mark the deferred row:\n%s", log)
	}
	var c2 string
	for _, r := range fake.Records("organization") {
		if r.Properties["external_id"] == "c2" {
			c2 = r.ID
		}
	}
	if !strings.Contains(body, `"organization":"`+c2+`"`) {
		t.Errorf("preview body %s does not carry company 2's record id %s", body, c2)
	}

	exec(`INSERT INTO companies (id, external_id, name) VALUES (4, 'c4', 'Company 4')`)
	run("once")
	checkLinks()
	if n := len(fake.Records("contact")); n != 10 {
		t.Errorf("%d contacts, want 10", n)
	}
	if out, _ := run("rejects"); !strings.Contains(out, "no rejected rows") {
		t.Errorf("rejects after the company arrived:\n%s", out)
	}
}

// Each round of the daemon passes a referenced sync before the syncs that
// link to it, and syncs that do not depend on each other side by side.
func TestDaemonRoundPassesReferencedSyncsFirst(t *testing.T) {
	f, fs := mapping.Parse("m.yaml", []byte(`syncs:
  - {name: deals, schedule: "@every 1h", source: {table: d, key: id, cursor: c}, properties: {who: {ref: people, column: p}}}
  - {name: people, schedule: "@every 1h", source: {table: p, key: id, cursor: c}, properties: {org: {ref: orgs, column: o}}}
  - {name: notes, schedule: "@every 1h", source: {table: n, key: id, cursor: c}, properties: {x: x}}
  - {name: orgs, schedule: "@every 1h", source: {table: o, key: id, cursor: c}, properties: {x: x}}
`))
	if fs.HasErrors() {
		t.Fatal(fs)
	}
	var mu sync.Mutex
	var order []string
	all := make(chan struct{})
	runPass := func(ctx context.Context, sy *connector.Syncer) (connector.Summary, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, sy.Sync.Name)
		if len(order) == len(f.Syncs) {
			close(all)
		}
		return connector.Summary{Sync: sy.Sync.Name}, true, nil
	}
	newSyncer := func(s *mapping.Sync) *connector.Syncer { return &connector.Syncer{Sync: s} }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon(ctx, slog.New(slog.DiscardHandler), 0, f.Syncs, newSyncer, runPass, nil, heartbeat{})
	}()
	<-all
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pos := func(name string) int { return slices.Index(order, name) }
	if !(pos("orgs") < pos("people") && pos("people") < pos("deals")) || pos("notes") > pos("people") {
		t.Errorf("first round passed %v; want orgs (and notes, beside it) before people before deals", order)
	}
}
