package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

// problem is an RFC 9457 problem details object. It is also an error, so
// handlers and the request decoder can return one directly.
type problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`

	retryAfter time.Duration // sent as Retry-After on 409/503
	cause      error         // logged for 5xx, never sent
}

// fieldError names one problem with one request field, as in RFC 9457's
// example: a JSON Pointer (in URI fragment form) and a message.
type fieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (p *problem) Error() string {
	if p.Detail != "" {
		return http.StatusText(p.Status) + ": " + p.Detail
	}
	return http.StatusText(p.Status)
}

func (p *problem) Unwrap() error { return p.cause }

// Problem types. Statuses that need no more explanation use about:blank
// (RFC 9457 §4.2.1) with the status text as title.
const (
	typePrefix             = "urn:d365portal:problem:"
	typeInvalidRequest     = typePrefix + "invalid-request"
	typeNotFound           = typePrefix + "not-found"
	typeContactNotFound    = typePrefix + "contact-not-found"
	typeAmbiguousEmail     = typePrefix + "ambiguous-email"
	typeUnknownPortal      = typePrefix + "unknown-portal"
	typeUnknownRole        = typePrefix + "unknown-role"
	typeNoEmail            = typePrefix + "no-email"
	typeInactiveContact    = typePrefix + "inactive-contact"
	typeAlreadyPortalUser  = typePrefix + "already-portal-user"
	typeInvitationClosed   = typePrefix + "invitation-closed"
	typeIdempotencyReused  = typePrefix + "idempotency-key-reused"
	typeIdempotencyRunning = typePrefix + "idempotency-key-in-use"
	typeUnavailable        = typePrefix + "unavailable"
)

// defaultRetryAfter is suggested when Dataverse or Redis is down and gave no
// Retry-After of its own.
const defaultRetryAfter = 5 * time.Second

// domainProblems map invite's sentinels to responses; the detail is the
// sentinel's text, which invite documents as safe to show.
var domainProblems = []struct {
	err    error
	status int
	typ    string
	title  string
}{
	{invite.ErrNotFound, http.StatusNotFound, typeNotFound, "Not found"},
	{invite.ErrUnknownPortal, http.StatusUnprocessableEntity, typeUnknownPortal, "Unknown portal"},
	{invite.ErrUnknownRole, http.StatusUnprocessableEntity, typeUnknownRole, "Unknown web role"},
	{invite.ErrNoEmail, http.StatusUnprocessableEntity, typeNoEmail, "Contact has no email address"},
	{invite.ErrInactiveContact, http.StatusUnprocessableEntity, typeInactiveContact, "Contact is inactive"},
	{invite.ErrAlreadyPortalUser, http.StatusUnprocessableEntity, typeAlreadyPortalUser, "Contact is already a portal user"},
	{invite.ErrCodeRevoked, http.StatusConflict, typeInvitationClosed, "Invitation is closed"},
	{invite.ErrCodeUsedUp, http.StatusConflict, typeInvitationClosed, "Invitation is closed"},
	{ErrAmbiguousEmail, http.StatusUnprocessableEntity, typeAmbiguousEmail, "Ambiguous email address"},
}

// problemFor is the one place errors become responses.
func problemFor(ctx context.Context, err error) *problem {
	if p, ok := errors.AsType[*problem](err); ok {
		return p
	}
	for _, d := range domainProblems {
		if errors.Is(err, d.err) {
			return &problem{Type: d.typ, Title: d.title, Status: d.status, Detail: sentence(d.err.Error()), cause: err}
		}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &problem{Status: http.StatusRequestEntityTooLarge,
			Detail: "The request body is larger than " + strconv.FormatInt(mbe.Limit, 10) + " bytes."}
	}
	if ctx.Err() != nil {
		// The client went away or the server is shutting down: nobody reads
		// this response and it is not a server fault worth an error log.
		return &problem{Type: typeUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
			retryAfter: defaultRetryAfter}
	}
	if dataverse.IsTransient(err) {
		ra := defaultRetryAfter
		if e, ok := errors.AsType[*dataverse.Error](err); ok && e.RetryAfter > 0 {
			ra = e.RetryAfter
		}
		detail := "Dynamics 365 is unavailable; retry later."
		if dataverse.IsThrottled(err) {
			detail = "Dynamics 365 is throttling requests; retry later."
		}
		return &problem{Type: typeUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
			Detail: detail, retryAfter: ra, cause: err}
	}
	return &problem{Status: http.StatusInternalServerError, cause: err}
}

// writeError maps err and writes it; server-side failures are logged with
// the request id the client sees.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	p := problemFor(ctx, err)
	if p.Status >= 500 && ctx.Err() == nil {
		lvl := slog.LevelError
		if p.Status == http.StatusServiceUnavailable {
			lvl = slog.LevelWarn
		}
		cause := err
		if p.cause != nil {
			cause = p.cause
		}
		s.log.Log(ctx, lvl, "api: request failed", "request_id", requestID(ctx), "method", r.Method,
			"route", r.Pattern, "client", client(ctx), "status", p.Status, "err", cause)
	}
	s.writeProblem(w, r, requestID(ctx), p)
}

// writeProblem fills the defaults and writes p. 500s carry only the request
// id: the cause stays in the log.
func (s *server) writeProblem(w http.ResponseWriter, r *http.Request, reqID string, p *problem) {
	out := *p
	if out.Type == "" {
		out.Type = "about:blank"
	}
	if out.Title == "" {
		out.Title = http.StatusText(out.Status)
	}
	if out.Status >= 500 && out.Status != http.StatusServiceUnavailable {
		out.Detail = "An unexpected error occurred. Quote the request id when reporting it."
	}
	out.Instance = r.URL.Path
	out.RequestID = reqID
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Request-Id", reqID)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if out.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(out.retryAfter.Seconds()))))
	}
	w.WriteHeader(out.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(&out)
}

// sentence capitalises a sentinel message and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	if c := s[0]; c >= 'a' && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	if s[len(s)-1] != '.' {
		s += "."
	}
	return s
}
