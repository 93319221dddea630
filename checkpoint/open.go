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
	switch {
	case spec == "" || spec == "postgres":
		// Not a direct return: a nil *PGStore would become a non-nil Store.
		s, err := openPostgresDSN(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return s, nil
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return nil, errors.New(`checkpoint: store "file:" needs a path, e.g. file:/var/lib/prismsync/checkpoint.json`)
		}
		s, err := OpenFile(path)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf(`checkpoint: unknown store %q: want "postgres" or "file:PATH"`, spec)
	}
}
