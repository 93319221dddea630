package prismtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// scanSeeds are bodies for FuzzScanImport: the client's shape, and the
// corners where scanImport must either agree with decodeImport or decline.
var scanSeeds = []string{
	`{"objects":[]}`,
	`{"objects":[{"default":{"email":"a","n":1,"tags":["x",2,true,null]},"list":{"s":1}}],"options":{"dedupe_by":"email","caseInsensitive":true}}`,
	`{"objects":[{"default":{"addr":{"city":"x"}}}]}`,
	`{"objects":[{"default":{"a":[["x"]]}}],"options":{"dedupe_by":["a"]}}`,
	`{"objects":[{"default":null,"list":null}],"options":null}`,
	`{"objects":[1]}`,
	`{"objects":null}`,
	`{"objects":[],"options":{"dedupe_by":["a","b"]}}`,
	`{"objects":[]} {}`,
	`{"objects":[{"default":{}}`,
	`[]`,
	``,
	`{}`,
	` { "objects" : [ { "default" : { "a" : 1 , "b" : [ "x" , 2 ] } , "list" : { } } ] , "options" : { "dedupe_by" : "a" } } `,
	`{"objects":[{"default":{"ext_id":1,"name":"Company 1","email":"contact1@example.com","seats":1,"revenue":1.37,"active":true,"founded":"1990-01-02","updated_at":"2026-01-01T00:00:00Z","tags":["b2c"],"uid":"c4ca4238-a0b9-3382-8dcc-509a6f75849b"}}],"options":{"dedupe_by":"ext_id"}}`,
	`{"options":{"update_existing":true},"objects":[{"list":{"x":[1,{"y":null}]},"default":{"a":"b"}}]}`,
	`{"objects":[{"default":{"a":1,"a":2}}]}`,
	`{"objects":[{"default":{"a":{"x":1},"a":1}}]}`,
	`{"objects":[{"default":{"a":1},"default":{"b":1}}]}`,
	`{"objects":[],"objects":[]}`,
	`{"objects":[],"options":{},"options":{"dedupe_by":"a"}}`,
	`{"objects":[{"default":{"\u0061":1}}]}`,
	`{"obj\u0065cts":[{"default":{"a":1}}]}`,
	`{"objects":[{"def\u0061ult":{"a":1}}]}`,
	`{"objects":[{"default":{"a<b":1,"c&d":"e>f"}}]}`,
	`{"objects":[{"default":{"é":"ü","s":"caf\u00e9","bad":"\ud800","raw":"\xff"}}]}`,
	`{"objects":[{"default":{"":1,"zz":{"o":1},"b":[[1]]}}]}`,
	`{"objects":[{"default":{"n":-0,"m":1.5e+10,"o":0.1E-2,"p":12345678901234567890}}]}`,
	`{"objects":[{"default":{"n":01}}]}`,
	`{"objects":[{"default":{"n":1.}}]}`,
	`{"objects":[{"default":{"n":-}}]}`,
	`{"objects":[{"default":{"n":tru}}]}`,
	`{"objects":[{"default":{"s":"a` + "\t" + `b"}}]}`,
	`{"objects":[{"default":{"s":"\q"}}]}`,
	`{"objects":[{"default":{"s":"\u12"}}]}`,
	`{"objects":[{"default":{"a":1},}]}`,
	`{"objects":[{"default":{"a":1}},]}`,
	`{"objects":[{"default":{"a":1}} {"default":{}}]}`,
	`{"objects":[{"default":"x"}]}`,
	`{"objects":[{"default":[]}]}`,
	`{"objects":[{"list":[]}]}`,
	`{"objects":[{"list":"x"}]}`,
	`{"objects":[{"id":"x"}]}`,
	`{"objects":[],"Options":{}}`,
	`{"objects":[],"options":{"list_id":"6f1c1b7e-5d8a-4c3e-9b1a-2f4e5d6c7b8a","crm_id":"6F1C1B7E-5D8A-4C3E-9B1A-2F4E5D6C7B8A"}}`,
	`{"objects":[],"options":{"dedupe_by":"phone"}}`,
	`{"objects":[{"default":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}]}`,
	`{"objects":[{"list":` + strings.Repeat(`{"a":`, 80) + `1` + strings.Repeat("}", 80) + `}]}`,
	"\ufeff{\"objects\":[]}",
	"{\"objects\":[]}\n\t ",
	`{"objects":[{"default":{"email":"a@x","n":null}},{"default":{"email":"A@X","tags":[]}}],"options":{"dedupe_by":"email","caseInsensitive":true,"update_existing":true}}`,
}

