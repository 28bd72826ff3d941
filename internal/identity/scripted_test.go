package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/d365portal/connector/internal/identity"
)

// scripted is a small provider that answers with whatever a test scripts:
// it exists to hand the relying party tokens a real provider would never
// issue (wrong aud, alg none, unknown key, ...). It serves over TLS with
// httptest's throwaway certificate, which the relying party is told to trust
// explicitly.
type scripted struct {
	t       *testing.T
	srv     *httptest.Server
	pool    *x509.CertPool
	key     *rsa.PrivateKey
	kid     string
	keyHits atomic.Int64

	mu        sync.Mutex
	docIssuer string        // issuer the discovery document names; default the server URL
	noEnd     bool          // leave end_session_endpoint out
	docStatus int           // non-zero: discovery answers with this status
	jwksHang  chan struct{} // non-nil: the key set hangs until closed
	jwksFail  bool          // the key set answers 500
	token     func(req tokenReq) (int, map[string]any)
	issued    []string          // every token and code the provider handed out
	challenge map[string]string // code challenge -> nonce, per authorization request
}

type tokenReq struct {
	form      url.Values
	challenge string
	nonce     string
}

const scriptedCode = "c0de-SCRIPTED-7f3a9b"

func startScripted(t *testing.T) *scripted {
	t.Helper()
	s := &scripted{t: t, challenge: map[string]string{}}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.key, s.kid = k, "scripted-1"
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("/meta/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("/keys", s.keys)
	mux.HandleFunc("/token", s.tokenEndpoint)
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.srv.Certificate())
	return s
}

func (s *scripted) discovery(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docStatus != 0 {
		http.Error(w, "unavailable", s.docStatus)
		return
	}
	iss := s.docIssuer
	if iss == "" {
		iss = s.srv.URL
	}
	doc := map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                s.srv.URL + "/authorize",
		"token_endpoint":                        s.srv.URL + "/token",
		"jwks_uri":                              s.srv.URL + "/keys",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
	}
	if !s.noEnd {
		doc["end_session_endpoint"] = s.srv.URL + "/logout"
	}
	_ = json.NewEncoder(w).Encode(doc)
}

func (s *scripted) keys(w http.ResponseWriter, r *http.Request) {
	s.keyHits.Add(1)
	s.mu.Lock()
	hang, fail := s.jwksHang, s.jwksFail
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return
	}
	if fail {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.key.PublicKey, KeyID: s.kid, Use: "sig", Algorithm: "RS256"}}})
}

func (s *scripted) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// PKCE, checked for real: the verifier must hash to a challenge the
	// relying party sent on an authorization request.
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	s.mu.Lock()
	nonce, known := s.challenge[challenge]
	script := s.token
	s.mu.Unlock()
	if r.PostForm.Get("code") != scriptedCode || !known {
		writeJSONResp(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "bad code or verifier"})
		return
	}
	status, body := script(tokenReq{form: r.PostForm, challenge: challenge, nonce: nonce})
	if at, ok := body["access_token"].(string); ok {
		s.remember(at)
	}
	if it, ok := body["id_token"].(string); ok {
		s.remember(it)
	}
	writeJSONResp(w, status, body)
}

func writeJSONResp(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *scripted) remember(secret string) {
	s.mu.Lock()
	s.issued = append(s.issued, secret)
	s.mu.Unlock()
}

func (s *scripted) secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{scriptedCode}, s.issued...)
}

