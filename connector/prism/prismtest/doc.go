// Package prismtest is an in-memory fake of the Micro "Prism" import API, an
// http.Handler in the spirit of net/http/httptest.
//
// It serves POST /v2/prism/{teamId}/{objectType}/import and
// GET /v2/prism/{teamId}/imports/{jobId} as described in the project's API brief
// (/work/shared/micro-api.md): x-api-key auth, sync (200) and async (202 +
// Location) routing by batch size, dedupe with optional case-insensitive
// matching and update_existing, per-row errors, job polling with expiry,
// Idempotency-Key replay/mismatch/stale semantics and optional rate limits.
//
// The fake deliberately does not import the client package connector/prism
// nor share its wire types: it decodes and encodes the API from the brief on
// its own, so a misunderstanding in the client shows up as a failing test
// instead of being mirrored here. It is stricter than the real API is known to
// be in one respect: unknown top-level, object or option fields are rejected
// with 400, so a misspelt field in the client (say "case_insensitive" for
// "caseInsensitive") cannot pass silently.
//
// Time is read from Options.Now, so tests drive job completion, job expiry,
// the 24h idempotency window and rate limits with a Clock instead of sleeping.
// Async imports take effect when their job completes: at the first request
// (of any kind) or inspection that observes the clock at or past
// created_at+JobDuration. With the default JobDuration of 0 that is the first
// poll.
//
// Faults (429/5xx with Retry-After, dropped connections before or after the
// import was applied, malformed response bodies, hangs, delays, failed and
// expired jobs) can be scripted with InjectFault or drawn at random with
// Options.FaultRate for crash tests. Everything a test may want to assert on
// (records, counters, a request log) is available through thread-safe
// inspection methods.
package prismtest
