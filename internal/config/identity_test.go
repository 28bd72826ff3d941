package config

import (
	"os"
	"strings"
	"testing"
)

// withIdentity is the minimal file with providers and portal settings added.
func withIdentity(identity, portal string) string {
	s := strings.Replace(minimal, "identity:\n  token_secret: 0123456789abcdef0123456789abcdef\n",
		"identity:\n  token_secret: 0123456789abcdef0123456789abcdef\n"+identity, 1)
	return s + portal
}

const twoProviders = `  providers:
    - name: entra
      display_name: Microsoft
      type: entra_id
      issuer: https://login.microsoftonline.com/8a3c1e52-9f0b-4d6e-a1c7-2b5f9e0d4c31/v2.0
      client_id: 2e7b9c41-5a3d-4f8e-b6c2-9d1a0f4e7b35
      client_secret: ${ENTRA_SECRET}
      provider_key_claim: oid
      claims:
        firstname: given_name
        jobtitle: jobTitle
    - name: google
      issuer: https://accounts.google.com
      client_id: 1234.apps.googleusercontent.com
      client_secret: g-secret
      allow_contact_mapping_with_email: true
`

func TestIdentityProvidersParsedWithDefaults(t *testing.T) {
	src := withIdentity(twoProviders, "    identity_providers: [entra]\n    invitation:\n      require_email_match: true\n")
	env := func(n string) string {
		if n == "ENTRA_SECRET" {
			return "entra-secret-value"
		}
		return dummyEnv(n)
	}
	c, err := LoadBytes([]byte(src), Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Identity.LocalLoginOn() || c.Identity.LocalLogin != "enabled" {
		t.Errorf("local_login default = %q", c.Identity.LocalLogin)
	}
	e, g := c.Identity.Providers[0], c.Identity.Providers[1]
	if e.ClientSecret != "entra-secret-value" || e.ProviderKeyClaim != "oid" || e.Claims["firstname"] != "given_name" || e.Claims["jobtitle"] != "jobTitle" {
		t.Errorf("entra = %+v", e)
	}
	if g.DisplayName != "google" || g.Type != "oidc" || g.ProviderKeyClaim != "sub" || !g.AllowContactMappingWithEmail || e.AllowContactMappingWithEmail {
		t.Errorf("google defaults = %+v", g)
	}
	p := c.Portals[0]
	if !p.Invitation.RequireEmailMatch || p.OpenRegistration {
		t.Errorf("portal flags = %+v", p)
	}
	if got := c.PortalProviders(p); len(got) != 1 || got[0] != "entra" {
		t.Errorf("portal providers = %v", got)
	}
	p.IdentityProviders = nil
	if got := c.PortalProviders(p); len(got) != 2 {
		t.Errorf("default portal providers = %v, want all", got)
	}

	var dump strings.Builder
	if err := c.Dump(&dump); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"entra-secret-value", "g-secret"} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("dump shows %q", secret)
		}
	}
	if c.Identity.Providers[0].ClientSecret != "entra-secret-value" {
		t.Error("redaction changed the live configuration")
	}
}

