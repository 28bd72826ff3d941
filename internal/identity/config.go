package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"
)

// ProviderType names the kind of identity provider. It decides which claim
// counts as a verified email (see the package documentation) and how the
// private_key_jwt assertion is addressed.
type ProviderType string

const (
	TypeEntraID         ProviderType = "entra_id"
	TypeEntraExternalID ProviderType = "entra_external_id"
	TypeAzureADB2C      ProviderType = "azure_ad_b2c"
	TypeGoogle          ProviderType = "google"
	TypeOIDC            ProviderType = "oidc"
)

func (t ProviderType) valid() bool {
	switch t {
	case TypeEntraID, TypeEntraExternalID, TypeAzureADB2C, TypeGoogle, TypeOIDC:
		return true
	}
	return false
}

// microsoft reports whether the provider is run by Microsoft's identity
// platform, whose token endpoint wants client assertions addressed to it
// alone.
func (t ProviderType) microsoft() bool {
	return t == TypeEntraID || t == TypeEntraExternalID || t == TypeAzureADB2C
}

// AuthMethod is how the connector authenticates at the token endpoint.
type AuthMethod string

const (
	AuthClientSecretBasic AuthMethod = "client_secret_basic"
	AuthClientSecretPost  AuthMethod = "client_secret_post"
	AuthPrivateKeyJWT     AuthMethod = "private_key_jwt"
)

// ProviderConfig is one identity provider, as plain values; the caller maps
// its configuration file onto it.
type ProviderConfig struct {
	// Name identifies the provider in URLs: lower-case letters, digits, '-'
	// and '_', at most 64 characters. Required.
	Name string
	// DisplayName is shown on the "Continue with ..." button. Default Name.
	DisplayName string
	// Type selects provider-specific rules. Default TypeOIDC.
	Type ProviderType
	// Issuer is the issuer the provider's discovery document and ID tokens
	// must name, exactly (trailing slash included). Discovery is fetched from
	// Issuer + "/.well-known/openid-configuration" unless Authority is set.
	Issuer string
	// Authority, when set, is where discovery is fetched from instead
	// (Authority + "/.well-known/openid-configuration"), for providers whose
	// metadata address differs from their issuer (Azure AD B2C user flows).
	// With Authority alone, the issuer must equal Authority.
	Authority string
	// ClientID is the application (client) id registered at the provider.
	ClientID string
	// ClientSecret authenticates with client_secret_basic or _post.
	ClientSecret string
	// ClientCertificate is a PEM bundle holding the certificate registered at
	// the provider and its private key (RSA or ECDSA P-256), for
	// private_key_jwt. Exactly one of ClientSecret and ClientCertificate.
	ClientCertificate []byte
	// TokenEndpointAuthMethod defaults to client_secret_basic with a secret
	// and private_key_jwt with a certificate.
	TokenEndpointAuthMethod AuthMethod
	// Scopes requested; "openid" is always included. Default openid, profile,
	// email.
	Scopes []string
	// Claims maps ID token claim names to contact columns. The package only
	// carries the mapping and returns the values (Identity.Mapped).
	Claims map[string]string
	// ProviderKeyClaim is the claim whose value identifies the user at this
	// provider (adx_username): "sub" (default) or "oid", as Power Pages'
	// ObjectIdentifierAsNameIdentifierClaimEnabled.
	ProviderKeyClaim string
	// AllowContactMappingWithEmail is carried for the caller: whether a first
	// sign-in may find its contact by verified email.
	AllowContactMappingWithEmail bool
	// HTTPClient talks to the provider. Default: a client with a 10s timeout
	// that trusts RootCAs (or the system roots when RootCAs is nil). A client
	// passed here should have a Timeout: key set refreshes run in the
	// background and are bounded only by it.
	HTTPClient *http.Client
	// RootCAs replaces the system roots for the default client.
	RootCAs *x509.CertPool
	// ClockSkew tolerated on exp, nbf and iat. Default 2 minutes.
	ClockSkew time.Duration
}

// Options are process-wide settings shared by every provider.
type Options struct {
	// Logger receives discovery and sign-in outcomes, never tokens. Default
	// discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// DiscoveryTimeout bounds one discovery fetch. Default 10s.
	DiscoveryTimeout time.Duration
	// MetadataTTL is how long discovery results are reused before they are
	// fetched again; a failed refresh keeps the old ones. Default 24h.
	MetadataTTL time.Duration
	// SignInTTL is how long a started sign-in may take before the callback.
	// Default 10 minutes, Power Pages' nonce lifetime.
	SignInTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DiscoveryTimeout <= 0 {
		o.DiscoveryTimeout = 10 * time.Second
	}
	if o.MetadataTTL <= 0 {
		o.MetadataTTL = 24 * time.Hour
	}
	if o.SignInTTL <= 0 {
		o.SignInTTL = 10 * time.Minute
	}
	return o
}

