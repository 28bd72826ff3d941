package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyCachedKeys measures ID token verification alone (go-oidc's
// signature and claim checks plus this package's nonce, azp and iat checks)
// with the key set already cached: the connector's own cost per sign-in
// with no provider in the loop.
func BenchmarkVerifyCachedKeys(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
				"jwks_uri": srv.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"},
			})
		case "/keys":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "RS256"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	p, err := NewProvider(ProviderConfig{Name: "bench", Issuer: srv.URL, ClientID: "client", ClientSecret: "s", RootCAs: pool}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m, err := p.discover(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{
		"iss": srv.URL, "aud": "client", "sub": "user", "nonce": "n", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "u@example.org", "email_verified": true, "name": "U Ser",
	})
	jws, err := sg.Sign(payload)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := jws.CompactSerialize()
	if _, _, err := p.verify(ctx, m, raw, "n"); err != nil { // fetches and caches the keys
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		idt, c, err := p.verify(ctx, m, raw, "n")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.identity(idt, c, raw); err != nil {
			b.Fatal(err)
		}
	}
}
