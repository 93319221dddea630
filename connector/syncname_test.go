package connector_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// namingAPI records the sync name the context of every API call carries.
type namingAPI struct {
	connector.API
	mu    sync.Mutex
	names map[string]int // "op name" -> calls
}

var _ connector.API = (*namingAPI)(nil)

func (a *namingAPI) saw(ctx context.Context, op string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.names[op+" "+connector.SyncName(ctx)]++
}

func (a *namingAPI) Import(ctx context.Context, object, key string, body []byte) (*prism.Job, error) {
	a.saw(ctx, "import")
	return a.API.Import(ctx, object, key, body)
}

func (a *namingAPI) Wait(ctx context.Context, job *prism.Job) (*prism.Job, error) {
	a.saw(ctx, "wait")
	return a.API.Wait(ctx, job)
}

func (a *namingAPI) Job(ctx context.Context, id string) (*prism.Job, error) {
	a.saw(ctx, "job")
	return a.API.Job(ctx, id)
}

// Every API call of a pass and of a retry carries the sync's name, so the
// client's request hook can label requests by sync.
func TestAPICallsCarryTheSyncName(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, prismtest.Options{SyncThreshold: 10})
	e.exec(peopleTable)
	e.exec(`INSERT INTO people SELECT g, 'Org ' || g, NULL, 1, timestamptz '2026-01-01' + g * interval '1 minute'
		FROM generate_series(1, 30) g`)
	api := &namingAPI{API: e.api, names: map[string]int{}}
	sy := e.syncer(mappingFor(t, 20, true))
	sy.API = api
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sy.Retry(ctx, [][]string{{"1"}}); err != nil {
		t.Fatal(err)
	}
	if connector.SyncName(ctx) != "" {
		t.Error("the caller's context was changed")
	}
	calls := 0
	for k, n := range api.names {
		if k != "import people" && k != "wait people" && k != "job people" {
			t.Errorf("%d call(s) %q: want every call named after sync people", n, k)
		}
		calls += n
	}
	if api.names["import people"] < 3 {
		t.Errorf("calls = %v: want the pass's two imports and the retry's", api.names)
	}
	if calls == 0 {
		t.Fatal("no API call seen")
	}
}
