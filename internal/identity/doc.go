// Package identity is the connector's OpenID Connect relying party: provider
// configuration, discovery and key sets, the authorization code flow with
// PKCE, ID token verification and the claims the portal needs. It knows
// nothing of Dataverse or of the web framework; the portal binds a sign-in
// to the browser session and links the resulting identity to a contact.
//
// # Flow
//
//	p := registry.Get("entra")
//	si, err := p.Begin(ctx, "https://portal.example/signin-entra", nil)
//	// store si.Pending in the server-side session, redirect to si.URL
//	...
//	// on the callback: take the Pending out of the session first, then
//	id, err := p.Finish(ctx, pending, r.URL.Query())
//
// Discovery (go-oidc) happens on a provider's first use and is cached;
// signing keys come from go-oidc's RemoteKeySet, which fetches the JWKS again
// when a token names a key it has not seen, so key rotation at the provider
// needs nothing from us. The code is redeemed with golang.org/x/oauth2 using
// client_secret_basic, client_secret_post or private_key_jwt (assertions
// signed with go-jose).
//
// # What Power Pages stores
//
// Identity.Issuer is the ID token's iss verbatim (Power Pages'
// adx_identityprovidername) and Identity.ProviderKey the sub or oid claim
// (adx_username), per ../shared/reference/identity.md.
//
// # Which email counts as verified
//
// Identity.EmailVerified says whether the provider vouches for
// Identity.Email. The rule depends on the provider type:
//
//   - entra_id and entra_external_id: Microsoft's email claim "isn't
//     guaranteed to be correct, and is mutable over time" and Entra sends no
//     email_verified. The address counts as verified when the optional claim
//     xms_edov ("whether the user's email domain owner has been verified") is
//     true, or when it equals a value of the optional claims
//     verified_primary_email or verified_secondary_email; with no email claim
//     the first verified_primary_email is used. Add email and xms_edov as
//     optional ID token claims in the app registration. Source: Microsoft
//     Learn, "Optional claims reference",
//     https://learn.microsoft.com/en-us/entra/identity-platform/optional-claims-reference
//   - azure_ad_b2c: the token reference documents no claim that vouches for
//     an address (https://learn.microsoft.com/en-us/azure/active-directory-b2c/tokens-overview),
//     and user flows can switch off email verification, so only an explicit
//     email_verified: true (a custom policy output claim) counts. The
//     address is read from email, or else the first of emails.
//   - google: email_verified, "True if the user's e-mail address has been
//     verified; otherwise false". Source: Google, "OpenID Connect" reference,
//     https://developers.google.com/identity/openid-connect/reference
//   - oidc: email_verified as defined by OpenID Connect Core 1.0 §5.1,
//     https://openid.net/specs/openid-connect-core-1_0.html#StandardClaims
//
// Booleans sent as the strings "true" or "1" are accepted, as Entra and
// some providers send them.
//
// # Errors and logs
//
// Every refusal wraps one sentinel (ErrStateMismatch, ErrAccessDenied,
// ErrSignatureInvalid, ...). No error text and no log record carries an
// authorization code, an access token or an ID token.
package identity
