// Package pgtemp starts a throwaway PostgreSQL cluster in a temporary
// directory: initdb, then postgres listening on a free loopback port. It is
// what the test suite, `prismsync demo` and `prismsync bench` use so that they
// need nothing but the PostgreSQL server package installed.
//
// When the process runs as root, PostgreSQL refuses to start, so the server
// binaries are run as the `postgres` user (the one the Debian package creates)
// and the directory is handed to that user.
package pgtemp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled is returned when no initdb binary can be found.
var ErrNotInstalled = errors.New("pgtemp: PostgreSQL server binaries (initdb, pg_ctl) not found; install the PostgreSQL server package (e.g. apt-get install postgresql)")

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir    string // temp root: data/ and socket/ live below it
	data   string
	port   int
	binDir string
	cred   *syscall.Credential
}

// Options tune Start. The zero value is fine.
type Options struct {
	// Logf receives progress lines (nil discards them).
	Logf func(format string, args ...any)
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// FindBin returns the directory holding initdb and pg_ctl: PATH first, then
// the Debian layout /usr/lib/postgresql/<version>/bin, newest version first
// (Debian does not put the server binaries on PATH).
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Start creates and starts a new cluster. Call Stop to remove it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := FindBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "prismsync-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtemp: %w", err)
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data"), binDir: binDir}
	if os.Geteuid() == 0 {
		cred, err := postgresUser()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtemp: chown %s: %w", dir, err)
		}
	}
	logf("pgtemp: initdb in %s", c.data)
	if out, err := c.command(ctx, "initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtemp: initdb: %w: %s", err, lastLines(out))
	}
	// A free port can be taken by someone else between our probe and the
	// server's bind, so try a few times.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.port = port
		err = c.start(ctx, opts.Settings)
		if err == nil {
			break
		}
		if attempt == 4 {
			os.RemoveAll(dir)
			return nil, err
		}
		logf("pgtemp: start on port %d failed, retrying: %v", port, err)
	}
	logf("pgtemp: PostgreSQL listening on 127.0.0.1:%d", c.port)
	return c, nil
}

func (c *Cluster) start(ctx context.Context, settings map[string]string) error {
	// Durability is pointless for a throwaway cluster; these make tests fast.
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(c.port),
		"-k " + c.dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c max_connections=200",
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		opts = append(opts, "-c "+k+"="+settings[k])
	}
	out, err := c.command(ctx, "pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60",
		"-o", strings.Join(opts, " "), "start").CombinedOutput()
	if err != nil {
		logText, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		return fmt.Errorf("pgtemp: pg_ctl start: %w: %s %s", err, lastLines(out), lastLines(logText))
	}
	return nil
}

// DSN returns a connection string for database db (postgres when empty).
func (c *Cluster) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Port is the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// CreateDB creates a new empty database and returns its DSN.
func (c *Cluster) CreateDB(ctx context.Context, name string) (string, error) {
	return CreateDB(ctx, c.DSN(""), name)
}

// Stop shuts the server down at once and removes every file.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.command(ctx, "pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop").CombinedOutput()
	rmErr := os.RemoveAll(c.dir)
	if err != nil {
		return fmt.Errorf("pgtemp: pg_ctl stop: %w: %s", err, lastLines(out))
	}
	return rmErr
}

// Restart stops the server abruptly (as a crash would) and starts it again
// on the same port: tests use it to check that clients survive a restart.
func (c *Cluster) Restart(ctx context.Context) error {
	if out, err := c.command(ctx, "pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("pgtemp: pg_ctl stop: %w: %s", err, lastLines(out))
	}
	return c.start(ctx, nil)
}

// CreateDB connects to the server behind adminDSN and creates database
// name; it returns the DSN of the new database.
func CreateDB(ctx context.Context, adminDSN, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", fmt.Errorf("pgtemp: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtemp: create database %s: %w", name, err)
	}
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return "", fmt.Errorf("pgtemp: parse DSN: %w", err)
	}
	return replaceDatabase(adminDSN, cfg.Database, name), nil
}

// replaceDatabase swaps the database name in a URL or keyword/value DSN.
func replaceDatabase(dsn, oldDB, newDB string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		q := ""
		if i := strings.IndexByte(dsn, '?'); i >= 0 {
			dsn, q = dsn[:i], dsn[i:]
		}
		if i := strings.LastIndexByte(dsn, '/'); i > len("postgres://") {
			dsn = dsn[:i]
		}
		return dsn + "/" + newDB + q
	}
	if oldDB != "" && strings.Contains(dsn, "dbname=") {
		fields := strings.Fields(dsn)
		for i, f := range fields {
			if strings.HasPrefix(f, "dbname=") {
				fields[i] = "dbname=" + newDB
			}
		}
		return strings.Join(fields, " ")
	}
	return dsn + " dbname=" + newDB
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtemp: running as root needs a 'postgres' user to run the server as (the PostgreSQL package creates it): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtemp: bad uid/gid for postgres user: %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtemp: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
