//go:build !unix

package prismtest_test

import "time"

// cpuTime is unknown here; benchmarks then leave out cpu-ns/row.
func cpuTime() time.Duration { return 0 }