// FuzzScanImport holds scanImport to decodeImport: where the fast path
// accepts a body, the reference must accept it too with the same options,
// rows, per-row errors, lists and property values; and decodeBatch (fast
// path or converted reference rows) must always answer as the reference.
func FuzzScanImport(f *testing.F) {
	for _, seed := range scanSeeds {
		f.Add([]byte(seed))
	}
	known := map[string]bool{"email": true, "n": true, "tags": true, "a": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, k := range []map[string]bool{nil, known} {
			ref, refErr := decodeImport(body, k)
			if fast, ok := scanImport(body, k); ok {
				if refErr != nil {
					t.Fatalf("scanImport accepts what decodeImport refuses (%v): %q", refErr, body)
				}
				sameBatch(t, body, fast, ref)
			}
			got, err := decodeBatch(body, k)
			if (err == nil) != (refErr == nil) || err != nil && err.Error() != refErr.Error() && !optionOrderDependent(body) {
				t.Fatalf("decodeBatch error %v, reference %v: %q", err, refErr, body)
			}
			if err == nil {
				sameBatch(t, body, got, ref)
			}
		}
	})
}

// optionOrderDependent: with several bad options the reference reports
// whichever its map iteration meets first.
func optionOrderDependent(body []byte) bool { return bytes.Contains(body, []byte(`"options"`)) }

func sameBatch(t *testing.T, body []byte, got *batch, ref *importRequest) {
	t.Helper()
	if got.opts != ref.opts || len(got.items) != len(ref.rows) {
		t.Fatalf("options %+v rows %d, reference %+v rows %d: %q", got.opts, len(got.items), ref.opts, len(ref.rows), body)
	}
	for i, it := range got.items {
		r := ref.rows[i]
		if !reflect.DeepEqual(it.err, r.err) {
			t.Fatalf("row %d error %+v, reference %+v: %q", i, it.err, r.err, body)
		}
		if (it.list == nil) != (r.list == nil) || !bytes.Equal(it.list, r.list) {
			t.Fatalf("row %d list %q, reference %q: %q", i, it.list, r.list, body)
		}
		if it.err != nil {
			continue
		}
		if props := decodeProps(it.props); !reflect.DeepEqual(props, r.props) {
			t.Fatalf("row %d properties %#v, reference %#v: %q", i, props, r.props, body)
		}
		// Stored keys are unique and spelled as encoding/json spells them,
		// which mergeProps and prop rely on.
		seen := map[string]bool{}
		iter := newPropIter(it.props)
		for k, _, ok := iter.next(); ok; k, _, ok = iter.next() {
			var slug string
			if err := json.Unmarshal(k, &slug); err != nil || !bytes.Equal(keyToken(slug), k) || seen[slug] {
				t.Fatalf("row %d key %s is not canonical or repeats: %q", i, k, body)
			}
			seen[slug] = true
		}
		if len(seen) != len(r.props) {
			t.Fatalf("row %d walks %d keys, reference has %d: %q", i, len(seen), len(r.props), body)
		}
	}
}

// The fast path must take what clients send, or the fake is slow again
// without any test failing.
func TestScanImportTakesClientBodies(t *testing.T) {
	for _, body := range []string{scanSeeds[1], scanSeeds[13], scanSeeds[14], scanSeeds[15], scanSeeds[len(scanSeeds)-1]} {
		if _, ok := scanImport([]byte(body), nil); !ok {
			t.Errorf("fast path declined %s", body)
		}
	}
}

func TestMergePropsIsMapsCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []string{`1`, `"x"`, `null`, `true`, `["a",2]`, `[]`, `"\u00e9"`, `-2.5e3`}
	text := func(keys ...string) []byte {
		var b strings.Builder
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(" , ")
			}
			fmt.Fprintf(&b, "%q: %s", k, values[rng.IntN(len(values))])
		}
		b.WriteString(" }")
		return []byte(b.String())
	}
	subset := func() []string {
		var keys []string
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			if rng.IntN(2) == 0 {
				keys = append(keys, k)
			}
		}
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		return keys
	}
	var keys [][]byte
	for range 2000 {
		old, upd := text(subset()...), text(subset()...)
		want := decodeProps(old)
		maps.Copy(want, decodeProps(upd))
		var got []byte
		got, keys = mergeProps(nil, old, upd, keys)
		if m := decodeProps(got); !reflect.DeepEqual(m, want) {
			t.Fatalf("merge %s into %s = %s, want %v", upd, old, got, want)
		}
	}
}

