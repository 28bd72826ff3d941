package portalweb

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/d365portal/connector/internal/dataverse/emulator/sts"
	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/invite"
)

// The external sign-in tests run the site against the Dataverse emulator's
// Entra ID endpoint (sts, over TLS with its throwaway CA), the provider
// `connector dev` offers as "Continue with Microsoft", and against a
// scripted provider that hands out tokens no real provider would.

const (
	extTenant = "8a3c1e52-9f0b-4d6e-a1c7-2b5f9e0d4c31"
	extClient = "2e7b9c41-5a3d-4f8e-b6c2-9d1a0f4e7b35"
	extSecret = "portal~secret.value"
)

type ext struct {
	*live
	sts    *sts.Service
	stsURL string
	issuer string
	idp    *http.Client // the browser's view of the identity provider
	reg    *identity.Registry
	base   string
}

type extOpts struct {
	keyClaim      string // "" (sub) or "oid"
	localDisabled bool
	service       func(*invite.Config)
	extra         []identity.ProviderConfig
	portalProv    map[string][]string
	site          func(*Config)                             // after the providers are set
	wrap          func(http.RoundTripper) http.RoundTripper // wraps the transport to the emulator's Entra endpoint
}

func newExt(t testing.TB, o extOpts) *ext {
	t.Helper()
	svc := sts.New(sts.Options{TenantID: extTenant})
	svc.AddSecretClient(extClient, extSecret)
	ca, err := sts.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	x := &ext{sts: svc, stsURL: srv.URL, issuer: srv.URL + "/" + extTenant + "/v2.0"}
	x.idp = &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(x.idp.CloseIdleConnections)
	x.live = newLive(t, liveOpts{
		service: func(c *invite.Config) {
			x.base = c.Portals[0].BaseURL
			c.LocalLoginDisabled = o.localDisabled
			if o.service != nil {
				o.service(c)
			}
		},
		site: func(c *Config) {
			entra := identity.ProviderConfig{Name: "entra", DisplayName: "Microsoft", Type: identity.TypeEntraID,
				Issuer: x.issuer, ClientID: extClient, ClientSecret: extSecret, RootCAs: ca.Pool(), ProviderKeyClaim: o.keyClaim}
			if o.wrap != nil {
				entra.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: o.wrap(&http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}})}
			}
			cfgs := append([]identity.ProviderConfig{entra}, o.extra...)
			reg, err := identity.NewRegistry(cfgs, identity.Options{Logger: c.Logger})
			if err != nil {
				t.Fatal(err)
			}
			x.reg = reg
			c.Providers, c.PublicURL, c.LocalLoginDisabled, c.PortalProviders = reg, x.base, o.localDisabled, o.portalProv
			svc.AddRedirectURI(extClient, x.base+CallbackPath("entra"))
			svc.AddRedirectURI(extClient, x.base+"/login")
			if o.site != nil {
				o.site(c)
			}
		},
	})
	return x
}

// person adds demo contact i as a user of the sign-in page, with the same
// name and email, and returns the contact id, email and object id.
func (x *ext) person(i int) (contactID, email, oid string) {
	contactID, email = x.contact(i)
	row := x.contactRow(x.t, contactID)
	oid = x.sts.AddDemoUser(fmt.Sprint(row["firstname"], " ", row["lastname"]), email, "")
	return contactID, email, oid
}

// pick opens the authorization URL, presses the button whose text contains
// label ("Cancel" cancels) and returns where the provider sends the browser.
func (x *ext) pick(authURL, label string) (*url.URL, error) {
	resp, err := x.idp.Get(authURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc, err := resp.Location(); err == nil {
			return loc, nil
		}
		return nil, fmt.Errorf("sign-in page: status %d", resp.StatusCode)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		return nil, err
	}
	form := doc.Find("form[method=post]")
	values := url.Values{}
	form.Find("input[type=hidden]").Each(func(_ int, s *goquery.Selection) { values.Set(s.AttrOr("name", ""), s.AttrOr("value", "")) })
	button := form.Find("button").FilterFunction(func(_ int, s *goquery.Selection) bool { return strings.Contains(s.Text(), label) })
	if button.Length() != 1 {
		return nil, fmt.Errorf("no single button %q on the sign-in page", label)
	}
	values.Set(button.AttrOr("name", ""), button.AttrOr("value", ""))
	target, err := resp.Request.URL.Parse(form.AttrOr("action", ""))
	if err != nil {
		return nil, err
	}
	post, err := x.idp.PostForm(target.String(), values)
	if err != nil {
		return nil, err
	}
	post.Body.Close()
	return post.Location()
}

// callbackFor follows a start response to the provider and back: the URL
// the provider sends the browser to, on this site.
func (x *ext) callbackFor(start *resp, label string) string {
	x.t.Helper()
	if start.status != http.StatusSeeOther {
		x.t.Fatalf("%s: status %d, want a redirect to the provider\n%s", start.url, start.status, start.body)
	}
	loc := start.header.Get("Location")
	if !strings.HasPrefix(loc, x.stsURL+"/") {
		x.t.Fatalf("start redirects to %q, not to the provider %s", loc, x.stsURL)
	}
	cb, err := x.pick(loc, label)
	if err != nil {
		x.t.Fatal(err)
	}
	if !strings.HasPrefix(cb.String(), x.base+callbackPrefix) {
		x.t.Fatalf("provider sent the browser to %s", cb)
	}
	return cb.RequestURI()
}

