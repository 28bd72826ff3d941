package sts

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const (
	testTenant = "8a3c1e52-9f0b-4d6e-a1c7-2b5f9e0d4c31"
	testClient = "5f2d8b14-3c6a-4e9f-b7d0-1a8c2e4f6b93"
	testSecret = "s3cr3t~value.for-tests"
	testScope  = "https://contoso.crm.dynamics.com/.default"
)

// fakeClock is a settable clock starting at the real time, so MSAL's own
// wall-clock checks and the service's clock agree until the test moves it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startTLS serves svc over TLS with a certificate from a fresh CA and returns
// the authority host URL and a client that trusts only that CA.
func startTLS(t *testing.T, svc *Service) (authority string, ca *CA, hc *http.Client) {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	t.Cleanup(hc.CloseIdleConnections)
	return srv.URL + "/", ca, hc
}

func clientOptions(authority string, hc *http.Client) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: authority},
		Transport: hc,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func TestClientSecretCredential(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	svc.AddSecretClient(testClient, testSecret)
	authority, _, hc := startTLS(t, svc)

	cred, err := azidentity.NewClientSecretCredential(testTenant, testClient, testSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(authority, hc), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{testScope}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if got, ok := svc.Validate(tok.Token); !ok || got != testClient {
		t.Fatalf("Validate(token) = %q, %v; want %q, true", got, ok, testClient)
	}
	if got, ok := svc.Validate("Bearer " + tok.Token); !ok || got != testClient {
		t.Fatalf("Validate(Bearer token) = %q, %v", got, ok)
	}
}

func TestClientSecretCredentialWrongSecret(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	svc.AddSecretClient(testClient, testSecret)
	authority, _, hc := startTLS(t, svc)

	cred, err := azidentity.NewClientSecretCredential(testTenant, testClient, "not-the-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(authority, hc), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{testScope}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("GetToken error = %v (%T), want *azidentity.AuthenticationFailedError", err, err)
	}
	if afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Errorf("RawResponse = %+v, want status 401", afe.RawResponse)
	}
	if !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("error does not carry the Entra code: %v", err)
	}
}

func TestClientCertificateCredential(t *testing.T) {
	clock := newFakeClock()
	svc := New(Options{TenantID: testTenant, Now: clock.Now})
	authority, ca, hc := startTLS(t, svc)

	certPEM, keyPEM, err := ca.ClientCertificate("connector-test")
	if err != nil {
		t.Fatal(err)
	}
	certs, key, err := azidentity.ParseCertificates(append(certPEM, keyPEM...), nil)
	if err != nil {
		t.Fatalf("ParseCertificates: %v", err)
	}
	svc.AddCertificateClient(testClient, certs[0])

	for _, chain := range []bool{false, true} {
		cred, err := azidentity.NewClientCertificateCredential(testTenant, testClient, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: clientOptions(authority, hc), DisableInstanceDiscovery: true, SendCertificateChain: chain})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{testScope}})
		if err != nil {
			t.Fatalf("GetToken (x5c=%v): %v", chain, err)
		}
		if got, ok := svc.Validate(tok.Token); !ok || got != testClient {
			t.Fatalf("Validate = %q, %v; want %q, true", got, ok, testClient)
		}
		clock.Advance(time.Hour + time.Second)
		if _, ok := svc.Validate(tok.Token); ok {
			t.Fatal("Validate accepted a token past its expiry")
		}
		clock.Advance(-time.Hour - time.Second)
	}
}

