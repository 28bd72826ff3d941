// Package sts is a token service that speaks enough of the Microsoft Entra ID
// v2.0 protocol for azidentity's client-secret and client-certificate
// credentials and for an OpenID Connect relying party: the OpenID
// configuration document, instance discovery, the client-credentials and
// authorization-code grants, an authorization endpoint with an account
// picker for registered demo users, RS256 ID tokens with a JWKS that can be
// rotated, and an end-session endpoint, with Entra-shaped OAuth errors.
// Access tokens are opaque random strings that only this Service can
// validate; real Dataverse clients never look inside them either. It also
// provides a throwaway CA, because azidentity refuses authority hosts
// without https.
package sts

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options configures a Service.
type Options struct {
	// TenantID is the only tenant the service answers for. Empty accepts any
	// tenant in the path.
	TenantID string
	// TokenTTL is the lifetime of issued access tokens. Default 1h.
	TokenTTL time.Duration
	// Now is the clock for token expiry and assertion checks. Default time.Now.
	Now func() time.Time
}

// Service is the token service. It is an http.Handler for its own paths
// (see Handles) and validates the tokens it issued. Safe for concurrent use.
type Service struct {
	tenant string
	ttl    time.Duration
	now    func() time.Time

	mu        sync.Mutex
	secrets   map[string]string              // client id -> secret
	certs     map[string][]*x509.Certificate // client id -> registered certificates
	tokens    map[string]issued              // access token -> owner and expiry
	nextSweep int                            // prune expired tokens when the map reaches this size

	// Interactive sign-in (signin.go).
	users     []DemoUser                 // the account picker, in registration order
	redirects map[string][]string        // client id -> registered redirect URIs
	optional  map[string]map[string]bool // client id -> optional ID token claims
	key       *signingKey                // ID token key, created on first use
	requests  map[string]*authRequest    // sign-in pages shown, by request id
	codes     map[string]*authCode       // authorization codes issued
}

type issued struct {
	clientID string
	expires  time.Time
}

// New returns a Service with no registered clients.
func New(o Options) *Service {
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{
		tenant:    o.TenantID,
		ttl:       o.TokenTTL,
		now:       o.Now,
		secrets:   map[string]string{},
		certs:     map[string][]*x509.Certificate{},
		tokens:    map[string]issued{},
		nextSweep: 1024,
		redirects: map[string][]string{},
		optional:  map[string]map[string]bool{},
		requests:  map[string]*authRequest{},
		codes:     map[string]*authCode{},
	}
}

// AddSecretClient registers (or re-keys) an application that authenticates
// with a client secret.
func (s *Service) AddSecretClient(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[clientID] = secret
}

// AddCertificateClient registers a certificate for an application, like
// uploading a certificate to an app registration. An application may have
// several certificates, and a secret as well.
func (s *Service) AddCertificateClient(clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[clientID] = append(s.certs[clientID], cert)
}

// IssueToken mints an access token for clientID without any credential check,
// for tests and static demo tokens.
func (s *Service) IssueToken(clientID string) string {
	tok := randomToken()
	exp := s.now().Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) >= s.nextSweep {
		s.sweepLocked()
	}
	s.tokens[tok] = issued{clientID: clientID, expires: exp}
	return tok
}

