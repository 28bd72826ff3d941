package identity_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The OpenID Provider in these tests is zitadel/oidc's op package (OpenID
// Certified), run in the test process over TLS, on the in-memory storage
// that ships with it. opStore adds what the tests need on top: clients with
// each token endpoint auth method, client keys for private_key_jwt, signing
// key rotation, and a request counter on the key set.

const (
	opUser     = "alice"
	opPassword = "correct horse battery staple"
	opUserID   = "id-alice"
	opEmail    = "alice@example.org"
	redirect   = "https://portal.test/signin-test"
	afterOut   = "https://portal.test/signed-out"
)

// rsaKey is a signing key for the OP: op.SigningKey and op.Key.
type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *rsaKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k *rsaKey) ID() string                                  { return k.id }
func (k *rsaKey) Use() string                                 { return "sig" }

type privateRSAKey struct{ *rsaKey }

func (k privateRSAKey) Key() any { return k.key }

type publicRSAKey struct{ *rsaKey }

func (k publicRSAKey) Key() any { return &k.key.PublicKey }

func newRSAKey(t testing.TB, id string) *rsaKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &rsaKey{id: id, key: k}
}

// opClient is one of the storage's web clients with the auth method,
// post-logout URIs and claim placement the tests want.
type opClient struct {
	op.Client
	method oidc.AuthMethod
}

func (c opClient) AuthMethod() oidc.AuthMethod          { return c.method }
func (c opClient) PostLogoutRedirectURIs() []string     { return []string{afterOut} }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return true } // email and profile claims in the ID token, as Entra and Google put them

type opStore struct {
	*storage.Storage
	mu         sync.Mutex
	signing    *rsaKey
	clients    map[string]opClient
	clientKeys map[string]*jose.JSONWebKey // "client/kid" -> public key
}

func (s *opStore) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return privateRSAKey{s.signing}, nil
}

func (s *opStore) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *opStore) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []op.Key{publicRSAKey{s.signing}}, nil
}

func (s *opStore) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

func (s *opStore) GetKeyByIDAndClientID(_ context.Context, kid, clientID string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.clientKeys[clientID+"/"+kid]
	if !ok {
		return nil, errors.New("key not found")
	}
	return k, nil
}

type userStore struct{ users map[string]*storage.User }

func (u userStore) GetUserByID(id string) *storage.User { return u.users[id] }
func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u.users {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u userStore) ExampleClientID() string { return "unused" }

// testOP is a running provider.
type testOP struct {
	t        testing.TB
	srv      *httptest.Server
	issuer   string
	pool     *x509.CertPool
	store    *opStore
	provider *op.Provider
	browser  *http.Client // trusts the OP, follows no redirects
	keyHits  atomic.Int64
	tokenNs  atomic.Int64 // time spent serving the token endpoint, for benchmarks

	mu        sync.Mutex
	tokenAuth []string // how each token request authenticated: basic, post or jwt
}

