package dataverse

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// Config describes the Dataverse environment and the client's limits. The
// zero value of every field but URL means its default.
type Config struct {
	URL            string        // organization URL, e.g. https://contoso.crm.dynamics.com (no /api/data); required
	APIVersion     string        // Web API version; default "9.2"
	Timeout        time.Duration // per attempt (not per call); default 30s
	MaxRetries     int           // retries after the first attempt; default 5 (0 = default), -1 = none
	MaxConcurrency int           // requests in flight; 0 = follow x-ms-dop-hint (4 until the first hint)
	UserAgent      string        // User-Agent, e.g. "portal-invite-connector/1.2.3"; default "d365portal-connector"
}

// Options carries the collaborators and tuning knobs of a Client. A nil
// *Options means all defaults.
type Options struct {
	HTTPClient    *http.Client  // default NewHTTPClient(""): system roots, no cookie jar, tuned pool
	Logger        *slog.Logger  // default discards
	Hooks         Hooks         // metrics callbacks, all optional
	RetryDelay    time.Duration // backoff base; default 1s
	MaxRetryDelay time.Duration // backoff cap (not applied to Retry-After); default 60s
	LogBodies     bool          // log request and response bodies at debug level; default false (they hold personal data)
	// RateLimitWindow is the service-protection window the pacer spreads the
	// remaining request budget over; default 300s, Dataverse's window.
	// Negative turns proactive pacing off (429s are still honoured).
	RateLimitWindow time.Duration
}

// Hooks are metrics callbacks. They run synchronously on the request path, so
// they must be cheap and safe for concurrent use.
type Hooks struct {
	OnRequest  func(RequestInfo)                // after every attempt
	OnRetry    func(RequestInfo, time.Duration) // before waiting for the next attempt, with the wait
	OnThrottle func(RequestInfo, time.Duration) // on a 429, with its Retry-After (0 when absent)
	// OnWait runs with OnRetry, before the wait, with the caller's context:
	// tracing records the retry and its wait (a throttling wait on 429 and
	// 503) on the caller's span, next to the per-try spans of the transport.
	OnWait func(context.Context, RequestInfo, time.Duration)
}

// RequestInfo describes one HTTP attempt.
type RequestInfo struct {
	Set        string        // entity set ("contacts"); "$batch", or the function/action name for those
	Operation  string        // create, retrieve, update, upsert, delete, query, associate, disassociate, action, function, batch, delta, whoami
	Method     string        // HTTP method
	StatusCode int           // 0 when no response arrived
	Attempt    int           // 1 for the first try
	Duration   time.Duration // time of this attempt (not including waits)
	Err        error         // transport error or *Error for a non-2xx status; nil on success
}

const (
	defaultAPIVersion    = "9.2"
	defaultTimeout       = 30 * time.Second
	defaultMaxRetries    = 5
	defaultRetryDelay    = time.Second
	defaultMaxRetryDelay = 60 * time.Second
	defaultConcurrency   = 4
	maxDOP               = 52 // Dataverse's default concurrent-request limit per user
	defaultUserAgent     = "d365portal-connector"
)
