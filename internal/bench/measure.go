package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// startProfile starts a CPU profile into dir and returns the function that
// stops it and writes the allocation profile next to it.
func startProfile(dir string) (func() error, error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: profile dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: profile: %w", err)
		}
		a, err := os.Create(filepath.Join(dir, "allocs.pprof"))
		if err != nil {
			return fmt.Errorf("bench: profile: %w", err)
		}
		if err := pprof.Lookup("allocs").WriteTo(a, 0); err != nil {
			a.Close()
			return fmt.Errorf("bench: profile: %w", err)
		}
		return a.Close()
	}, nil
}

// watchHeap samples the live heap (as of the last GC) until the returned
// function is called, which returns the peak. With a profile directory it
// also keeps the heap profile taken at the highest peak, which shows what
// the engine holds at its worst.
func watchHeap(dir string) func() int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak int64
	read := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		v := int64(sample[0].Value.Uint64())
		if v <= peak {
			return
		}
		peak = v
		if dir == "" {
			return
		}
		if f, err := os.Create(filepath.Join(dir, "heap.pprof")); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0) //nolint:errcheck // a diagnostic; the next peak rewrites it
			f.Close()
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak
	}
}

// maxRSS is this process's peak resident set size in bytes. Linux reports
// ru_maxrss in KiB (macOS in bytes; the bench targets Linux).
func maxRSS() (int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return int64(ru.Maxrss) * 1024, nil
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clusterCPU is the CPU time the PostgreSQL cluster behind pool has used:
// the postmaster's own and its reaped children's (cutime, cstime) plus that
// of its live children (backends, walwriter, checkpointer...). Linux only.
func clusterCPU(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	var backend int
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return 0, fmt.Errorf("bench: backend pid: %w", err)
	}
	st, err := procStat(backend)
	if err != nil {
		return 0, err
	}
	postmaster := st[1] // ppid
	pm, err := procStat(postmaster)
	if err != nil {
		return 0, err
	}
	ticks := pm[11] + pm[12] + pm[13] + pm[14]
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == postmaster {
			continue
		}
		if st, err := procStat(pid); err == nil && st[1] == postmaster {
			ticks += st[11] + st[12]
		}
	}
	// /proc reports in USER_HZ, which Linux fixes at 100 for user space.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// procStat returns the numeric fields of /proc/PID/stat after the command
// name, indexed from the state field (0) on: 1 is ppid, 11..14 utime, stime,
// cutime, cstime.
func procStat(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The command name is in parentheses and may contain anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	out := make([]int, 15)
	for j := 1; j < 15; j++ {
		fmt.Sscanf(f[j], "%d", &out[j]) //nolint:errcheck // a malformed field counts as 0
	}
	return out, nil
}

// loadAverage is the 1/5/15-minute load average, because other work on the
// machine skews every figure the bench prints.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}
