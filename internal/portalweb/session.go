package portalweb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/scs/v2"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
)

// Session keys.
const (
	sessContact  = "contact"   // contact id of the signed-in user
	sessPortal   = "portal"    // portal the user signed in to
	sessSignedIn = "signed_in" // unix time of sign-in
	sessCSRF     = "csrf"      // synchronizer token for forms
	sessLang     = "lang"      // language chosen with ?lang=
	sessFlash    = "flash"     // message key shown once on the next page
)

const (
	keySessionLoaded = "portalweb.session_loaded"
	keySessionSaved  = "portalweb.session_saved"
)

func newSessionManager(cfg Config, rdb redis.UniversalClient, prefix string) *scs.SessionManager {
	sm := scs.New()
	sm.Store = hashedStore{rdb: rdb, prefix: prefix + "session:"}
	sm.IdleTimeout = cfg.SessionIdleTimeout
	if sm.IdleTimeout <= 0 {
		sm.IdleTimeout = 30 * time.Minute
	}
	sm.Lifetime = cfg.SessionLifetime
	if sm.Lifetime <= 0 {
		sm.Lifetime = 12 * time.Hour
	}
	if sm.Lifetime < sm.IdleTimeout {
		sm.Lifetime = sm.IdleTimeout
	}
	sm.Cookie.Name = "session"
	if cfg.SecureCookies {
		// __Host- cookies must be Secure, host-only and Path=/, so a
		// sibling subdomain cannot plant or shadow them.
		sm.Cookie.Name = "__Host-session"
	}
	sm.Cookie.HttpOnly = true
	sm.Cookie.Secure = cfg.SecureCookies
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Path = "/"
	sm.Cookie.Persist = false // gone when the browser closes; the server enforces the timeouts
	return sm
}

