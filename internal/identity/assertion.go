package identity

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint (RFC 7515 §4.1.7); Entra ID still reads it
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionTTL keeps client assertions short-lived: each is used for one
// token request right after it is made.
const assertionTTL = 5 * time.Minute

// assertionType is the client_assertion_type of RFC 7523 §2.2.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// signer signs private_key_jwt client assertions with the configured
// certificate's key. The header names the certificate by its SHA-256
// thumbprint as kid and x5t#S256, and by x5t, so providers that look keys up
// either way (Entra ID by thumbprint, others by kid) find it.
type signer struct {
	jose jose.Signer
}

func newSigner(ck *clientKey) (*signer, error) {
	alg := jose.RS256
	if _, ok := ck.key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	s256 := sha256.Sum256(ck.cert.Raw)
	s1 := sha1.Sum(ck.cert.Raw) //nolint:gosec // see import
	thumb := base64.RawURLEncoding.EncodeToString(s256[:])
	opts := (&jose.SignerOptions{}).
		WithType("JWT").
		WithHeader(jose.HeaderKey("kid"), thumb).
		WithHeader(jose.HeaderKey("x5t#S256"), thumb).
		WithHeader(jose.HeaderKey("x5t"), base64.RawURLEncoding.EncodeToString(s1[:]))
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: ck.key}, opts)
	if err != nil {
		return nil, fmt.Errorf("client assertion signer: %w", err)
	}
	return &signer{jose: js}, nil
}

// assertion builds a client assertion (RFC 7523 §3, OpenID Connect Core §9)
// for one token request. audience is the token endpoint, plus the issuer for
// providers that expect that instead.
func (s *signer) assertion(clientID string, audience []string, now time.Time) (string, error) {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // crypto/rand.Read does not fail
	claims := jwt.Claims{
		Issuer:    clientID,
		Subject:   clientID,
		Audience:  jwt.Audience(audience),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(assertionTTL)),
	}
	tok, err := jwt.Signed(s.jose).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return tok, nil
}
