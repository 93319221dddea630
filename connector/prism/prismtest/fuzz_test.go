package prismtest

import (
	"testing"
)

func FuzzDecodeImport(f *testing.F) {
	// The same corners FuzzScanImport starts from (scan_test.go).
	for _, seed := range scanSeeds {
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
