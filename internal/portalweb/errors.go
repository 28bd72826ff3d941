package portalweb

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
)

// Error is a failure with the page it should produce. Key selects the
// page's texts in the message catalogue (error.<key>.title and .body); Err
// is the cause, logged and never shown.
type Error struct {
	Status     int
	Key        string
	RetryAfter time.Duration // for 429 and 503: sent as Retry-After and shown
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "portalweb: " + e.Key + ": " + e.Err.Error()
	}
	return "portalweb: " + e.Key
}

func (e *Error) Unwrap() error { return e.Err }

var errNotFound = &Error{Status: http.StatusNotFound, Key: "not_found"}

// errUnavailable marks a dependency failure (Redis, Dataverse) found by
// this package itself.
type errUnavailable struct{ err error }

func (e errUnavailable) Error() string { return e.err.Error() }
func (e errUnavailable) Unwrap() error { return e.err }

func unavailable(err error) error { return errUnavailable{err} }

// outageRetry is what the "try again shortly" page suggests.
const outageRetry = 30 * time.Second

// classify is the one place that turns an error into the page to show.
// Domain outcomes map to their own friendly pages; dependency failures to
// 503; anything else to 500 with the request id.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var rl *rateLimited
	if errors.As(err, &rl) {
		return &Error{Status: http.StatusTooManyRequests, Key: "rate_limited", RetryAfter: rl.retryAfter, Err: err}
	}
	switch {
	case errors.Is(err, invite.ErrCodeUnknown):
		return &Error{Status: http.StatusNotFound, Key: "code_unknown", Err: err}
	case errors.Is(err, invite.ErrCodeExpired):
		return &Error{Status: http.StatusGone, Key: "code_expired", Err: err}
	case errors.Is(err, invite.ErrCodeRevoked):
		return &Error{Status: http.StatusGone, Key: "code_revoked", Err: err}
	case errors.Is(err, invite.ErrCodeUsedUp):
		return &Error{Status: http.StatusGone, Key: "code_used", Err: err}
	case errors.Is(err, invite.ErrTokenInvalid):
		return &Error{Status: http.StatusBadRequest, Key: "token_invalid", Err: err}
	case isOutage(err):
		return &Error{Status: http.StatusServiceUnavailable, Key: "unavailable", RetryAfter: outageRetry, Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Key: "internal", Err: err}
}

// isOutage reports failures that should pass on their own: Redis or
// Dataverse unreachable, timing out, throttling or answering 5xx.
func isOutage(err error) bool {
	var u errUnavailable
	if errors.As(err, &u) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// *dataverse.Error says whether repeating the request can help; a
	// transient one (429, 5xx) is an outage from the user's point of view.
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && !p.Permanent() {
		return true
	}
	return false
}

// fail renders the page for err. It is the only place error pages are
// produced; the cause is logged with the request id.
func (s *Server) fail(c *gin.Context, err error) {
	e := classify(err)
	attrs := []slog.Attr{slog.String("request_id", requestID(c)), slog.Int("status", e.Status), slog.String("page", e.Key)}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	switch {
	case e.Status >= 500:
		s.log.LogAttrs(c.Request.Context(), slog.LevelError, "portal error", attrs...)
	default:
		s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "portal refusal", attrs...)
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	switch e.Key {
	case "code_unknown", "code_expired", "code_revoked", "code_used":
		noReferrer(c)
	}
	s.renderError(c, e)
}
