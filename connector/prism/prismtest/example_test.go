package prismtest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

func Example() {
	clock := prismtest.NewClock(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))
	fake := prismtest.New(prismtest.Options{APIKey: "sk_test", TeamID: "team-1", Now: clock.Now})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	defer fake.Close()

	// The first attempt is refused with a 429, as the real API may do.
	fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: "1"})

	send := func() {
		body := `{"objects":[{"default":{"email":"ada@example.test","name":"Ada"}}],"options":{"dedupe_by":"email"}}`
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/prism/team-1/contact/import", strings.NewReader(body))
		req.Header.Set("x-api-key", "sk_test")
		req.Header.Set("Idempotency-Key", "run-1/contact/batch-0")
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d retry-after=%q replay=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("idempotent-replay"))
		if resp.StatusCode == http.StatusOK {
			// Record ids are random UUIDs; show the rest of the job.
			fmt.Println(strings.Contains(string(b), `"job_id":null,"status":"complete","total":1`))
		}
	}
	send()
	send()
	send()

	st := fake.Stats()
	fmt.Println("records:", fake.Count("contact"), "creates:", st.Creates, "replays:", st.Replays)
	// Output:
	// 429 retry-after="1" replay=""
	// 200 retry-after="" replay=""
	// true
	// 200 retry-after="" replay="true"
	// true
	// records: 1 creates: 1 replays: 1
}
