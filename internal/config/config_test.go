package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dummyEnv(name string) string {
	switch name {
	case "DATAVERSE_CLIENT_SECRET", "REDIS_PASSWORD":
		return "dummy-secret"
	case "WEBHOOK_KEY":
		return "0123456789abcdef0123"
	case "TOKEN_SECRET":
		return "0123456789abcdef0123456789abcdef"
	case "API_KEY":
		return "api-key-0123456789abcdef0123"
	}
	return ""
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../config.example.yaml", Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if got := len(c.Portals); got != 2 {
		t.Fatalf("portals = %d, want 2", got)
	}
	if c.Portals[0].Invitation.ExpiresAfter.D() != 14*24*time.Hour {
		t.Errorf("expires_after = %v, want 14d", c.Portals[0].Invitation.ExpiresAfter)
	}
	if c.Dataverse.Auth.ClientSecret != "dummy-secret" {
		t.Errorf("client_secret not expanded: %q", c.Dataverse.Auth.ClientSecret)
	}
	if c.Redis.URL != "redis://:dummy-secret@redis:6379/0" {
		t.Errorf("redis.url = %q", c.Redis.URL)
	}
}

const minimal = `
server:
  public_url: https://invite.example.com
dataverse:
  url: https://org.crm.dynamics.com
  auth:
    tenant_id: contoso.onmicrosoft.com
    client_id: 5d9e2b71-0c4a-4f3e-b8a6-7e1d3c9f2a48
    client_secret: s3cret
redis:
  url: redis://127.0.0.1:6379/0
intake:
  webhook:
    auth:
      value: 0123456789abcdef0123
identity:
  token_secret: 0123456789abcdef0123456789abcdef
portals:
  - name: Partners
    website_id: 3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f60
    base_url: https://invite.example.com
    email:
      sender: initiating_user
`

func TestDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"server.addr", c.Server.Addr, ":8080"},
		{"dataverse.api_version", c.Dataverse.APIVersion, "9.2"},
		{"intake.webhook.enabled", c.Intake.Webhook.Enabled, true},
		{"intake.webhook.path", c.Intake.Webhook.Path, "/hooks/dataverse"},
		{"intake.poll.schedule", c.Intake.Poll.Schedule, "@every 1m"},
		{"intake.contact.status_attribute", c.Intake.Contact.StatusAttribute, "pinv_portalinvitestatus"},
		{"intake.contact.status.requested", c.Intake.Contact.Status.Requested, 100000000},
		{"identity.password_hash", c.Identity.PasswordHash, "aspnet-v3"},
		{"portals[0].data_model", c.Portals[0].DataModel, "enhanced"},
		{"portals[0].invitation.code_storage", c.Portals[0].Invitation.CodeStorage, "hashed"},
		{"portals[0].invitation.max_redemptions", c.Portals[0].Invitation.MaxRedemptions, 1},
		{"portals[0].pages.after_redeem", c.Portals[0].Pages.AfterRedeem, "/profile"},
		{"secure cookies", c.Server.SecureCookiesOn(), true},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestExplicitFalseIsKept(t *testing.T) {
	c, err := LoadBytes([]byte(minimal+"\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Intake.Poll.Enabled {
		t.Fatal("poll should default to enabled")
	}
	src := strings.Replace(minimal, "intake:\n", "intake:\n  poll:\n    enabled: false\n", 1)
	c, err = LoadBytes([]byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Intake.Poll.Enabled {
		t.Fatal("explicit intake.poll.enabled: false was overwritten by the default")
	}
}

func TestEveryProblemNamedWithLine(t *testing.T) {
	src := strings.NewReplacer(
		"website_id: 3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f60", "website_id: not-a-guid",
		"url: redis://127.0.0.1:6379/0", "url: http://127.0.0.1:6379",
		"  url: https://org.crm.dynamics.com", "  url: https://org.crm.dynamics.com\n  timout: 5s",
	).Replace(minimal)
	_, err := LoadBytes([]byte(src), Options{})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	// An unknown key does not hide the value problems of the rest of the file.
	got := map[string]Problem{}
	for _, p := range ce.Problems {
		got[p.Key] = p
	}
	for key, line := range map[string]int{"dataverse.timout": 6, "redis.url": 12, "portals[0].website_id": 21} {
		if p, ok := got[key]; !ok || p.Line != line {
			t.Errorf("%s: got %+v, want a problem at line %d", key, p, line)
		}
	}
	if len(ce.Problems) != 3 {
		t.Errorf("got %d problems, want 3:\n%v", len(ce.Problems), err)
	}
	if !strings.Contains(got["dataverse.timout"].Message, `did you mean "timeout"`) {
		t.Errorf("no suggestion in %q", got["dataverse.timout"].Message)
	}

	src = strings.Replace(src, "\n  timout: 5s", "", 1)
	_, err = LoadBytes([]byte(src+"  - name: Partners\n    website_id: 3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f61\n    base_url: https://x.example\n    email:\n      sender: nobody\n"), Options{})
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := map[string]int{
		"redis.url":               11,
		"portals[0].website_id":   20,
		"portals[1].name":         24,
		"portals[1].email.sender": 28,
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for _, p := range ce.Problems {
		line, ok := want[p.Key]
		if !ok {
			t.Errorf("unexpected problem %v", p)
			continue
		}
		if p.Line != line {
			t.Errorf("%s reported at line %d, want %d", p.Key, p.Line, line)
		}
	}
	if !strings.Contains(err.Error(), "portals[0].website_id: must be a GUID (line 20)") {
		t.Errorf("message format: %v", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SECRET_FILE": secretFile, "HOST": "db"}
	get := func(k string) string { return env[k] }
	for _, tc := range []struct{ in, want, err string }{
		{"${HOST}:6379", "db:6379", ""},
		{"${SECRET}", "from-file", ""},
		{"${MISSING:-fallback}", "fallback", ""},
		{"${MISSING}", "", "MISSING is not set"},
		{"plain $HOME", "plain $HOME", ""},
	} {
		got, err := expand(tc.in, Options{Getenv: get, ReadFile: os.ReadFile})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expand(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestUnsetVariableNamesKey(t *testing.T) {
	src := strings.Replace(minimal, "client_secret: s3cret", "client_secret: ${DV_SECRET}", 1)
	_, err := LoadBytes([]byte(src), Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "dataverse.auth.client_secret: environment variable DV_SECRET is not set (line 9)") {
		t.Fatalf("err = %v", err)
	}
}

func TestWrongTypeNamesKey(t *testing.T) {
	src := strings.Replace(minimal, "intake:\n", "intake:\n  workers: many\n", 1)
	_, err := LoadBytes([]byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), `intake.workers: must be a whole number, got "many"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRedactedDumpHidesSecrets(t *testing.T) {
	c, err := Load("../../config.example.yaml", Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, secret := range []string{"dummy-secret", "0123456789abcdef0123", "api-key-0123456789abcdef0123"} {
		if strings.Contains(out, secret) {
			t.Errorf("dump leaks %q", secret)
		}
	}
	if !strings.Contains(out, "expires_after: 14d") {
		t.Errorf("dump lacks durations in config form:\n%s", out)
	}
	if c.Dataverse.Auth.ClientSecret != "dummy-secret" {
		t.Error("Redacted modified the original")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"14d": 14 * 24 * time.Hour, "90m": 90 * time.Minute, "0": 0, "1h30m": 90 * time.Minute} {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"1w", "-3d", "d", "3.5d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestSafeRedirect(t *testing.T) {
	for target, want := range map[string]bool{
		"/profile": true, "https://portal.example.com/SignIn": true,
		"//evil.example": false, "/\\evil.example": false, "javascript:alert(1)": false, "profile": false,
	} {
		if got := SafeRedirect(target); got != want {
			t.Errorf("SafeRedirect(%q) = %v, want %v", target, got, want)
		}
	}
}
