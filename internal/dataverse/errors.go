package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Sentinels that *Error matches with errors.Is, so callers can branch on a
// category without reading status codes.
var (
	ErrNotFound           = errors.New("dataverse: not found")
	ErrPreconditionFailed = errors.New("dataverse: precondition failed")
	ErrThrottled          = errors.New("dataverse: throttled")
	ErrUnauthorized       = errors.New("dataverse: unauthorized")
	ErrForbidden          = errors.New("dataverse: forbidden")
	ErrDuplicate          = errors.New("dataverse: duplicate record")
)

// Dataverse error codes the helpers recognise. The Web API reports them in
// hex ("0x80040217"); some clients and older services use the signed decimal
// form, so codes are compared numerically (see parseCode).
const (
	codeDuplicateRecord     uint32 = 0x80040237
	codeDuplicateKey        uint32 = 0x80060892
	codeThrottleRequests    uint32 = 0x80072322
	codeThrottleTime        uint32 = 0x80072321
	codeThrottleConcurrency uint32 = 0x80072326
	codeSQLTimeout          uint32 = 0x80044150
	codeExpiredVersionStamp uint32 = 0x80044352 // change-tracking token too old
)

// Error is a failed Dataverse response: the HTTP status plus the OData error
// body ({"error":{"code":"0x...","message":"..."}}). Non-JSON bodies (a proxy's
// HTML page, plain text) land in Message, trimmed.
type Error struct {
	StatusCode int
	Code       string        // Dataverse error code, usually hex ("0x80040217"); may be empty
	Message    string        // server message
	RetryAfter time.Duration // from Retry-After on 429/503, else 0
	RequestID  string        // REQ_ID / x-ms-service-request-id, for support cases
	Op         string        // operation that failed, e.g. "create adx_invitations"
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dataverse: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if e.Code != "" {
		b.WriteString(" (")
		b.WriteString(e.Code)
		b.WriteByte(')')
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" [request ")
		b.WriteString(e.RequestID)
		b.WriteByte(']')
	}
	return b.String()
}

// Is maps the status and code onto the package sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrPreconditionFailed:
		return e.StatusCode == http.StatusPreconditionFailed
	case ErrThrottled:
		return e.throttled()
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrDuplicate:
		return e.duplicate()
	}
	return false
}

// Permanent reports whether repeating the same request cannot succeed: client
// errors other than throttling and timeouts. Queues use it to stop retrying.
func (e *Error) Permanent() bool {
	if e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout {
		return false
	}
	return e.StatusCode >= 400 && e.StatusCode < 500
}

func (e *Error) code() uint32 { return parseCode(e.Code) }

func (e *Error) throttled() bool {
	if e.StatusCode == http.StatusTooManyRequests {
		return true
	}
	switch e.code() {
	case codeThrottleRequests, codeThrottleTime, codeThrottleConcurrency:
		return true
	}
	return false
}

func (e *Error) duplicate() bool {
	switch e.code() {
	case codeDuplicateRecord, codeDuplicateKey:
		return true
	}
	// Create-only upsert (If-None-Match: *) answers 412 "A record with
	// matching key values already exists."; the code is not always set.
	return e.StatusCode == http.StatusPreconditionFailed &&
		strings.Contains(strings.ToLower(e.Message), "already exists")
}

func (e *Error) transient() bool {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return e.throttled() || e.code() == codeSQLTimeout
}

// parseCode turns "0x80040217", "80040217" or "-2147220969" into the uint32
// code; 0 when it is neither.
func parseCode(s string) uint32 {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		v, err := strconv.ParseUint(s[2:], 16, 32)
		if err != nil {
			return 0
		}
		return uint32(v)
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v < 0 && v >= -1<<31 {
			return uint32(int32(v))
		}
		if v >= 0 && v <= 1<<32-1 {
			return uint32(v)
		}
	}
	if len(s) == 8 {
		if v, err := strconv.ParseUint(s, 16, 32); err == nil {
			return uint32(v)
		}
	}
	return 0
}

// odataError is the Web API error envelope. azcore's response_error.go also
// accepts a bare {"code","message"} object, so this does too.
type odataError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// newError builds an *Error from a response. It never fails: an unreadable
// body becomes the message.
func newError(op string, status int, h http.Header, body []byte) *Error {
	e := &Error{StatusCode: status, Op: op, RequestID: requestID(h)}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		e.RetryAfter, _ = parseRetryAfter(h.Get("Retry-After"), time.Now())
	}
	var env odataError
	if len(body) > 0 && json.Unmarshal(body, &env) == nil {
		switch {
		case env.Error != nil:
			e.Code, e.Message = env.Error.Code, env.Error.Message
			return e
		case env.Code != "" || env.Message != "":
			e.Code, e.Message = env.Code, env.Message
			return e
		}
	}
	msg := strings.ToValidUTF8(strings.TrimSpace(string(body)), "\uFFFD")
	const maxMsg = 512
	if len(msg) > maxMsg {
		cut := maxMsg
		for cut > 0 && !utf8.RuneStart(msg[cut]) { // never split a character
			cut--
		}
		msg = msg[:cut] + "…"
	}
	e.Message = msg
	return e
}

func requestID(h http.Header) string {
	if v := h.Get("REQ_ID"); v != "" {
		return v
	}
	if v := h["REQ_ID"]; len(v) > 0 { // servers that skip canonicalisation
		return v[0]
	}
	return h.Get("x-ms-service-request-id")
}

func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsNotFound reports whether err is a 404 (row, key or route missing).
func IsNotFound(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusNotFound
}

// IsPreconditionFailed reports whether err is a 412: the If-Match ETag no
// longer matches, or a create-only upsert hit an existing row.
func IsPreconditionFailed(err error) bool {
	e, ok := asError(err)
	return ok && e.StatusCode == http.StatusPreconditionFailed
}

// IsThrottled reports whether err is a service-protection rejection (429 or a
// throttling error code) that survived the client's retries.
func IsThrottled(err error) bool { e, ok := asError(err); return ok && e.throttled() }

// IsDuplicate reports whether err says the row or alternate key already exists
// (0x80040237, 0x80060892, or a 412 "already exists" from a create-only upsert).
func IsDuplicate(err error) bool { e, ok := asError(err); return ok && e.duplicate() }

// IsDeltaTokenExpired reports whether a Delta call failed because its delta
// link is expired or invalid; the caller must start over with an empty link.
func IsDeltaTokenExpired(err error) bool {
	e, ok := asError(err)
	if !ok {
		return false
	}
	if e.StatusCode == http.StatusGone || e.code() == codeExpiredVersionStamp {
		return true
	}
	if e.StatusCode != http.StatusBadRequest && e.StatusCode != http.StatusNotFound {
		return false
	}
	m := strings.ToLower(e.Message)
	return (strings.Contains(m, "token") || strings.Contains(m, "version")) &&
		(strings.Contains(m, "expired") || strings.Contains(m, "invalid") || strings.Contains(m, "not valid"))
}

// IsTransient reports whether err may succeed if tried again later: 429, 5xx
// gateways and timeouts, and network failures (reset, timeout, unexpected
// EOF). Context cancellation is not transient.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if e, ok := asError(err); ok {
		return e.transient()
	}
	return isNetworkError(err)
}

func isNetworkError(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// wrap prefixes err with the operation ("create adx_invitations: ...") and
// stamps *Error.Op.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if e, ok := asError(err); ok && e.Op == "" {
		e.Op = op
	}
	return fmt.Errorf("%s: %w", op, err)
}
