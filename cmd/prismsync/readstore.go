package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prismsync/prismsync/checkpoint"
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
