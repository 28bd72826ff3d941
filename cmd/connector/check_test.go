package main

import (
	"strings"
	"testing"
)

func TestCheckAgainstEmulator(t *testing.T) {
	org := newTestOrg(t)
	env := org.getenv(org.emu.ClientSecret)

	// Before the webhook is registered, check says so and how to fix it.
	code, out, stderr := runCLI(t, env, "check", "--config", org.cfgPath)
	if code != exitFail || !strings.Contains(out, "✗ webhook to http://127.0.0.1:8080/hooks/dataverse is not registered") ||
		!strings.Contains(out, "connector webhook register --config") {
		t.Fatalf("unregistered webhook: exit %d\n%s%s", code, out, stderr)
	}

	code, out, stderr = runCLI(t, env, "webhook", "register", "--config", org.cfgPath, "--dry-run")
	if code != exitOK || !strings.Contains(out, "would create") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, env, "webhook", "register", "--config", org.cfgPath)
	if code != exitOK || !strings.Contains(out, "webhook registered") {
		t.Fatalf("register: exit %d\n%s%s", code, out, stderr)
	}
	endpoints := len(org.emu.Rows("serviceendpoint"))
	code, _, stderr = runCLI(t, env, "webhook", "register", "--config", org.cfgPath)
	if code != exitOK || len(org.emu.Rows("serviceendpoint")) != endpoints {
		t.Fatalf("second register: exit %d, endpoints %d -> %d: %s", code, endpoints, len(org.emu.Rows("serviceendpoint")), stderr)
	}

	code, out, stderr = runCLI(t, env, "check", "--config", org.cfgPath)
	if code != exitOK {
		t.Fatalf("check: exit %d\n%s%s", code, out, stderr)
	}
	if strings.Contains(out, "✗") || !strings.Contains(out, "All checks passed.") {
		t.Errorf("check output:\n%s", out)
	}
	for _, want := range []string{"✓ Redis answers", "✓ Entra ID token", "✓ WhoAmI", "✓ contact has the invite columns",
		`✓ portal "Contoso Partner Portal": website`, `(enhanced data model)`, `(standard data model)`, "✓ webhook registered"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCLI(t, org.getenv("wrong-secret"), "check", "--config", org.cfgPath)
	if code != exitFail || !strings.Contains(out, "✗ Entra ID token") {
		t.Errorf("wrong secret: exit %d\n%s", code, out)
	}

	code, _, _ = runCLI(t, env, "webhook", "unregister", "--config", org.cfgPath)
	if code != exitOK || len(org.emu.Rows("serviceendpoint")) != endpoints-1 {
		t.Errorf("unregister: exit %d, endpoints left %d", code, len(org.emu.Rows("serviceendpoint")))
	}
}

func TestCheckNamesMissingRole(t *testing.T) {
	org := newTestOrg(t, "Gold Partners")
	code, out, _ := runCLI(t, org.getenv(org.emu.ClientSecret), "check", "--config", org.cfgPath)
	if code != exitFail {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, `✗ portal "Contoso Partner Portal": web role(s) Gold Partners not found on the website`) {
		t.Errorf("output does not name the missing role:\n%s", out)
	}
}