// Validate reports which client a bearer token was issued to, and false if
// the token is unknown or expired. A leading "Bearer " is accepted, so the
// Authorization header value can be passed as is.
func (s *Service) Validate(bearer string) (clientID string, ok bool) {
	if len(bearer) > 7 && strings.EqualFold(bearer[:7], "bearer ") {
		bearer = strings.TrimSpace(bearer[7:])
	}
	if bearer == "" {
		return "", false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, found := s.tokens[bearer]
	if !found {
		return "", false
	}
	if !now.Before(t.expires) {
		delete(s.tokens, bearer)
		return "", false
	}
	return t.clientID, true
}

// sweepLocked drops expired tokens so a long-running emulator does not grow
// without bound; the threshold doubles with the live set to keep it amortised.
func (s *Service) sweepLocked() {
	now := s.now()
	for k, t := range s.tokens {
		if !now.Before(t.expires) {
			delete(s.tokens, k)
		}
	}
	s.nextSweep = max(1024, 2*len(s.tokens))
}

// route identifies one of the endpoints the service serves.
type route int

const (
	routeNone route = iota
	routeOpenID
	routeToken
	routeAuthorize
	routeKeys
	routeInstance
	routeLogout
)

// match maps a path onto a route and the tenant segment it names.
func match(path string) (route, string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[0] == "common" && parts[1] == "discovery" && parts[2] == "instance":
		return routeInstance, "common"
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		return routeOpenID, parts[0]
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		return routeToken, parts[0]
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "authorize":
		return routeAuthorize, parts[0]
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "logout":
		return routeLogout, parts[0]
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		return routeKeys, parts[0]
	}
	return routeNone, ""
}

// Handles reports whether path is one of the service's endpoints, so a server
// that shares its listener with the Web API can route to it.
func (s *Service) Handles(path string) bool {
	r, _ := match(path)
	return r != routeNone
}

// ServeHTTP serves the OpenID configuration, instance discovery, the token,
// authorization and logout endpoints and the key set. Every URL in a response
// is built from r.Host over https, because MSAL insists the issuer lives on
// the authority's host.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, tenant := match(r.URL.Path)
	if id := r.Header.Get("client-request-id"); id != "" {
		w.Header().Set("client-request-id", id)
	}
	w.Header().Set("x-ms-request-id", newGUID())
	w.Header().Set("Cache-Control", "no-store, no-cache")
	if rt == routeNone {
		http.NotFound(w, r)
		return
	}
	if rt != routeInstance && !s.knownTenant(tenant) {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	switch rt {
	case routeToken:
		if r.Method != http.MethodPost {
			s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a "+r.Method+" request.")
			return
		}
		s.serveToken(w, r, tenant)
	case routeAuthorize:
		s.serveAuthorize(w, r, tenant)
	case routeLogout:
		s.serveLogout(w, r, tenant)
	case routeOpenID:
		if !allowGet(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, s.openIDConfiguration(r.Host, tenant))
	case routeKeys:
		if !allowGet(w, r) {
			return
		}
		s.serveKeys(w)
	case routeInstance:
		if !allowGet(w, r) {
			return
		}
		s.serveInstanceDiscovery(w, r)
	}
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func (s *Service) knownTenant(t string) bool {
	return s.tenant == "" || strings.EqualFold(t, s.tenant)
}

func (s *Service) openIDConfiguration(host, tenant string) map[string]any {
	base := "https://" + host + "/" + tenant
	return map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"code_challenge_methods_supported":      []string{"S256", "plain"},
		"claims_supported": []string{"sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name", "preferred_username",
			"oid", "tid", "ver", "email", "given_name", "family_name", "xms_edov", "verified_primary_email"},
		"scopes_supported":                []string{"openid", "profile", "email", "offline_access"},
		"issuer":                          base + "/v2.0",
		"request_uri_parameter_supported": false,
		"authorization_endpoint":          base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":   base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":            base + "/oauth2/v2.0/logout",
		"http_logout_supported":           true,
		"frontchannel_logout_supported":   true,
		"tenant_region_scope":             "NA",
		"cloud_instance_name":             host,
	}
}

// serveInstanceDiscovery answers MSAL's instance metadata request, naming the
// requesting host as the only alias. It is only reached when a client leaves
// instance discovery enabled and has been pointed at this host for it.
func (s *Service) serveInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	tenant := s.tenant
	if tenant == "" {
		tenant = "common"
	}
	if ae := r.URL.Query().Get("authorization_endpoint"); ae != "" {
		if u, err := url.Parse(ae); err == nil {
			if seg := strings.Split(strings.Trim(u.Path, "/"), "/"); len(seg) > 0 && seg[0] != "" {
				tenant = seg[0]
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + r.Host + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": r.Host,
			"preferred_cache":   r.Host,
			"aliases":           []string{r.Host},
		}},
	})
}

