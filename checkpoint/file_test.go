package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// editJSON rewrites the checkpoint file at path through fn, as an operator
// (or a bad tool) might.
func editJSON(t *testing.T, path string, fn func(doc map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var doc map[string]any
	must(t, json.Unmarshal(data, &doc))
	fn(doc)
	data, err = json.Marshal(doc)
	must(t, err)
	must(t, os.WriteFile(path, data, 0o600))
}

func fileHarness() harness {
	return harness{
		newLoc: func(t *testing.T) string { return filepath.Join(t.TempDir(), "checkpoint.json") },
		open: func(t *testing.T, path string) (Store, error) {
			return Open(context.Background(), "file:"+path, "")
		},
		dropPosition: func(t *testing.T, path, sync string) {
			editJSON(t, path, func(doc map[string]any) {
				delete(doc["positions"].(map[string]any), sync)
			})
		},
		setVersion: func(t *testing.T, path string, v int) {
			editJSON(t, path, func(doc map[string]any) { doc["version"] = v })
		},
		openReadOnly: func(t *testing.T, path string) (Store, error) {
			return OpenReadOnly(context.Background(), "file:"+path, "")
		},
	}
}

func TestFileStore(t *testing.T) { testStore(t, fileHarness()) }

func TestFileFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	s, err := OpenFile(path)
	must(t, err)
	defer s.Close()
	// The file exists from the start, private, with its version.
	info, err := os.Stat(path)
	must(t, err)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600 (bodies hold row data)", info.Mode().Perm())
	}
	must(t, s.Journal(ctx, batch("orgs", "k", Position{}, pos("1"), `{"objects":[]}`)))
	must(t, s.Commit(ctx, "orgs", "k0", pos("1", "a"), "fp", []Reject{{RowKey: []string{"1"}, Code: "c"}}, nil))

	data, err := os.ReadFile(path)
	must(t, err)
	var doc struct {
		Version   int                        `json:"version"`
		Positions map[string]json.RawMessage `json:"positions"`
		History   map[string]json.RawMessage `json:"history"`
		Journal   map[string][]struct {
			Key      string `json:"key"`
			BodyGzip []byte `json:"body_gzip"`
		} `json:"journal"`
		Rejects map[string][]json.RawMessage `json:"rejects"`
	}
	must(t, json.Unmarshal(data, &doc))
	if doc.Version != 1 || len(doc.Positions) != 1 || len(doc.History) != 1 || len(doc.Rejects["orgs"]) != 1 ||
		len(doc.Journal["orgs"]) != 1 {
		t.Errorf("unexpected document:\n%s", data)
	}
	if z := doc.Journal["orgs"][0].BodyGzip; len(z) < 2 || z[0] != 0x1f || z[1] != 0x8b {
		t.Errorf("journaled body is not gzip: % x", z)
	}
	// Nothing but the file and its lock are left in the directory.
	entries, err := os.ReadDir(filepath.Dir(path))
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "cp.json cp.json.lock" {
		t.Errorf("directory holds %v", names)
	}
}

func TestFileLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	a, err := OpenFile(path)
	must(t, err)
	b, err := OpenFile(path)
	if err == nil {
		b.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path+".lock") {
		t.Errorf("second open = %v, want ErrLocked naming the lock file", err)
	}
	must(t, a.Close())
	must(t, a.Close()) // harmless twice
	if _, err := a.Load(context.Background(), "orgs"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v, want ErrClosed", err)
	}
	c, err := OpenFile(path)
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	c.Close()
}

// The lock also keeps out another process, which is what it is for.
func TestFileLockOtherProcess(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed")
	}
	path := filepath.Join(t.TempDir(), "cp.json")
	s, err := OpenFile(path)
	must(t, err)
	// flock -n exits 1 at once when the lock is held.
	out, err := exec.Command(flock, "-n", path+".lock", "true").CombinedOutput()
	if err == nil {
		t.Errorf("another process took the lock while the store was open (%s)", out)
	}
	must(t, s.Close())
	if out, err := exec.Command(flock, "-n", path+".lock", "true").CombinedOutput(); err != nil {
		t.Errorf("lock still held after Close: %v %s", err, out)
	}
}

func TestFileCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":    "not json at all",
		"truncated":  `{"version": 1, "positions": {"orgs": {"posi`,
		"empty":      "",
		"no version": `{"positions": {}}`,
		"wrong type": `{"version": 1, "positions": []}`,
		"dup key":    `{"version": 1, "journal": {"orgs": [{"key": "a"}, {"key": "a"}]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			must(t, os.WriteFile(path, []byte(content), 0o600))
			s, err := OpenFile(path)
			if err == nil {
				s.Close()
				t.Fatal("open of a corrupt file succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("open = %v, want ErrCorrupt naming %s", err, path)
			}
			// The file is left alone for the operator, and the lock released.
			data, _ := os.ReadFile(path)
			if string(data) != content {
				t.Errorf("corrupt file was rewritten to %q", data)
			}
			if _, err := OpenFile(path); errors.Is(err, ErrLocked) {
				t.Error("failed open kept the lock")
			}
		})
	}
}

func TestFileOlderOrUnknownVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	must(t, os.WriteFile(path, []byte(`{"version": 0}`), 0o600))
	_, err := OpenFile(path)
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("open of version 0 = %v, want ErrUnsupportedVersion", err)
	}
}

// A failed write changes neither the file nor what the store reports.
func TestFileCommitIsAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	s, err := OpenFile(path)
	must(t, err)
	defer s.Close()
	must(t, s.Journal(ctx, batch("orgs", "k1", Position{}, pos("1"), "x")))
	must(t, s.Commit(ctx, "orgs", "k0", pos("0"), "fp0", []Reject{{RowKey: []string{"r"}, Code: "old"}}, nil))
	before, err := os.ReadFile(path)
	must(t, err)

	// A directory where the temp file goes makes the write fail, even as root.
	must(t, os.Mkdir(path+".tmp", 0o700))
	err = s.Commit(ctx, "orgs", "k1", pos("1"), "fp1", []Reject{{RowKey: []string{"n"}, Code: "new"}}, [][]string{{"r"}})
	if err == nil {
		t.Fatal("commit succeeded although the file could not be written")
	}
	after, err := os.ReadFile(path)
	must(t, err)
	if !bytes.Equal(before, after) {
		t.Error("failed commit changed the file")
	}
	st, err := s.Load(ctx, "orgs")
	must(t, err)
	p, err := s.Pending(ctx, "orgs")
	must(t, err)
	rs, err := s.Rejects(ctx, "orgs", 0)
	must(t, err)
	if !st.Position.Equal(pos("0")) || st.Batches != 1 || len(p) != 1 || len(rs) != 1 || rs[0].Code != "old" {
		t.Errorf("failed commit changed memory: state %+v, pending %v, rejects %+v", st, keys(p), rs)
	}

	must(t, os.Remove(path+".tmp"))
	must(t, s.Commit(ctx, "orgs", "k1", pos("1"), "fp1", nil, nil))
	st, err = s.Load(ctx, "orgs")
	must(t, err)
	if !st.Position.Equal(pos("1")) || st.Batches != 2 {
		t.Errorf("commit after recovery: %+v", st)
	}
}

func TestFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "cp.json")
	if _, err := OpenFile(path); err == nil || !strings.Contains(err.Error(), "cp.json") {
		t.Errorf("open in a missing directory = %v, want an error naming the path", err)
	}
}

func FuzzDecodeFile(f *testing.F) {
	f.Add([]byte(`{"version": 1}`))
	f.Add([]byte(`{"version": 1, "journal": {"orgs": [{"key": "a", "seq": 3, "body_gzip": "H4sIAAAAAAAA/wMAAAAAAAAAAAA="}]}}`))
	f.Add([]byte(`{"version": 1, "rejects": {"orgs": [{"row_key": ["1"]}, {"row_key": ["2"]}]}, "positions": {"orgs": {}}}`))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeFile(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("decode error %v wraps neither ErrCorrupt nor ErrUnsupportedVersion", err)
			}
			return
		}
		// Whatever decodes must encode and decode to the same document.
		enc, err := encodeFile(st)
		if err != nil {
			t.Fatal(err)
		}
		st2, err := decodeFile(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, err := encodeFile(st2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
