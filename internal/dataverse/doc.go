// Package dataverse is a client for the Microsoft Dataverse Web API (OData
// v4), the API behind Dynamics 365. It is generic: rows are Records, tables
// are entity-set names, and nothing here knows about invitations.
//
// # Shape
//
// One long-lived *Client per environment, built with New and shared by every
// goroutine. It owns one *http.Client (NewHTTPClient: system roots plus an
// optional private CA, no cookie jar, a pool sized for parallel work) used
// through resty, the bearer-token cache, the concurrency limiter and the
// pacing state. Every method takes a context first. Each logical call runs
// this chain per attempt, auth inside retry as in azcore's pipeline:
//
//	pace (rate-limit headroom) → semaphore (x-ms-dop-hint) → token → HTTP → hooks + log
//	└───────────────────────── retry loop (backoff, Retry-After) ─────────────────────┘
//
// # Authentication
//
// NewCredential builds an azidentity credential from AuthConfig (client
// secret, client certificate from a PEM or PFX file, managed identity,
// workload identity, or the default chain), honouring AuthorityHost (sovereign
// clouds, a local STS) and DisableInstanceDiscovery. New asks it for the scope
// "<org url>/.default". Tokens are cached in the Client and refreshed five
// minutes before expiry by a single goroutine while the others keep using the
// valid token; a failed early refresh only matters once the token expires. A
// 401 drops the cached token (the next call fetches a new one) and is
// returned, not retried. TLS verification is always on; SSL_CERT_FILE and
// the caFile of NewHTTPClient extend the trusted roots.
//
// # Requests
//
// Every request carries Accept: application/json, OData-MaxVersion and
// OData-Version 4.0, the configured User-Agent, and on GETs
// If-None-Match: null (so collection-valued expands are never served from a
// cache). Attempts are logged at debug level with method, redacted URL
// (quoted key values masked; only $select, $top, $count and $orderby values
// kept), attempt, status, duration and the server's request id
// (REQ_ID / x-ms-service-request-id). The Authorization header is never
// logged; bodies only with Options.LogBodies. Hooks report every attempt,
// retry and throttle for metrics.
//
// # Retries and pacing
//
// A call is tried at most 1+MaxRetries times (default 5 retries) and never
// past its context: cancellation interrupts a wait at once. What is retried:
//
//   - 429 Too Many Requests: after exactly the Retry-After the service sent
//     (seconds, fractions allowed; an HTTP-date works too). The client's own
//     backoff applies only when the header is missing. Service protection
//     rejects before executing, so this is safe for every method.
//   - 503 Service Unavailable: same, for every method.
//   - 502 and 504, connection resets, timeouts of an attempt (Config.Timeout):
//     only for requests that are safe to repeat (GET, PATCH, PUT, DELETE, and
//     creates made safe as below), with exponential backoff and full jitter
//     (uniform in [0, min(MaxRetryDelay, RetryDelay·2^n)]). A POST action or
//     batch with writes is resent only if the failure happened before any of
//     the request was written.
//   - Never: 400, 401, 403, 404, 409, 412 and other 4xx, and 500 (plugin and
//     validation failures surface as 500 too).
//
// Bodies are byte slices, so every attempt sends the same bytes; response
// bodies are read to the end, so connections go back to the pool.
//
// The limiter caps requests in flight at Config.MaxConcurrency, or, when that
// is 0, at the x-ms-dop-hint the service sends on every response (4 until the
// first hint). The pacer watches x-ms-ratelimit-burst-remaining-xrm-requests
// and x-ms-ratelimit-time-remaining-xrm-requests: when the requests or the
// execution time left in the service's 300-second window drop below a tenth
// of the budget, request starts are spaced so the budget refills as fast as
// it is spent, and once it is spent the next start waits until the window
// lets go of the client's oldest request in it, so the client runs near the
// limit instead of into it. A 429 holds every request of the
// Client, not only the one that got it, until its Retry-After has passed:
// the limits apply per application user, so the other goroutines would only
// collect 429s of their own (which lengthen the service's Retry-After).
//
// # Creating safely
//
// A POST that times out or loses its connection may or may not have created
// the row; sending it again could create a duplicate. Create therefore fixes
// the row's id before the first attempt (WriteOptions.ID, or a random GUID)
// and by default sends a create-only upsert, PATCH <set>(<id>) with
// If-None-Match: *. Repeating that request cannot create a second row: if an
// earlier attempt did land, the retry is answered 412 "already exists", which
// Create recognises — only after an attempt whose outcome was unknown — as
// its own success, reading the row back when WriteOptions.Return is set.
// With WriteOptions.IDColumn the create is a plain POST with that primary key
// column set to the id (for deep inserts and tables without upsert); a retry
// answered with a duplicate-key error is then treated the same way. Delete
// and Disassociate read a 404, and Associate a duplicate, after an uncertain
// attempt as success for the same reason. CallAction is never resent after an
// uncertain attempt.
//
// # Paging and change tracking
//
// Query returns an iter.Seq2 that fetches pages lazily and follows
// @odata.nextLink verbatim (never edited; only accepted on the environment's
// own host, so the token never goes elsewhere); QueryPage gives manual
// control. Query.PageSize sends Prefer: odata.maxpagesize. Delta runs change
// tracking (Prefer: odata.track-changes): the first call returns all rows
// and a delta link; later calls with the stored link return changed rows and
// the ids of deleted ones ($deletedEntity entries) plus the next link. An
// expired or invalid link fails with an error for which IsDeltaTokenExpired
// is true; start again with an empty link.
//
// # Batch
//
// Batch writes a multipart/mixed $batch body: plain parts and change sets
// (atomic; Content-ID references like "$1" let later ops use rows created
// earlier in the set). The response parts are parsed and mapped back to the
// ops by position and Content-ID, one BatchResult per op in request order.
// Without ContinueOnError the service stops at the first failure; ops that
// did not run, or were rolled back with their change set, get status 424.
//
// # Errors
//
// A non-success response becomes *Error, built from the OData error body
// {"error":{"code","message"}} (non-JSON bodies become the message), with the
// status, the Retry-After, the request id and the operation. Errors are
// wrapped with the operation, "create adx_invitations: dataverse: 400 ...",
// so errors.As(err, &*Error) works, and *Error matches the sentinels
// ErrNotFound, ErrPreconditionFailed, ErrThrottled, ErrUnauthorized,
// ErrForbidden and ErrDuplicate with errors.Is. The helpers IsNotFound,
// IsPreconditionFailed, IsThrottled, IsDuplicate, IsDeltaTokenExpired and
// IsTransient classify any error; (*Error).Permanent tells queues to stop
// retrying. Cancellation returns the context's error, wrapped the same way.
package dataverse
