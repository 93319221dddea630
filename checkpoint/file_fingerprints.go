package checkpoint

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Fingerprints implements connector.Fingerprints.
func (s *FileStore) Fingerprints(ctx context.Context, sync string, keys [][]string) ([][]byte, error) {
	if err := checkSync(sync); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	err := s.view(ctx, func(st *fileState) error {
		m := st.fingerprints[sync]
		for i, k := range keys {
			if sum, ok := m[fingerprintKey(k)]; ok {
				out[i] = slices.Clone(sum)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: fingerprints of sync %q: %w", sync, err)
	}
	return out, nil
}

// AddFingerprints implements connector.Fingerprints: the file holds a map,
// so adding is saving.
func (s *FileStore) AddFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	return s.SaveFingerprints(ctx, sync, keys, sums)
}

// HasFingerprints implements connector.Fingerprints.
func (s *FileStore) HasFingerprints(ctx context.Context, sync string) (bool, error) {
	if err := checkSync(sync); err != nil {
		return false, err
	}
	var has bool
	err := s.view(ctx, func(st *fileState) error {
		has = len(st.fingerprints[sync]) > 0
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("checkpoint: fingerprints of sync %q: %w", sync, err)
	}
	return has, nil
}

// SaveFingerprints implements connector.Fingerprints with one rewrite of the
// file. An empty sum deletes the stored one; when keys repeat, the last one
// wins.
func (s *FileStore) SaveFingerprints(ctx context.Context, sync string, keys [][]string, sums [][]byte) error {
	p, err := prepareFingerprints(sync, keys, sums)
	if err != nil {
		return err
	}
	if len(p.keys) == 0 && len(p.gone) == 0 {
		return nil
	}
	err = s.update(ctx, func(st *fileState) error {
		// A new inner map: the snapshot update falls back to on failure
		// shares the old one.
		m := maps.Clone(st.fingerprints[sync])
		if m == nil {
			m = make(map[string][]byte, len(p.keys))
		}
		for _, k := range p.gone {
			delete(m, k)
		}
		for i, k := range p.keys {
			m[k] = slices.Clone(p.sums[i])
		}
		if len(m) == 0 {
			delete(st.fingerprints, sync)
		} else {
			st.fingerprints[sync] = m
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: save %d fingerprint(s) of sync %q: %w", len(p.keys)+len(p.gone), sync, err)
	}
	return nil
}
