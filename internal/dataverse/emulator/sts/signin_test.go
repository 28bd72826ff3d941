package sts

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const (
	appRedirect  = "https://portal.example/signin-entra"
	otherClient  = "9c1e7a52-0d3b-4f6e-8a2c-5b7d9e1f3a64"
	otherSecret  = "another~secret"
	demoOID      = "3f6c2a1e-8b4d-4e7a-9c15-0d2e6f8a9b71"
	demoVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-extra-entropy"
)

// signinEnv is a service over plain HTTP with one web app and one demo user.
type signinEnv struct {
	t     *testing.T
	svc   *Service
	srv   *httptest.Server
	clock *fakeClock
	hc    *http.Client // does not follow redirects, like a test of each hop
}

func newSigninEnv(t *testing.T) *signinEnv {
	t.Helper()
	clock := newFakeClock()
	svc := New(Options{TenantID: testTenant, Now: clock.Now})
	svc.AddSecretClient(testClient, testSecret)
	svc.AddRedirectURI(testClient, appRedirect)
	svc.AddDemoUser("Ada Lovelace", "ada@contoso.example", demoOID)
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &signinEnv{t: t, svc: svc, srv: srv, clock: clock, hc: hc}
}

func (e *signinEnv) base() string { return e.srv.URL + "/" + testTenant }

// issuer is what the service puts in tokens: https on the request's host.
func (e *signinEnv) issuer() string {
	return "https://" + strings.TrimPrefix(e.srv.URL, "http://") + "/" + testTenant + "/v2.0"
}

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (e *signinEnv) authorizeParams(mut func(url.Values)) url.Values {
	q := url.Values{
		"client_id":             {testClient},
		"response_type":         {"code"},
		"redirect_uri":          {appRedirect},
		"scope":                 {"openid profile email"},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {challengeOf(demoVerifier)},
		"code_challenge_method": {"S256"},
	}
	if mut != nil {
		mut(q)
	}
	return q
}

func (e *signinEnv) get(u string) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.hc.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// pick opens the sign-in page and submits the form the way a browser does
// when the button named name with value is pressed.
func (e *signinEnv) pick(q url.Values, name, value string) *http.Response {
	e.t.Helper()
	resp, body := e.get(e.base() + "/oauth2/v2.0/authorize?" + q.Encode())
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("authorize: status %d: %s", resp.StatusCode, body)
	}
	m := requestField.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("sign-in page has no request field: %s", body)
	}
	return e.post(m[1], name, value)
}

