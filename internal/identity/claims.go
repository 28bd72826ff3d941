package identity

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Identity is what a verified ID token says about the user.
type Identity struct {
	// Provider is the configured provider name.
	Provider string
	// Issuer is the ID token's iss, verbatim: Power Pages stores it as
	// adx_externalidentity.adx_identityprovidername.
	Issuer string
	// Subject is the sub claim.
	Subject string
	// ProviderKey is the value of the configured provider key claim (sub or
	// oid): Power Pages stores it as adx_externalidentity.adx_username.
	ProviderKey string
	// ObjectID and TenantID are Microsoft's oid and tid, when present.
	ObjectID string
	TenantID string
	// Email is the address the provider asserts, if any, and EmailVerified
	// whether the provider vouches for it (rules per provider type in the
	// package documentation).
	Email         string
	EmailVerified bool
	// Names, when the provider sends them.
	Name              string
	GivenName         string
	FamilyName        string
	PreferredUsername string
	// Mapped holds the configured claim mapping's values, keyed by contact
	// column, for the claims the token carries.
	Mapped map[string]string
	// Claims is every claim of the ID token.
	Claims map[string]any
	// Expiry is the ID token's exp.
	Expiry time.Time
	// IDToken is the raw ID token, kept only as the id_token_hint for
	// sign-out. It is a credential: never log or display it.
	IDToken string
}

// LogValue keeps the raw token and the claim set out of logs.
func (id *Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("provider", id.Provider),
		slog.String("issuer", id.Issuer),
		slog.Bool("email_verified", id.EmailVerified),
	)
}

// tokenClaims are the claims the package reads. Flexible types absorb the
// shapes providers actually send (booleans as strings, lists as one string).
type tokenClaims struct {
	Subject           string     `json:"sub"`
	ObjectID          string     `json:"oid"`
	TenantID          string     `json:"tid"`
	AuthorizedParty   string     `json:"azp"`
	Email             string     `json:"email"`
	EmailVerified     flexBool   `json:"email_verified"`
	EmailDomainOwner  flexBool   `json:"xms_edov"`
	VerifiedPrimary   stringList `json:"verified_primary_email"`
	VerifiedSecondary stringList `json:"verified_secondary_email"`
	Emails            stringList `json:"emails"`
	Name              string     `json:"name"`
	GivenName         string     `json:"given_name"`
	FamilyName        string     `json:"family_name"`
	PreferredUsername string     `json:"preferred_username"`
	IssuedAt          *flexTime  `json:"iat"`
}

// email applies the provider type's rule for which email counts as
// verified; the package documentation cites the source of each rule.
func (c *tokenClaims) email(t ProviderType) (string, bool) {
	switch t {
	case TypeEntraID, TypeEntraExternalID:
		if c.Email == "" {
			if len(c.VerifiedPrimary) > 0 {
				return c.VerifiedPrimary[0], true
			}
			return "", false
		}
		same := func(v string) bool { return strings.EqualFold(v, c.Email) }
		return c.Email, bool(c.EmailDomainOwner) || slices.ContainsFunc(c.VerifiedPrimary, same) || slices.ContainsFunc(c.VerifiedSecondary, same)
	case TypeAzureADB2C:
		email := c.Email
		if email == "" && len(c.Emails) > 0 {
			email = c.Emails[0]
		}
		return email, email != "" && bool(c.EmailVerified)
	default: // google, oidc: OpenID Connect Core §5.1 email_verified
		return c.Email, c.Email != "" && bool(c.EmailVerified)
	}
}

// mapClaims returns the values of the claims named in mapping (claim ->
// column), keyed by column. Strings pass through, numbers and booleans are
// formatted, a list yields its first string; other shapes are skipped.
func mapClaims(mapping map[string]string, raw map[string]any) map[string]string {
	out := make(map[string]string, len(mapping))
	for claim, column := range mapping {
		switch v := raw[claim].(type) {
		case string:
			out[column] = v
		case bool:
			out[column] = strconv.FormatBool(v)
		case float64:
			out[column] = strconv.FormatFloat(v, 'f', -1, 64)
		case []any:
			if len(v) > 0 {
				if s, ok := v[0].(string); ok {
					out[column] = s
				}
			}
		}
	}
	return out
}

// flexBool reads true, "true" and 1 as true; anything else is false.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("boolean claim: %w", err)
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		*b = flexBool(strings.EqualFold(v, "true") || v == "1")
	case float64:
		*b = v == 1
	default:
		*b = false
	}
	return nil
}

// stringList reads a JSON string or array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		if one != "" {
			*l = stringList{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return fmt.Errorf("string list claim: %w", err)
	}
	*l = many
	return nil
}

// flexTime reads a NumericDate (RFC 7519 §2), integer or fractional.
type flexTime time.Time

func (t *flexTime) UnmarshalJSON(data []byte) error {
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("time claim: %w", err)
	}
	f, err := n.Float64()
	if err != nil {
		return fmt.Errorf("time claim: %w", err)
	}
	*t = flexTime(time.Unix(int64(f), 0))
	return nil
}