// sign makes a JWS over claims with key under kid, using go-jose.
func sign(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsigned makes an alg "none" token, which no library should help make.
func unsigned(claims map[string]any) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, _ := json.Marshal(claims)
	return hdr + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

func (s *scripted) config(mut func(*identity.ProviderConfig)) identity.ProviderConfig {
	c := identity.ProviderConfig{
		Name: "scripted", Issuer: s.srv.URL, ClientID: "client-1", ClientSecret: "s3cret-VALUE-9",
		RootCAs: s.pool, ClockSkew: time.Minute,
	}
	if mut != nil {
		mut(&c)
	}
	return c
}

func (s *scripted) provider(mut func(*identity.ProviderConfig), opts identity.Options) (*identity.Provider, *logBuf) {
	s.t.Helper()
	log, buf := newLogger()
	opts.Logger = log
	p, err := identity.NewProvider(s.config(mut), opts)
	if err != nil {
		s.t.Fatal(err)
	}
	return p, buf
}

// run begins a sign-in, lets the browser come back with the scripted code
// and finishes it. The provider remembers the request's PKCE challenge and
// nonce, as a real one binds them to the code.
func (s *scripted) run(ctx context.Context, p *identity.Provider) (*identity.Identity, error) {
	s.t.Helper()
	si, err := p.Begin(ctx, redirect, nil)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(si.URL)
	s.mu.Lock()
	s.challenge[u.Query().Get("code_challenge")] = u.Query().Get("nonce")
	s.mu.Unlock()
	return p.Finish(ctx, si.Pending, url.Values{"code": {scriptedCode}, "state": {si.Pending.State}})
}

// set changes the script under the lock the handlers read it with.
func (s *scripted) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// scriptToken makes the token endpoint return an ID token built from the
// default claims (issuer, audience, nonce of the request, fresh times),
// changed by mut and signed by sign.
func (s *scripted) scriptToken(mut func(c map[string]any), signWith func(c map[string]any) string) {
	s.set(func() { s.token = s.tokenScript(mut, signWith) })
}

func (s *scripted) tokenScript(mut func(c map[string]any), signWith func(c map[string]any) string) func(tokenReq) (int, map[string]any) {
	return func(req tokenReq) (int, map[string]any) {
		now := time.Now()
		c := map[string]any{
			"iss": s.srv.URL, "aud": "client-1", "sub": "user-42", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"nonce": req.nonce, "email": "u42@example.org", "email_verified": true,
		}
		if mut != nil {
			mut(c)
		}
		return 200, map[string]any{"access_token": "at-SCRIPTED-" + req.challenge[:8], "token_type": "Bearer", "expires_in": 3600, "id_token": signWith(c)}
	}
}

func TestCraftedIDTokens(t *testing.T) {
	s := startScripted(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := func(c map[string]any) string { return sign(t, s.key, s.kid, c) }
	now := time.Now()
	tests := []struct {
		name string
		mut  func(map[string]any)
		sig  func(map[string]any) string
		want error // nil: accepted
	}{
		{"valid", nil, good, nil},
		{"expired within the clock skew", func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }, good, nil},
		{"azp names this client", func(c map[string]any) { c["aud"] = []string{"client-1", "api"}; c["azp"] = "client-1" }, good, nil},
		{"signed by an unknown key", nil, func(c map[string]any) string { return sign(t, other, "unknown-kid", c) }, identity.ErrSignatureInvalid},
		{"forged under a known kid", nil, func(c map[string]any) string { return sign(t, other, s.kid, c) }, identity.ErrSignatureInvalid},
		{"alg none", nil, func(c map[string]any) string { return unsigned(c) }, identity.ErrUnsupportedAlgorithm},
		{"alg HS256", nil, func(c map[string]any) string { return hs256(t, c) }, identity.ErrUnsupportedAlgorithm},
		{"not a JWT", nil, func(map[string]any) string { return "not.a.jwt" }, identity.ErrTokenMalformed},
		{"wrong aud", func(c map[string]any) { c["aud"] = "someone-else" }, good, identity.ErrAudienceMismatch},
		{"azp of another client", func(c map[string]any) { c["azp"] = "someone-else" }, good, identity.ErrAudienceMismatch},
		{"two audiences without azp", func(c map[string]any) { c["aud"] = []string{"client-1", "api"} }, good, identity.ErrAudienceMismatch},
		{"wrong iss", func(c map[string]any) { c["iss"] = "https://evil.example" }, good, identity.ErrTokenIssuerMismatch},
		{"expired", func(c map[string]any) { c["exp"] = now.Add(-5 * time.Minute).Unix() }, good, identity.ErrTokenExpired},
		{"iat in the future", func(c map[string]any) {
			c["iat"] = now.Add(10 * time.Minute).Unix()
			c["exp"] = now.Add(70 * time.Minute).Unix()
		}, good, identity.ErrTokenNotYetValid},
		{"nbf in the future", func(c map[string]any) { c["nbf"] = now.Add(20 * time.Minute).Unix() }, good, identity.ErrTokenNotYetValid},
		{"no iat", func(c map[string]any) { delete(c, "iat") }, good, identity.ErrTokenMalformed},
		{"no nonce", func(c map[string]any) { delete(c, "nonce") }, good, identity.ErrNonceMismatch},
		{"no sub", func(c map[string]any) { delete(c, "sub") }, good, identity.ErrMissingClaim},
	}
	p, logs := s.provider(nil, identity.Options{})
	var errs []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.scriptToken(tt.mut, tt.sig)
			id, err := s.run(context.Background(), p)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.ProviderKey != "user-42" || id.Issuer != s.srv.URL || !id.EmailVerified {
					t.Errorf("identity %+v", id)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Finish = %v, want %v", err, tt.want)
			}
			errs = append(errs, err.Error())
		})
	}
	// A token under an unknown kid makes the key set be fetched again once
	// (rotation), not on every later token.
	if hits := s.keyHits.Load(); hits < 2 {
		t.Errorf("key set fetched %d times; an unknown kid should trigger a refetch", hits)
	}
	for _, e := range errs {
		assertNoSecrets(t, "error", e, s.secrets()...)
	}
	assertNoSecrets(t, "log", logs.String(), append(s.secrets(), "s3cret-VALUE-9")...)
}

