package prism

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDecodeJobShapes(t *testing.T) {
	t.Run("old shape: string errors, summary, no input_index", func(t *testing.T) {
		j, err := decodeJob([]byte(`{"status":"complete","results":[
			{"id":"a","created":true,"error":null,"existing":false},
			{"id":null,"created":false,"error":"invalid value for employees","existing":false},
			{"id":"c","created":false,"error":"","existing":true}],
			"summary":{"created":1,"errors":1,"existing":1,"total":3}}`))
		if err != nil {
			t.Fatal(err)
		}
		if j.ID != "" || j.Total != 3 || len(j.Results) != 3 {
			t.Fatalf("job = %+v", j)
		}
		r := j.Results
		if r[0].InputIndex != -1 || r[0].Error != nil || r[1].Error == nil || r[1].Error.Message != "invalid value for employees" ||
			r[1].ID != "" || r[2].Error != nil || !r[2].Existing {
			t.Errorf("results = %+v", r)
		}
		rows, err := j.RowResults(3)
		if err != nil || rows[1].Error == nil || rows[2].ID != "c" {
			t.Errorf("RowResults = %+v, %v", rows, err)
		}
	})
	t.Run("new shape: object errors", func(t *testing.T) {
		j, err := decodeJob([]byte(`{"job_id":"j","status":"complete","total":1,"processed":1,"succeeded":0,"failed":1,
			"results":[{"input_index":0,"id":null,"created":false,"existing":false,"updated":false,
			"error":{"code":"invalid_option","message":"unknown option x"},"future":1}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if e := j.Results[0].Error; e == nil || e.Code != "invalid_option" || e.Error() != "invalid_option: unknown option x" {
			t.Errorf("row error = %+v", e)
		}
		if j.Failed != 1 || j.Processed != 1 {
			t.Errorf("counters = %+v", j)
		}
	})
	t.Run("bad expires_at is ignored", func(t *testing.T) {
		j, err := decodeJob([]byte(`{"status":"complete","total":0,"expires_at":"next week"}`))
		if err != nil || !j.ExpiresAt.IsZero() {
			t.Errorf("%+v %v", j, err)
		}
	})
	t.Run("malformed vs unexpected", func(t *testing.T) {
		for _, body := range []string{`{"status":"compl`, ``, `{"status":"complete","total":2,"results":[{"created":true},{"crea`,
			`{"status":"complete","total":0} x`, `{"status":"complete","total":"1"`} {
			_, err := decodeJob([]byte(body))
			if !errors.Is(err, errMalformed) || errors.Is(err, ErrUnexpectedResponse) {
				t.Errorf("%q: %v, want only errMalformed", body, err)
			}
		}
		if _, err := decodeJob([]byte(`[]`)); !errors.Is(err, ErrUnexpectedResponse) {
			t.Errorf("array: %v", err)
		}
		if _, err := decodeJob([]byte(`{"total":1}`)); !errors.Is(err, ErrUnexpectedResponse) {
			t.Errorf("no status: %v", err)
		}
		if _, err := decodeJob([]byte(`{"status":"complete","total":1,"results":[{"input_index":-2}]}`)); !errors.Is(err, ErrUnexpectedResponse) {
			t.Errorf("negative index: %v", err)
		}
	})
}

func res(idx ...int) []Result {
	out := make([]Result, len(idx))
	for i, x := range idx {
		out[i] = Result{InputIndex: x, ID: string(rune('a' + i))}
	}
	return out
}

func TestRowResults(t *testing.T) {
	tests := []struct {
		name    string
		job     Job
		n       int
		wantIDs string // IDs in row order
		wantErr string
	}{
		{"by input_index", Job{Status: StatusComplete, Total: 3, Results: res(2, 0, 1)}, 3, "bca", ""},
		{"by order", Job{Status: StatusComplete, Total: 3, Results: res(-1, -1, -1)}, 3, "abc", ""},
		{"empty", Job{Status: StatusComplete}, 0, "", ""},
		{"fewer results", Job{Status: StatusComplete, Total: 3, Results: res(0, 1)}, 3, "", "2 results for 3 rows"},
		{"total mismatch", Job{Status: StatusComplete, Total: 4, Results: res(0, 1, 2)}, 3, "", "total 4"},
		{"duplicate", Job{Status: StatusComplete, Total: 3, Results: res(0, 1, 1)}, 3, "", "duplicate input_index 1"},
		{"out of range", Job{Status: StatusComplete, Total: 3, Results: res(0, 1, 3)}, 3, "", "out of range"},
		{"mixed missing later", Job{Status: StatusComplete, Total: 2, Results: res(0, -1)}, 2, "", "no input_index"},
		{"mixed missing first", Job{Status: StatusComplete, Total: 2, Results: res(-1, 0)}, 2, "", "has input_index"},
		{"processing", Job{ID: "j", Status: StatusProcessing, Total: 1}, 1, "", "not complete"},
		{"failed", Job{Status: StatusFailed, Error: &JobError{Message: "boom"}}, 1, "", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := tt.job.RowResults(tt.n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids string
			for _, r := range rows {
				ids += r.ID
			}
			if ids != tt.wantIDs || len(rows) != tt.n {
				t.Errorf("ids = %q, want %q", ids, tt.wantIDs)
			}
		})
	}
}

func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(syncOK))
	f.Add([]byte(`{"status":"complete","results":[{"id":"a","error":"x"}],"summary":{"total":1}}`))
	f.Add([]byte(`{"job_id":"j","status":"processing","total":100,"error":{"code":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		j, err := decodeJob(body)
		if err != nil {
			return
		}
		if j.Status == "" {
			t.Fatal("decoded job without status")
		}
		// RowResults must never panic, whatever the server sent.
		_, _ = j.RowResults(len(j.Results))
		_, _ = j.RowResults(j.Total)
	})
}

// BenchmarkDecodeJob5000 decodes the answer to a poll of a completed
// 5,000-row job, the largest body prismsync reads.
func BenchmarkDecodeJob5000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"job_id":"j","status":"complete","total":5000,"processed":5000,"succeeded":5000,"failed":0,"created_at":"2026-11-28T10:00:00.000Z","updated_at":"2026-11-28T10:00:01.000Z","results":[`)
	for i := range 5000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"input_index":%d,"id":"00000000-0000-4000-8000-%012d","created":true,"existing":false,"updated":false}`, i, i)
	}
	sb.WriteString("]}")
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeJob(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*5000), "ns/result")
}
