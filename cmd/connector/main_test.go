package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the program in-process and returns its exit code and output.
func runCLI(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{Getenv: getenv, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

func exampleEnv(name string) string {
	return map[string]string{
		"DATAVERSE_CLIENT_SECRET": "dummy",
		"REDIS_PASSWORD":          "dummy",
		"WEBHOOK_KEY":             "dummy-webhook-key-0123",
		"TOKEN_SECRET":            "dummy-token-secret-0123456789abcdef",
		"API_KEY":                 "dummy-api-key-0123456789abcdef",
	}[name]
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"connector ", "module github.com/d365portal/connector", "commit ", "go go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"version", "--bogus"}, {"check", "--nope"}} {
		code, _, stderr := runCLI(t, nil, args...)
		if code != exitUsage {
			t.Errorf("connector %v: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.Contains(stderr, "Usage: connector") {
			t.Errorf("connector %v: no usage on stderr:\n%s", args, stderr)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		code, _, stderr := runCLI(t, nil, c.name, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit %d", c.name, code)
		}
		if !strings.Contains(stderr, "Usage: connector "+c.name) {
			t.Errorf("%s --help: no usage:\n%s", c.name, stderr)
		}
	}
	code, out, _ := runCLI(t, nil, "help")
	if code != exitOK || !strings.Contains(out, "connector dev") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

func TestCheckOfflineExample(t *testing.T) {
	code, out, stderr := runCLI(t, exampleEnv, "check", "--offline", "--config", "../../config.example.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "is valid") {
		t.Errorf("output: %s", out)
	}
}

func TestCheckOfflineReportsEveryProblem(t *testing.T) {
	src, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.NewReplacer(
		`website_id: "3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f60"`, `website_id: "not-a-guid"`,
		`workers: 4`, `workers: 0`,
		`method: client_secret`, `method: password`,
		"\nlog:\n", "\nlogs:\n  level: debug\nlog:\n",
	).Replace(string(src))
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, exampleEnv, "check", "--offline", "--config", path)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr)
	}
	for _, want := range []string{
		"4 problem(s)",
		`logs: unknown key (did you mean "log"?) (line `,
		"dataverse.auth.method: must be one of",
		"intake.workers: must be between 1 and 256",
		"portals[0].website_id: must be a GUID (line ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestPrintConfigRedacts(t *testing.T) {
	code, out, stderr := runCLI(t, exampleEnv, "check", "--offline", "--print-config", "--config", "../../config.example.yaml")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(out, "dummy-webhook-key-0123") || !strings.Contains(out, "[redacted]") {
		t.Errorf("secrets not redacted:\n%s", out)
	}
}

func TestSolutionPack(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "s.zip")
	code, stdout, stderr := runCLI(t, exampleEnv, "solution", "pack", "--config", "../../config.example.yaml", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "prefix pinv, 2 portal(s)") {
		t.Errorf("stdout: %s", stdout)
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, exampleEnv, "solution", "pack", "--config", "../../config.example.yaml", "--out", out)
	if code != exitOK {
		t.Fatalf("second pack: exit %d: %s", code, stderr)
	}
	second, _ := os.ReadFile(out)
	if !bytes.Equal(first, second) {
		t.Error("two packs of the same input differ")
	}
	code, _, stderr = runCLI(t, exampleEnv, "solution", "pack", "--config", "../../config.example.yaml", "--prefix", "acme", "--out", out)
	if code != exitUsage || !strings.Contains(stderr, "disagrees") {
		t.Errorf("conflicting prefix: exit %d: %s", code, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "solution", "pack", "--prefix", "acme", "--out", filepath.Join(dir, "acme.zip"))
	if code != exitOK || !strings.Contains(stdout, "prefix acme") {
		t.Errorf("--prefix acme: exit %d: %s%s", code, stdout, stderr)
	}
}