func TestDedupeKeyMatchesDedupeValue(t *testing.T) {
	for _, raw := range []string{
		`"abc"`, `"AbC"`, `"a\"b"`, `"\u0041b"`, `"ÉCOLE"`, `"Straße"`, `"\ud800x"`, `""`,
		`42`, `-0`, `1E5`, `1.50`, `true`, `false`, `null`, `["a"]`, `[]`, `{"a":1}`,
	} {
		var v any
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		for _, ci := range []bool{false, true} {
			want, wantOK := dedupeValue(v, ci)
			got, ok := dedupeKey(nil, []byte(raw), ci)
			if ok != wantOK || string(got) != want {
				t.Errorf("dedupeKey(%s, %v) = %q %v, dedupeValue %q %v", raw, ci, got, ok, want, wantOK)
			}
		}
	}
}

// The wire types encodeJob used to marshal; it must write the same bytes.
type refWireJob struct {
	JobID     *string          `json:"job_id"`
	Status    string           `json:"status"`
	Total     int              `json:"total"`
	Processed int              `json:"processed"`
	Succeeded int              `json:"succeeded"`
	Failed    int              `json:"failed"`
	CreatedAt string           `json:"created_at"`
	UpdatedAt string           `json:"updated_at"`
	ExpiresAt string           `json:"expires_at,omitempty"`
	Error     *wireError       `json:"error,omitempty"`
	Results   *[]refWireResult `json:"results,omitempty"`
}

type refWireResult struct {
	InputIndex *int       `json:"input_index,omitempty"`
	ID         *string    `json:"id"`
	Created    bool       `json:"created"`
	Existing   bool       `json:"existing"`
	Updated    bool       `json:"updated"`
	Error      *wireError `json:"error,omitempty"`
}

func refEncodeJob(s *Server, j *job) []byte {
	w := refWireJob{
		Status: j.status, Total: j.total, Processed: j.processed, Succeeded: j.succeeded, Failed: j.failed,
		CreatedAt: timestamp(j.createdAt), UpdatedAt: timestamp(j.updatedAt), Error: j.err,
	}
	if j.id != "" {
		w.JobID = &j.id
		w.ExpiresAt = timestamp(j.expiresAt)
	}
	if j.status == StatusComplete {
		results := make([]refWireResult, len(j.results.rows))
		errs := j.results.errs
		for i, r := range j.results.rows {
			wr := refWireResult{Created: r.flags&resCreated != 0, Existing: r.flags&resExisting != 0, Updated: r.flags&resUpdated != 0}
			if r.flags&resError != 0 {
				wr.Error, errs = errs[0], errs[1:]
			}
			if r.rec != 0 {
				id := j.results.store.rec(r.rec).id.String()
				wr.ID = &id
			}
			if !s.opts.OmitInputIndex {
				wr.InputIndex = &i
			}
			results[i] = wr
		}
		w.Results = &results
	}
	body, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	return body
}

func TestEncodeJobMatchesMarshal(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.FixedZone("x", 3600))
	for _, omit := range []bool{false, true} {
		s := New(Options{OmitInputIndex: omit, KnownSlugs: map[string][]string{"contact": {"email", "a<b"}}})
		body := []byte(`{"objects":[{"default":{"email":"a"}},{"default":{"email":"a"}},{"default":{"phone":"1"}},` +
			`{"default":{"a<b":{"x":1}}},{"default":{"email":"b"}},{"default":{"\u00e9\u2028":1}}],"options":{"dedupe_by":"email","update_existing":true}}`)
		b, err := decodeBatch(body, s.known["contact"])
		if err != nil {
			t.Fatal(err)
		}
		out := s.applyRows("contact", b.items, b.opts, now)
		jobs := []*job{
			{status: StatusComplete, results: out, createdAt: now, updatedAt: now},
			{status: StatusComplete, results: outcome{store: out.store}, createdAt: now, updatedAt: now},
			{id: "4d6b3b0e-6c1a-4b8e-9a57-0f5f8e1f2a3b", status: StatusComplete, results: out, createdAt: now, updatedAt: now, expiresAt: now.Add(time.Hour)},
			{id: "j<1", status: StatusProcessing, total: 6, createdAt: now, updatedAt: now, expiresAt: now},
			{id: "j2", status: StatusFailed, total: 6, processed: 3, succeeded: 2, failed: 1, createdAt: now, updatedAt: now,
				err: &wireError{Code: "x>y", Message: "a&b"}},
			{id: "j3", status: StatusFailed, createdAt: now, updatedAt: now,
				err: &wireError{Code: "\x01", Message: "bad \"row\" \xff \u2029 \\"}},
		}
		for i, j := range jobs {
			j.count(j.results)
			if j.status != StatusComplete {
				j.processed, j.succeeded, j.failed = 3, 2, 1
			}
			if got, want := s.encodeJob(j), refEncodeJob(s, j); !bytes.Equal(got, want) {
				t.Errorf("omit=%v job %d:\n got %s\nwant %s", omit, i, got, want)
			}
		}
	}
}