// MSAL appends these to every request; they are not resources.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func (s *Service) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body could not be parsed as form data.")
		return
	}
	f := r.PostForm
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok { // client_secret_basic
		clientID, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	grant := f.Get("grant_type")
	switch {
	case grant == "":
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	case grant != "client_credentials" && grant != "authorization_code":
		s.oauthError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+grant+"'.")
		return
	case clientID == "":
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	if grant == "client_credentials" && !s.checkResourceScope(w, r, f.Get("scope")) {
		return
	}
	if !s.authenticateClient(w, r, tenant, clientID, secret, f) {
		return
	}
	if grant == "authorization_code" {
		s.redeemCode(w, r, tenant, clientID, f)
		return
	}
	tok := s.IssueToken(clientID)
	secs := int(s.ttl / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

// checkResourceScope enforces the client-credentials rule of exactly one
// resource scope ending in /.default.
func (s *Service) checkResourceScope(w http.ResponseWriter, r *http.Request, scope string) bool {
	var resources []string
	for sc := range strings.FieldsSeq(scope) {
		if !oidcScopes[sc] {
			resources = append(resources, sc)
		}
	}
	switch {
	case len(resources) == 0:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
		return false
	case len(resources) > 1:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_scope", 70011, "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope "+strings.Join(resources, " ")+" is not valid.")
		return false
	case !strings.HasSuffix(resources[0], "/.default"):
		s.oauthError(w, r, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+resources[0]+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return false
	}
	return true
}

// authenticateClient checks the client secret (basic or post) or the client
// assertion (private_key_jwt) and writes the Entra error when it fails.
func (s *Service) authenticateClient(w http.ResponseWriter, r *http.Request, tenant, clientID, secret string, f url.Values) bool {
	s.mu.Lock()
	wantSecret, hasSecret := s.secrets[clientID]
	certs := append([]*x509.Certificate(nil), s.certs[clientID]...)
	s.mu.Unlock()
	if !hasSecret && len(certs) == 0 {
		s.oauthError(w, r, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, tenant))
		return false
	}

	assertion := f.Get("client_assertion")
	switch {
	case secret != "":
		if !hasSecret || subtle.ConstantTimeCompare([]byte(secret), []byte(wantSecret)) != 1 {
			s.oauthError(w, r, http.StatusUnauthorized, "invalid_client", 7000215,
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return false
		}
	case assertion != "":
		if f.Get("client_assertion_type") != assertionType {
			s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_assertion_type'.")
			return false
		}
		audiences := []string{
			"https://" + r.Host + "/" + tenant + "/oauth2/v2.0/token",
			"https://" + r.Host + "/" + tenant + "/v2.0",
		}
		if ae := verifyAssertion(assertion, clientID, certs, audiences, s.now()); ae != nil {
			s.oauthError(w, r, http.StatusUnauthorized, "invalid_client", ae.code, ae.msg)
			return false
		}
	default:
		s.oauthError(w, r, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return false
	}
	return true
}

// oauthError writes an error body the way Entra ID does: the AADSTS code
// prefixed to the description, followed by trace and correlation ids, plus
// the numeric code list that MSAL surfaces in AuthenticationFailedError.
func (s *Service) oauthError(w http.ResponseWriter, r *http.Request, status int, kind string, code int, msg string) {
	trace, corr := newGUID(), r.Header.Get("client-request-id")
	if corr == "" {
		corr = newGUID()
	}
	ts := s.now().UTC().Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, map[string]any{
		"error": kind,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			code, msg, trace, corr, ts),
		"error_codes":    []int{code},
		"timestamp":      ts,
		"trace_id":       trace,
		"correlation_id": corr,
		"error_uri":      fmt.Sprintf("https://%s/error?code=%d", r.Host, code),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
