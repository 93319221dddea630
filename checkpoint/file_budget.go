package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// errUnchanged ends an update that has nothing to write.
var errUnchanged = errors.New("nothing to write")

// TakeRequests implements Store.
func (s *FileStore) TakeRequests(ctx context.Context, month string, n, limit int) (int, bool, error) {
	if err := checkMonth(month); err != nil {
		return 0, false, err
	}
	var total int
	var ok bool
	err := s.update(ctx, func(st *fileState) error {
		cur := st.requests[month]
		if limit >= 0 && cur+n > limit {
			total = cur
			return errUnchanged
		}
		total, ok = max(cur+n, 0), true
		st.requests[month] = total // requests is a copy (see fileState.clone)
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return total, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint: take %d requests of %s: %w", n, month, err)
	}
	return total, ok, nil
}

// Turns implements Store.
func (s *FileStore) Turns(ctx context.Context) ([]Turn, error) {
	var out []Turn
	err := s.view(ctx, func(st *fileState) error {
		for sync, t := range st.turns {
			out = append(out, Turn{Sync: sync, LastSend: t.LastSend, LastCost: t.LastCost, WaitingSince: t.WaitingSince,
				WaitingRows: t.WaitingRows, Due: t.Due, HeldAt: t.HeldAt, Interval: t.Interval})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b Turn) int { return strings.Compare(a.Sync, b.Sync) })
	return out, err
}

// SaveTurn implements Store.
func (s *FileStore) SaveTurn(ctx context.Context, t Turn) error {
	if err := checkSync(t.Sync); err != nil {
		return err
	}
	t = normTurn(t)
	err := s.update(ctx, func(st *fileState) error {
		st.turns[t.Sync] = fileTurn{LastSend: t.LastSend, LastCost: t.LastCost, WaitingSince: t.WaitingSince,
			WaitingRows: t.WaitingRows, Due: t.Due, HeldAt: t.HeldAt, Interval: t.Interval}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: save turn of sync %q: %w", t.Sync, err)
	}
	return nil
}