// hashedStore keeps sessions under the SHA-256 of their token, so whoever
// reads Redis (a dump, a replica, a MONITOR) cannot replay a cookie. It works
// on any go-redis client, a Sentinel failover client included.
type hashedStore struct {
	rdb    redis.UniversalClient
	prefix string
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (h hashedStore) key(token string) string { return h.prefix + hashToken(token) }

func (h hashedStore) Find(token string) ([]byte, bool, error) {
	return h.FindCtx(context.Background(), token)
}
func (h hashedStore) Commit(token string, b []byte, expiry time.Time) error {
	return h.CommitCtx(context.Background(), token, b, expiry)
}
func (h hashedStore) Delete(token string) error { return h.DeleteCtx(context.Background(), token) }
func (h hashedStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	b, err := h.rdb.Get(ctx, h.key(token)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}
func (h hashedStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return h.DeleteCtx(ctx, token)
	}
	return h.rdb.Set(ctx, h.key(token), b, ttl).Err()
}
func (h hashedStore) DeleteCtx(ctx context.Context, token string) error {
	return h.rdb.Del(ctx, h.key(token)).Err()
}

var _ scs.CtxStore = hashedStore{}

// sessions loads the session for page routes. The session is written back
// by saveSession just before the response headers go out (render and
// redirect call it), so a Redis failure can still turn into the outage page
// instead of a half-written response.
func (s *Server) sessions(c *gin.Context) {
	var token string
	if ck, err := c.Request.Cookie(s.sm.Cookie.Name); err == nil {
		token = ck.Value
	}
	ctx, err := s.sm.Load(c.Request.Context(), token)
	if err != nil {
		s.fail(c, unavailable(fmt.Errorf("load session: %w", err)))
		c.Abort()
		return
	}
	c.Request = c.Request.WithContext(ctx)
	c.Set(keySessionLoaded, true)
	c.Header("Vary", "Cookie")
	c.Next()
	if !c.Writer.Written() {
		if err := s.saveSession(c); err != nil {
			s.log.Error("save session", "request_id", requestID(c), "err", err)
		}
	}
}

// saveSession writes the session to Redis and sets or clears the cookie.
// It runs at most once per request.
func (s *Server) saveSession(c *gin.Context) error {
	if !c.GetBool(keySessionLoaded) || c.GetBool(keySessionSaved) {
		return nil
	}
	c.Set(keySessionSaved, true)
	ctx := c.Request.Context()
	switch s.sm.Status(ctx) {
	case scs.Modified:
		token, expiry, err := s.sm.Commit(ctx)
		if err != nil {
			return unavailable(fmt.Errorf("save session: %w", err))
		}
		s.sm.WriteSessionCookie(ctx, c.Writer, token, expiry)
	case scs.Destroyed:
		s.sm.WriteSessionCookie(ctx, c.Writer, "", time.Time{})
	}
	return nil
}

func (s *Server) hasSession(c *gin.Context) bool { return c.GetBool(keySessionLoaded) }

// contactID is the signed-in contact, or "".
func (s *Server) contactID(c *gin.Context) string {
	if !s.hasSession(c) {
		return ""
	}
	return s.sm.GetString(c.Request.Context(), sessContact)
}

// signIn starts an authenticated session: a new session token (no
// fixation), a new CSRF token, and a fresh absolute lifetime.
func (s *Server) signIn(c *gin.Context, contactID, portal string) error {
	ctx := c.Request.Context()
	if err := s.sm.RenewToken(ctx); err != nil {
		return unavailable(fmt.Errorf("renew session: %w", err))
	}
	s.sm.Put(ctx, sessContact, contactID)
	s.sm.Put(ctx, sessPortal, portal)
	s.sm.Put(ctx, sessSignedIn, s.now().Unix())
	s.sm.Put(ctx, sessCSRF, newToken())
	return nil
}

// signOut destroys the session; the language choice survives in a new one.
func (s *Server) signOut(c *gin.Context) error {
	ctx := c.Request.Context()
	lang := s.sm.GetString(ctx, sessLang)
	if err := s.sm.Destroy(ctx); err != nil {
		return unavailable(fmt.Errorf("destroy session: %w", err))
	}
	if lang != "" {
		s.sm.Put(ctx, sessLang, lang)
	}
	return nil
}

// requireAuth lets signed-in users through and sends others to sign in,
// coming back here afterwards.
func (s *Server) requireAuth(c *gin.Context) {
	if s.contactID(c) != "" {
		c.Next()
		return
	}
	next := c.Request.URL.Path
	if c.Request.Method != http.MethodGet {
		next = "/profile"
	}
	s.redirect(c, "/login?next="+url.QueryEscape(next))
	c.Abort()
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// csrfToken returns the session's synchronizer token, creating it on first
// use (which is what makes an anonymous visitor's session exist).
func (s *Server) csrfToken(c *gin.Context) string {
	if !s.hasSession(c) {
		return ""
	}
	ctx := c.Request.Context()
	t := s.sm.GetString(ctx, sessCSRF)
	if t == "" {
		t = newToken()
		s.sm.Put(ctx, sessCSRF, t)
	}
	return t
}

// csrf guards every state-changing request twice: Go's cross-origin check
// (Sec-Fetch-Site / Origin against Host) and the session's synchronizer
// token, compared in constant time.
func (s *Server) csrf(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		c.Next()
		return
	}
	if err := s.cop.Check(c.Request); err != nil {
		s.fail(c, &Error{Status: http.StatusForbidden, Key: "cross_site", Err: err})
		c.Abort()
		return
	}
	if err := s.parseForm(c); err != nil {
		s.fail(c, err)
		c.Abort()
		return
	}
	want := s.sm.GetString(c.Request.Context(), sessCSRF)
	got := c.Request.PostForm.Get("csrf_token")
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		if c.Request.URL.Path == "/logout" && s.contactID(c) == "" {
			// Signing out of a session that already ended (idle timeout)
			// protects nothing; say where they are instead of "expired".
			s.redirect(c, "/login")
			c.Abort()
			return
		}
		s.fail(c, &Error{Status: http.StatusForbidden, Key: "form_expired", Err: errors.New("csrf token mismatch")})
		c.Abort()
		return
	}
	c.Next()
}

// parseForm accepts only url-encoded bodies within the size limit.
func (s *Server) parseForm(c *gin.Context) error {
	if c.Request.PostForm != nil {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return &Error{Status: http.StatusUnsupportedMediaType, Key: "bad_request", Err: fmt.Errorf("content type %q", mt)}
	}
	if err := c.Request.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Key: "too_large", Err: err}
		}
		return &Error{Status: http.StatusBadRequest, Key: "bad_request", Err: err}
	}
	// A browser always sends UTF-8; anything else would end up as
	// replacement characters in Dataverse (a user name nobody can type).
	for name, values := range c.Request.PostForm {
		for _, v := range values {
			if !utf8.ValidString(v) || !utf8.ValidString(name) {
				return &Error{Status: http.StatusBadRequest, Key: "bad_request", Err: fmt.Errorf("form field %q is not valid UTF-8", name)}
			}
		}
	}
	return nil
}

// flash stores a message key to show once on the next page.
func (s *Server) flash(c *gin.Context, key string) {
	s.sm.Put(c.Request.Context(), sessFlash, key)
}

func (s *Server) popFlash(c *gin.Context) string {
	if !s.hasSession(c) {
		return ""
	}
	ctx := c.Request.Context()
	if s.sm.GetString(ctx, sessFlash) == "" { // avoid marking the session modified
		return ""
	}
	return s.sm.PopString(ctx, sessFlash)
}
