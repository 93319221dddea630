package telemetry_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/internal/telemetry"
)

// Metrics is the engine's Observer and serves the ops endpoint.
func ExampleMetrics() {
	m := telemetry.New(telemetry.Options{NoProcessMetrics: true})
	m.BatchDone("people", connector.BatchReport{Rows: 3, Created: 2, Updated: 1, Outcome: "complete", Attempts: 1})

	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "prismsync_rows_") {
			fmt.Println(line)
		}
	}
	// Output:
	// prismsync_rows_created_total{sync="people"} 2
	// prismsync_rows_invalid_total{sync="people"} 0
	// prismsync_rows_matched_existing_total{sync="people"} 0
	// prismsync_rows_read_total{sync="people"} 3
	// prismsync_rows_rejected_total{sync="people"} 0
	// prismsync_rows_sent_total{sync="people"} 3
	// prismsync_rows_skipped_unchanged_total{sync="people"} 0
	// prismsync_rows_updated_total{sync="people"} 1
}

func ExampleParseCursorTime() {
	for _, c := range []string{"2026-03-04 05:06:07.5+00", "2026-03-04", "12345"} {
		t, ok := telemetry.ParseCursorTime(c)
		fmt.Println(t.UTC().Format("2006-01-02T15:04:05.0Z"), ok)
	}
	// Output:
	// 2026-03-04T05:06:07.5Z true
	// 2026-03-04T00:00:00.0Z true
	// 0001-01-01T00:00:00.0Z false
}
