// Package prismtest is an in-memory fake of the Micro "Prism" import API, an
// http.Handler in the spirit of net/http/httptest.
//
// It serves POST /v2/prism/{teamId}/{objectType}/import and
// GET /v2/prism/{teamId}/imports/{jobId} as Micro documents them
// (https://docs.micro.so/api/resources/prism/subresources/imports/index.md;
// https://docs.micro.so/api/resources/prism/index.md for the object body;
// the guides https://docs.micro.so/guides/authentication, /guides/errors and
// /guides/rate-limits):
//
//   - x-api-key auth: 401 without a key, 403 for a wrong key or a team the
//     key may not use;
//   - a body {"objects": [{"default": {...}, "list": {...}}], "options":
//     {...}} with dedupe_by, caseInsensitive, update_existing,
//     create_missing_options and list_id;
//   - imports of fewer than SyncThreshold objects answered at once (200 with
//     the results), larger ones as a job (202 with job_id and Location) that
//     polls show processing, then complete with one result per input row
//     (input_index, id, created, existing, updated or a per-row error) or
//     failed; jobs expire after JobTTL (then 404);
//   - dedupe on dedupe_by, case-insensitive if asked, with update_existing
//     patching the matched record;
//   - Idempotency-Key: the same key and request replay the stored answer
//     (idempotent-replay: true), another body or path under the key is 409
//     idempotency_key_mismatch, a key older than IdempotencyTTL (24h) 409
//     idempotency_key_stale;
//   - reference properties (Options.Refs: which slugs of which object type
//     link to records of which type, one id or, multi, an array of them): a
//     value that is not null and not the UUID of an existing record of that
//     type is the per-row error invalid_reference, checked as the row is
//     applied; Delete soft-deletes a record, which then neither matches on
//     dedupe nor is a valid reference;
//   - errors as {code, message, request_id}, and optional per-second and
//     monthly limits answered with 429 and Retry-After.
//
// The fake deliberately does not import the client package connector/prism
// nor share its wire types: it decodes and encodes the API from the
// documentation on its own, so a misunderstanding in the client shows up as
// a failing test instead of being mirrored here. It is stricter than the
// real API is known to be in one respect: unknown top-level, object or option fields are rejected
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
//
// Serve a Server like any http.Handler; in a test, NewServer does it on a
// loopback port until the test ends. NewServer takes a TB, not testing.TB,
// so that the commands that serve the fake (prismsync demo, bench) do not
// link package testing.
package prismtest