// via completes a started sign-in as label and returns the site's answer.
func (x *ext) via(b *browser, start *resp, label string) *resp {
	x.t.Helper()
	return b.get(x.callbackFor(start, label))
}

// stateOf is the state parameter a start response sent to the provider.
func stateOf(t testing.TB, start *resp) string {
	t.Helper()
	u, err := url.Parse(start.header.Get("Location"))
	if err != nil || u.Query().Get("state") == "" {
		t.Fatalf("no state in %q", start.header.Get("Location"))
	}
	return u.Query().Get("state")
}

// wantRefusal checks a friendly refusal page: its status and heading, the
// request id shown and equal to the response header.
func wantRefusal(t testing.TB, r *resp, status int, heading string) {
	t.Helper()
	r.wantStatus(status).wantText("h1", heading)
	id := r.header.Get("X-Request-ID")
	if id == "" || r.text(".reference code") != id {
		t.Fatalf("%s: request id %q not shown (page shows %q)", r.url, id, r.text(".reference code"))
	}
	if r.doc.Find("ul.actions a").Length() == 0 {
		t.Fatalf("%s: refusal page offers no way on", r.url)
	}
}

// scripted is a small OpenID provider that answers with whatever a test
// scripts, to hand the site tokens a real provider would never issue. It
// runs over TLS with httptest's certificate.
type scripted struct {
	t    testing.TB
	srv  *httptest.Server
	pool *x509.CertPool
	key  *rsa.PrivateKey
	kid  string

	mu        sync.Mutex
	docIssuer string        // issuer the discovery document names; default the server URL
	jwksHang  chan struct{} // non-nil: the key set hangs until closed or the client gives up
	mutate    func(map[string]any)
	signWith  func(t testing.TB, s *scripted, claims map[string]any) string
	requests  map[string]string // code -> nonce of its authorization request
	verifiers map[string]string // code -> S256 challenge
	issued    []string          // codes and tokens handed out, none may be logged
}

func startScripted(t testing.TB) *scripted {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{t: t, key: k, kid: "scripted-1", requests: map[string]string{}, verifiers: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/keys", s.keys)
	mux.HandleFunc("/token", s.token)
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.srv.Certificate())
	return s
}

func (s *scripted) config(name string, mut func(*identity.ProviderConfig)) identity.ProviderConfig {
	c := identity.ProviderConfig{Name: name, DisplayName: "Scripted " + name, Issuer: s.srv.URL, ClientID: "client-1",
		ClientSecret: "s3cret-VALUE-9", RootCAs: s.pool, ClockSkew: time.Minute}
	if mut != nil {
		mut(&c)
	}
	return c
}

func (s *scripted) set(f func()) { s.mu.Lock(); defer s.mu.Unlock(); f() }

func (s *scripted) discovery(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	iss := s.docIssuer
	s.mu.Unlock()
	if iss == "" {
		iss = s.srv.URL
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": iss, "authorization_endpoint": s.srv.URL + "/authorize", "token_endpoint": s.srv.URL + "/token",
		"jwks_uri": s.srv.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

// authorize signs the user in at once: it remembers the request's nonce
// and PKCE challenge under a new code and sends the browser back.
func (s *scripted) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := "code-" + base64.RawURLEncoding.EncodeToString([]byte(q.Get("state")))[:16]
	s.mu.Lock()
	s.requests[code], s.verifiers[code] = q.Get("nonce"), q.Get("code_challenge")
	s.issued = append(s.issued, code)
	s.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (s *scripted) keys(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	hang := s.jwksHang
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return
	}
	_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.key.PublicKey, KeyID: s.kid, Use: "sig", Algorithm: "RS256"}}})
}

func (s *scripted) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	code := r.PostForm.Get("code")
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	s.mu.Lock()
	nonce, ok := s.requests[code]
	challenge := s.verifiers[code]
	delete(s.requests, code) // codes are single-use
	mutate, signWith := s.mutate, s.signWith
	s.mu.Unlock()
	if !ok || challenge != base64.RawURLEncoding.EncodeToString(sum[:]) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "bad code or verifier"})
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": s.srv.URL, "aud": "client-1", "sub": "scripted-user-42", "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "nonce": nonce, "email": "u42@example.org", "email_verified": true, "name": "Scripted User"}
	if mutate != nil {
		mutate(claims)
	}
	if signWith == nil {
		signWith = signRS256
	}
	idt := signWith(s.t, s, claims)
	at := "at-SCRIPTED-" + code
	s.mu.Lock()
	s.issued = append(s.issued, idt, at)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
}

func (s *scripted) secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// signRS256 signs with the provider's published key.
func signRS256(t testing.TB, s *scripted, claims map[string]any) string {
	return signWithKey(t, s.key, s.kid, claims)
}

func signWithKey(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
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

// unsignedToken makes an alg "none" token.
func unsignedToken(_ testing.TB, _ *scripted, claims map[string]any) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, _ := json.Marshal(claims)
	return hdr + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}
