package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector/budget"
)

// openReadStore opens the checkpoint store for the commands that only look
// (status, history, rejects, preview): read-only, so they never create,
// migrate or lock it and work for a role that may only read. A store
// nothing has written yet is not an error: it returns a nil store, and the
// command says so (noStoreText).
func openReadStore(ctx context.Context, cfg *Config) (checkpoint.Store, error) {
	if !strings.HasPrefix(cfg.CheckpointStore, "file:") && cfg.DatabaseURL == "" {
		return nil, &usageError{errors.New("configuration: missing DATABASE_URL (the checkpoint store is postgres; see config.example.env)")}
	}
	s, err := checkpoint.OpenReadOnly(ctx, cfg.CheckpointStore, cfg.DatabaseURL)
	if errors.Is(err, checkpoint.ErrNoStore) {
		return nil, nil
	}
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
	}
	return s, nil
}

// noStoreText says that the store does not exist yet, and where it was
// looked for.
func noStoreText(cfg *Config) string {
	where := "schema prismsync in DATABASE_URL " + redactDSN(cfg.DatabaseURL)
	if path, ok := strings.CutPrefix(cfg.CheckpointStore, "file:"); ok {
		where = "file " + path
	}
	return fmt.Sprintf("the checkpoint store does not exist yet (no %s): no sync has run with CHECKPOINT_STORE=%s", where, cfg.CheckpointStore)
}

// emptyStore is the store nothing has written yet, for status to show the
// mapping's syncs as never run, and the budget as unused.
type emptyStore struct{}

var (
	_ statusStore  = emptyStore{}
	_ budget.Store = emptyStore{}
)

func (emptyStore) Syncs(context.Context) ([]string, error) { return nil, nil }
func (emptyStore) Load(context.Context, string) (checkpoint.State, error) {
	return checkpoint.State{}, nil
}
func (emptyStore) LastRun(context.Context, string) (checkpoint.Run, bool, error) {
	return checkpoint.Run{}, false, nil
}
func (emptyStore) Pending(context.Context, string) ([]checkpoint.Batch, error)   { return nil, nil }
func (emptyStore) CountRejects(context.Context, string) (int, error)             { return 0, nil }
func (emptyStore) Deferred(context.Context, string) ([]checkpoint.Reject, error) { return nil, nil }
func (emptyStore) TakeRequests(context.Context, string, int, int) (int, bool, error) {
	return 0, false, checkpoint.ErrReadOnly
}
func (emptyStore) Requests(context.Context, string) (int, error)    { return 0, nil }
func (emptyStore) Turns(context.Context) ([]checkpoint.Turn, error) { return nil, nil }
func (emptyStore) SaveTurn(context.Context, checkpoint.Turn) error  { return checkpoint.ErrReadOnly }
func (emptyStore) Close() error                                     { return nil }
