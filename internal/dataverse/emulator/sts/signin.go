package sts

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DemoUser is a person the emulator's sign-in page offers.
type DemoUser struct {
	Name     string
	Email    string
	ObjectID string // oid: the same for every application in the tenant
}

const (
	// codeTTL keeps authorization codes short-lived; Entra's last minutes.
	codeTTL = 5 * time.Minute
	// requestTTL is how long a shown sign-in page stays usable.
	requestTTL = 10 * time.Minute
	// idTokenTTL matches Entra's default ID token lifetime.
	idTokenTTL = time.Hour
)

// authRequest is a validated authorization request waiting on the sign-in
// page.
type authRequest struct {
	clientID    string
	redirectURI string
	state       string
	nonce       string
	scopes      []string
	challenge   string
	method      string // S256 or plain; empty without PKCE
	tenant      string
	expires     time.Time
}

// authCode is an issued authorization code. Redeemed codes stay until they
// expire so a replay gets Entra's "already redeemed" answer.
type authCode struct {
	req      authRequest
	user     DemoUser
	expires  time.Time
	redeemed bool
}

//go:embed signin.html
var signinHTML string

var signinPage = template.Must(template.New("signin").Parse(signinHTML))

type pageData struct {
	Title     string
	Tenant    string
	Error     string
	Message   string
	Picker    bool
	ClientID  string
	RequestID string
	Action    string
	Users     []DemoUser
}

// AddDemoUser registers a person for the sign-in page and returns their
// object id (a new GUID when oid is empty).
func (s *Service) AddDemoUser(name, email, oid string) string {
	if oid == "" {
		oid = newGUID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = slices.DeleteFunc(s.users, func(u DemoUser) bool { return strings.EqualFold(u.ObjectID, oid) })
	s.users = append(s.users, DemoUser{Name: name, Email: email, ObjectID: oid})
	return oid
}

// AddRedirectURI registers a redirect URI for an application, as on an app
// registration's Authentication page. The authorization endpoint only
// redirects to registered URIs; sign-out redirects to one when asked.
func (s *Service) AddRedirectURI(clientID, uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.redirects[clientID], uri) {
		s.redirects[clientID] = append(s.redirects[clientID], uri)
	}
}

