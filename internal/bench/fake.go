package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prismsync/prismsync/connector/prism/prismtest"
)

// fakeProcess is the fake API running in its own process.
type fakeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	lines chan string // stdout lines after the address
	done  chan error  // cmd.Wait's result
}

const (
	fakeListenPrefix = "prismsync-bench-fake-api listening on "
	fakeStatsPrefix  = "prismsync-bench-fake-api stats "
)

func startFakeAPI(ctx context.Context, c Config, stderr io.Writer) (*fakeProcess, error) {
	args := []string{"--addr", "127.0.0.1:0", "--job-duration", c.Latency.String(), "--sync-threshold", strconv.Itoa(c.Threshold)}
	newCmd := c.FakeCommand
	if newCmd == nil {
		newCmd = func(ctx context.Context, args []string) (*exec.Cmd, error) {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("bench: find own executable: %w", err)
			}
			return exec.CommandContext(ctx, exe, append([]string{FakeAPICommand}, args...)...), nil
		}
	}
	cmd, err := newCmd(ctx, args)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: fake API: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: fake API: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start fake API: %w", err)
	}
	p := &fakeProcess{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		// Other output (a test binary's "=== RUN") is skipped: only the
		// prefixed lines are the protocol.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, fakeListenPrefix); ok {
				addr <- a
			} else if strings.HasPrefix(line, fakeStatsPrefix) {
				p.lines <- line
			}
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case p.addr = <-addr:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("bench: fake API exited before listening: %v", err)
	case <-timer.C:
		p.kill()
		return nil, errors.New("bench: fake API did not report its address within 30s")
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// stop closes the fake's stdin (its signal to exit), reads the statistics
// it prints on the way out and its resource usage.
func (p *fakeProcess) stop(rep *Report) error {
	p.stdin.Close()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.lines = nil // wait for done
				continue
			}
			if err := readStats(line, rep); err != nil {
				return err
			}
		case err := <-p.done:
			p.done = nil
			// The reader closed lines before it sent done, but select may
			// take done first, with the stats line still queued.
			for p.lines != nil {
				line, ok := <-p.lines
				if !ok {
					p.lines = nil
				} else if err := readStats(line, rep); err != nil {
					return err
				}
			}
			if err != nil {
				return fmt.Errorf("bench: fake API: %w", err)
			}
			if st := p.cmd.ProcessState; st != nil {
				rep.FakeCPU = st.UserTime() + st.SystemTime()
				if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
					rep.FakeRSS = int64(ru.Maxrss) * 1024
				}
			}
			return nil
		case <-timer.C:
			p.kill()
			return errors.New("bench: fake API did not exit within 60s of its stdin closing")
		}
	}
}

// readStats reads the statistics line the fake prints as it exits.
func readStats(line string, rep *Report) error {
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, fakeStatsPrefix)), &rep.Fake); err != nil {
		return fmt.Errorf("bench: fake API stats: %w", err)
	}
	return nil
}

func (p *fakeProcess) kill() {
	if p.cmd.ProcessState == nil && p.cmd.Process != nil {
		p.cmd.Process.Kill() //nolint:errcheck // best effort; it may have exited
	}
}

// ServeFakeAPI is the fake API process (FakeAPICommand): it serves
// prismtest on a loopback address until stdin closes, then prints its
// statistics. The parent holds the only write end of that pipe, so the fake
// also exits when the parent dies, however it dies. Bad arguments wrap
// ErrUsage.
func ServeFakeAPI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(FakeAPICommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	jobDuration := fs.Duration("job-duration", 0, "how long async jobs stay processing")
	threshold := fs.Int("sync-threshold", prismtest.DefaultSyncThreshold, "imports with fewer objects run synchronously")
	if err := fs.Parse(args); err != nil {
		return &kindError{ErrUsage, err}
	}
	if err := checkLoopback(*addr); err != nil {
		return &kindError{ErrUsage, err}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("bench fake API: listen: %w", err)
	}
	fake := prismtest.New(prismtest.Options{SyncThreshold: *threshold, JobDuration: *jobDuration})
	defer fake.Close()
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintln(stdout, fakeListenPrefix+ln.Addr().String())

	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin) //nolint:errcheck // EOF or error: either way the parent is gone
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("bench fake API: serve: %w", err)
	}
	srv.Close()
	st := fake.Stats()
	js, err := json.Marshal(FakeStats{
		Requests: st.Requests, Imports: st.Imports, AsyncImports: st.AsyncImports, Polls: st.Polls,
		Rows: st.Rows, Creates: st.Creates, Records: fake.Count("organization"),
	})
	if err != nil {
		return fmt.Errorf("bench fake API: stats: %w", err)
	}
	fmt.Fprintln(stdout, fakeStatsPrefix+string(js))
	return nil
}

// checkLoopback refuses any address but a loopback one: the fake accepts
// any API key and must never be reachable from the network.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: the fake API listens on loopback only (127.0.0.1 or [::1])", addr)
	}
	return nil
}
