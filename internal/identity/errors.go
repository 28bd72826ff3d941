package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Sentinels for every way a sign-in can be refused. Callers branch on them
// with errors.Is to pick the page they show; the wrapped text adds detail for
// logs. No error built by this package carries an authorization code, an
// access token or an ID token in its text.
var (
	// ErrInvalidConfig: a provider configuration is unusable.
	ErrInvalidConfig = errors.New("invalid identity provider configuration")

	// ErrNoPendingSignIn: the callback arrived with no sign-in started for
	// this provider in the browser session (missing, already consumed, or
	// started for another provider).
	ErrNoPendingSignIn = errors.New("no sign-in in progress")
	// ErrSignInExpired: the sign-in was started too long ago.
	ErrSignInExpired = errors.New("sign-in took too long")
	// ErrStateMismatch: the callback's state is missing or is not the one
	// bound to the browser session.
	ErrStateMismatch = errors.New("state does not match the sign-in in progress")
	// ErrStateReused: the callback repeats a state this process already
	// finished (a replayed callback URL).
	ErrStateReused = errors.New("state was already used")

	// ErrAccessDenied: the provider reported error=access_denied (the user
	// cancelled or was refused).
	ErrAccessDenied = errors.New("the identity provider denied access")
	// ErrLoginRequired: the provider needs interaction it could not get
	// (login_required, interaction_required, consent_required,
	// account_selection_required).
	ErrLoginRequired = errors.New("the identity provider requires the user to sign in")
	// ErrProviderError: any other error response on the callback.
	ErrProviderError = errors.New("the identity provider returned an error")
	// ErrMissingCode: the callback carries neither a code nor an error.
	ErrMissingCode = errors.New("callback has no authorization code")

	// ErrDiscoveryFailed: the discovery document could not be fetched or read.
	ErrDiscoveryFailed = errors.New("identity provider discovery failed")
	// ErrDiscoveryIssuerMismatch: the discovery document names another issuer
	// than the one configured.
	ErrDiscoveryIssuerMismatch = errors.New("discovery document names another issuer")
	// ErrNoEndSession: the provider offers no end_session_endpoint.
	ErrNoEndSession = errors.New("identity provider offers no sign-out endpoint")

	// ErrCodeRejected: the token endpoint refused the code (invalid_grant):
	// replayed, expired, issued to another client or redirect URI, or the
	// PKCE verifier does not match.
	ErrCodeRejected = errors.New("the identity provider refused the authorization code")
	// ErrClientRejected: the token endpoint refused the client credentials.
	ErrClientRejected = errors.New("the identity provider refused the client credentials")
	// ErrTokenEndpoint: the token endpoint failed otherwise (unreachable,
	// server error, unreadable answer).
	ErrTokenEndpoint = errors.New("token request failed")
	// ErrNoIDToken: the token response has no id_token.
	ErrNoIDToken = errors.New("token response has no ID token")

	// ErrTokenMalformed: the ID token is not a well-formed signed JWT with
	// the required claims.
	ErrTokenMalformed = errors.New("ID token is malformed")
	// ErrUnsupportedAlgorithm: the ID token is signed with an algorithm the
	// provider does not advertise, including alg "none".
	ErrUnsupportedAlgorithm = errors.New("ID token signed with an unsupported algorithm")
	// ErrSignatureInvalid: no key of the provider's JWKS verifies the ID
	// token, after refreshing the key set once (unknown kid, forged token).
	ErrSignatureInvalid = errors.New("ID token signature is not valid")
	// ErrJWKSUnavailable: the provider's key set could not be fetched in time.
	ErrJWKSUnavailable = errors.New("identity provider keys unavailable")
	// ErrTokenIssuerMismatch: the ID token's iss is not the provider's issuer.
	ErrTokenIssuerMismatch = errors.New("ID token issued by another issuer")
	// ErrAudienceMismatch: the ID token's aud does not contain the client id,
	// or azp names another client, or several audiences come without azp.
	ErrAudienceMismatch = errors.New("ID token issued to another client")
	// ErrTokenExpired: the ID token's exp is past, beyond the clock skew.
	ErrTokenExpired = errors.New("ID token expired")
	// ErrTokenNotYetValid: the ID token's nbf or iat lies in the future,
	// beyond the clock skew.
	ErrTokenNotYetValid = errors.New("ID token not yet valid")
	// ErrNonceMismatch: the ID token's nonce is not the one bound to the
	// browser session.
	ErrNonceMismatch = errors.New("ID token nonce does not match")
	// ErrMissingClaim: a claim the connector needs (the provider key) is
	// absent.
	ErrMissingClaim = errors.New("ID token lacks a required claim")
)

// ProviderError is an OAuth error response from the provider, on the
// callback or from the token endpoint. It unwraps to one of the sentinels
// above, so errors.Is(err, ErrAccessDenied) works.
type ProviderError struct {
	Code        string // the OAuth "error" value, e.g. access_denied
	Description string // error_description, cleaned and shortened
	kind        error
}

func (e *ProviderError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("%v: %s", e.kind, e.Code)
	}
	return fmt.Sprintf("%v: %s: %s", e.kind, e.Code, e.Description)
}

func (e *ProviderError) Unwrap() error { return e.kind }

// callbackError classifies an error response on the redirect URI.
func callbackError(code, description string) *ProviderError {
	kind := ErrProviderError
	switch code {
	case "access_denied":
		kind = ErrAccessDenied
	case "login_required", "interaction_required", "consent_required", "account_selection_required":
		kind = ErrLoginRequired
	}
	return &ProviderError{Code: clean(code, 64), Description: clean(description, 200), kind: kind}
}

// clean makes provider-supplied text safe to log and show: it arrives through
// the browser, so it is untrusted. Control characters go, length is capped.
func clean(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
