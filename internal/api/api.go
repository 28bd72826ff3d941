package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
)

// Invites is the part of the invitation service the API calls;
// *invite.Service satisfies it.
type Invites interface {
	Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error)
	Get(ctx context.Context, invitationID string) (*invite.Invitation, error)
	List(ctx context.Context, f invite.ListFilter) ([]invite.Invitation, error)
	Resend(ctx context.Context, invitationID string) (*invite.InviteResult, error)
	Revoke(ctx context.Context, invitationID string) error
}

var _ Invites = (*invite.Service)(nil)

// ContactFinder resolves an email address to a contact.
type ContactFinder interface {
	// FindContactByEmail returns the id of the active contact whose primary
	// email is email (case-insensitive). It returns an error wrapping
	// invite.ErrNotFound when there is none and one wrapping
	// ErrAmbiguousEmail when several contacts share the address.
	FindContactByEmail(ctx context.Context, email string) (id string, err error)
}

// ErrAmbiguousEmail is what a ContactFinder wraps when an address belongs to
// more than one contact; the API then asks for contact_id instead.
var ErrAmbiguousEmail = errors.New("more than one contact has this email address")

// Config is what New needs. Keys, Invites, Contacts and Redis are required.
type Config struct {
	Keys     []string              // accepted bearer keys (api.keys); at least one, none empty
	Invites  Invites               // the invitation service
	Contacts ContactFinder         // resolves "email" in create requests and ?contact=<email>
	Redis    redis.UniversalClient // idempotency records
	// KeyPrefix is prepended to every Redis key ("pinv:"); default "connector:".
	KeyPrefix string
	// IdempotencyTTL is how long a response is kept for replay; default 24h.
	IdempotencyTTL time.Duration
	// MaxBodyBytes bounds request bodies; default 64 KiB.
	MaxBodyBytes int64
	Logger       *slog.Logger     // default discards
	Now          func() time.Time // default time.Now
	// Schedule reads the senders' schedule for GET /schedule; nil = no
	// pacing (an empty list).
	Schedule ScheduleSource
}

const (
	defaultKeyPrefix      = "connector:"
	defaultIdempotencyTTL = 24 * time.Hour
	defaultMaxBodyBytes   = 64 << 10
	basePath              = "/api/v1"
)

// server holds the dependencies; handlers are its methods.
type server struct {
	keys     [][sha256.Size]byte
	invites  Invites
	contacts ContactFinder
	idem     *idempotency
	maxBody  int64
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	schedule ScheduleSource
}

// handlerFunc is an API handler: it writes a success response itself and
// returns an error for everything else, which serve maps to a problem.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the router; the OpenAPI test checks this table and
// the document against each other.
type route struct {
	method, path string
	public       bool // served without a key
	h            handlerFunc
}

func (s *server) routes() []route {
	return []route{
		{method: http.MethodPost, path: basePath + "/invitations", h: s.createInvitation},
		{method: http.MethodGet, path: basePath + "/invitations", h: s.listInvitations},
		{method: http.MethodGet, path: basePath + "/invitations/{id}", h: s.getInvitation},
		{method: http.MethodPost, path: basePath + "/invitations/{id}/resend", h: s.resendInvitation},
		{method: http.MethodPost, path: basePath + "/invitations/{id}/revoke", h: s.revokeInvitation},
		{method: http.MethodGet, path: basePath + "/openapi.json", public: true, h: s.openAPI},
		{method: http.MethodGet, path: basePath + "/schedule", h: s.getSchedule},
	}
}