// SetOptionalClaims sets the optional ID token claims of an application, as
// on an app registration's Token configuration page: given_name,
// family_name, xms_edov (with email) and verified_primary_email.
func (s *Service) SetOptionalClaims(clientID string, claims ...string) {
	set := map[string]bool{}
	for _, c := range claims {
		set[c] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.optional[clientID] = set
}

// RotateKey replaces the ID token signing key and drops the old one from the
// key set, as a provider's rollover eventually does. It returns the new kid.
func (s *Service) RotateKey() (string, error) {
	k, err := newSigningKey()
	if err != nil {
		return "", fmt.Errorf("sts.RotateKey: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = k
	return k.kid, nil
}

// signingKeyLocked returns the current key, creating it on first use so that
// emulators that never sign anyone in skip the key generation.
func (s *Service) signingKeyLocked() (*signingKey, error) {
	if s.key == nil {
		k, err := newSigningKey()
		if err != nil {
			return nil, err
		}
		s.key = k
	}
	return s.key, nil
}

func (s *Service) serveKeys(w http.ResponseWriter) {
	s.mu.Lock()
	k, err := s.signingKeyLocked()
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{k.jwk()}})
}

// serveAuthorize is the authorization endpoint: GET validates the request
// and shows the account picker, POST is the picker's answer.
func (s *Service) serveAuthorize(w http.ResponseWriter, r *http.Request, tenant string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.startAuthorize(w, r, tenant)
	case http.MethodPost:
		s.completeAuthorize(w, r, tenant)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Service) startAuthorize(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	if clientID == "" {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	s.mu.Lock()
	_, hasSecret := s.secrets[clientID]
	known := hasSecret || len(s.certs[clientID]) > 0 || len(s.redirects[clientID]) > 0
	registered := slices.Contains(s.redirects[clientID], redirectURI)
	s.mu.Unlock()
	// Until the redirect URI is known good, errors stay on this page.
	if !known {
		s.signinError(w, tenant, http.StatusBadRequest, 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	}
	if !registered {
		s.signinError(w, tenant, http.StatusBadRequest, 50011, fmt.Sprintf("The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", redirectURI, clientID))
		return
	}
	state := q.Get("state")
	fail := func(kind string, code int, msg string) {
		s.redirectError(w, r, redirectURI, state, kind, code, msg)
	}
	if rt := q.Get("response_type"); rt != "code" {
		fail("unsupported_response_type", 700054, fmt.Sprintf("response_type '%s' is not enabled for the application.", rt))
		return
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		fail("invalid_request", 900144, "The emulator answers authorization requests in the query only; omit response_mode or set it to 'query'.")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		fail("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" {
		if method == "" {
			method = "plain" // RFC 7636 §4.3
		}
		if method != "S256" && method != "plain" {
			fail("invalid_request", 900144, "The request body must contain a valid 'code_challenge_method': S256 or plain.")
			return
		}
		if len(challenge) < 43 || len(challenge) > 128 {
			fail("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
			return
		}
	} else if method != "" {
		fail("invalid_request", 900144, "The request body must contain the following parameter: 'code_challenge'.")
		return
	}
	if q.Get("prompt") == "none" {
		// The emulator keeps no single sign-on session, so a silent request
		// always needs interaction, as Entra answers without a session.
		fail("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
		return
	}
	id := randomToken()
	now := s.now()
	s.mu.Lock()
	for k, ar := range s.requests {
		if !now.Before(ar.expires) {
			delete(s.requests, k)
		}
	}
	s.requests[id] = &authRequest{
		clientID: clientID, redirectURI: redirectURI, state: state, nonce: q.Get("nonce"),
		scopes: scopes, challenge: challenge, method: method, tenant: s.tenantFor(tenant),
		expires: now.Add(requestTTL),
	}
	users := slices.Clone(s.users)
	s.mu.Unlock()
	s.render(w, http.StatusOK, pageData{
		Title: "Sign in", Tenant: tenant, Picker: true, ClientID: clientID,
		RequestID: id, Action: r.URL.Path, Users: users,
	})
}

func (s *Service) completeAuthorize(w http.ResponseWriter, r *http.Request, tenant string) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.signinError(w, tenant, http.StatusBadRequest, 900144, "The request body could not be parsed as form data.")
		return
	}
	f := r.PostForm
	now := s.now()
	s.mu.Lock()
	req, ok := s.requests[f.Get("request")]
	delete(s.requests, f.Get("request")) // one answer per page
	s.mu.Unlock()
	if !ok || !now.Before(req.expires) {
		s.signinError(w, tenant, http.StatusBadRequest, 50196, "This sign-in page has expired or was already used. Start the sign-in again from the application.")
		return
	}
	if f.Get("cancel") != "" {
		s.redirectError(w, r, req.redirectURI, req.state, "access_denied", 65004, "User declined to consent to access the app.")
		return
	}
	s.mu.Lock()
	i := slices.IndexFunc(s.users, func(u DemoUser) bool { return strings.EqualFold(u.ObjectID, f.Get("user")) })
	var user DemoUser
	if i >= 0 {
		user = s.users[i]
	}
	code := ""
	if i >= 0 {
		code = randomToken()
		for k, c := range s.codes {
			if !now.Before(c.expires) {
				delete(s.codes, k)
			}
		}
		s.codes[code] = &authCode{req: *req, user: user, expires: now.Add(codeTTL)}
	}
	s.mu.Unlock()
	if i < 0 {
		s.signinError(w, tenant, http.StatusBadRequest, 50034, "The user account does not exist in the directory.")
		return
	}
	http.Redirect(w, r, withQuery(req.redirectURI, url.Values{"code": {code}, "state": nonEmpty(req.state)}), http.StatusFound)
}

// redeemCode is the authorization_code grant, after client authentication.
func (s *Service) redeemCode(w http.ResponseWriter, r *http.Request, tenant, clientID string, f url.Values) {
	code := f.Get("code")
	if code == "" {
		s.oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'code'.")
		return
	}
	now := s.now()
	s.mu.Lock()
	c, ok := s.codes[code]
	var replay bool
	if ok {
		replay = c.redeemed
		c.redeemed = true // any attempt uses the code up
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid. - The provided value for the 'code' parameter is not valid.")
		return
	case replay:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
		return
	case !now.Before(c.expires):
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
		return
	case c.req.clientID != clientID:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 70000, "The provided authorization code was issued to another application.")
		return
	case f.Get("redirect_uri") != c.req.redirectURI:
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 50148, "The redirect URI does not match the one used to obtain the authorization code.")
		return
	case c.req.challenge != "" && !pkceMatches(c.req.method, c.req.challenge, f.Get("code_verifier")):
		s.oauthError(w, r, http.StatusBadRequest, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
		return
	}
	resp := map[string]any{
		"token_type":     "Bearer",
		"scope":          strings.Join(c.req.scopes, " "),
		"expires_in":     int(idTokenTTL / time.Second),
		"ext_expires_in": int(idTokenTTL / time.Second),
		// A user's access token is for Microsoft Graph, which the emulator
		// does not serve; it is random and validates nowhere.
		"access_token": randomToken(),
	}
	if slices.Contains(c.req.scopes, "openid") {
		s.mu.Lock()
		key, err := s.signingKeyLocked()
		optional := s.optional[clientID]
		s.mu.Unlock()
		if err != nil {
			s.oauthError(w, r, http.StatusInternalServerError, "server_error", 90033, "A transient error has occurred. Please try again.")
			return
		}
		issuer := "https://" + r.Host + "/" + tenant + "/v2.0"
		idt, err := key.sign(idTokenClaims(issuer, c.req.tenant, clientID, c.req.nonce, c.req.scopes, c.user, optional, now, idTokenTTL))
		if err != nil {
			s.oauthError(w, r, http.StatusInternalServerError, "server_error", 90033, "A transient error has occurred. Please try again.")
			return
		}
		resp["id_token"] = idt
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveLogout is the end-session endpoint: it redirects to
// post_logout_redirect_uri when that URI is registered for the application
// (named by client_id or by the id_token_hint's aud), and otherwise shows a
// signed-out page, as Entra does.
func (s *Service) serveLogout(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.signinError(w, tenant, http.StatusBadRequest, 900144, "The request body could not be parsed as form data.")
		return
	}
	target, clientID := r.Form.Get("post_logout_redirect_uri"), r.Form.Get("client_id")
	s.mu.Lock()
	if clientID == "" && r.Form.Get("id_token_hint") != "" && s.key != nil {
		if claims, ok := s.key.verifyOwn(r.Form.Get("id_token_hint")); ok {
			clientID, _ = claims["aud"].(string)
		}
	}
	allowed := false
	for id, uris := range s.redirects {
		if (clientID == "" || id == clientID) && slices.Contains(uris, target) {
			allowed = true
		}
	}
	s.mu.Unlock()
	if target != "" && allowed {
		http.Redirect(w, r, withQuery(target, url.Values{"state": nonEmpty(r.Form.Get("state"))}), http.StatusFound)
		return
	}
	s.render(w, http.StatusOK, pageData{Title: "You signed out of your account", Tenant: tenant,
		Message: "It's a good idea to close all browser windows."})
}

func (s *Service) tenantFor(pathTenant string) string {
	if s.tenant != "" {
		return s.tenant
	}
	return pathTenant
}

// redirectError sends an OAuth error back to the application's redirect URI.
func (s *Service) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, kind string, code int, msg string) {
	trace, corr := newGUID(), newGUID()
	ts := s.now().UTC().Format("2006-01-02 15:04:05Z")
	v := url.Values{
		"error":             {kind},
		"error_description": {fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", code, msg, trace, corr, ts)},
		"error_uri":         {fmt.Sprintf("https://%s/error?code=%d", r.Host, code)},
		"state":             nonEmpty(state),
	}
	http.Redirect(w, r, withQuery(redirectURI, v), http.StatusFound)
}

// signinError shows an error on the sign-in page, for requests that cannot
// be sent back to the application.
func (s *Service) signinError(w http.ResponseWriter, tenant string, status, code int, msg string) {
	s.render(w, status, pageData{Title: "Sorry, but we're having trouble signing you in.", Tenant: tenant,
		Error: fmt.Sprintf("AADSTS%d: %s", code, msg)})
}

func (s *Service) render(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = signinPage.ExecuteTemplate(w, "page", d)
}

// pkceMatches checks a code_verifier against the stored challenge (RFC 7636
// §4.6).
func pkceMatches(method, challenge, verifier string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	got := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		got = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// withQuery adds v to u's query, keeping what u already has. An unparsable
// u cannot happen for registered URIs, which were compared verbatim.
func withQuery(u string, v url.Values) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	for k, vals := range v {
		for _, x := range vals {
			q.Add(k, x)
		}
	}
	p.RawQuery = q.Encode()
	return p.String()
}

// nonEmpty is a one-value list, or none for the empty string, so optional
// parameters such as state are left out rather than sent empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
