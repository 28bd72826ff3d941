package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/redistest"
)

// testOrg is a TLS emulator with the demo seed and a real redis-server, and a
// config file that points the connector at both exactly as an admin would.
type testOrg struct {
	emu     *emulator.Running
	seed    *emulator.Demo
	redis   *redistest.Server
	cfgPath string
}

func newTestOrg(t *testing.T, extraRoles ...string) *testOrg {
	t.Helper()
	emu, err := emulator.StartTLS(emulator.Options{}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	seed, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	o := &testOrg{emu: emu, seed: seed, redis: rs, cfgPath: filepath.Join(t.TempDir(), "config.yaml")}
	roles := `["Authenticated Users", "Partners"]`
	if len(extraRoles) > 0 {
		roles = fmt.Sprintf(`["Authenticated Users", "Partners", %q]`, extraRoles[0])
	}
	cfg := fmt.Sprintf(`
server:
  addr: "127.0.0.1:0"
  public_url: "http://127.0.0.1:8080"
dataverse:
  url: %q
  ca_file: %q
  auth:
    method: client_secret
    tenant_id: %q
    client_id: %q
    client_secret: "${TEST_DV_SECRET}"
    authority_host: %q
    disable_instance_discovery: true
redis:
  url: %q
intake:
  webhook:
    auth:
      value: "test-webhook-key-0123456789"
identity:
  token_secret: "test-token-secret-0123456789abcdef0123"
portals:
  - name: "Contoso Partner Portal"
    data_model: enhanced
    website_id: %q
    base_url: "http://127.0.0.1:8080"
    default_roles: %s
    email:
      sender: "systemuser:%s"
  - name: "Contoso Customer Portal"
    data_model: standard
    website_id: %q
    base_url: "http://127.0.0.1:8080"
    default_roles: ["Customers"]
    email:
      sender: initiating_user
api:
  keys: ["test-api-key-0123456789abcdef"]
log:
  level: warn
`, emu.OrgURL, emu.CAFile, emu.TenantID, emu.ClientID, emu.AuthorityHost, rs.URL, seed.SiteID, roles, seed.MailerUserID, seed.WebsiteID)
	if err := os.WriteFile(o.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *testOrg) getenv(secret string) func(string) string {
	return func(k string) string {
		if k == "TEST_DV_SECRET" {
			return secret
		}
		return ""
	}
}

func fmtInt(v any) string { return fmt.Sprint(v) }

func itoa(n int) string { return fmt.Sprint(n) }

// lockedBuffer collects a subprocess's stderr for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// stopGracefully sends SIGTERM and fails the test unless the process exits
// cleanly within limit.
func stopGracefully(t *testing.T, cmd *exec.Cmd, limit time.Duration) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s exited uncleanly after SIGTERM: %v", strings.Join(cmd.Args[1:], " "), err)
		}
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %s of SIGTERM", strings.Join(cmd.Args[1:], " "), limit)
	}
}
