package prism

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var resultSeeds = []string{
	`[{"input_index":0,"id":"00000000-0000-4000-8000-000000000000","created":true,"existing":false,"updated":false}]`,
	`[ {"input_index": 1, "id": "a", "error": {"code": "x", "message": "m"}} , {"id": null, "created": null, "error": null} ]`,
	`[{"input_index":-3,"error":"plain"},{"input_index":2,"input_index":null,"id":"b","id":null,"error":[1,{"a":"\"]}"}]}]`,
	`[]`, `null`, ` [ ] `, `[{}]`, `[null]`, `{}`, `"x"`,
	`[{"Created":true}]`,                     // encoding/json matches names without regard to case
	`[{"id":"caf\u00e9"}]`,                   // an escape
	`[{"id":"café"}]`,                        // not ASCII
	`[{"input_index":1e2}]`,                  // not a plain integer
	`[{"input_index":99999999999999999999}]`, // does not fit
	`[{"input_index":"1"}]`, `[{"created":"yes"}]`, `[{"error":-1.5e3},{"error":true}]`,
	`[{"unknown":{"deep":[1,2,{"x":null}]},"id":"c"}]`,
}

// equalResults compares as the engine reads results (RawMessage by content).
func equalResults(a, b []wireResult) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !bytes.Equal(x.Error, y.Error) || (x.Error == nil) != (y.Error == nil) {
			return false
		}
		x.Error, y.Error = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func checkAgainstUnmarshal(t *testing.T, raw []byte) {
	t.Helper()
	if !json.Valid(raw) {
		return // decodeResults only sees parts of bodies that are valid
	}
	var want []wireResult
	wantErr := json.Unmarshal(raw, &want)
	got, err := decodeResults(raw)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: err %v, json.Unmarshal says %v", raw, err, wantErr)
	}
	if err == nil && !equalResults(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", raw, got, want)
	}
}

func TestDecodeResultsIsUnmarshal(t *testing.T) {
	for _, s := range resultSeeds {
		checkAgainstUnmarshal(t, []byte(s))
	}
	if _, ok := fastResults([]byte(resultSeeds[0])); !ok {
		t.Error("the usual shape took the slow path")
	}
}

func FuzzDecodeResults(f *testing.F) {
	for _, s := range resultSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstUnmarshal)
}

// referenceJob is an answer as json.Unmarshal decodes it whole: the outer
// Results hides the embedded one.
type referenceJob struct {
	wireJob
	Results []wireResult `json:"results"`
}

// parseJob gives what json.Unmarshal of the whole body gives, or an error
// of the same kind, whatever the body.
func checkParseJob(t *testing.T, body []byte) {
	t.Helper()
	var ref referenceJob
	refErr := json.Unmarshal(body, &ref)
	w, results, err := parseJob(body)
	var se, refSE *json.SyntaxError
	if (err != nil) != (refErr != nil) || errors.As(err, &se) != errors.As(refErr, &refSE) {
		t.Fatalf("%s: err %v, json.Unmarshal says %v", body, err, refErr)
	}
	if err != nil {
		return
	}
	ref.wireJob.Results = nil
	if !reflect.DeepEqual(w, ref.wireJob) || !equalResults(results, ref.Results) {
		t.Fatalf("%s:\n got %+v %+v\nwant %+v %+v", body, w, results, ref.wireJob, ref.Results)
	}
}

func TestParseJobIsUnmarshal(t *testing.T) {
	for _, r := range resultSeeds {
		for _, body := range []string{
			`{"status":"complete","total":1,"results":` + r + `}`,
			` { "results" : ` + r + ` , "job_id":"j","status":"complete","summary":{"total":2}} `,
			`{"status":"complete","Results":` + r + `}`,
			`{"status":"complete","results":` + r + `,"results":[]}`,
			`{"status":"complete","results":` + r,
			`[` + r + `]`,
		} {
			checkParseJob(t, []byte(body))
		}
	}
	checkParseJob(t, []byte(syncOK))
}

func FuzzParseJob(f *testing.F) {
	for _, r := range resultSeeds {
		f.Add([]byte(`{"job_id":"j","status":"complete","total":1,"error":null,"results":` + r + `,"created_at":"x"}`))
	}
	f.Add([]byte(syncOK))
	f.Fuzz(checkParseJob)
}

// BenchmarkDecodeResults1000 decodes the results of a 1,000-row import.
func BenchmarkDecodeResults1000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"input_index":%d,"id":"00000000-0000-4000-8000-%012d","created":true,"existing":false,"updated":false}`, i, i)
	}
	sb.WriteString("]")
	raw := []byte(sb.String())
	for _, path := range []struct {
		name string
		f    func([]byte) ([]wireResult, error)
	}{
		{"fast", func(b []byte) ([]wireResult, error) { return decodeResults(b) }},
		{"encoding_json", func(b []byte) ([]wireResult, error) {
			var out []wireResult
			return out, json.Unmarshal(b, &out)
		}},
	} {
		b.Run(path.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := path.f(raw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/result")
		})
	}
}
