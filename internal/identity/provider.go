package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Provider is one configured identity provider. Discovery happens on first
// use, not at construction, so a provider that is down never blocks the
// others or local sign-in. Safe for concurrent use.
type Provider struct {
	cfg    ProviderConfig
	opts   Options
	log    *slog.Logger
	client *http.Client
	signer *signer // private_key_jwt only

	sem  chan struct{} // serialises discovery fetches
	mu   sync.Mutex
	meta *metadata

	usedMu sync.Mutex
	used   map[[32]byte]time.Time // hashes of states finished here -> when they lapse
}

// metadata is what discovery yielded.
type metadata struct {
	issuer      string
	endpoint    oauth2.Endpoint
	jwksURI     string
	endSession  string
	authMethods []string // token_endpoint_auth_methods_supported, may be empty
	algs        []string // ID token algorithms accepted
	verifier    *oidc.IDTokenVerifier
	fetched     time.Time
}

// discoveryDoc holds the discovery fields go-oidc does not expose.
type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// supportedAlgs are the ID token algorithms go-oidc verifies. "none" is
// never among them.
var supportedAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// NewProvider validates cfg and returns a provider that has not contacted
// anything yet. Errors wrap ErrInvalidConfig.
func NewProvider(cfg ProviderConfig, o Options) (*Provider, error) {
	cfg, ck, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("identity.NewProvider: %w", err)
	}
	o = o.withDefaults()
	p := &Provider{
		cfg:    cfg,
		opts:   o,
		log:    o.Logger.With(slog.String("provider", cfg.Name)),
		client: cfg.HTTPClient,
		sem:    make(chan struct{}, 1),
		used:   map[[32]byte]time.Time{},
	}
	if p.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.RootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		p.client = &http.Client{Timeout: defaultHTTPTimeout, Transport: tr}
	}
	if ck != nil {
		if p.signer, err = newSigner(ck); err != nil {
			return nil, fmt.Errorf("identity.NewProvider(%s): %v: %w", cfg.Name, err, ErrInvalidConfig)
		}
	}
	return p, nil
}

// Name is the provider's name, as used in URLs.
func (p *Provider) Name() string { return p.cfg.Name }

// DisplayName is the label for the provider's sign-in button.
func (p *Provider) DisplayName() string { return p.cfg.DisplayName }

// Type is the provider type.
func (p *Provider) Type() ProviderType { return p.cfg.Type }

// Config returns the normalised configuration (defaults filled in). The
// caller reads Claims and AllowContactMappingWithEmail from it.
func (p *Provider) Config() ProviderConfig { return p.cfg }

// BeginOptions are optional authorization request parameters.
type BeginOptions struct {
	// Prompt is sent as prompt (none, login, consent, select_account, ...).
	Prompt string
	// LoginHint is sent as login_hint.
	LoginHint string
}

// SignIn is a started sign-in: send the browser to URL, and keep Pending in
// the browser's server-side session until the callback.
type SignIn struct {
	URL     string
	Pending Pending
}

// Pending is what must be bound to the browser session between Begin and
// Finish. It holds secrets (the PKCE verifier, state and nonce): keep it
// server-side only.
type Pending struct {
	Provider    string    `json:"provider"`
	State       string    `json:"state"`
	Nonce       string    `json:"nonce"`
	Verifier    string    `json:"verifier"`
	RedirectURI string    `json:"redirect_uri"`
	Expires     time.Time `json:"expires"`
}

// LogValue keeps the secrets out of logs.
func (pd Pending) LogValue() slog.Value {
	return slog.GroupValue(slog.String("provider", pd.Provider), slog.Time("expires", pd.Expires))
}

// Begin starts an authorization code flow with PKCE (S256) towards
// redirectURI, which must be registered at the provider. State, nonce and
// the PKCE verifier each carry 256 bits from crypto/rand. Errors wrap
// ErrDiscoveryFailed or ErrDiscoveryIssuerMismatch when the provider cannot
// be reached or is misconfigured.
func (p *Provider) Begin(ctx context.Context, redirectURI string, o *BeginOptions) (SignIn, error) {
	if err := checkRedirectURI(redirectURI); err != nil {
		return SignIn{}, fmt.Errorf("identity: %s: begin: %w", p.cfg.Name, err)
	}
	m, err := p.discover(ctx)
	if err != nil {
		return SignIn{}, err
	}
	pd := Pending{
		Provider:    p.cfg.Name,
		State:       randomString(),
		Nonce:       randomString(),
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURI: redirectURI,
		Expires:     p.opts.Now().Add(p.opts.SignInTTL),
	}
	params := []oauth2.AuthCodeOption{oidc.Nonce(pd.Nonce), oauth2.S256ChallengeOption(pd.Verifier)}
	if o != nil && o.Prompt != "" {
		params = append(params, oauth2.SetAuthURLParam("prompt", o.Prompt))
	}
	if o != nil && o.LoginHint != "" {
		params = append(params, oauth2.SetAuthURLParam("login_hint", o.LoginHint))
	}
	return SignIn{URL: p.oauthConfig(m, redirectURI).AuthCodeURL(pd.State, params...), Pending: pd}, nil
}

