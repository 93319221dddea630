// Package bench measures prismsync on this machine, as `prismsync bench`
// reports it: it starts a throwaway PostgreSQL, seeds a table (Wide, ten
// columns of mixed types, or Narrow, issue 12's five), measures COPY ... TO
// STDOUT as the machine's ceiling, serves the fake Micro import API
// (prismtest) from a separate process on loopback, syncs the table with the
// real engine and client, and reports rows/s, peak RSS, the CPU of
// prismsync, PostgreSQL (its processes, from /proc) and the fake, the time
// between commits, and the API requests spent.
//
// The files follow a run: bench.go (Config, Run, Report) · table.go (the
// table, its seed and the COPY ceiling) · fake.go (the fake API process,
// both ends) · counters.go (requests and batch times, as the client and the
// engine report them) · measure.go (rusage, /proc, heap, profiles) ·
// report.go (Print).
//
// The fake runs in its own process so that the records it keeps are not
// counted in prismsync's peak RSS and its CPU shows up apart. The binary
// that calls Run must route FakeAPICommand to ServeFakeAPI (prismsync does,
// as a hidden command), unless Config.FakeCommand says otherwise.
package bench
