package portalweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gin-gonic/gin"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/telemetry"
)

// Accounts is what the site needs from the invitation domain;
// *invite.Service satisfies it and tests pass a fake.
type Accounts interface {
	Lookup(ctx context.Context, code string) (*invite.Invitation, error)
	Redeem(ctx context.Context, req invite.RedeemRequest) (*invite.Account, error)
	Register(ctx context.Context, req invite.RegisterRequest) error
	SignIn(ctx context.Context, portal, login, password string) (*invite.Account, error)
	Account(ctx context.Context, contactID string) (*invite.Account, error)
	UpdateProfile(ctx context.Context, contactID string, p invite.Profile) error
	SendEmailConfirmation(ctx context.Context, portal, contactID string) error
	ConfirmEmail(ctx context.Context, token string) (*invite.Account, error)
	RequestPasswordReset(ctx context.Context, portal, email string) error
	ResetPassword(ctx context.Context, token, newPassword string) error
	Portal(name string) (invite.Portal, bool)
	Portals() []invite.Portal

	// External identity providers.
	RedeemExternal(ctx context.Context, req invite.ExternalRedeemRequest) (*invite.Account, error)
	SignInExternal(ctx context.Context, portal string, l invite.ExternalLogin) (*invite.Account, error)
	ExternalLogins(ctx context.Context, contactID string) ([]invite.LinkedLogin, error)
	LinkExternal(ctx context.Context, contactID string, l invite.ExternalLogin) error
	UnlinkExternal(ctx context.Context, contactID, loginID string) error
}

var _ Accounts = (*invite.Service)(nil)

// RateLimits are requests per minute allowed per client address and, the
// same number, per target. Zero means the default noted on each field; a
// negative value turns that limit off (tests and benchmarks).
type RateLimits struct {
	CodeLookups    int // GET /invitation?code=…; default 30
	Redemptions    int // POST /invitation; default 10
	SignIns        int // POST /login; default 10
	Registrations  int // POST /register; default 5
	PasswordResets int // POST /forgot-password and /reset-password; default 5
}

// Config holds the site's dependencies and settings. Zero values mean the
// defaults noted on each field.
type Config struct {
	// Accounts is the invitation and account service (required).
	Accounts Accounts
	// Portals are the portals this site serves, the first being the default
	// for pages that do not name one. Default Accounts.Portals().
	Portals []invite.Portal
	// Redis holds sessions and rate-limit counters (required).
	Redis redis.UniversalClient
	// KeyPrefix is put in front of every Redis key. Default "pinv:".
	KeyPrefix string
	// SecureCookies marks the session cookie Secure (and names it with the
	// __Host- prefix). Turn it off only for development over plain HTTP.
	SecureCookies bool
	// SessionIdleTimeout ends a session after this long without a request.
	// Default 30 minutes.
	SessionIdleTimeout time.Duration
	// SessionLifetime ends a session this long after sign-in whatever the
	// activity. Default 12 hours.
	SessionLifetime time.Duration
	// RateLimits per minute; see RateLimits.
	RateLimits RateLimits
	// TrustedProxies are addresses or CIDR prefixes of reverse proxies whose
	// X-Forwarded-For and X-Forwarded-Proto are believed. Default none.
	TrustedProxies []string
	// DefaultLanguage is used when neither ?lang= nor Accept-Language picks
	// a shipped language. Default "en".
	DefaultLanguage string
	// MaxBodyBytes bounds request bodies. Default 64 KiB.
	MaxBodyBytes int64
	// Logger receives request and error logs. Default discards.
	Logger *slog.Logger
	// Now is the clock for messages such as lockout ends. Default time.Now.
	Now func() time.Time

	// Providers are the external identity providers (nil: none).
	Providers *identity.Registry
	// PortalProviders lists, by portal name, the providers a portal offers;
	// a portal missing from the map offers all of them.
	PortalProviders map[string][]string
	// LocalLoginDisabled hides the password forms and answers 404 on their
	// routes; external providers are then the only way in.
	LocalLoginDisabled bool
	// PublicURL is how browsers reach the site (scheme and host, no
	// trailing slash): a provider's redirect URI is PublicURL +
	// CallbackPath(name). Required with Providers.
	PublicURL string

	// Tracing gives each request a server span named by its route; nil =
	// off.
	Tracing trace.TracerProvider
}

// Server is the portal site. Create it with New; it is safe for concurrent
// use.
type Server struct {
	accounts Accounts
	portals  []invite.Portal
	rdb      redis.UniversalClient
	prefix   string
	sm       *scs.SessionManager
	limiter  *redis_rate.Limiter
	limits   RateLimits
	proxies  []netip.Prefix
	cop      *http.CrossOriginProtection
	cat      *catalogue
	views    *views
	assets   *assets
	csp      string
	maxBody  int64
	secure   bool
	log      *slog.Logger
	now      func() time.Time
	engine   *gin.Engine

	providers          *identity.Registry
	portalProviders    map[string][]string // lower-case portal name -> provider names
	localLoginDisabled bool
	publicURL          string

	// tracing: routes name the request's span; handler is the engine
	// inside its server span (the engine itself with tracing off).
	tracing bool
	handler http.Handler
}

