package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prismsync/prismsync/internal/pgtemp"
)

// fakeChildEnv carries the fake API's arguments to the test binary when it
// is re-executed as the bench's fake API process (the test binary has no
// bench-fake-api subcommand, and its flag parser would refuse ours).
const fakeChildEnv = "PRISMSYNC_BENCH_FAKE_API_ARGS"

// TestFakeAPIProcess is not a test: it is the fake API process when the
// test binary runs itself with fakeChildEnv set.
func TestFakeAPIProcess(t *testing.T) {
	args, ok := os.LookupEnv(fakeChildEnv)
	if !ok {
		t.Skip("helper process for the bench tests")
	}
	if err := ServeFakeAPI(context.Background(), strings.Fields(args), os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// testFakeCommand re-executes the test binary as the fake API process.
func testFakeCommand(ctx context.Context, args []string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFakeAPIProcess$")
	cmd.Env = append(os.Environ(), fakeChildEnv+"="+strings.Join(args, " "))
	return cmd, nil
}

func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a second process")
	}
	if _, err := pgtemp.FindBin(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err) // as pgtest.Main fails the run under CI=true
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	c := Config{
		Rows: 2000, Batch: 500, Inflight: 2,
		FirstPoll: 10 * time.Millisecond, RateLimit: -1,
		FakeCommand: testFakeCommand,
	}
	c.Progress = &log
	rep, err := Run(ctx, c, &log)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, log.String())
	}
	s := rep.Summary
	if s.Rows != 2000 || s.Sent != 2000 || s.Created != 2000 || s.Invalid != 0 || s.Rejected != 0 || s.Batches != 4 {
		t.Errorf("summary %+v, want 2000 rows read, sent and created in 4 batches", s)
	}
	if rep.CopyRows != 2000 || rep.CopyBytes == 0 {
		t.Errorf("COPY read %d rows, %d bytes; want 2000 rows", rep.CopyRows, rep.CopyBytes)
	}
	// 500 objects is above the fake's sync threshold of 100: every batch is
	// an async job, polled at least once.
	if rep.Imports != 4 || rep.AsyncJobs != 4 || rep.Polls < 4 {
		t.Errorf("imports %d, async %d, polls %d; want 4, 4, >= 4", rep.Imports, rep.AsyncJobs, rep.Polls)
	}
	if rep.Requests != rep.Imports+rep.Polls || rep.Retries != 0 || rep.FailedCalls != 0 {
		t.Errorf("requests %d (retries %d, non-2xx %d) != imports %d + polls %d", rep.Requests, rep.Retries, rep.FailedCalls, rep.Imports, rep.Polls)
	}
	// The fake process's own count must agree with the client's.
	if f := rep.Fake; f.Records != 2000 || f.Rows != 2000 || f.Requests != int(rep.Requests) || f.Polls != int(rep.Polls) {
		t.Errorf("fake saw %+v; client counted %d requests, %d polls; want 2000 records", f, rep.Requests, rep.Polls)
	}
	if rep.MaxRSS <= 0 || rep.MaxRSS < rep.MaxRSSBefore {
		t.Errorf("peak RSS %d (before sync %d)", rep.MaxRSS, rep.MaxRSSBefore)
	}

	// Above the batch size, --sync-threshold makes every batch synchronous:
	// one request per batch, no polls.
	c.Rows, c.Threshold = 1000, 501
	sync, err := Run(ctx, c, &log)
	if err != nil {
		t.Fatalf("bench --sync-threshold 501: %v\n%s", err, log.String())
	}
	if sync.Imports != 2 || sync.AsyncJobs != 0 || sync.Polls != 0 || sync.Fake.Records != 1000 {
		t.Errorf("--sync-threshold 501: imports %d, async %d, polls %d, records %d; want 2, 0, 0, 1000",
			sync.Imports, sync.AsyncJobs, sync.Polls, sync.Fake.Records)
	}
	var syncOut bytes.Buffer
	sync.Print(&syncOut)
	if !strings.Contains(syncOut.String(), "latency bound  none") || !strings.Contains(syncOut.String(), "sync threshold 501 objects") {
		t.Errorf("report of an all-synchronous run:\n%s", syncOut.String())
	}

	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{"COPY ceiling   2000 rows", "end to end     2000 rows", "4 async jobs", "peak RSS", "latency bound", "2000 records stored"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// Issue 12's job: the narrow table without an index on (updated_at, id),
// batches answered at once, change fingerprints on.
func TestRunNarrow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a second process")
	}
	if _, err := pgtemp.FindBin(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	c := Config{
		Rows: 3000, Batch: 1000, Inflight: 4, Threshold: 1001, RateLimit: -1,
		Table: Narrow, Fingerprints: true, FakeCommand: testFakeCommand, Progress: &log,
	}
	rep, err := Run(ctx, c, &log)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, log.String())
	}
	if s := rep.Summary; s.Rows != 3000 || s.Created != 3000 || s.Batches != 3 {
		t.Errorf("summary %+v, want 3000 rows created in 3 batches", s)
	}
	if rep.Imports != 3 || rep.AsyncJobs != 0 || rep.Polls != 0 || rep.Fake.Records != 3000 {
		t.Errorf("imports %d, async %d, polls %d, records %d; want 3, 0, 0, 3000", rep.Imports, rep.AsyncJobs, rep.Polls, rep.Fake.Records)
	}
	if rep.CopyRows != 3000 || len(rep.BatchGaps) != 2 || rep.FirstBatch <= 0 {
		t.Errorf("COPY read %d rows; %d gaps after the first commit (at %s); want 3000 and 2", rep.CopyRows, len(rep.BatchGaps), rep.FirstBatch)
	}
	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{"table          narrow, no index on (updated_at, id); change fingerprints on", "commits        first after", "latency bound  none"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// The fake process must go away when its parent stops (stdin closes),
// without being killed.
func TestFakeAPIExitsWhenStdinCloses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := startFakeAPI(ctx, Config{FakeCommand: testFakeCommand}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	if !strings.HasPrefix(p.addr, "127.0.0.1:") {
		t.Errorf("fake listens on %q, want loopback", p.addr)
	}
	p.stdin.Close()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("fake exited with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("fake API still running after its stdin closed")
	}
}

func TestFakeAPIRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:80", "example.com:80"} {
		err := ServeFakeAPI(context.Background(), []string{"--addr", addr}, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "loopback only") {
			t.Errorf("--addr %s: err %v, want a usage error", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("checkLoopback(%s): %v", addr, err)
		}
	}
}

func TestProcStatReadsParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	st, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st[1] != os.Getppid() {
		t.Fatalf("ppid %d, want %d", st[1], os.Getppid())
	}
}

// The statement table gives each statement's time per synced row, on one
// line with its calls and rows, the query's whitespace folded.
func TestPrintStatements(t *testing.T) {
	var b strings.Builder
	printStatements(&b, []Statement{{Query: "INSERT INTO prismsync.records\n\t\tSELECT 1", Calls: 1000, Rows: 1_000_000, Time: 19 * time.Second}}, 1_000_000)
	want := "19.00 µs/row      19s    1000 calls   1000000 rows  INSERT INTO prismsync.records SELECT 1\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("printStatements wrote\n%q\nwant it to end with\n%q", b.String(), want)
	}
	b.Reset()
	printStatements(&b, nil, 10)
	if b.Len() != 0 {
		t.Errorf("no statements printed %q", b.String())
	}
}