func hs256(t *testing.T, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("a shared secret of thirty-two bytes!")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestTokenEndpointFailures(t *testing.T) {
	s := startScripted(t)
	p, logs := s.provider(nil, identity.Options{})
	for name, tt := range map[string]struct {
		status int
		body   map[string]any
		want   error
	}{
		"no id_token":       {200, map[string]any{"access_token": "at-SCRIPTED-x", "token_type": "Bearer"}, identity.ErrNoIDToken},
		"invalid_client":    {401, map[string]any{"error": "invalid_client", "error_description": "bad secret"}, identity.ErrClientRejected},
		"server error":      {500, map[string]any{"oops": true}, identity.ErrTokenEndpoint},
		"invalid_grant":     {400, map[string]any{"error": "invalid_grant"}, identity.ErrCodeRejected},
		"temporarily down":  {503, map[string]any{"error": "temporarily_unavailable"}, identity.ErrTokenEndpoint},
		"garbage on 200 OK": {200, map[string]any{"token_type": "Bearer"}, identity.ErrTokenEndpoint},
	} {
		t.Run(name, func(t *testing.T) {
			s.set(func() { s.token = func(tokenReq) (int, map[string]any) { return tt.status, tt.body } })
			_, err := s.run(context.Background(), p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Finish = %v, want %v", err, tt.want)
			}
			assertNoSecrets(t, "error", err.Error(), s.secrets()...)
		})
	}
	assertNoSecrets(t, "log", logs.String(), append(s.secrets(), "s3cret-VALUE-9")...)
}

func TestProviderKeyClaimOID(t *testing.T) {
	s := startScripted(t)
	p, _ := s.provider(func(c *identity.ProviderConfig) { c.ProviderKeyClaim = "oid"; c.Type = identity.TypeEntraID }, identity.Options{})
	s.scriptToken(func(c map[string]any) { c["oid"] = "0b1c2d3e-0000-4000-8000-000000000042" }, func(c map[string]any) string { return sign(t, s.key, s.kid, c) })
	id, err := s.run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if id.ProviderKey != "0b1c2d3e-0000-4000-8000-000000000042" || id.Subject != "user-42" {
		t.Errorf("key %q sub %q", id.ProviderKey, id.Subject)
	}
	// Entra sends no usable email_verified: without xms_edov the address is
	// not vouched for, even though the scripted token says email_verified.
	if id.EmailVerified {
		t.Error("Entra email counted as verified without xms_edov")
	}
	s.scriptToken(nil, func(c map[string]any) string { return sign(t, s.key, s.kid, c) })
	if _, err := s.run(context.Background(), p); !errors.Is(err, identity.ErrMissingClaim) {
		t.Fatalf("token without oid = %v, want ErrMissingClaim", err)
	}
}

func TestDiscoveryFailures(t *testing.T) {
	t.Run("unreachable, while another provider works", func(t *testing.T) {
		s := startScripted(t)
		dead := httptest.NewTLSServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		reg, err := identity.NewRegistry([]identity.ProviderConfig{
			s.config(func(c *identity.ProviderConfig) { c.Name = "down"; c.Issuer = deadURL }),
			s.config(nil),
		}, identity.Options{})
		if err != nil {
			t.Fatalf("NewRegistry must not contact providers: %v", err)
		}
		down, _ := reg.Get("down")
		if _, err := down.Begin(context.Background(), redirect, nil); !errors.Is(err, identity.ErrDiscoveryFailed) {
			t.Fatalf("Begin on a dead provider = %v, want ErrDiscoveryFailed", err)
		}
		up, _ := reg.Get("scripted")
		if _, err := up.Begin(context.Background(), redirect, nil); err != nil {
			t.Fatalf("the working provider is blocked: %v", err)
		}
		if r := down.Check(context.Background(), redirect); r.OK() || r.Steps[0].Name != "discovery" || r.Steps[0].OK {
			t.Errorf("check of a dead provider: %+v", r.Steps)
		}
	})
	t.Run("failure is not cached", func(t *testing.T) {
		s := startScripted(t)
		p, _ := s.provider(nil, identity.Options{})
		s.set(func() { s.docStatus = http.StatusServiceUnavailable })
		if _, err := p.Begin(context.Background(), redirect, nil); !errors.Is(err, identity.ErrDiscoveryFailed) {
			t.Fatalf("Begin = %v, want ErrDiscoveryFailed", err)
		}
		s.set(func() { s.docStatus = 0 })
		if _, err := p.Begin(context.Background(), redirect, nil); err != nil {
			t.Fatalf("Begin after the provider recovered: %v", err)
		}
	})
	t.Run("document names another issuer", func(t *testing.T) {
		s := startScripted(t)
		s.set(func() { s.docIssuer = "https://login.example/other-tenant/v2.0" })
		p, _ := s.provider(nil, identity.Options{})
		if _, err := p.Begin(context.Background(), redirect, nil); !errors.Is(err, identity.ErrDiscoveryIssuerMismatch) {
			t.Fatalf("Begin = %v, want ErrDiscoveryIssuerMismatch", err)
		}
		r := p.Check(context.Background(), redirect)
		if r.OK() || r.Steps[1].Name != "issuer" || r.Steps[1].OK || !strings.Contains(r.Steps[1].Detail, "other-tenant") {
			t.Errorf("check: %+v", r.Steps)
		}
	})
	t.Run("authority with its own metadata address", func(t *testing.T) {
		// Azure AD B2C: metadata under the policy path, issuer elsewhere.
		s := startScripted(t)
		const b2cIssuer = "https://tenant.b2clogin.example/775527ff-9a37-4307-8b3d-cc311f58d925/v2.0/"
		s.set(func() { s.docIssuer = b2cIssuer })
		p, _ := s.provider(func(c *identity.ProviderConfig) {
			c.Authority = s.srv.URL + "/meta"
			c.Issuer = b2cIssuer
			c.Type = identity.TypeAzureADB2C
		}, identity.Options{})
		s.scriptToken(func(c map[string]any) { c["iss"] = b2cIssuer }, func(c map[string]any) string { return sign(t, s.key, s.kid, c) })
		id, err := s.run(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if id.Issuer != b2cIssuer {
			t.Errorf("issuer %q", id.Issuer)
		}
		p2, _ := s.provider(func(c *identity.ProviderConfig) {
			c.Authority = s.srv.URL + "/meta"
			c.Issuer = "https://tenant.b2clogin.example/another/v2.0/"
		}, identity.Options{})
		if _, err := p2.Begin(context.Background(), redirect, nil); !errors.Is(err, identity.ErrDiscoveryIssuerMismatch) {
			t.Fatalf("Begin = %v, want ErrDiscoveryIssuerMismatch", err)
		}
	})
	t.Run("no end_session_endpoint", func(t *testing.T) {
		s := startScripted(t)
		s.set(func() { s.noEnd = true })
		p, _ := s.provider(nil, identity.Options{})
		if _, err := p.EndSessionURL(context.Background(), "", redirect, ""); !errors.Is(err, identity.ErrNoEndSession) {
			t.Fatalf("EndSessionURL = %v, want ErrNoEndSession", err)
		}
	})
}

func TestKeySetFailures(t *testing.T) {
	t.Run("times out", func(t *testing.T) {
		s := startScripted(t)
		hang := make(chan struct{})
		t.Cleanup(func() { close(hang) })
		s.set(func() { s.jwksHang = hang })
		// The relying party's own client gives up; so does the caller's ctx.
		client := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{TLSClientConfig: tlsConfig(s.pool)}}
		p, logs := s.provider(func(c *identity.ProviderConfig) { c.HTTPClient = client }, identity.Options{})
		s.scriptToken(nil, func(c map[string]any) string { return sign(t, s.key, s.kid, c) })
		_, err := s.run(context.Background(), p)
		if !errors.Is(err, identity.ErrJWKSUnavailable) {
			t.Fatalf("Finish = %v, want ErrJWKSUnavailable", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err = s.run(ctx, p); !errors.Is(err, identity.ErrJWKSUnavailable) {
			t.Fatalf("Finish with a deadline = %v, want ErrJWKSUnavailable", err)
		}
		assertNoSecrets(t, "log", logs.String(), s.secrets()...)
	})
	t.Run("answers 500", func(t *testing.T) {
		s := startScripted(t)
		s.set(func() { s.jwksFail = true })
		p, _ := s.provider(nil, identity.Options{})
		s.scriptToken(nil, func(c map[string]any) string { return sign(t, s.key, s.kid, c) })
		if _, err := s.run(context.Background(), p); !errors.Is(err, identity.ErrJWKSUnavailable) {
			t.Fatalf("Finish = %v, want ErrJWKSUnavailable", err)
		}
		r := p.Check(context.Background(), redirect)
		if r.OK() || r.Steps[2].Name != "jwks" || r.Steps[2].OK {
			t.Errorf("check: %+v", r.Steps)
		}
	})
}