func (e *signinEnv) post(requestID, name, value string) *http.Response {
	e.t.Helper()
	resp, err := e.hc.PostForm(e.base()+"/oauth2/v2.0/authorize", url.Values{"request": {requestID}, name: {value}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// code runs the picker for the demo user and returns the callback query.
func (e *signinEnv) code(q url.Values) url.Values {
	e.t.Helper()
	resp := e.pick(q, "user", demoOID)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("picker answer: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != appRedirect {
		e.t.Fatalf("redirected to %s, want %s", got, appRedirect)
	}
	return loc.Query()
}

func (e *signinEnv) redeem(form url.Values) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.PostForm(e.base()+"/oauth2/v2.0/token", form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, body
}

func codeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {testClient}, "client_secret": {testSecret},
		"code": {code}, "redirect_uri": {appRedirect}, "code_verifier": {demoVerifier}}
}

// verifyJWT checks an RS256 token against the service's published key set,
// independently of the signing code, and returns header and claims.
func (e *signinEnv) verifyJWT(token string) (map[string]any, map[string]any) {
	e.t.Helper()
	resp, body := e.get(e.base() + "/discovery/v2.0/keys")
	if resp.StatusCode != 200 {
		e.t.Fatalf("keys: %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct{ Kty, Use, Kid, N, E string } `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		e.t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		e.t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	var hdr, claims map[string]any
	if err := decodeSegment(parts[0], &hdr); err != nil {
		e.t.Fatal(err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		e.t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, k := range set.Keys {
		if k.Kid != hdr["kid"] {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		ex, _ := base64.RawURLEncoding.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(ex).Int64())}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			e.t.Fatalf("signature does not verify with kid %v: %v", hdr["kid"], err)
		}
		return hdr, claims
	}
	e.t.Fatalf("kid %v not in the key set", hdr["kid"])
	return nil, nil
}

func TestAuthorizationCodeFlow(t *testing.T) {
	e := newSigninEnv(t)
	e.svc.SetOptionalClaims(testClient, "given_name", "family_name", "xms_edov")
	cb := e.code(e.authorizeParams(nil))
	if cb.Get("state") != "state-123" || cb.Get("code") == "" {
		t.Fatalf("callback query = %v", cb)
	}
	status, body := e.redeem(codeForm(cb.Get("code")))
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["access_token"] == "" || body["scope"] != "openid profile email" {
		t.Errorf("token response = %v", body)
	}
	if _, ok := e.svc.Validate(body["access_token"].(string)); ok {
		t.Error("a user's access token must not be accepted by the Dataverse emulator")
	}
	hdr, c := e.verifyJWT(body["id_token"].(string))
	if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" {
		t.Errorf("header = %v", hdr)
	}
	want := map[string]any{
		"iss": e.issuer(), "aud": testClient, "tid": testTenant, "oid": demoOID, "nonce": "nonce-456", "ver": "2.0",
		"name": "Ada Lovelace", "preferred_username": "ada@contoso.example", "email": "ada@contoso.example",
		"given_name": "Ada", "family_name": "Lovelace", "xms_edov": true,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	iat, _ := c["iat"].(json.Number).Int64()
	exp, _ := c["exp"].(json.Number).Int64()
	if exp-iat != 3600 || iat != e.clock.Now().Unix() {
		t.Errorf("iat %v exp %v", iat, exp)
	}

	// sub is pairwise: another application sees another sub, the same oid.
	e.svc.AddSecretClient(otherClient, otherSecret)
	e.svc.AddRedirectURI(otherClient, appRedirect)
	cb2 := e.code(e.authorizeParams(func(q url.Values) { q.Set("client_id", otherClient) }))
	f := codeForm(cb2.Get("code"))
	f.Set("client_id", otherClient)
	f.Set("client_secret", otherSecret)
	status, body2 := e.redeem(f)
	if status != 200 {
		t.Fatalf("token for the other app: %d %v", status, body2)
	}
	_, c2 := e.verifyJWT(body2["id_token"].(string))
	if c2["oid"] != demoOID || c2["sub"] == c["sub"] || c2["sub"] == "" {
		t.Errorf("sub %v vs %v, oid %v: want a different sub and the same oid", c2["sub"], c["sub"], c2["oid"])
	}
	if _, has := c2["xms_edov"]; has {
		t.Error("xms_edov emitted for an app that did not ask for it")
	}
}

func TestAuthorizationCodeRedemptionErrors(t *testing.T) {
	e := newSigninEnv(t)
	tests := []struct {
		name   string
		mutate func(url.Values)
		code   int
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", strings.Repeat("x", 43)) }, 501481},
		{"missing verifier", func(f url.Values) { f.Del("code_verifier") }, 501481},
		{"other redirect", func(f url.Values) { f.Set("redirect_uri", "https://portal.example/other") }, 50148},
		{"unknown code", func(f url.Values) { f.Set("code", "not-a-code") }, 9002313},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := codeForm(e.code(e.authorizeParams(nil)).Get("code"))
			tt.mutate(f)
			status, body := e.redeem(f)
			if status != 400 || body["error"] != "invalid_grant" || firstCode(body) != tt.code {
				t.Fatalf("got %d %v, want invalid_grant AADSTS%d", status, body, tt.code)
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		f := codeForm(e.code(e.authorizeParams(nil)).Get("code"))
		if status, body := e.redeem(f); status != 200 {
			t.Fatalf("first redemption: %d %v", status, body)
		}
		status, body := e.redeem(f)
		if status != 400 || body["error"] != "invalid_grant" || firstCode(body) != 54005 {
			t.Fatalf("second redemption: %d %v, want invalid_grant AADSTS54005", status, body)
		}
	})
	t.Run("expired", func(t *testing.T) {
		f := codeForm(e.code(e.authorizeParams(nil)).Get("code"))
		e.clock.Advance(codeTTL)
		status, body := e.redeem(f)
		if status != 400 || firstCode(body) != 70008 {
			t.Fatalf("got %d %v, want AADSTS70008", status, body)
		}
	})
	t.Run("code of another app", func(t *testing.T) {
		e.svc.AddSecretClient(otherClient, otherSecret)
		f := codeForm(e.code(e.authorizeParams(nil)).Get("code"))
		f.Set("client_id", otherClient)
		f.Set("client_secret", otherSecret)
		status, body := e.redeem(f)
		if status != 400 || firstCode(body) != 70000 {
			t.Fatalf("got %d %v, want AADSTS70000", status, body)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		f := codeForm(e.code(e.authorizeParams(nil)).Get("code"))
		f.Set("client_secret", "nope")
		status, body := e.redeem(f)
		if status != 401 || body["error"] != "invalid_client" {
			t.Fatalf("got %d %v, want invalid_client", status, body)
		}
	})
}

func firstCode(body map[string]any) int {
	codes, _ := body["error_codes"].([]any)
	if len(codes) == 0 {
		return 0
	}
	f, _ := codes[0].(float64)
	return int(f)
}

func TestAuthorizeErrors(t *testing.T) {
	e := newSigninEnv(t)
	// Before the redirect URI is known good, errors are shown, not redirected.
	for name, mut := range map[string]func(url.Values){
		"unknown client":        func(q url.Values) { q.Set("client_id", otherClient) },
		"unregistered redirect": func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") },
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.get(e.base() + "/oauth2/v2.0/authorize?" + e.authorizeParams(mut).Encode())
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body, "AADSTS") {
				t.Fatalf("status %d location %q body %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
	// After it, errors go back to the application with the state.
	for name, tt := range map[string]struct {
		mut  func(url.Values)
		want string
	}{
		"prompt none":        {func(q url.Values) { q.Set("prompt", "none") }, "login_required"},
		"implicit flow":      {func(q url.Values) { q.Set("response_type", "id_token") }, "unsupported_response_type"},
		"unknown pkce":       {func(q url.Values) { q.Set("code_challenge_method", "S512") }, "invalid_request"},
		"short challenge":    {func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		"no scope":           {func(q url.Values) { q.Del("scope") }, "invalid_request"},
		"form_post response": {func(q url.Values) { q.Set("response_mode", "form_post") }, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, _ := e.get(e.base() + "/oauth2/v2.0/authorize?" + e.authorizeParams(tt.mut).Encode())
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc == nil {
				t.Fatalf("status %d, want a redirect", resp.StatusCode)
			}
			q := loc.Query()
			if q.Get("error") != tt.want || q.Get("state") != "state-123" || !strings.HasPrefix(q.Get("error_description"), "AADSTS") || q.Get("code") != "" {
				t.Fatalf("callback = %v, want error=%s with the state", q, tt.want)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		resp := e.pick(e.authorizeParams(nil), "cancel", "1")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "state-123" {
			t.Fatalf("status %d location %v", resp.StatusCode, loc)
		}
	})
	t.Run("page answered twice", func(t *testing.T) {
		_, body := e.get(e.base() + "/oauth2/v2.0/authorize?" + e.authorizeParams(nil).Encode())
		id := requestField.FindStringSubmatch(body)[1]
		if r := e.post(id, "user", demoOID); r.StatusCode != http.StatusFound {
			t.Fatalf("first answer: %d", r.StatusCode)
		}
		if r := e.post(id, "user", demoOID); r.StatusCode != 400 {
			t.Fatalf("second answer: %d, want 400", r.StatusCode)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if r := e.pick(e.authorizeParams(nil), "user", "00000000-0000-0000-0000-000000000000"); r.StatusCode != 400 {
			t.Fatalf("status %d, want 400", r.StatusCode)
		}
	})
	t.Run("bare GET", func(t *testing.T) {
		resp, _ := e.get(e.base() + "/oauth2/v2.0/authorize")
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestSigninPageEscapesAndIsLocked(t *testing.T) {
	e := newSigninEnv(t)
	e.svc.AddDemoUser(`<script>alert(1)</script>`, `x"><img src=x>@example.com`, "")
	resp, body := e.get(e.base() + "/oauth2/v2.0/authorize?" + e.authorizeParams(nil).Encode())
	if strings.Contains(body, "<script>alert") || strings.Contains(body, `"><img`) {
		t.Fatalf("demo user data not escaped: %s", body)
	}
	if !strings.Contains(body, "&lt;script&gt;") || !strings.Contains(body, "Ada Lovelace") {
		t.Fatalf("page does not list the users: %s", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestRotateKey(t *testing.T) {
	e := newSigninEnv(t)
	idToken := func() string {
		_, body := e.redeem(codeForm(e.code(e.authorizeParams(nil)).Get("code")))
		return body["id_token"].(string)
	}
	hdr1, _ := e.verifyJWT(idToken())
	kid, err := e.svc.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if kid == hdr1["kid"] {
		t.Fatal("RotateKey kept the kid")
	}
	_, body := e.get(e.base() + "/discovery/v2.0/keys")
	if strings.Contains(body, hdr1["kid"].(string)) || !strings.Contains(body, kid) {
		t.Fatalf("key set after rotation = %s", body)
	}
	hdr2, _ := e.verifyJWT(idToken())
	if hdr2["kid"] != kid {
		t.Fatalf("new token kid %v, want %s", hdr2["kid"], kid)
	}
}

func TestLogout(t *testing.T) {
	e := newSigninEnv(t)
	logout := e.base() + "/oauth2/v2.0/logout?"
	resp, _ := e.get(logout + url.Values{"post_logout_redirect_uri": {appRedirect}, "state": {"s1"}, "client_id": {testClient}}.Encode())
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != appRedirect+"?state=s1" {
		t.Fatalf("registered URI: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := e.get(logout + url.Values{"post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
	if resp.StatusCode != 200 || resp.Header.Get("Location") != "" || !strings.Contains(body, "signed out") {
		t.Fatalf("unregistered URI: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The id_token_hint names the application when client_id is absent.
	_, tok := e.redeem(codeForm(e.code(e.authorizeParams(nil)).Get("code")))
	e.svc.AddSecretClient(otherClient, otherSecret)
	e.svc.AddRedirectURI(otherClient, "https://other.example/bye")
	hint := tok["id_token"].(string)
	resp, _ = e.get(logout + url.Values{"post_logout_redirect_uri": {"https://other.example/bye"}, "id_token_hint": {hint}}.Encode())
	if resp.StatusCode != 200 {
		t.Fatalf("another app's URI with this app's hint: status %d, want the signed-out page", resp.StatusCode)
	}
	resp, _ = e.get(logout + url.Values{"post_logout_redirect_uri": {appRedirect}, "id_token_hint": {hint}}.Encode())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("own URI with hint: status %d", resp.StatusCode)
	}
}

func TestOpenIDConfigurationForSignIn(t *testing.T) {
	e := newSigninEnv(t)
	_, body := e.get(e.base() + "/v2.0/.well-known/openid-configuration")
	var doc struct {
		Issuer      string   `json:"issuer"`
		EndSession  string   `json:"end_session_endpoint"`
		PKCE        []string `json:"code_challenge_methods_supported"`
		Algs        []string `json:"id_token_signing_alg_values_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != e.issuer() || doc.EndSession != strings.TrimSuffix(e.issuer(), "/v2.0")+"/oauth2/v2.0/logout" {
		t.Errorf("issuer %q end_session %q", doc.Issuer, doc.EndSession)
	}
	if strings.Join(doc.PKCE, ",") != "S256,plain" || strings.Join(doc.Algs, ",") != "RS256" || len(doc.AuthMethods) != 3 {
		t.Errorf("doc = %+v", doc)
	}
	if !New(Options{}).Handles("/" + testTenant + "/oauth2/v2.0/logout") {
		t.Error("logout path not handled")
	}
}

func TestPKCEMatches(t *testing.T) {
	if !pkceMatches("S256", challengeOf(demoVerifier), demoVerifier) {
		t.Error("S256 pair refused")
	}
	if !pkceMatches("plain", demoVerifier, demoVerifier) {
		t.Error("plain pair refused")
	}
	if pkceMatches("S256", challengeOf(demoVerifier), demoVerifier+"x") || pkceMatches("S256", demoVerifier, demoVerifier) {
		t.Error("mismatch accepted")
	}
	if pkceMatches("plain", "short", "short") {
		t.Error("verifier shorter than RFC 7636's 43 characters accepted")
	}
}
