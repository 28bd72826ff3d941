package sts

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// signingKey is the service's current ID token key. Entra ID publishes its
// keys at jwks_uri and rotates them; RotateKey does the same here.
type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	sum := sha256.Sum256(k.N.Bytes())
	// Entra's kids are short base64url thumbprints; this has the same shape.
	return &signingKey{kid: base64.RawURLEncoding.EncodeToString(sum[:20]), key: k}, nil
}

// jwk is the key's public half as a JSON Web Key (RFC 7517).
func (k *signingKey) jwk() map[string]any {
	return map[string]any{
		"kty": "RSA",
		"use": "sig",
		"kid": k.kid,
		"n":   base64.RawURLEncoding.EncodeToString(k.key.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.key.E)).Bytes()),
	}
}

// sign returns claims as a compact JWS signed RS256 (RFC 7515), the only ID
// token algorithm Entra ID advertises.
func (k *signingKey) sign(claims map[string]any) (string, error) {
	hdr, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": k.kid})
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verifyOwn checks that token is a JWS this key signed and returns its
// claims. It serves the logout endpoint's id_token_hint, which Entra accepts
// even after the token expired, so expiry is not checked.
func (k *signingKey) verifyOwn(token string) (map[string]any, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&k.key.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return nil, false
	}
	var claims map[string]any
	if decodeSegment(parts[1], &claims) != nil {
		return nil, false
	}
	return claims, true
}

// pairwiseSubject derives sub the way Entra ID shapes it: unique per user and
// application, so two apps never see the same sub for one person, while oid
// stays the same across apps. Deterministic, so a restarted emulator gives a
// returning demo user the same sub.
func pairwiseSubject(tenant, clientID, oid string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(tenant) + "\x00" + strings.ToLower(clientID) + "\x00" + strings.ToLower(oid)))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// idTokenClaims builds a v2.0 ID token for user as Entra issues it from the
// token endpoint: name, preferred_username and oid with the profile scope,
// email with the email scope, optional claims as the app registration asks.
func idTokenClaims(issuer, tenant, clientID, nonce string, scopes []string, u DemoUser, optional map[string]bool, now time.Time, ttl time.Duration) map[string]any {
	has := func(s string) bool { return slices.Contains(scopes, s) }
	c := map[string]any{
		"aud": clientID,
		"iss": issuer,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"sub": pairwiseSubject(tenant, clientID, u.ObjectID),
		"tid": tenant,
		"ver": "2.0",
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if has("profile") {
		c["name"] = u.Name
		c["preferred_username"] = u.Email
		c["oid"] = u.ObjectID
		given, family, _ := strings.Cut(u.Name, " ")
		if optional["given_name"] {
			c["given_name"] = given
		}
		if optional["family_name"] && family != "" {
			c["family_name"] = family
		}
	}
	if has("email") && u.Email != "" {
		c["email"] = u.Email
		if optional["xms_edov"] {
			c["xms_edov"] = true
		}
	}
	if optional["verified_primary_email"] && u.Email != "" {
		c["verified_primary_email"] = []string{u.Email}
	}
	return c
}
