// Package prism is the client for the Micro "Prism" import API: it submits
// one batch of already-mapped objects to POST /v2/prism/{teamId}/{object}/import,
// polls asynchronous import jobs, and turns a finished job into one result per
// input row.
//
// The API has a tiny budget (10 requests/second and 1,000 requests/month per
// key), so the client owns everything that decides how many requests are
// spent: a client-side token bucket shared by submits, polls and retries,
// capped and jittered retries that reuse the same Idempotency-Key and the same
// body bytes (so a retried submit is replayed by the server instead of being
// executed twice), and sparse, doubling poll intervals.
//
// Errors the caller must act on are typed: a non-retryable HTTP answer is an
// *APIError whose message says what to fix, and IsPermanent, IsTooLarge,
// IsIdempotencyConflict and ErrJobNotFound let the caller decide between
// rejecting, splitting, minting a new key or re-submitting. IsUnauthorized
// and IsEndpointNotFound mark answers only the configuration can fix; the
// package speaks of "the API key" and "the team id", and leaves naming the
// settings behind them to its caller. The API key is never logged and is
// scrubbed from every error.
package prism
