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

	"github.com/d365portal/connector/internal/identity"
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
	// Args fill the {name} placeholders of the page's body text.
	Args []any
	// ShowID shows the request id below 500 too (sign-in failures, which
	// support may need to trace at the provider).
	ShowID bool
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
	case errors.Is(err, invite.ErrCodeSuperseded):
		return &Error{Status: http.StatusGone, Key: "code_superseded", Err: err}
	case errors.Is(err, invite.ErrCodeUsedUp):
		return &Error{Status: http.StatusGone, Key: "code_used", Err: err}
	case errors.Is(err, invite.ErrTokenInvalid):
		return &Error{Status: http.StatusBadRequest, Key: "token_invalid", Err: err}
	}
	if e := classifyExternal(err); e != nil {
		return e
	}
	switch {
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
	case "code_unknown", "code_expired", "code_revoked", "code_used", "code_superseded":
		noReferrer(c)
	}
	s.renderError(c, e)
}

// classifyExternal maps the refusals of a sign-in with an identity provider
// to their pages; nil when err is none of them.
func classifyExternal(err error) *Error {
	page := func(status int, key string, args ...any) *Error {
		return &Error{Status: status, Key: key, Err: err, Args: args, ShowID: true}
	}
	var mismatch *invite.EmailMismatchError
	var locked *invite.LockedOutError
	switch {
	case errors.As(err, &mismatch):
		if mismatch.Invited == "" {
			return page(http.StatusForbidden, "email_unverified")
		}
		return page(http.StatusForbidden, "email_mismatch", "email", mismatch.Invited)
	case errors.As(err, &locked):
		return page(http.StatusForbidden, "account_locked")
	case errors.Is(err, invite.ErrLoginAlreadyAssociated), errors.Is(err, invite.ErrUsernameTaken):
		// The provider key is already another contact's login or user name.
		return page(http.StatusConflict, "login_taken")
	case errors.Is(err, invite.ErrNoEmail):
		return page(http.StatusBadRequest, "no_email")
	case errors.Is(err, invite.ErrNoAccount):
		return page(http.StatusForbidden, "no_account")
	case errors.Is(err, invite.ErrAccountDisabled):
		return page(http.StatusForbidden, "account_disabled")
	case errors.Is(err, invite.ErrEmailInUse):
		return page(http.StatusConflict, "email_in_use")
	case errors.Is(err, identity.ErrAccessDenied), errors.Is(err, identity.ErrLoginRequired):
		return page(http.StatusForbidden, "signin_denied")
	case errors.Is(err, identity.ErrNoPendingSignIn), errors.Is(err, identity.ErrStateMismatch),
		errors.Is(err, identity.ErrStateReused), errors.Is(err, identity.ErrSignInExpired):
		return page(http.StatusBadRequest, "signin_expired")
	case errors.Is(err, identity.ErrDiscoveryFailed), errors.Is(err, identity.ErrDiscoveryIssuerMismatch),
		errors.Is(err, identity.ErrJWKSUnavailable), errors.Is(err, identity.ErrTokenEndpoint),
		errors.Is(err, identity.ErrClientRejected), errors.Is(err, identity.ErrInvalidConfig):
		e := page(http.StatusServiceUnavailable, "provider_unavailable")
		e.RetryAfter = outageRetry
		return e
	case errors.Is(err, identity.ErrCodeRejected), errors.Is(err, identity.ErrNoIDToken), errors.Is(err, identity.ErrTokenMalformed),
		errors.Is(err, identity.ErrUnsupportedAlgorithm), errors.Is(err, identity.ErrSignatureInvalid),
		errors.Is(err, identity.ErrTokenIssuerMismatch), errors.Is(err, identity.ErrAudienceMismatch),
		errors.Is(err, identity.ErrTokenExpired), errors.Is(err, identity.ErrTokenNotYetValid),
		errors.Is(err, identity.ErrNonceMismatch), errors.Is(err, identity.ErrMissingClaim),
		errors.Is(err, identity.ErrProviderError), errors.Is(err, identity.ErrMissingCode):
		return page(http.StatusBadRequest, "signin_failed")
	}
	return nil
}