// New checks cfg, parses every template and message file, and builds the
// routes. It fails on any missing piece rather than at the first request.
func New(cfg Config) (*Server, error) {
	if cfg.Accounts == nil {
		return nil, errors.New("portalweb: Config.Accounts is required")
	}
	if cfg.Redis == nil {
		return nil, errors.New("portalweb: Config.Redis is required")
	}
	s := &Server{
		accounts: cfg.Accounts, rdb: cfg.Redis, prefix: cfg.KeyPrefix, limits: cfg.RateLimits.withDefaults(),
		maxBody: cfg.MaxBodyBytes, secure: cfg.SecureCookies, log: cfg.Logger, now: cfg.Now,
	}
	if s.prefix == "" {
		s.prefix = "pinv:"
	}
	if s.maxBody <= 0 {
		s.maxBody = 64 << 10
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.providers, s.localLoginDisabled = cfg.Providers, cfg.LocalLoginDisabled
	s.publicURL = strings.TrimRight(cfg.PublicURL, "/")
	s.portalProviders = map[string][]string{}
	for name, list := range cfg.PortalProviders {
		s.portalProviders[strings.ToLower(name)] = list
	}
	if s.providers != nil {
		if u, err := url.Parse(s.publicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("portalweb: PublicURL %q must be an absolute http(s) URL when identity providers are configured", cfg.PublicURL)
		}
	}
	s.portals = cfg.Portals
	if len(s.portals) == 0 {
		s.portals = cfg.Accounts.Portals()
	}
	if len(s.portals) == 0 {
		return nil, errors.New("portalweb: no portals configured")
	}
	for _, p := range s.portals {
		for _, page := range []string{p.ExistingUserPage, p.AfterRedeemPage} {
			if page != "" && !configuredTarget(page) {
				return nil, fmt.Errorf("portalweb: portal %q: page %q must be a site-relative path or an absolute http(s) URL", p.Name, page)
			}
		}
	}
	for _, tp := range cfg.TrustedProxies {
		p, err := parsePrefix(tp)
		if err != nil {
			return nil, fmt.Errorf("portalweb: trusted proxy %q: %w", tp, err)
		}
		s.proxies = append(s.proxies, p)
	}
	var err error
	if s.cat, err = loadCatalogue(messageFiles, cfg.DefaultLanguage); err != nil {
		return nil, fmt.Errorf("portalweb: %w", err)
	}
	if s.views, err = parseViews(); err != nil {
		return nil, fmt.Errorf("portalweb: %w", err)
	}
	if s.assets, err = loadAssets(); err != nil {
		return nil, fmt.Errorf("portalweb: %w", err)
	}
	s.sm = newSessionManager(cfg, s.rdb, s.prefix)
	s.limiter = redis_rate.NewLimiter(s.rdb)
	s.cop = http.NewCrossOriginProtection()
	s.csp = contentSecurityPolicy(s.portals, providerOrigins(s.providers))
	if !s.secure {
		s.log.Warn("portal session cookies are not marked Secure; use this only for development over plain HTTP")
	}
	s.tracing = !telemetry.Off(cfg.Tracing)
	s.engine = s.routes()
	s.handler = s.traced(cfg.Tracing)
	return s, nil
}

// Handler returns the site's http.Handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (r RateLimits) withDefaults() RateLimits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.CodeLookups, 30)
	def(&r.Redemptions, 10)
	def(&r.SignIns, 10)
	def(&r.Registrations, 5)
	def(&r.PasswordResets, 5)
	return r
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// contentSecurityPolicy allows nothing but our own stylesheet and icon, and
// form submissions (and the redirects that follow them) to this site and to
// the configured portal pages on other origins.
func contentSecurityPolicy(portals []invite.Portal, providers []string) string {
	formAction := []string{"'self'"}
	seen := map[string]bool{}
	for _, o := range providers {
		if !seen[o] {
			seen[o] = true
			formAction = append(formAction, o)
		}
	}
	for _, p := range portals {
		for _, page := range []string{p.ExistingUserPage, p.AfterRedeemPage} {
			u, err := url.Parse(page)
			if err != nil || u.Host == "" {
				continue
			}
			origin := u.Scheme + "://" + u.Host
			if !seen[origin] {
				seen[origin] = true
				formAction = append(formAction, origin)
			}
		}
	}
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action " + strings.Join(formAction, " ") +
		"; frame-ancestors 'none'; base-uri 'none'"
}