// Finish completes a sign-in from the callback's query (or form_post body):
// it checks the state against stored, turns provider error responses into
// *ProviderError, redeems the code with the PKCE verifier, verifies the ID
// token (signature from the provider's JWKS, refreshed once on an unknown
// key; iss; aud; azp; exp, nbf and iat within the clock skew; nonce; alg
// among those the provider advertises, never "none") and returns the
// identity.
//
// stored must already be removed from the browser session when Finish is
// called, whatever Finish then returns: state and nonce are single-use, and
// the session is the only place that can guarantee it across replicas. As a
// second line, Finish refuses a state it has already accepted in this
// process (ErrStateReused), and a Pending older than Options.SignInTTL.
//
// Errors wrap one of the package's sentinels; none carries a token or code.
func (p *Provider) Finish(ctx context.Context, stored Pending, callback url.Values) (id *Identity, err error) {
	defer func() {
		if err != nil {
			p.log.LogAttrs(ctx, slog.LevelWarn, "identity: sign-in refused", slog.String("error", err.Error()))
		}
	}()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("identity: %s: "+format, append([]any{p.cfg.Name}, args...)...)
	}
	switch {
	case stored.State == "" || stored.Nonce == "" || stored.Verifier == "" || stored.RedirectURI == "":
		return nil, fail("%w", ErrNoPendingSignIn)
	case stored.Provider != p.cfg.Name:
		return nil, fail("sign-in was started for provider %q: %w", stored.Provider, ErrNoPendingSignIn)
	case !p.opts.Now().Before(stored.Expires):
		return nil, fail("%w", ErrSignInExpired)
	}
	got := callback.Get("state")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(stored.State)) != 1 {
		return nil, fail("%w", ErrStateMismatch)
	}
	if !p.markUsed(stored.State, stored.Expires) {
		return nil, fail("%w", ErrStateReused)
	}
	if e := callback.Get("error"); e != "" {
		return nil, fail("callback: %w", callbackError(e, callback.Get("error_description")))
	}
	code := callback.Get("code")
	if code == "" {
		return nil, fail("%w", ErrMissingCode)
	}
	m, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := p.exchange(ctx, m, stored, code)
	if err != nil {
		return nil, fail("%w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fail("%w", ErrNoIDToken)
	}
	idt, claims, err := p.verify(ctx, m, raw, stored.Nonce)
	if err != nil {
		return nil, fail("%w", err)
	}
	if idt.AccessTokenHash != "" && tok.AccessToken != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, fail("at_hash does not match the access token: %w", ErrTokenMalformed)
		}
	}
	id, err = p.identity(idt, claims, raw)
	if err != nil {
		return nil, fail("%w", err)
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "identity: sign-in verified", slog.String("issuer", id.Issuer))
	return id, nil
}