func TestIdentityProviderProblemsNamedWithLine(t *testing.T) {
	bad := `  local_login: nope
  providers:
    - name: Bad Name
      type: okta
      issuer: http://idp.example.com/?x=1
      client_secret: a
      client_certificate: /nonexistent/cert.pem
      provider_key_claim: email
      token_endpoint_auth_method: private_key_jwt_please
      scopes: ["openid email"]
      claims:
        adx_identity_username: sub
        FirstName: given_name
        lastname: ""
    - name: dup
      authority: https://b2c.example.com/tfp/x/y/v2.0/
      client_id: c
      client_secret: s
      claims:
        firstname: given_name
        nickname: given_name
    - name: dup
      issuer: https://idp.example.org
      client_id: c
      client_secret: s
`
	src := withIdentity(bad, "    identity_providers: [dup, missing]\n")
	_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	got := problemsOf(t, err)
	want := map[string]string{
		"identity.local_login":                               "local_login: nope",
		"identity.providers[0].name":                         "Bad Name",
		"identity.providers[0].type":                         "type: okta",
		"identity.providers[0].issuer":                       "http://idp.example.com",
		"identity.providers[0].client_id":                    "- name: Bad Name",
		"identity.providers[0].client_certificate":           "client_certificate:",
		"identity.providers[0].provider_key_claim":           "provider_key_claim: email",
		"identity.providers[0].token_endpoint_auth_method":   "token_endpoint_auth_method",
		"identity.providers[0].scopes[0]":                    "openid email",
		"identity.providers[0].claims.adx_identity_username": "adx_identity_username: sub",
		"identity.providers[0].claims.FirstName":             "FirstName: given_name",
		"identity.providers[0].claims.lastname":              `lastname: ""`,
		"identity.providers[1].claims.nickname":              "nickname: given_name",
		"identity.providers[2].name":                         "- name: dup\n      issuer",
		"portals[0].identity_providers[1]":                   "identity_providers: [dup, missing]",
	}
	for key, at := range want {
		p, ok := got[key]
		if !ok {
			t.Errorf("no problem reported for %s; got %v", key, err)
			continue
		}
		first, _, _ := strings.Cut(at, "\n")
		line := lineOf(t, src, first)
		if strings.Contains(at, "\n") { // the second of two equal lines
			line = strings.Count(src[:strings.Index(src, at)], "\n") + 1
		}
		if p.Line != line {
			t.Errorf("%s: line %d, want %d (%s)", key, p.Line, line, p.Message)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("unexpected problem %s: %s", key, got[key].Message)
		}
	}
	if strings.Contains(err.Error(), "\n  identity.providers[1].client_secret") {
		t.Error("a set secret was reported")
	}
}

func TestLocalLoginDisabledNeedsProviders(t *testing.T) {
	src := withIdentity("  local_login: disabled\n", "")
	got := problemsOf(t, mustFail(t, src))
	if p, ok := got["portals[0].identity_providers"]; !ok || !strings.Contains(p.Message, "nobody could sign in") {
		t.Fatalf("problems %v", got)
	}
	ok := withIdentity("  local_login: disabled\n"+twoProviders, "")
	env := func(n string) string {
		if n == "ENTRA_SECRET" {
			return "x"
		}
		return dummyEnv(n)
	}
	c, err := LoadBytes([]byte(ok), Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.LocalLoginOn() {
		t.Error("local login on")
	}
}

func TestClaimsMustBeAMapping(t *testing.T) {
	src := withIdentity(`  providers:
    - name: x
      issuer: https://idp.example.com
      client_id: c
      client_secret: s
      claims: [firstname]
`, "")
	got := problemsOf(t, mustFail(t, src))
	if p, ok := got["identity.providers[0].claims"]; !ok || p.Line != lineOf(t, src, "claims: [firstname]") {
		t.Fatalf("problems %v", got)
	}
}

func mustFail(t *testing.T, src string) error {
	t.Helper()
	_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	if err == nil {
		t.Fatal("configuration accepted")
	}
	return err
}

// TestExampleProvidersBlockIsValid uncomments the providers example of
// config.example.yaml and loads the file with it.
func TestExampleProvidersBlockIsValid(t *testing.T) {
	src, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	in := false
	n := 0
	for i, l := range lines {
		switch {
		case l == "  # providers:":
			in = true
		case in && !strings.HasPrefix(l, "  # "):
			in = false
		}
		if in {
			lines[i] = "  " + strings.TrimPrefix(l, "  # ")
			n++
		}
	}
	if n < 10 {
		t.Fatalf("providers example not found (%d lines)", n)
	}
	env := func(k string) string {
		if k == "ENTRA_CLIENT_SECRET" {
			return "example-secret"
		}
		return dummyEnv(k)
	}
	c, err := LoadBytes([]byte(strings.Join(lines, "\n")), Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Identity.Providers[0]
	if len(c.Identity.Providers) != 1 || p.Name != "entra" || p.Type != "entra_id" || p.Claims["jobtitle"] != "jobTitle" || p.ProviderKeyClaim != "sub" {
		t.Fatalf("providers %+v", c.Identity.Providers)
	}
	if got := c.PortalProviders(c.Portals[0]); len(got) != 1 || got[0] != "entra" {
		t.Fatalf("portal providers %v", got)
	}
}
