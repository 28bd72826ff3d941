package dataverse

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// fakeSTS is a minimal Entra ID token endpoint over TLS (azidentity refuses
// plain http authorities).
type fakeSTS struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	forms  []map[string]string
}

func newFakeSTS(t *testing.T) *fakeSTS {
	t.Helper()
	s := &fakeSTS{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		tenant := parts[0]
		base := s.srv.URL + "/" + tenant
		switch {
		case strings.HasSuffix(r.URL.Path, "/openid-configuration"):
			json.NewEncoder(w).Encode(map[string]string{
				"token_endpoint":         base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize",
				"issuer":                 base + "/v2.0",
			})
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			r.ParseForm()
			form := map[string]string{}
			for k := range r.PostForm {
				form[k] = r.PostForm.Get(k)
			}
			s.mu.Lock()
			s.forms = append(s.forms, form)
			s.mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + form["client_id"], "expires_in": 3600, "token_type": "Bearer"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(s.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *fakeSTS) lastForm() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) == 0 {
		return nil
	}
	return s.forms[len(s.forms)-1]
}

func TestNewHTTPClientTrustsOnlyGivenCA(t *testing.T) {
	sts := newFakeSTS(t)
	plain, err := NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Jar != nil {
		t.Error("cookie jar set: affinity would stick")
	}
	if _, err := plain.Get(sts.srv.URL + "/t/v2.0/.well-known/openid-configuration"); err == nil {
		t.Error("untrusted certificate accepted")
	}
	withCA, err := NewHTTPClient(sts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := withCA.Get(sts.srv.URL + "/t/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr := withCA.Transport.(*http.Transport)
	if tr.TLSClientConfig.InsecureSkipVerify || tr.MaxIdleConnsPerHost < maxDOP {
		t.Errorf("transport %+v", tr)
	}
	if _, err := NewHTTPClient(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := NewHTTPClient(junk); err == nil {
		t.Error("CA file without certificates accepted")
	}
}

func TestClientSecretCredentialAgainstLocalAuthority(t *testing.T) {
	sts := newFakeSTS(t)
	hc, err := NewHTTPClient(sts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := NewCredential(AuthConfig{
		Method: "client_secret", TenantID: "contoso-tenant", ClientID: "app-1", ClientSecret: "s3cret",
		AuthorityHost: sts.srv.URL + "/", DisableInstanceDiscovery: true,
	}, hc)
	if err != nil {
		t.Fatal(err)
	}
	// The client asks for "<org>/.default" and sends the token.
	api := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, `{"UserId":"u"}`)
	})
	c, err := New(Config{URL: api.srv.URL}, cred, &Options{HTTPClient: api.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	form := sts.lastForm()
	if form["grant_type"] != "client_credentials" || form["client_secret"] != "s3cret" || !strings.Contains(form["scope"], api.srv.URL+"/.default") {
		t.Errorf("token request %v", form)
	}
	if got := api.requests()[0].Header.Get("Authorization"); got != "Bearer tok-app-1" {
		t.Errorf("Authorization %q", got)
	}
}

func TestClientCertificateCredential(t *testing.T) {
	sts := newFakeSTS(t)
	hc, _ := NewHTTPClient(sts.caFile)
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "connector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	pemPath := filepath.Join(dir, "cert.pem")
	os.WriteFile(pemPath, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...), 0o600)

	paths := map[string]string{"pem": pemPath}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		pfx := filepath.Join(dir, "cert.pfx")
		out, err := exec.Command(openssl, "pkcs12", "-export", "-in", pemPath, "-inkey", pemPath, "-out", pfx, "-passout", "pass:pfx-pass",
			// azidentity's PKCS#12 decoder reads only the legacy SHA-1/3DES encoding.
			"-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1").CombinedOutput()
		if err == nil {
			paths["pfx"] = pfx
		} else {
			t.Logf("openssl pkcs12: %v %s", err, out)
		}
	}
	for kind, path := range paths {
		t.Run(kind, func(t *testing.T) {
			a := AuthConfig{Method: "client_certificate", TenantID: "contoso-tenant", ClientID: "cert-app",
				CertificatePath: path, AuthorityHost: sts.srv.URL + "/", DisableInstanceDiscovery: true}
			if kind == "pfx" {
				a.CertificatePassword = "pfx-pass"
			}
			cred, err := NewCredential(a, hc)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://org.example/.default"}})
			if err != nil {
				t.Fatal(err)
			}
			form := sts.lastForm()
			if tok.Token != "tok-cert-app" || form["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form["client_assertion"] == "" {
				t.Errorf("token %q form %v", tok.Token, form)
			}
		})
	}
	if _, err := NewCredential(AuthConfig{Method: "client_certificate", TenantID: "t", ClientID: "c", CertificatePath: filepath.Join(dir, "nope.pem")}, nil); err == nil {
		t.Error("missing certificate accepted")
	}
}

func TestNewCredentialMethods(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("federated"), 0o600)
	ok := []AuthConfig{
		{Method: "managed_identity"},
		{Method: "managed_identity", ClientID: "user-assigned"},
		{Method: "workload_identity", TenantID: "t", ClientID: "c", TokenFilePath: tokenFile},
		{Method: "default", TenantID: "t"},
	}
	for _, a := range ok {
		if cred, err := NewCredential(a, nil); err != nil || cred == nil {
			t.Errorf("%+v: %v", a, err)
		}
	}
	bad := []AuthConfig{
		{Method: "password"},
		{Method: "client_secret", TenantID: "t", ClientID: "c"},
		{Method: "client_certificate", TenantID: "t"},
		{Method: "client_secret", TenantID: "t", ClientID: "c", ClientSecret: "s", AuthorityHost: "http://insecure.example/"},
	}
	for _, a := range bad {
		if _, err := NewCredential(a, nil); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

func TestTokenSourceRefreshesEarlyInBackground(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cred := &staticCred{token: "t1"}
	ts := newTokenSource(cred, "https://org/.default", clock)
	tok, err := ts.token(context.Background())
	if err != nil || tok != "t1" || cred.calls.Load() != 1 {
		t.Fatalf("%q %v %d", tok, err, cred.calls.Load())
	}
	// staticCred's tokens expire an hour after the real clock; move the fake
	// clock into the refresh window.
	ts.mu.Lock()
	ts.tok.ExpiresOn = now.Add(2 * time.Minute)
	ts.mu.Unlock()
	tok, err = ts.token(context.Background())
	if err != nil || tok != "t1" {
		t.Fatalf("valid token not served during refresh: %q %v", tok, err)
	}
	for cred.calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	ts.expire()
	if tok, err := ts.token(context.Background()); err != nil || tok != "t1" || cred.calls.Load() < 3 {
		t.Errorf("after expire: %q %v %d", tok, err, cred.calls.Load())
	}
}
