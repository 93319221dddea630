package checkpoint_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prismsync/prismsync/checkpoint"
)

// The engine's cycle: journal a batch before sending it, commit it once the
// API confirmed it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)

	store, err := checkpoint.Open(ctx, "file:"+filepath.Join(dir, "checkpoint.json"), "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	st, _ := store.Load(ctx, "orgs")
	fmt.Println("exists:", st.Exists, "from:", st.Position)

	to := checkpoint.Position{Cursor: "2026-01-02 03:04:05+00", Key: []string{"42"}}
	_ = store.Journal(ctx, checkpoint.Batch{Sync: "orgs", Key: "orgs-0001", Attempt: 1,
		From: st.Position, To: to, Rows: 2, Body: []byte(`{"objects":[]}`), Object: "organization"})
	pending, _ := store.Pending(ctx, "orgs")
	fmt.Println("in flight:", len(pending))

	// ... POST the body, the API accepts one row and rejects the other ...
	rejects := []checkpoint.Reject{{RowKey: []string{"41"}, Code: "invalid_value", Message: "domain: not a domain"}}
	_ = store.Commit(ctx, "orgs", "orgs-0001", to, "mapping-fp", rejects, nil)

	st, _ = store.Load(ctx, "orgs")
	n, _ := store.CountRejects(ctx, "orgs")
	pending, _ = store.Pending(ctx, "orgs")
	fmt.Println("exists:", st.Exists, "at:", st.Position, "batches:", st.Batches, "rejects:", n, "in flight:", len(pending))
	// Output:
	// exists: false from: (start)
	// in flight: 1
	// exists: true at: cursor="2026-01-02 03:04:05+00" key=["42"] batches: 1 rejects: 1 in flight: 0
}