func startOP(t testing.TB) *testOP {
	t.Helper()
	var handler http.Handler
	o := &testOP{t: t}
	o.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/keys":
			o.keyHits.Add(1)
		case "/oauth/token":
			o.recordTokenAuth(r)
			start := time.Now()
			defer func() { o.tokenNs.Add(int64(time.Since(start))) }()
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(o.srv.Close)
	o.issuer = o.srv.URL
	o.pool = x509.NewCertPool()
	o.pool.AddCert(o.srv.Certificate())

	users := userStore{users: map[string]*storage.User{opUserID: {
		ID: opUserID, Username: opUser, Password: opPassword, FirstName: "Alice", LastName: "Liddell",
		Email: opEmail, EmailVerified: true, PreferredLanguage: language.English,
	}}}
	base := map[string]*storage.Client{}
	o.store = &opStore{
		signing:    newRSAKey(t, "key-1"),
		clients:    map[string]opClient{},
		clientKeys: map[string]*jose.JSONWebKey{},
	}
	for id, m := range map[string]oidc.AuthMethod{
		"app-basic": oidc.AuthMethodBasic, "app-post": oidc.AuthMethodPost, "app-jwt": oidc.AuthMethodPrivateKeyJWT,
	} {
		secret := "secret-of-" + id
		if m == oidc.AuthMethodPrivateKeyJWT {
			secret = ""
		}
		base[id] = storage.WebClient(id, secret, redirect)
		o.store.clients[id] = opClient{Client: base[id], method: m}
	}
	o.store.Storage = storage.NewStorageWithClients(users, base)

	var key [32]byte
	_, _ = rand.Read(key[:])
	p, err := op.NewOpenIDProvider(o.issuer, &op.Config{
		CryptoKey:                key,
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		AuthMethodPrivateKeyJWT:  true,
		SupportedUILocales:       []language.Tag{language.English},
	}, o.store)
	if err != nil {
		t.Fatal(err)
	}
	o.provider = p
	mux := http.NewServeMux()
	login := op.NewIssuerInterceptor(p.IssuerFromRequest).HandlerFunc(o.login)
	mux.Handle("/login/username", login)
	mux.Handle("/", p)
	handler = mux

	o.browser = &http.Client{
		Transport:     &http.Transport{TLSClientConfig: tlsConfig(o.pool)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(o.browser.CloseIdleConnections)
	return o
}

// recordTokenAuth notes how a token request authenticates the client and
// leaves the body for the OP to read.
func (o *testOP) recordTokenAuth(r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	how := "none"
	switch _, _, basic := r.BasicAuth(); {
	case basic:
		how = "basic"
	case form.Get("client_secret") != "":
		how = "post"
	case form.Get("client_assertion") != "":
		how = "jwt"
	}
	o.mu.Lock()
	o.tokenAuth = append(o.tokenAuth, how)
	o.mu.Unlock()
}

func (o *testOP) lastTokenAuth() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tokenAuth) == 0 {
		return ""
	}
	return o.tokenAuth[len(o.tokenAuth)-1]
}

// login is the OP's login page: POST id, username, password signs in;
// POST id, deny refuses, which the OP reports as access_denied.
func (o *testOP) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.FormValue("id")
	if r.FormValue("deny") != "" {
		ar, err := o.store.AuthRequestByID(r.Context(), id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		op.AuthRequestError(w, r, ar, oidc.ErrAccessDenied().WithDescription("the user cancelled"), o.provider)
		return
	}
	if err := o.store.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(o.provider)(r.Context(), id), http.StatusFound)
}

// rotate replaces the OP's signing key; the old key leaves the key set.
func (o *testOP) rotate(id string) {
	k := newRSAKey(o.t, id)
	o.store.mu.Lock()
	o.store.signing = k
	o.store.mu.Unlock()
}

// authorize plays the browser from the authorization URL to the redirect
// back to the relying party, signing in (or denying when deny is set), and
// returns the callback query. It reports errors rather than failing the test
// so that concurrent sign-ins can use it.
func (o *testOP) authorize(authURL string, deny bool) (url.Values, error) {
	loc, err := o.follow(authURL)
	if err != nil {
		return nil, err
	}
	if loc.Path != "/login/username" {
		return callback(loc)
	}
	form := url.Values{"id": {loc.Query().Get("authRequestID")}, "username": {opUser}, "password": {opPassword}}
	if deny {
		form.Set("deny", "1")
	}
	resp, err := o.browser.PostForm(o.issuer+"/login/username", form)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	next, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("login answered %d without a redirect", resp.StatusCode)
	}
	if deny {
		return callback(next)
	}
	if next, err = o.follow(next.String()); err != nil {
		return nil, err
	}
	return callback(next)
}

func (o *testOP) mustAuthorize(authURL string) url.Values {
	o.t.Helper()
	q, err := o.authorize(authURL, false)
	if err != nil {
		o.t.Fatal(err)
	}
	return q
}

// follow GETs u and returns where it redirects.
func (o *testOP) follow(u string) (*url.URL, error) {
	resp, err := o.browser.Get(u)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("GET %s: status %d, no redirect", u, resp.StatusCode)
	}
	return loc, nil
}

func callback(loc *url.URL) (url.Values, error) {
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		return nil, fmt.Errorf("browser sent to %s, want the redirect URI %s", loc, redirect)
	}
	return loc.Query(), nil
}

// addClientKey registers the certificate's key for a private_key_jwt client
// under the kid the relying party puts in its assertions.
func (o *testOP) addClientKey(clientID, kid string, pub any) {
	o.store.mu.Lock()
	defer o.store.mu.Unlock()
	o.store.clientKeys[clientID+"/"+kid] = &jose.JSONWebKey{KeyID: kid, Use: "sig", Key: pub, Algorithm: string(jose.RS256)}
}
