package prism_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prismsync/prismsync/connector/prism"
)

func ExampleEncodeImportBodyShared() {
	body := prism.EncodeImportBodyShared(
		[][]byte{[]byte(`{"default":{"name":"Acme","domain":"acme.test"}}`)},
		prism.ImportOptions{DedupeBy: "domain", CaseInsensitive: true, UpdateExisting: true},
	)
	fmt.Println(string(body))
	// Output:
	// {"objects":[{"default":{"name":"Acme","domain":"acme.test"}}],"options":{"dedupe_by":"domain","caseInsensitive":true,"update_existing":true}}
}

func ExampleClient_Import() {
	// A stand-in for the API: the import goes async, one poll finds it done.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"job_id":"job-1","status":"processing","total":2}`)
			return
		}
		io.WriteString(w, `{"job_id":"job-1","status":"complete","total":2,"results":[
			{"input_index":1,"id":"rec-b","created":true},
			{"input_index":0,"id":null,"error":{"code":"invalid_value","message":"employees: not a number"}}]}`)
	}))
	defer srv.Close()

	client, err := prism.New(prism.Config{
		BaseURL: srv.URL,
		APIKey:  "secret",
		TeamID:  "3f2c1a9e-0b7d-4c55-9e1a-7a1d2b3c4d5e",
		// Tests skip the real waiting; production leaves Sleep nil.
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	body := prism.EncodeImportBodyShared([][]byte{
		[]byte(`{"default":{"name":"A","employees":"many"}}`),
		[]byte(`{"default":{"name":"B","employees":3}}`),
	}, prism.ImportOptions{DedupeBy: "name"})
	key := prism.IdempotencyKey("orgs", "0", body, 0)

	job, err := client.Import(ctx, "organization", key, body)
	if err != nil {
		panic(err)
	}
	job, err = client.Wait(ctx, job)
	if err != nil {
		panic(err)
	}
	rows, err := job.RowResults(2)
	if err != nil {
		panic(err)
	}
	for i, r := range rows {
		if r.Error != nil {
			fmt.Printf("row %d rejected: %v\n", i, r.Error)
			continue
		}
		fmt.Printf("row %d -> %s (created %v)\n", i, r.ID, r.Created)
	}
	fmt.Println("polls:", job.Polls)
	// Output:
	// row 0 rejected: invalid_value: employees: not a number
	// row 1 -> rec-b (created true)
	// polls: 1
}
