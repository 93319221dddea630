package checkpoint

import (
	"context"
	"fmt"
	"sync"
)

// AddRequests implements Store.
func (s *FileStore) AddRequests(ctx context.Context, month string, n int) error {
	if err := checkRequests(month, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	err := s.update(ctx, func(st *fileState) error {
		st.requests[month] += n
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: add requests of %s: %w", month, err)
	}
	return nil
}

// Requests implements Store.
func (s *FileStore) Requests(ctx context.Context, month string) (int, error) {
	if err := checkMonth(month); err != nil {
		return 0, err
	}
	var n int
	err := s.view(ctx, func(st *fileState) error { n = st.requests[month]; return nil })
	return n, err
}

// TryLock implements Store. The file's lock already keeps every other
// process out, so the lease only has to keep two holders in this process
// apart (as PostgreSQL's session locks do).
func (s *FileStore) TryLock(ctx context.Context, name string) (func(), bool, error) {
	if err := checkSync(name); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("checkpoint: lock sync %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	if s.leases[name] {
		return nil, false, nil
	}
	if s.leases == nil {
		s.leases = map[string]bool{}
	}
	s.leases[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.leases, name)
		})
	}, true, nil
}
