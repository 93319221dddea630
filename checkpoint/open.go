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
	switch {
	case err != nil:
		return nil, err
	case path == "":
		return asStore(openPostgresDSN(ctx, dsn))
	default:
		return asStore(OpenFile(path))
	}
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
	switch {
	case err != nil:
		return nil, err
	case path == "":
		return asStore(openPostgresReadOnly(ctx, dsn))
	default:
		return asStore(openFileReadOnly(path))
	}
}

// asStore returns a nil Store on error: a nil *PGStore or *FileStore would
// become a non-nil Store.
func asStore[S Store](s S, err error) (Store, error) {
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
