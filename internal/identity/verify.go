package identity

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// recordingKeySet wraps go-oidc's RemoteKeySet to tell the caller what the
// signature check did, because go-oidc reports its failures as text only.
// The verification itself is entirely go-oidc's and go-jose's.
type recordingKeySet struct {
	inner oidc.KeySet
}

// sigOutcome is filled in by recordingKeySet for one verification.
type sigOutcome struct {
	called  bool
	payload []byte // the verified payload, when the signature held
	err     error
}

type outcomeKey struct{}

func (k *recordingKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.inner.VerifySignature(ctx, jwt)
	if o, ok := ctx.Value(outcomeKey{}).(*sigOutcome); ok {
		o.called, o.payload, o.err = true, payload, err
	}
	return payload, err
}

// verify runs go-oidc's ID token verification, then the checks go-oidc
// leaves to the caller (nonce, azp, iat), and maps every failure to a
// sentinel.
func (p *Provider) verify(ctx context.Context, m *metadata, raw, nonce string) (*oidc.IDToken, *tokenClaims, error) {
	var out sigOutcome
	idt, err := m.verifier.Verify(context.WithValue(ctx, outcomeKey{}, &out), raw)
	if err != nil {
		return nil, nil, p.classify(ctx, m, raw, &out, err)
	}
	c, err := unmarshalClaims(out.payload)
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, nil, ErrNonceMismatch
	}
	// OpenID Connect Core §3.1.3.7 items 4 and 5.
	if c.AuthorizedParty != "" && c.AuthorizedParty != p.cfg.ClientID {
		return nil, nil, fmt.Errorf("azp %q: %w", c.AuthorizedParty, ErrAudienceMismatch)
	}
	if len(idt.Audience) > 1 && c.AuthorizedParty == "" {
		return nil, nil, fmt.Errorf("%d audiences and no azp: %w", len(idt.Audience), ErrAudienceMismatch)
	}
	if c.IssuedAt == nil {
		return nil, nil, fmt.Errorf("no iat: %w", ErrTokenMalformed)
	}
	if iat := time.Time(*c.IssuedAt); iat.After(p.opts.Now().Add(p.cfg.ClockSkew)) {
		return nil, nil, fmt.Errorf("iat %s is in the future: %w", iat.UTC().Format(time.RFC3339), ErrTokenNotYetValid)
	}
	return idt, c, nil
}

// classify maps a go-oidc verification error to a sentinel. go-oidc checks
// in this order: parse (algorithm), signature, iss, aud, exp, nbf. What the
// key set saw tells the stages apart; after a good signature, the verified
// payload says which claim failed.
func (p *Provider) classify(ctx context.Context, m *metadata, raw string, out *sigOutcome, err error) error {
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return fmt.Errorf("exp %s: %w", expired.Expiry.UTC().Format(time.RFC3339), ErrTokenExpired)
	}
	if !out.called {
		// Parsing failed before any key was consulted: find out whether the
		// header names an algorithm the provider does not use.
		all := append(slices.Clone(supportedAlgs), "HS256", "HS384", "HS512", "none")
		algs := make([]jose.SignatureAlgorithm, len(all))
		for i, a := range all {
			algs[i] = jose.SignatureAlgorithm(a)
		}
		if jws, perr := jose.ParseSigned(raw, algs); perr == nil && len(jws.Signatures) == 1 {
			if alg := jws.Signatures[0].Header.Algorithm; !slices.Contains(m.algs, alg) {
				return fmt.Errorf("alg %q, provider uses %q: %w", alg, m.algs, ErrUnsupportedAlgorithm)
			}
		}
		return fmt.Errorf("%w", ErrTokenMalformed)
	}
	if out.err != nil {
		// RemoteKeySet wraps a failed key fetch (including a deadline) and
		// returns a bare error when no fetched key verifies the token.
		if errors.Unwrap(out.err) != nil || ctx.Err() != nil {
			p.log.LogAttrs(ctx, slog.LevelWarn, "identity: key set unavailable", slog.String("error", out.err.Error()))
			return fmt.Errorf("%s: %w", clean(out.err.Error(), 300), ErrJWKSUnavailable)
		}
		return fmt.Errorf("%w", ErrSignatureInvalid)
	}
	var c struct {
		Issuer    string     `json:"iss"`
		Audience  stringList `json:"aud"`
		NotBefore *flexTime  `json:"nbf"`
	}
	if uerr := json.Unmarshal(out.payload, &c); uerr != nil {
		return fmt.Errorf("claims: %v: %w", uerr, ErrTokenMalformed)
	}
	if c.Issuer != m.issuer {
		return fmt.Errorf("iss %q, want %q: %w", clean(c.Issuer, 200), m.issuer, ErrTokenIssuerMismatch)
	}
	if !slices.Contains(c.Audience, p.cfg.ClientID) {
		return fmt.Errorf("aud %q: %w", c.Audience, ErrAudienceMismatch)
	}
	// What remains in go-oidc's order is the nbf check, and decoding.
	if c.NotBefore != nil && time.Time(*c.NotBefore).After(p.opts.Now()) {
		return fmt.Errorf("nbf %s is in the future: %w", time.Time(*c.NotBefore).UTC().Format(time.RFC3339), ErrTokenNotYetValid)
	}
	return fmt.Errorf("%s: %w", clean(err.Error(), 200), ErrTokenMalformed)
}