// TestDedupeMatchesModel runs random imports against a map-per-record model
// of dedupe (the earliest-created record whose current value matches; a
// patch is maps.Copy), on a store with a real hash and on one whose hash
// puts every key in one bucket.
func TestDedupeMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	emails := []string{`"a"`, `"A"`, `"b"`, `"B"`, `"\u0062"`, `1`, `"1"`, `true`, `"TRUE"`, `null`, `["a"]`}
	for _, collide := range []bool{false, true} {
		s := New(Options{})
		st := newObjectStore()
		if collide {
			st.hash = func([]byte) uint64 { return 7 }
		}
		s.objects["contact"] = st
		var model []map[string]any
		for round := range 300 {
			var body strings.Builder
			body.WriteString(`{"objects":[`)
			for i := range 1 + rng.IntN(4) {
				if i > 0 {
					body.WriteString(",")
				}
				fmt.Fprintf(&body, `{"default":{"email":%s,"n":%d`, emails[rng.IntN(len(emails))], round)
				if rng.IntN(3) == 0 {
					fmt.Fprintf(&body, `,"alt":%s`, emails[rng.IntN(len(emails))])
				}
				body.WriteString("}}")
			}
			slug := []string{"email", "alt", ""}[rng.IntN(3)]
			ci, upd := rng.IntN(2) == 0, rng.IntN(2) == 0
			fmt.Fprintf(&body, `],"options":{"dedupe_by":%q,"caseInsensitive":%v,"update_existing":%v}}`, slug, ci, upd)
			if slug == "" {
				body.Reset()
				fmt.Fprintf(&body, `{"objects":[{"default":{"email":%s}}]}`, emails[rng.IntN(len(emails))])
			}
			b, err := decodeBatch([]byte(body.String()), nil)
			if err != nil {
				t.Fatalf("%s: %v", body.String(), err)
			}
			req, err := decodeImport([]byte(body.String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			out := s.applyRows("contact", b.items, b.opts, time.Now())
			for i, r := range req.rows {
				want := seq(0)
				if b.opts.dedupeBy != "" {
					if key, ok := dedupeValue(r.props[b.opts.dedupeBy], ci); ok {
						for n, m := range model {
							if k, ok := dedupeValue(m[b.opts.dedupeBy], ci); ok && k == key {
								want = seq(n + 1)
								break
							}
						}
					}
				}
				switch {
				case want == 0:
					model = append(model, maps.Clone(r.props))
					want = seq(len(model))
				case upd:
					maps.Copy(model[want-1], r.props)
				}
				if got := out.rows[i].rec; got != want {
					t.Fatalf("collide=%v round %d row %d (%s): record %d, want %d", collide, round, i, body.String(), got, want)
				}
			}
		}
		recs := s.Records("contact")
		if len(recs) != len(model) {
			t.Fatalf("collide=%v: %d records, want %d", collide, len(recs), len(model))
		}
		for i, r := range recs {
			if !reflect.DeepEqual(r.Properties, model[i]) {
				t.Fatalf("collide=%v record %d = %v, want %v", collide, i, r.Properties, model[i])
			}
			// Find answers exactly the records whose email has v's key, in
			// creation order.
			v := r.Properties["email"]
			key, ok := dedupeValue(v, false)
			if !ok {
				continue
			}
			var want, got []string
			for j, m := range model {
				if k, ok := dedupeValue(m["email"], false); ok && k == key {
					want = append(want, recs[j].ID)
				}
			}
			for _, f := range s.Find("contact", "email", v) {
				got = append(got, f.ID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("collide=%v: Find(email=%q) = %v, want %v", collide, key, got, want)
			}
		}
		if got, ok := s.Record("contact", recs[0].ID); !ok || got.ID != recs[0].ID {
			t.Errorf("Record(%s) = %v %v", recs[0].ID, got.ID, ok)
		}
		if _, ok := s.Record("contact", strings.ToUpper(recs[0].ID)); ok {
			t.Error("Record found an id in another spelling")
		}
	}
}