const (
	defaultClockSkew   = 2 * time.Minute
	defaultHTTPTimeout = 10 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// clientKey is the parsed ClientCertificate.
type clientKey struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// normalize validates c and fills in defaults. Every error wraps
// ErrInvalidConfig and names the field.
func (c ProviderConfig) normalize() (ProviderConfig, *clientKey, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("identity provider %q: %s: %w", c.Name, fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
	if !nameRE.MatchString(c.Name) {
		return c, nil, bad("name must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if c.DisplayName == "" {
		c.DisplayName = c.Name
	}
	if c.Type == "" {
		c.Type = TypeOIDC
	}
	if !c.Type.valid() {
		return c, nil, bad("type %q is not one of entra_id, entra_external_id, azure_ad_b2c, google, oidc", c.Type)
	}
	if c.Issuer == "" {
		c.Issuer = c.Authority
	}
	if c.Issuer == "" {
		return c, nil, bad("issuer (or authority) is required")
	}
	for field, v := range map[string]string{"issuer": c.Issuer, "authority": c.Authority} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return c, nil, bad("%s %q must be an https URL without query or fragment", field, v)
		}
	}
	if c.ClientID == "" {
		return c, nil, bad("client_id is required")
	}
	var ck *clientKey
	switch {
	case c.ClientSecret != "" && len(c.ClientCertificate) > 0:
		return c, nil, bad("set either client_secret or client_certificate, not both")
	case c.ClientSecret == "" && len(c.ClientCertificate) == 0:
		return c, nil, bad("client_secret or client_certificate is required")
	case len(c.ClientCertificate) > 0:
		k, err := parseClientCertificate(c.ClientCertificate)
		if err != nil {
			return c, nil, bad("client_certificate: %v", err)
		}
		ck = k
	}
	switch c.TokenEndpointAuthMethod {
	case "":
		c.TokenEndpointAuthMethod = AuthClientSecretBasic
		if ck != nil {
			c.TokenEndpointAuthMethod = AuthPrivateKeyJWT
		}
	case AuthClientSecretBasic, AuthClientSecretPost:
		if c.ClientSecret == "" {
			return c, nil, bad("token endpoint auth method %s needs client_secret", c.TokenEndpointAuthMethod)
		}
	case AuthPrivateKeyJWT:
		if ck == nil {
			return c, nil, bad("token endpoint auth method private_key_jwt needs client_certificate")
		}
	default:
		return c, nil, bad("token endpoint auth method %q is not one of client_secret_basic, client_secret_post, private_key_jwt", c.TokenEndpointAuthMethod)
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "profile", "email"}
	}
	c.Scopes = slices.Clone(c.Scopes)
	if i := slices.Index(c.Scopes, "openid"); i != 0 {
		if i > 0 {
			c.Scopes = slices.Delete(c.Scopes, i, i+1)
		}
		c.Scopes = slices.Insert(c.Scopes, 0, "openid")
	}
	switch c.ProviderKeyClaim {
	case "":
		c.ProviderKeyClaim = "sub"
	case "sub", "oid":
	default:
		return c, nil, bad("provider_key_claim %q is not sub or oid", c.ProviderKeyClaim)
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		return c, nil, bad("clock skew %v must be between 0 and 10m", c.ClockSkew)
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = defaultClockSkew
	}
	return c, ck, nil
}

// parseClientCertificate reads the first certificate and the private key
// from a PEM bundle and checks that they belong together.
func parseClientCertificate(bundle []byte) (*clientKey, error) {
	var ck clientKey
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			if ck.cert != nil {
				continue // chain certificates follow the leaf
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			ck.cert = c
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			k, err := parsePrivateKey(b)
			if err != nil {
				return nil, err
			}
			ck.key = k
		}
	}
	if ck.cert == nil {
		return nil, errors.New("no CERTIFICATE block")
	}
	if ck.key == nil {
		return nil, errors.New("no PRIVATE KEY block")
	}
	pub, ok := ck.key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ck.cert.PublicKey) {
		return nil, errors.New("private key does not match the certificate")
	}
	return &ck, nil
}

func parsePrivateKey(b *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, errors.New("ECDSA key must be P-256")
		}
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}
