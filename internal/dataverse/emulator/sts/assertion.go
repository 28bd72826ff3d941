package sts

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// clockSkew is the leeway on exp/nbf and certificate validity, as identity
// providers allow for unsynchronised clocks.
const clockSkew = 5 * time.Minute

// assertionError carries the AADSTS code and message Entra ID would return.
type assertionError struct {
	code int
	msg  string
}

func badAssertion(code int, format string, args ...any) *assertionError {
	return &assertionError{code: code, msg: fmt.Sprintf(format, args...)}
}

// verifyAssertion checks a client assertion the way Entra ID does for the
// private_key_jwt method: a compact JWS signed RS256 or PS256 by one of the
// application's registered certificates, issued by and about the client,
// addressed to this token endpoint, and within its validity window.
func verifyAssertion(jwt, clientID string, certs []*x509.Certificate, audiences []string, now time.Time) *assertionError {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return badAssertion(50027, "JWT token is invalid or malformed.")
	}
	var header struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud audience    `json:"aud"`
		Iss string      `json:"iss"`
		Sub string      `json:"sub"`
		Exp json.Number `json:"exp"`
		Nbf json.Number `json:"nbf"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return badAssertion(50027, "JWT token is invalid or malformed.")
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return badAssertion(50027, "JWT token is invalid or malformed.")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return badAssertion(50027, "JWT token is invalid or malformed.")
	}
	if header.Alg != "RS256" && header.Alg != "PS256" {
		return badAssertion(5002738, "Invalid JWT token. '%s' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, PS256'.", header.Alg)
	}

	candidates := certsByThumbprint(certs, header.X5t, header.X5tS256)
	if len(candidates) == 0 {
		return badAssertion(700027, "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '%s'.]", thumbprintHint(header.X5t, header.X5tS256))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var signer *x509.Certificate
	for _, c := range candidates {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		var verr error
		if header.Alg == "PS256" {
			verr = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			verr = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
		}
		if verr == nil {
			signer = c
			break
		}
	}
	if signer == nil {
		return badAssertion(700027, "Client assertion failed signature validation.")
	}
	if now.After(signer.NotAfter.Add(clockSkew)) || now.Before(signer.NotBefore.Add(-clockSkew)) {
		return badAssertion(700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]")
	}

	if claims.Iss != clientID || claims.Sub != clientID {
		return badAssertion(700021, "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")
	}
	if !claims.Aud.matches(audiences) {
		return badAssertion(700212, "No matching federated identity record found for presented assertion audience '%s'.", strings.Join(claims.Aud, " "))
	}
	exp, err := claims.Exp.Int64()
	if err != nil {
		return badAssertion(50027, "JWT token is invalid or malformed. The 'exp' claim is missing.")
	}
	if !now.Before(time.Unix(exp, 0).Add(clockSkew)) {
		return badAssertion(700024, "Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.",
			now.UTC().Format(time.RFC3339), formatNumericDate(claims.Nbf), time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	if claims.Nbf != "" {
		nbf, err := claims.Nbf.Int64()
		if err != nil {
			return badAssertion(50027, "JWT token is invalid or malformed.")
		}
		if now.Before(time.Unix(nbf, 0).Add(-clockSkew)) {
			return badAssertion(700024, "Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.",
				now.UTC().Format(time.RFC3339), time.Unix(nbf, 0).UTC().Format(time.RFC3339), time.Unix(exp, 0).UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// certsByThumbprint narrows the registered certificates to the one the JWT
// header names; an assertion without a thumbprint is tried against all.
func certsByThumbprint(certs []*x509.Certificate, x5t, x5tS256 string) []*x509.Certificate {
	if x5t == "" && x5tS256 == "" {
		return certs
	}
	var out []*x509.Certificate
	for _, c := range certs {
		s1 := sha1.Sum(c.Raw)
		s256 := sha256.Sum256(c.Raw)
		if (x5t != "" && thumbprintEqual(x5t, s1[:])) || (x5tS256 != "" && thumbprintEqual(x5tS256, s256[:])) {
			out = append(out, c)
		}
	}
	return out
}

// thumbprintEqual accepts the base64url encoding RFC 7515 specifies and the
// standard base64 that MSAL actually sends.
func thumbprintEqual(enc string, sum []byte) bool {
	for _, e := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := e.DecodeString(enc); err == nil && bytes.Equal(b, sum) {
			return true
		}
	}
	return false
}

func thumbprintHint(x5t, x5tS256 string) string {
	if x5tS256 != "" {
		return x5tS256
	}
	return x5t
}

func formatNumericDate(n json.Number) string {
	v, err := n.Int64()
	if err != nil {
		return "(none)"
	}
	return time.Unix(v, 0).UTC().Format(time.RFC3339)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("decode segment: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode segment: %w", err)
	}
	return nil
}

// audience is the JWT aud claim, which may be a string or an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

func (a audience) matches(want []string) bool {
	for _, got := range a {
		for _, w := range want {
			if strings.EqualFold(strings.TrimSuffix(got, "/"), strings.TrimSuffix(w, "/")) {
				return true
			}
		}
	}
	return false
}
