package main

import (
	"net"
	"os"
	"strings"
	"testing"
)

// TestCheckIdentityProviders: `connector check` reports each provider:
// the emulator's Entra endpoint passes discovery, issuer, keys and shows the
// redirect URI to register; one that cannot be reached is named with a fix.
func TestCheckIdentityProviders(t *testing.T) {
	org := newTestOrg(t)
	org.emu.STS().AddSecretClient(devClientID, "provider-secret-value")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + ln.Addr().String()
	ln.Close()
	raw, err := os.ReadFile(org.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	issuer := org.emu.OrgURL + "/" + org.emu.TenantID + "/v2.0"
	providers := `identity:
  local_login: enabled
  providers:
    - name: microsoft
      display_name: Microsoft
      type: entra_id
      issuer: "` + issuer + `"
      client_id: ` + devClientID + `
      client_secret: "${TEST_PROVIDER_SECRET}"
      ca_file: "` + org.emu.CAFile + `"
      claims:
        jobtitle: jobTitle
    - name: broken
      issuer: "` + down + `"
      client_id: c
      client_secret: s
`
	cfg := strings.Replace(string(raw), "identity:\n", providers, 1)
	if err := os.WriteFile(org.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := org.getenv(org.emu.ClientSecret)
	env := func(k string) string {
		if k == "TEST_PROVIDER_SECRET" {
			return "provider-secret-value"
		}
		return base(k)
	}
	code, out, stderr := runCLI(t, env, "check", "--config", org.cfgPath)
	if code != exitFail {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		`✓ identity provider "microsoft": discovery: fetched ` + issuer + "/.well-known/openid-configuration",
		`✓ identity provider "microsoft": issuer: issuer ` + issuer + " (stored as adx_identityprovidername)",
		`✓ identity provider "microsoft": jwks: 1 signing key(s)`,
		`✓ identity provider "microsoft": redirect_uri: register this redirect URI for client ` + devClientID + ": http://127.0.0.1:8080/signin-oidc/microsoft",
		`✗ identity provider "broken": discovery: cannot use ` + down,
		"→ check identity.providers[broken]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "provider-secret-value") || strings.Contains(stderr, "provider-secret-value") {
		t.Error("check printed the provider's client secret")
	}
	// --print-config shows the providers with the secret redacted.
	code, out, _ = runCLI(t, env, "check", "--config", org.cfgPath, "--offline", "--print-config")
	if code != exitOK || !strings.Contains(out, "name: microsoft") || strings.Contains(out, "provider-secret-value") {
		t.Fatalf("print-config: exit %d\n%s", code, out)
	}
}
