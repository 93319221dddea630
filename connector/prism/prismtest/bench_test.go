package prismtest_test

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

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

// benchBatch is the batch size of `prismsync bench`.
const benchBatch = 5000

// appendBenchBody appends an import body of n objects shaped like the rows
// of `prismsync bench` (ten properties of mixed types, dedupe on ext_id),
// numbered from first.
func appendBenchBody(dst []byte, first, n int, options string) []byte {
	dst = append(dst, `{"objects":[`...)
	for i := first; i < first+n; i++ {
		if i > first {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"default":{"ext_id":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"name":"Company `...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `","email":"contact`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `@example.com","seats":`...)
		dst = strconv.AppendInt(dst, int64(i%500), 10)
		dst = append(dst, `,"revenue":`...)
		dst = strconv.AppendFloat(dst, float64(i%100000)*1.37, 'f', 2, 64)
		dst = append(dst, `,"active":`...)
		dst = strconv.AppendBool(dst, i%7 != 0)
		dst = append(dst, `,"founded":"`...)
		dst = time.Date(1990, 1, 1+i%12000, 0, 0, 0, 0, time.UTC).AppendFormat(dst, time.DateOnly)
		dst = append(dst, `","updated_at":"`...)
		dst = time.Date(2026, 1, 1, 0, 0, i/100, 0, time.UTC).AppendFormat(dst, time.RFC3339)
		dst = append(dst, `","tags":`...)
		switch i % 4 {
		case 0:
			dst = append(dst, `["b2b","emea"]`...)
		case 1:
			dst = append(dst, `["b2c"]`...)
		case 2:
			dst = append(dst, `[]`...)
		default:
			dst = append(dst, `null`...)
		}
		dst = append(dst, `,"uid":"`...)
		sum := md5.Sum(strconv.AppendInt(nil, int64(i), 10))
		dst = append(dst, uuid.UUID(sum).String()...)
		dst = append(dst, `"}}`...)
	}
	dst = append(dst, `],"options":`...)
	dst = append(dst, options...)
	return append(dst, '}')
}

// BenchmarkHTTP measures the whole path of one batch of `prismsync bench`
// over loopback HTTP: POST 5,000 objects (an async job, 202), then GET the
// job, which completes it and answers its 5,000 results. Client and server
// share the process, so B/row and allocs/row include the (small, fixed)
// client side; cpu-ns/row is the process's CPU time, which unlike ns/row
// includes the collector's work on other cores. "create" adds new records each round, as the bench does, and
// also reports the heap retained per stored record after a GC (run it with
// a fixed -benchtime such as 40x to compare store sizes); "update" sends
// rows matching existing records with update_existing.
func BenchmarkHTTP(b *testing.B) {
	b.Run("create", func(b *testing.B) {
		benchHTTP(b, `{"dedupe_by":"ext_id"}`, 0)
	})
	b.Run("update", func(b *testing.B) {
		benchHTTP(b, `{"dedupe_by":"ext_id","update_existing":true}`, 20)
	})
}

// benchHTTP runs rounds of benchBatch rows. With seed > 0 it first imports
// seed batches and then cycles over their ext_ids; otherwise every round
// brings new ones.
func benchHTTP(b *testing.B, options string, seed int) {
	srv := prismtest.New(prismtest.Options{})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	hc := hs.Client()
	importURL := hs.URL + "/v2/prism/team/organization/import"
	var body []byte
	var resp bytes.Buffer
	round := func(b *testing.B, n int) {
		req, err := http.NewRequest(http.MethodPost, importURL, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("x-api-key", "k")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(n))
		location := send(b, hc, req, http.StatusAccepted, &resp).Header.Get("Location")
		req, err = http.NewRequest(http.MethodGet, hs.URL+location, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("x-api-key", "k")
		send(b, hc, req, http.StatusOK, &resp)
		if !bytes.Contains(resp.Bytes(), []byte(`"status":"complete"`)) {
			b.Fatalf("job not complete: %.200s", resp.Bytes())
		}
	}
	for k := range seed {
		body = appendBenchBody(body[:0], k*benchBatch, benchBatch, `{"dedupe_by":"ext_id"}`)
		round(b, -1-k)
	}
	runtime.GC()
	var before, m0, m1 runtime.MemStats
	runtime.ReadMemStats(&before)
	var allocBytes, mallocs uint64
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		first := i * benchBatch
		if seed > 0 {
			first = i % seed * benchBatch
		}
		body = appendBenchBody(body[:0], first, benchBatch, options)
		runtime.ReadMemStats(&m0)
		cpu0 := cpuTime()
		b.StartTimer()
		round(b, i)
		b.StopTimer()
		cpu += cpuTime() - cpu0
		runtime.ReadMemStats(&m1)
		allocBytes += m1.TotalAlloc - m0.TotalAlloc
		mallocs += m1.Mallocs - m0.Mallocs
		b.StartTimer()
	}
	b.StopTimer()
	rows := float64(b.N * benchBatch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/rows, "cpu-ns/row")
	}
	b.ReportMetric(float64(allocBytes)/rows, "B/row")
	b.ReportMetric(float64(mallocs)/rows, "allocs/row")
	if seed > 0 {
		return
	}
	hc.CloseIdleConnections()
	body, resp = nil, bytes.Buffer{}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	n := srv.Count("organization")
	if n != b.N*benchBatch {
		b.Fatalf("%d records, want %d", n, b.N*benchBatch)
	}
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(n), "retained-B/record")
	runtime.KeepAlive(srv)
}

func send(b *testing.B, hc *http.Client, req *http.Request, want int, buf *bytes.Buffer) *http.Response {
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != want {
		b.Fatalf("%s %s: status %d, want %d: %.200s", req.Method, req.URL.Path, resp.StatusCode, want, buf.Bytes())
	}
	return resp
}
