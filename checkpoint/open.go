package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Open opens the store named by spec: "postgres" (the default when spec is
// "") uses the database at dsn, "file:PATH" a local file. dsn is never part of
// an error.
func Open(ctx context.Context, spec string, dsn string) (Store, error) {
	path, err := filePath(spec)
	if err != nil {
		return nil, err
	}
	// Not direct returns: a nil *PGStore would become a non-nil Store.
	if path == "" {
		s, err := openPostgresDSN(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens the store named by spec, as Open does, for reading
// only: it creates, migrates and locks nothing, and the store's writing
// methods fail with ErrReadOnly. A file store is a snapshot of the file read
// without its lock, so it works next to a running daemon; a postgres store
// reads the live tables and needs the schema at SchemaVersion. A store
// nothing has written yet (no file, no schema prismsync) is an error
// matching ErrNoStore.
func OpenReadOnly(ctx context.Context, spec string, dsn string) (Store, error) {
	path, err := filePath(spec)
	if err != nil {
		return nil, err
	}
	if path == "" {
		s, err := openPostgresReadOnly(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := openFileReadOnly(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// filePath reads a store spec: the path of "file:PATH", "" for postgres.
func filePath(spec string) (string, error) {
	switch {
	case spec == "" || spec == "postgres":
		return "", nil
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return "", errors.New(`checkpoint: store "file:" needs a path, e.g. file:/var/lib/prismsync/checkpoint.json`)
		}
		return path, nil
	default:
		return "", fmt.Errorf(`checkpoint: unknown store %q: want "postgres" or "file:PATH"`, spec)
	}
}