// EndSessionURL returns the provider's RP-initiated sign-out URL (OpenID
// Connect RP-Initiated Logout 1.0), or ErrNoEndSession when discovery offers
// no end_session_endpoint. idTokenHint, postLogoutRedirect and state are
// added when not empty; postLogoutRedirect must be registered at the
// provider.
func (p *Provider) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect, state string) (string, error) {
	m, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	if m.endSession == "" {
		return "", fmt.Errorf("identity: %s: %w", p.cfg.Name, ErrNoEndSession)
	}
	u, err := url.Parse(m.endSession)
	if err != nil {
		return "", fmt.Errorf("identity: %s: end_session_endpoint: %v: %w", p.cfg.Name, err, ErrDiscoveryFailed)
	}
	q := u.Query()
	q.Set("client_id", p.cfg.ClientID)
	for k, v := range map[string]string{"id_token_hint": idTokenHint, "post_logout_redirect_uri": postLogoutRedirect, "state": state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// oauthConfig is the oauth2 view of the provider for one redirect URI.
func (p *Provider) oauthConfig(m *metadata, redirectURI string) *oauth2.Config {
	c := &oauth2.Config{
		ClientID:    p.cfg.ClientID,
		Endpoint:    m.endpoint,
		RedirectURL: redirectURI,
		Scopes:      p.cfg.Scopes,
	}
	if p.cfg.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
		c.ClientSecret = p.cfg.ClientSecret
	}
	return c
}

// exchange redeems the code at the token endpoint with the configured client
// authentication and the PKCE verifier.
func (p *Provider) exchange(ctx context.Context, m *metadata, stored Pending, code string) (*oauth2.Token, error) {
	params := []oauth2.AuthCodeOption{oauth2.VerifierOption(stored.Verifier)}
	if p.cfg.TokenEndpointAuthMethod == AuthPrivateKeyJWT {
		aud := []string{m.endpoint.TokenURL}
		if !p.cfg.Type.microsoft() {
			// RFC 7523 lets the issuer identify the server; some servers
			// accept only that, Microsoft's only the token endpoint.
			aud = append(aud, m.issuer)
		}
		a, err := p.signer.assertion(p.cfg.ClientID, aud, p.opts.Now())
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrTokenEndpoint)
		}
		params = append(params,
			oauth2.SetAuthURLParam("client_assertion_type", assertionType),
			oauth2.SetAuthURLParam("client_assertion", a))
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.client)
	tok, err := p.oauthConfig(m, stored.RedirectURI).Exchange(ctx, code, params...)
	if err == nil {
		return tok, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode == "" {
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			return nil, fmt.Errorf("token endpoint answered HTTP %d: %w", status, ErrTokenEndpoint)
		}
		kind := ErrTokenEndpoint
		switch re.ErrorCode {
		case "invalid_grant":
			kind = ErrCodeRejected
		case "invalid_client", "unauthorized_client":
			kind = ErrClientRejected
		}
		return nil, &ProviderError{Code: clean(re.ErrorCode, 64), Description: clean(re.ErrorDescription, 200), kind: kind}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("token request: %w: %w", ErrTokenEndpoint, ctx.Err())
	}
	// Transport and decoding errors name the endpoint, never the request body.
	return nil, fmt.Errorf("%s: %w", clean(err.Error(), 300), ErrTokenEndpoint)
}

// identity builds the result from a verified token.
func (p *Provider) identity(idt *oidc.IDToken, c *tokenClaims, raw string) (*Identity, error) {
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return nil, fmt.Errorf("claims: %v: %w", err, ErrTokenMalformed)
	}
	key := c.Subject
	if p.cfg.ProviderKeyClaim == "oid" {
		key = c.ObjectID
	}
	if key == "" {
		return nil, fmt.Errorf("claim %q: %w", p.cfg.ProviderKeyClaim, ErrMissingClaim)
	}
	email, verified := c.email(p.cfg.Type)
	return &Identity{
		Provider:          p.cfg.Name,
		Issuer:            idt.Issuer,
		Subject:           c.Subject,
		ProviderKey:       key,
		ObjectID:          c.ObjectID,
		TenantID:          c.TenantID,
		Email:             email,
		EmailVerified:     verified,
		Name:              c.Name,
		GivenName:         c.GivenName,
		FamilyName:        c.FamilyName,
		PreferredUsername: c.PreferredUsername,
		Mapped:            mapClaims(p.cfg.Claims, all),
		Claims:            all,
		Expiry:            idt.Expiry,
		IDToken:           raw,
	}, nil
}

// markUsed records a finished state and reports false if it was already
// recorded. Entries lapse when their sign-in would have expired anyway.
func (p *Provider) markUsed(state string, expires time.Time) bool {
	h := sha256.Sum256([]byte(state))
	now := p.opts.Now()
	p.usedMu.Lock()
	defer p.usedMu.Unlock()
	if _, seen := p.used[h]; seen {
		return false
	}
	for k, exp := range p.used {
		if !now.Before(exp) {
			delete(p.used, k)
		}
	}
	p.used[h] = expires
	return true
}

// discover returns the provider's metadata, fetching it on first use and
// again once it is older than MetadataTTL. Concurrent callers share one
// fetch; a failed refresh keeps serving the previous metadata.
func (p *Provider) discover(ctx context.Context) (*metadata, error) {
	fresh := func(m *metadata) bool {
		return m != nil && p.opts.Now().Sub(m.fetched) < p.opts.MetadataTTL
	}
	p.mu.Lock()
	m := p.meta
	p.mu.Unlock()
	if fresh(m) {
		return m, nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		if m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("identity: %s: discovery: %w: %w", p.cfg.Name, ErrDiscoveryFailed, ctx.Err())
	}
	defer func() { <-p.sem }()
	p.mu.Lock()
	m = p.meta
	p.mu.Unlock()
	if fresh(m) {
		return m, nil
	}
	next, _, err := p.fetch(ctx)
	if err != nil {
		if m != nil {
			p.log.LogAttrs(ctx, slog.LevelWarn, "identity: discovery refresh failed, keeping previous metadata", slog.String("error", err.Error()))
			return m, nil
		}
		p.log.LogAttrs(ctx, slog.LevelWarn, "identity: discovery failed", slog.String("error", err.Error()))
		return nil, err
	}
	p.mu.Lock()
	p.meta = next
	p.mu.Unlock()
	p.log.LogAttrs(ctx, slog.LevelInfo, "identity: discovered provider",
		slog.String("issuer", next.issuer), slog.String("jwks_uri", next.jwksURI), slog.Bool("end_session", next.endSession != ""))
	return next, nil
}

