package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// Two daemons run against one database and one API: every row still
// arrives exactly once, and when one daemon is killed the other carries on.
func TestTwoReplicasAndAKilledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	w := newCrashWorld(t, true, false, 1)
	w.gate.on.Store(false) // no injected faults: this test is about replicas
	bin := (&binary{dir: t.TempDir()}).get(t)
	ctx := context.Background()

	start := func(name string) *exec.Cmd {
		logf, err := os.Create(filepath.Join(w.logDir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		cmd := exec.Command(bin, "run")
		cmd.Env = append(w.env, "LOG_LEVEL=debug")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	// waitRows polls the fake until it holds want records (or fails).
	waitRows := func(want int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(w.fake.Records("organization")) < want {
			if time.Now().After(deadline) {
				t.Fatalf("fake holds %d records, want %d\nreplica a:\n%s\nreplica b:\n%s", len(w.fake.Records("organization")), want,
					tail(filepath.Join(w.logDir, "a.log")), tail(filepath.Join(w.logDir, "b.log")))
			}
			time.Sleep(50 * time.Millisecond) // polling an external process: no channel to wait on
		}
	}

	a := start("a")
	b := start("b")
	waitRows(500)
	for i := range 5 {
		if _, err := w.pool.Exec(ctx, `INSERT INTO people (id, name, seats) SELECT g, 'org ' || g, 1 FROM generate_series($1::int, $1::int + 49) g`, 1000+i*50); err != nil {
			t.Fatal(err)
		}
	}
	waitRows(750)

	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	if _, err := w.pool.Exec(ctx, `INSERT INTO people (id, name, seats) SELECT g, 'org ' || g, 2 FROM generate_series(5000, 5099) g`); err != nil {
		t.Fatal(err)
	}
	waitRows(850)
	if err := b.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("replica b did not exit 0 on SIGTERM: %v\n%s", err, tail(filepath.Join(w.logDir, "b.log")))
	}
	if dups, ex := w.duplicates(); dups > 0 {
		t.Fatalf("%d external_ids have several records (e.g. %s)", dups, ex)
	}
	if st := w.fake.Stats(); st.Creates != 850 {
		t.Fatalf("fake created %d records, want 850", st.Creates)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// SIGTERM lets the in-flight batch finish within SHUTDOWN_TIMEOUT; a second
// signal exits at once, non-zero. The journal keeps the batch either way.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	w := newCrashWorld(t, true, false, 1)
	w.gate.on.Store(false)
	arrived := make(chan struct{})
	var once sync.Once
	w.fake.InjectFault(prismtest.Fault{Kind: prismtest.FaultHang, Match: func(ri prismtest.RequestInfo) bool {
		if ri.Kind != prismtest.KindImport {
			return false
		}
		once.Do(func() { close(arrived) })
		return true
	}})
	bin := (&binary{dir: t.TempDir()}).get(t)
	cmd := exec.Command(bin, "run")
	cmd.Env = append(w.env, "SHUTDOWN_TIMEOUT=1h")
	logPath := filepath.Join(w.logDir, "signal.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatalf("no import arrived\n%s", tail(logPath))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("exited on the first signal although a batch was in flight and SHUTDOWN_TIMEOUT=1h: %v\n%s", err, tail(logPath))
	case <-time.After(500 * time.Millisecond): // still draining, as it should
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("second signal: exit %v, want a non-zero exit", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the second signal did not end the process\n%s", tail(logPath))
	}
	var pending int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM prismsync.journal`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending == 0 {
		t.Fatal("the interrupted batch is not in the journal")
	}
}
