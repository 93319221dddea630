package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/prismsync/prismsync/internal/pgtest"
)

var payloadSeeds = []struct {
	body string
	keys [][]string
}{
	{`{"objects":[{"default":{"a":1}},{"default":{"a":2}}]}`, [][]string{{"1"}, {"2", "a,b"}}},
	{"", nil},
	{"x", [][]string{nil, {}, {""}, {"", ""}, {"\x00", "\xff", "€"}}},
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, s := range payloadSeeds {
		z, err := encodePayload([]byte(s.body), s.keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, keys, _, err := decodePayload("orgs", z)
		if err != nil {
			t.Fatalf("%q: %v", s.body, err)
		}
		if !bytes.Equal(body, []byte(s.body)) || (len(s.body) == 0) != (body == nil) {
			t.Errorf("body %q, want %q", body, s.body)
		}
		if !slices.EqualFunc(keys, s.keys, func(a, b []string) bool { return slices.Equal(a, b) }) {
			t.Errorf("keys %q, want %q", keys, s.keys)
		}
	}
}

// A payload cut short or padded is an error, never a wrong batch.
func TestPayloadRefusesDamage(t *testing.T) {
	raw := []byte("\x05hello\x02\x01\x01a\x00")
	for _, bad := range [][]byte{raw[:len(raw)-1], append(slices.Clone(raw), 0), []byte("\xff\xff"), []byte("\x05hel"), {}} {
		z, err := compress(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := decodePayload("orgs", z); !errors.Is(err, errPayload) {
			t.Errorf("decodePayload(%q) = %v, want errPayload", bad, err)
		}
	}
	z, _ := compress(raw)
	if body, keys, _, err := decodePayload("orgs", z); err != nil || string(body) != "hello" || len(keys) != 2 || keys[0][0] != "a" || keys[1] != nil {
		t.Errorf("decodePayload(%q) = %q, %q, %v", raw, body, keys, err)
	}
}

func FuzzPayload(f *testing.F) {
	for _, s := range payloadSeeds {
		var flat []byte
		for _, k := range s.keys {
			for _, v := range k {
				flat = append(append(flat, v...), 0)
			}
			flat = append(flat, 1)
		}
		f.Add([]byte(s.body), flat)
	}
	f.Fuzz(func(t *testing.T, body, flat []byte) {
		// flat: values end at 0, keys at 1.
		var keys [][]string
		var key []string
		var v []byte
		for _, c := range flat {
			switch c {
			case 0:
				key, v = append(key, string(v)), nil
			case 1:
				keys, key = append(keys, key), nil
			default:
				v = append(v, c)
			}
		}
		z, err := encodePayload(body, keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		gotBody, gotKeys, _, err := decodePayload("orgs", z)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotBody, body) || !slices.EqualFunc(gotKeys, keys, func(a, b []string) bool { return slices.Equal(a, b) }) {
			t.Fatalf("round trip of %q %q gave %q %q", body, keys, gotBody, gotKeys)
		}
		// Whatever the bytes, decoding them fails or succeeds, never panics.
		zz, _ := compress(append(body, flat...))
		decodePayload("orgs", zz) //nolint:errcheck // only that it returns
	})
}

// A batch journaled before schema version 8 (body in body_gzip, row keys in
// the jsonb column) is still settled after the upgrade.
func TestPostgresPendingReadsEntriesOfSchema5(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	s, err := Open(ctx, "postgres", dsn)
	must(t, err)
	defer s.Close()
	z, err := compress([]byte(`{"objects":[]}`))
	must(t, err)
	pgExec(t, dsn, `INSERT INTO prismsync.journal (sync, batch_key, attempt, from_cursor, from_key, to_cursor, to_key,
			row_count, body_gzip, object, job_id, created_at, row_keys)
		VALUES ('orgs', 'old', 1, 'a', '{1}', 'b', '{2}', 2, $1, 'organization', 'job-7', now(), '[["1"],["2","a,b"]]')`, z)
	p, err := s.Pending(ctx, "orgs")
	must(t, err)
	if len(p) != 1 {
		t.Fatalf("pending %v, want the old entry", keys(p))
	}
	sameBatch(t, p[0], Batch{Sync: "orgs", Key: "old", Attempt: 1, From: pos("a", "1"), To: pos("b", "2"), Rows: 2,
		Body: []byte(`{"objects":[]}`), Object: "organization", JobID: "job-7", RowKeys: [][]string{{"1"}, {"2", "a,b"}}})
	// Written again (a new attempt replaces it), it takes the new form.
	b := p[0]
	b.Attempt = 2
	must(t, s.Journal(ctx, b))
	p, err = s.Pending(ctx, "orgs")
	must(t, err)
	sameBatch(t, p[0], b)
}