// New returns the API handler. Mount it at "/api/v1/" on the top-level mux;
// it matches full paths, so no prefix stripping is needed.
//
// Routing happens on the request the handler receives (nothing is cloned
// before the inner ServeMux runs), so an outer metrics middleware reading
// r.Pattern after the call sees the API's route, e.g.
// "GET /api/v1/invitations/{id}".
func New(cfg Config) (http.Handler, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("api: new: no API keys configured")
	}
	if cfg.Invites == nil || cfg.Contacts == nil || cfg.Redis == nil {
		return nil, errors.New("api: new: Invites, Contacts and Redis are required")
	}
	s := &server{
		invites:  cfg.Invites,
		contacts: cfg.Contacts,
		maxBody:  cfg.MaxBodyBytes,
		log:      cfg.Logger,
		now:      cfg.Now,
		mux:      http.NewServeMux(),
		schedule: cfg.Schedule,
	}
	for i, k := range cfg.Keys {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("api: new: API key %d is empty", i+1)
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	if s.maxBody <= 0 {
		s.maxBody = defaultMaxBodyBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	ttl := cfg.IdempotencyTTL
	if ttl <= 0 {
		ttl = defaultIdempotencyTTL
	}
	s.idem = &idempotency{rdb: cfg.Redis, prefix: prefix + "api:idem:", ttl: ttl}
	for _, rt := range s.routes() {
		s.mux.Handle(rt.method+" "+rt.path, s.serve(rt))
	}
	return s, nil
}

// ServeHTTP routes the request. Paths and methods the router does not know
// are answered 404 or 405 as problem details instead of ServeMux's plain text.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// Let the mux decide between 404 and 405 (it knows the Allow set),
		// then answer in our format.
		var rec headerRecorder
		h.ServeHTTP(&rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.writeProblem(w, r, newRequestID(r), &problem{Status: http.StatusMethodNotAllowed,
				Detail: fmt.Sprintf("%s is not allowed on %s.", r.Method, r.URL.Path)})
			return
		}
		s.writeProblem(w, r, newRequestID(r), &problem{Status: http.StatusNotFound,
			Detail: "There is no API endpoint at " + r.URL.Path + "."})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// serve wraps a route: request id, response headers, panic recovery, key
// check, then the handler with its error mapped to a problem.
func (s *server) serve(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID := newRequestID(r)
		w.Header().Set("X-Request-Id", reqID)
		w.Header().Set("Cache-Control", "no-store") // responses carry personal data
		w.Header().Set("X-Content-Type-Options", "nosniff")
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "api: panic", "request_id", reqID, "route", rt.method+" "+rt.path, "panic", fmt.Sprint(v))
				s.writeProblem(w, r, reqID, &problem{Status: http.StatusInternalServerError})
			}
		}()
		ctx := withRequestID(r.Context(), reqID)
		if !rt.public {
			client, ok := s.authenticate(r)
			if !ok {
				s.unauthorized(w, r, reqID)
				return
			}
			ctx = withClient(ctx, client)
		}
		r = r.WithContext(ctx)
		if err := rt.h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate checks the bearer key. Every configured key is compared (no
// early exit) on SHA-256 digests, so timing depends neither on which key
// matched nor on the presented key's length. It returns a short, non-secret
// client fingerprint for logs and for scoping idempotency keys.
func (s *server) authenticate(r *http.Request) (client string, ok bool) {
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for _, k := range s.keys {
		match |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	if match != 1 {
		return "", false
	}
	return hex.EncodeToString(sum[:6]), true
}

func (s *server) unauthorized(w http.ResponseWriter, r *http.Request, reqID string) {
	challenge := `Bearer realm="api"`
	if r.Header.Get("Authorization") != "" {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	s.writeProblem(w, r, reqID, &problem{Status: http.StatusUnauthorized,
		Detail: "Send an API key as \"Authorization: Bearer <key>\"."})
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	clientKey
)

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

func requestID(ctx context.Context) string { v, _ := ctx.Value(requestIDKey).(string); return v }

func withClient(ctx context.Context, c string) context.Context {
	return context.WithValue(ctx, clientKey, c)
}

func client(ctx context.Context) string { v, _ := ctx.Value(clientKey).(string); return v }

// newRequestID reuses a well-formed X-Request-Id from a proxy or an outer
// middleware, so one id follows the request through the logs, and otherwise
// makes a random one.
func newRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); validRequestID(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// headerRecorder captures the status and headers of the mux's own 404/405
// handler; the body is dropped.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header {
	if h.header == nil {
		h.header = http.Header{}
	}
	return h.header
}

func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
