//go:build unix

package prismtest_test

import (
	"syscall"
	"time"
)

// cpuTime is this process's user+system CPU time so far, garbage
// collection on other threads included: what `prismsync bench` reports for
// the fake's process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