func TestClientCertificateCredentialUnregisteredCertificate(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	authority, ca, hc := startTLS(t, svc)

	registeredCert, registeredKey, err := ca.ClientCertificate("registered")
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := azidentity.ParseCertificates(append(registeredCert, registeredKey...), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc.AddCertificateClient(testClient, rc[0])

	otherCert, otherKey, err := ca.ClientCertificate("intruder")
	if err != nil {
		t.Fatal(err)
	}
	certs, key, err := azidentity.ParseCertificates(append(otherCert, otherKey...), nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := azidentity.NewClientCertificateCredential(testTenant, testClient, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: clientOptions(authority, hc), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{testScope}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("GetToken error = %v, want *azidentity.AuthenticationFailedError", err)
	}
	if !strings.Contains(err.Error(), "AADSTS700027") {
		t.Errorf("error does not carry AADSTS700027: %v", err)
	}
}

func TestInstanceDiscoveryDocument(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	authority, _, hc := startTLS(t, svc)
	q := url.Values{"api-version": {"1.1"}, "authorization_endpoint": {authority + testTenant + "/oauth2/v2.0/authorize"}}
	resp, err := hc.Get(authority + "common/discovery/instance?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Endpoint string `json:"tenant_discovery_endpoint"`
		Metadata []struct {
			Aliases []string `json:"aliases"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if want := authority + testTenant + "/v2.0/.well-known/openid-configuration"; doc.Endpoint != want {
		t.Errorf("tenant_discovery_endpoint = %q, want %q", doc.Endpoint, want)
	}
	if len(doc.Metadata) != 1 || len(doc.Metadata[0].Aliases) != 1 {
		t.Errorf("metadata = %+v", doc.Metadata)
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	srv := httptest.NewServer(svc)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/" + testTenant + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	base := "https://" + host + "/" + testTenant
	for k, want := range map[string]string{
		"issuer":                 base + "/v2.0",
		"token_endpoint":         base + "/oauth2/v2.0/token",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize",
		"jwks_uri":               base + "/discovery/v2.0/keys",
	} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %s", k, doc[k], want)
		}
	}
}

// entraError is the OAuth error body Entra ID returns.
type entraError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	TraceID     string `json:"trace_id"`
}

func TestTokenEndpointErrors(t *testing.T) {
	svc := New(Options{TenantID: testTenant})
	svc.AddSecretClient(testClient, testSecret)
	srv := httptest.NewServer(svc)
	defer srv.Close()
	tokenURL := srv.URL + "/" + testTenant + "/oauth2/v2.0/token"

	base := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "client_secret": {testSecret},
			"scope": {testScope + " openid offline_access profile"}}
	}
	with := func(k, v string) url.Values {
		f := base()
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name   string
		url    string
		form   url.Values
		status int
		kind   string
		code   int
	}{
		{"ok", tokenURL, base(), 200, "", 0},
		{"missing grant", tokenURL, with("grant_type", ""), 400, "invalid_request", 900144},
		{"password grant", tokenURL, with("grant_type", "password"), 400, "unsupported_grant_type", 70003},
		{"missing scope", tokenURL, with("scope", "openid profile"), 400, "invalid_request", 900144},
		{"scope without .default", tokenURL, with("scope", "https://contoso.crm.dynamics.com/user_impersonation"), 400, "invalid_scope", 1002012},
		{"unknown client", tokenURL, with("client_id", "00000000-0000-0000-0000-000000000001"), 400, "unauthorized_client", 700016},
		{"no credential", tokenURL, with("client_secret", ""), 401, "invalid_client", 7000218},
		{"wrong secret", tokenURL, with("client_secret", "nope"), 401, "invalid_client", 7000215},
		{"bad assertion type", tokenURL, func() url.Values {
			f := with("client_secret", "")
			f.Set("client_assertion", "a.b.c")
			f.Set("client_assertion_type", "jwt")
			return f
		}(), 400, "invalid_request", 900144},
		{"wrong tenant", srv.URL + "/contoso.onmicrosoft.com/oauth2/v2.0/token", base(), 400, "invalid_request", 90002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.PostForm(tt.url, tt.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == 200 {
				var ok struct {
					TokenType   string `json:"token_type"`
					ExpiresIn   int    `json:"expires_in"`
					AccessToken string `json:"access_token"`
				}
				if err := json.Unmarshal(body, &ok); err != nil || ok.TokenType != "Bearer" || ok.ExpiresIn != 3600 || ok.AccessToken == "" {
					t.Fatalf("token response %s (%v)", body, err)
				}
				return
			}
			var e entraError
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			if e.Error != tt.kind || len(e.Codes) != 1 || e.Codes[0] != tt.code || e.TraceID == "" {
				t.Errorf("error body = %+v, want %s %d", e, tt.kind, tt.code)
			}
			if !strings.HasPrefix(e.Description, "AADSTS") {
				t.Errorf("description %q lacks the AADSTS prefix", e.Description)
			}
		})
	}

	t.Run("GET on token endpoint", func(t *testing.T) {
		resp, err := http.Get(tokenURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("status = %d, want 400", resp.StatusCode)
		}
	})
	t.Run("client_secret_basic", func(t *testing.T) {
		f := with("client_secret", "")
		f.Del("client_id")
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(testClient, testSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status = %d, want 200", resp.StatusCode)
		}
	})
}

// signAssertion builds a client assertion by hand, so tests can break one
// claim at a time.
func signAssertion(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate, claims map[string]any) string {
	t.Helper()
	th := sha256.Sum256(cert.Raw)
	hdr, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "x5t#S256": base64.StdEncoding.EncodeToString(th[:])})
	body, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAssertionClaims(t *testing.T) {
	clock := newFakeClock()
	svc := New(Options{TenantID: testTenant, Now: clock.Now})
	srv := httptest.NewServer(svc)
	defer srv.Close()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.ClientCertificate("assertions")
	if err != nil {
		t.Fatal(err)
	}
	certs, key, err := azidentity.ParseCertificates(append(certPEM, keyPEM...), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc.AddCertificateClient(testClient, certs[0])
	// The token URL as the service sees it: https on the request's host.
	aud := "https://" + strings.TrimPrefix(srv.URL, "http://") + "/" + testTenant + "/oauth2/v2.0/token"
	now := clock.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"aud": aud, "iss": testClient, "sub": testClient, "jti": "1", "nbf": now, "exp": now + 600}
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		code   int
	}{
		{"valid", func(map[string]any) {}, 0},
		{"aud array", func(c map[string]any) { c["aud"] = []string{aud} }, 0},
		{"expired", func(c map[string]any) { c["exp"] = now - 3600 }, 700024},
		{"not yet valid", func(c map[string]any) { c["nbf"] = now + 3600; c["exp"] = now + 7200 }, 700024},
		{"wrong audience", func(c map[string]any) {
			c["aud"] = "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token"
		}, 700212},
		{"wrong issuer", func(c map[string]any) { c["iss"] = "someone-else" }, 700021},
		{"no exp", func(c map[string]any) { delete(c, "exp") }, 50027},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := good()
			tt.mutate(claims)
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "scope": {testScope},
				"client_assertion_type": {assertionType}, "client_assertion": {signAssertion(t, key.(*rsa.PrivateKey), certs[0], claims)}}
			resp, err := http.PostForm(srv.URL+"/"+testTenant+"/oauth2/v2.0/token", form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e entraError
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if tt.code == 0 {
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %+v", resp.StatusCode, e)
				}
				return
			}
			if resp.StatusCode != 401 || len(e.Codes) != 1 || e.Codes[0] != tt.code {
				t.Fatalf("status %d, body %+v; want 401 AADSTS%d", resp.StatusCode, e, tt.code)
			}
		})
	}

	t.Run("tampered signature", func(t *testing.T) {
		a := signAssertion(t, key.(*rsa.PrivateKey), certs[0], good())
		parts := strings.Split(a, ".")
		body, _ := json.Marshal(map[string]any{"aud": aud, "iss": testClient, "sub": testClient, "exp": now + 99999})
		parts[1] = base64.RawURLEncoding.EncodeToString(body)
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "scope": {testScope},
			"client_assertion_type": {assertionType}, "client_assertion": {strings.Join(parts, ".")}}
		resp, err := http.PostForm(srv.URL+"/"+testTenant+"/oauth2/v2.0/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status = %d, want 401", resp.StatusCode)
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	clock := newFakeClock()
	svc := New(Options{TokenTTL: 10 * time.Minute, Now: clock.Now})
	tok := svc.IssueToken("app")
	clock.Advance(10*time.Minute - time.Nanosecond)
	if id, ok := svc.Validate(tok); !ok || id != "app" {
		t.Fatalf("Validate just before expiry = %q, %v", id, ok)
	}
	clock.Advance(time.Nanosecond)
	if _, ok := svc.Validate(tok); ok {
		t.Fatal("Validate accepted a token at its expiry instant")
	}
	for _, bad := range []string{"", "Bearer ", "not-a-token", "Bearer not-a-token"} {
		if _, ok := svc.Validate(bad); ok {
			t.Errorf("Validate(%q) = ok", bad)
		}
	}
}

func TestExpiredTokensArePruned(t *testing.T) {
	clock := newFakeClock()
	svc := New(Options{TokenTTL: time.Minute, Now: clock.Now})
	for range 1500 {
		svc.IssueToken("app")
	}
	clock.Advance(2 * time.Minute)
	live := svc.IssueToken("app") // crosses the sweep threshold
	for range 600 {
		svc.IssueToken("app")
	}
	svc.mu.Lock()
	n := len(svc.tokens)
	svc.mu.Unlock()
	if n > 1024 {
		t.Errorf("%d tokens retained after expiry, want the expired ones pruned", n)
	}
	if _, ok := svc.Validate(live); !ok {
		t.Error("live token lost in pruning")
	}
}

func TestHandles(t *testing.T) {
	for path, want := range map[string]bool{
		"/" + testTenant + "/v2.0/.well-known/openid-configuration": true,
		"/" + testTenant + "/oauth2/v2.0/token":                     true,
		"/common/discovery/instance":                                true,
		"/" + testTenant + "/discovery/v2.0/keys":                   true,
		"/api/data/v9.2/contacts":                                   false,
		"/api/data/v9.2/WhoAmI":                                     false,
		"/":                                                         false,
		"/" + testTenant + "/oauth2/token":                          false,
	} {
		if got := New(Options{}).Handles(path); got != want {
			t.Errorf("Handles(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestConcurrentIssueAndValidate(t *testing.T) {
	svc := New(Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				tok := svc.IssueToken("app")
				if _, ok := svc.Validate(tok); !ok {
					t.Errorf("worker %d: fresh token rejected", i)
					return
				}
			}
		}()
	}
	wg.Wait()
}
