package prismtest

import (
	"testing"
)

func FuzzDecodeImport(f *testing.F) {
	for _, seed := range []string{
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
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{"email": true, "n": true, "tags": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, k := range []map[string]bool{nil, known} {
			req, err := decodeImport(body, k)
			if err != nil {
				if req != nil {
					t.Fatal("request and error both returned")
				}
				if _, ok := err.(*requestError); !ok {
					t.Fatalf("error %T is not a requestError: %v", err, err)
				}
				continue
			}
			for i, r := range req.rows {
				if r.props == nil {
					t.Fatalf("row %d: nil props", i)
				}
				if r.err != nil {
					continue
				}
				for slug, v := range r.props {
					if !validValue(v, true) || (k != nil && !k[slug]) {
						t.Fatalf("row %d: accepted %q = %#v", i, slug, v)
					}
				}
			}
		}
	})
}
