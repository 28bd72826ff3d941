package identity

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestEmailVerifiedRules(t *testing.T) {
	tests := []struct {
		name     string
		typ      ProviderType
		claims   string
		email    string
		verified bool
	}{
		{"entra: email alone is not verified", TypeEntraID, `{"email":"a@contoso.com"}`, "a@contoso.com", false},
		{"entra: email_verified is not Entra's", TypeEntraID, `{"email":"a@contoso.com","email_verified":true}`, "a@contoso.com", false},
		{"entra: xms_edov true", TypeEntraID, `{"email":"a@contoso.com","xms_edov":true}`, "a@contoso.com", true},
		{"entra: xms_edov as string 1", TypeEntraID, `{"email":"a@contoso.com","xms_edov":"1"}`, "a@contoso.com", true},
		{"entra: xms_edov false", TypeEntraID, `{"email":"a@contoso.com","xms_edov":false}`, "a@contoso.com", false},
		{"entra: email among verified_primary_email", TypeEntraID, `{"email":"A@Contoso.com","verified_primary_email":["a@contoso.com"]}`, "A@Contoso.com", true},
		{"entra: email among verified_secondary_email", TypeEntraID, `{"email":"b@contoso.com","verified_secondary_email":"b@contoso.com"}`, "b@contoso.com", true},
		{"entra: email not among the verified ones", TypeEntraID, `{"email":"x@evil.com","verified_primary_email":["a@contoso.com"]}`, "x@evil.com", false},
		{"entra: only verified_primary_email", TypeEntraID, `{"verified_primary_email":["a@contoso.com"]}`, "a@contoso.com", true},
		{"external id follows entra", TypeEntraExternalID, `{"email":"c@fabrikam.com","xms_edov":true}`, "c@fabrikam.com", true},
		{"external id: no xms_edov", TypeEntraExternalID, `{"email":"c@fabrikam.com"}`, "c@fabrikam.com", false},
		{"b2c: emails is not a verification", TypeAzureADB2C, `{"emails":["d@example.com"]}`, "d@example.com", false},
		{"b2c: explicit email_verified", TypeAzureADB2C, `{"emails":["d@example.com"],"email_verified":true}`, "d@example.com", true},
		{"google: email_verified true", TypeGoogle, `{"email":"e@gmail.com","email_verified":true}`, "e@gmail.com", true},
		{"google: email_verified false", TypeGoogle, `{"email":"e@gmail.com","email_verified":false}`, "e@gmail.com", false},
		{"google: email_verified missing", TypeGoogle, `{"email":"e@gmail.com"}`, "e@gmail.com", false},
		{"oidc: email_verified as string", TypeOIDC, `{"email":"f@example.org","email_verified":"true"}`, "f@example.org", true},
		{"oidc: xms_edov means nothing", TypeOIDC, `{"email":"f@example.org","xms_edov":true}`, "f@example.org", false},
		{"oidc: verified but no email", TypeOIDC, `{"email_verified":true}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := unmarshalClaims([]byte(tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			email, verified := c.email(tt.typ)
			if email != tt.email || verified != tt.verified {
				t.Fatalf("email(%s) = %q, %v; want %q, %v", tt.typ, email, verified, tt.email, tt.verified)
			}
		})
	}
}

func TestMapClaims(t *testing.T) {
	var raw map[string]any
	_ = json.Unmarshal([]byte(`{"given_name":"Ada","emails":["ada@example.com","x@y"],"age":36,"ok":true,"addr":{"c":"UK"}}`), &raw)
	got := mapClaims(map[string]string{"given_name": "firstname", "emails": "emailaddress1", "age": "new_age", "ok": "new_ok", "addr": "address1_country", "missing": "jobtitle"}, raw)
	want := map[string]string{"firstname": "Ada", "emailaddress1": "ada@example.com", "new_age": "36", "new_ok": "true"}
	if len(got) != len(want) {
		t.Fatalf("mapClaims = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	ok := ProviderConfig{Name: "entra", Issuer: "https://login.microsoftonline.com/t/v2.0", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name string
		mut  func(*ProviderConfig)
	}{
		{"no name", func(c *ProviderConfig) { c.Name = "" }},
		{"name with a slash", func(c *ProviderConfig) { c.Name = "a/b" }},
		{"upper-case name", func(c *ProviderConfig) { c.Name = "Entra" }},
		{"unknown type", func(c *ProviderConfig) { c.Type = "saml" }},
		{"no issuer", func(c *ProviderConfig) { c.Issuer = "" }},
		{"http issuer", func(c *ProviderConfig) { c.Issuer = "http://login.example" }},
		{"issuer with query", func(c *ProviderConfig) { c.Issuer = "https://login.example/?p=1" }},
		{"http authority", func(c *ProviderConfig) { c.Authority = "http://login.example" }},
		{"no client id", func(c *ProviderConfig) { c.ClientID = "" }},
		{"no credential", func(c *ProviderConfig) { c.ClientSecret = "" }},
		{"two credentials", func(c *ProviderConfig) { c.ClientCertificate = []byte("x") }},
		{"bad certificate", func(c *ProviderConfig) { c.ClientSecret = ""; c.ClientCertificate = []byte("not pem") }},
		{"jwt without certificate", func(c *ProviderConfig) { c.TokenEndpointAuthMethod = AuthPrivateKeyJWT }},
		{"unknown auth method", func(c *ProviderConfig) { c.TokenEndpointAuthMethod = "tls_client_auth" }},
		{"unknown key claim", func(c *ProviderConfig) { c.ProviderKeyClaim = "email" }},
		{"negative skew", func(c *ProviderConfig) { c.ClockSkew = -time.Second }},
		{"huge skew", func(c *ProviderConfig) { c.ClockSkew = time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mut(&c)
			if _, err := NewProvider(c, Options{}); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewProvider = %v, want ErrInvalidConfig", err)
			}
		})
	}
	p, err := NewProvider(ok, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config()
	if c.DisplayName != "entra" || c.Type != TypeOIDC || c.TokenEndpointAuthMethod != AuthClientSecretBasic ||
		c.ProviderKeyClaim != "sub" || c.ClockSkew != 2*time.Minute || len(c.Scopes) != 3 || c.Scopes[0] != "openid" {
		t.Errorf("defaults: %+v", c)
	}
	c2 := ok
	c2.Scopes = []string{"email", "openid", "offline_access"}
	p, _ = NewProvider(c2, Options{})
	if s := p.Config().Scopes; len(s) != 3 || s[0] != "openid" || s[1] != "email" {
		t.Errorf("scopes %v, want openid first and no duplicate", s)
	}
	if _, err := NewRegistry([]ProviderConfig{ok, ok}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestCleanProviderText(t *testing.T) {
	long := ""
	for range 100 {
		long += "é"
	}
	if got := clean("a\r\nb\x00c", 50); got != "a  b c" {
		t.Errorf("clean control chars = %q", got)
	}
	if got := clean(long, 11); got != "ééééé…" {
		t.Errorf("clean cuts inside a rune: %q", got)
	}
}
