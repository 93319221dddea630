package prismtest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// BenchmarkImport measures the handler alone (no network) on 1,000-row
// async batches with dedupe and update_existing, the shape of the 1M-row
// benchmark. Reported per row.
func BenchmarkImport(b *testing.B) {
	const batch = 1000
	s := prismtest.New(prismtest.Options{})
	bodies := make([]string, 64)
	for k := range bodies {
		var sb strings.Builder
		sb.WriteString(`{"objects":[`)
		for i := range batch {
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, `{"default":{"ext_id":%d,"email":"user%d@example.test","name":"User %d","amount":%d.5,"active":true,"tags":["a","b"]}}`,
				k*batch+i, k*batch+i, i, i)
		}
		sb.WriteString(`],"options":{"dedupe_by":"ext_id","update_existing":true}}`)
		bodies[k] = sb.String()
	}
	b.ResetTimer()
	for i := range b.N {
		r := httptest.NewRequest("POST", "/v2/prism/t/contact/import", strings.NewReader(bodies[i%len(bodies)]))
		r.Header.Set("x-api-key", "k")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
	b.StopTimer()
	_ = s.Stats() // completes the last job inside the measurement's state
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
}