// discoveryURL is where the discovery document lives.
func (p *Provider) discoveryURL() string {
	base := p.cfg.Authority
	if base == "" {
		base = p.cfg.Issuer
	}
	return trimSlash(base) + "/.well-known/openid-configuration"
}

// fetch reads the discovery document and builds the verifier. The document
// is returned for Check's report whenever it was read, even on error.
func (p *Provider) fetch(ctx context.Context) (*metadata, *discoveryDoc, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("identity: %s: discovery %s: "+format, append([]any{p.cfg.Name, p.discoveryURL()}, args...)...)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.DiscoveryTimeout)
	defer cancel()
	ctx = oidc.ClientContext(ctx, p.client)
	base := p.cfg.Issuer
	if p.cfg.Authority != "" {
		// The document lives elsewhere than the issuer; go-oidc then leaves
		// the issuer comparison to us, done below.
		base = p.cfg.Authority
		ctx = oidc.InsecureIssuerURLContext(ctx, p.cfg.Issuer)
	}
	op, err := oidc.NewProvider(ctx, base)
	if err != nil {
		var mm *oidc.IssuerMismatchError
		if errors.As(err, &mm) {
			return nil, &discoveryDoc{Issuer: mm.Discovered}, fail("configured issuer %q, document names %q: %w", mm.Provided, mm.Discovered, ErrDiscoveryIssuerMismatch)
		}
		return nil, nil, fail("%s: %w", clean(err.Error(), 300), ErrDiscoveryFailed)
	}
	var doc discoveryDoc
	if err := op.Claims(&doc); err != nil {
		return nil, nil, fail("%v: %w", err, ErrDiscoveryFailed)
	}
	if doc.Issuer != p.cfg.Issuer {
		return nil, &doc, fail("configured issuer %q, document names %q: %w", p.cfg.Issuer, doc.Issuer, ErrDiscoveryIssuerMismatch)
	}
	for field, v := range map[string]string{"authorization_endpoint": doc.AuthorizationEndpoint, "token_endpoint": doc.TokenEndpoint, "jwks_uri": doc.JWKSURI} {
		if v == "" {
			return nil, &doc, fail("document has no %s: %w", field, ErrDiscoveryFailed)
		}
	}
	algs := []string{oidc.RS256} // the default when the document lists none
	if len(doc.SigningAlgs) > 0 {
		algs = nil
		for _, a := range doc.SigningAlgs {
			if slices.Contains(supportedAlgs, a) {
				algs = append(algs, a)
			}
		}
		if len(algs) == 0 {
			return nil, &doc, fail("no supported ID token signing algorithm among %q: %w", doc.SigningAlgs, ErrDiscoveryFailed)
		}
	}
	skew := p.cfg.ClockSkew
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.client), doc.JWKSURI)
	style := oauth2.AuthStyleInHeader
	if p.cfg.TokenEndpointAuthMethod != AuthClientSecretBasic {
		style = oauth2.AuthStyleInParams
	}
	return &metadata{
		issuer: doc.Issuer,
		endpoint: oauth2.Endpoint{
			AuthURL:   doc.AuthorizationEndpoint,
			TokenURL:  doc.TokenEndpoint,
			AuthStyle: style, // explicit: auto-detection would retry and so replay the code
		},
		jwksURI:     doc.JWKSURI,
		endSession:  doc.EndSessionEndpoint,
		authMethods: doc.AuthMethods,
		algs:        algs,
		verifier: oidc.NewVerifier(doc.Issuer, &recordingKeySet{inner: keys}, &oidc.Config{
			ClientID:             p.cfg.ClientID,
			SupportedSigningAlgs: algs,
			// go-oidc compares exp with no leeway; shifting its clock back
			// grants the skew (and narrows its fixed 5-minute nbf leeway by
			// the same amount).
			Now: func() time.Time { return p.opts.Now().Add(-skew) },
		}),
		fetched: p.opts.Now(),
	}, &doc, nil
}

func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("redirect URI %q must be an absolute http(s) URL without fragment: %w", s, ErrInvalidConfig)
	}
	return nil
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// unmarshalClaims decodes a verified payload into the claims the package reads.
func unmarshalClaims(payload []byte) (*tokenClaims, error) {
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("claims: %v: %w", err, ErrTokenMalformed)
	}
	return &c, nil
}
