package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lineOf returns the 1-based line of the first line of src containing s.
func lineOf(t *testing.T, src, s string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in source", s)
	return 0
}

func problemsOf(t *testing.T, err error) map[string]Problem {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	m := map[string]Problem{}
	for _, p := range ce.Problems {
		if _, dup := m[p.Key]; dup {
			t.Errorf("%s reported twice:\n%v", p.Key, err)
		}
		m[p.Key] = p
	}
	return m
}

// The example file with three mistakes of different kinds (an unknown
// top-level key, a value outside an enumeration, a malformed GUID) reports all
// three in one run, each with its line.
func TestExampleWithThreeMistakes(t *testing.T) {
	src, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.NewReplacer(
		"\nlog:\n", "\nlogs:\n  level: debug\n\nlog:\n",
		"method: client_secret", "method: password",
		`website_id: "3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f60"`, `website_id: "not-a-guid"`,
	).Replace(string(src))
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, Options{Getenv: dummyEnv})
	got := problemsOf(t, err)
	want := []struct{ key, line, msg string }{
		{"logs", "logs:", `unknown key (did you mean "log"?)`},
		{"dataverse.auth.method", "method: password", "must be one of client_secret, client_certificate, managed_identity, workload_identity, default"},
		{"portals[0].website_id", `website_id: "not-a-guid"`, "must be a GUID"},
	}
	for _, w := range want {
		p, ok := got[w.key]
		if !ok {
			t.Errorf("%s not reported:\n%v", w.key, err)
			continue
		}
		if line := lineOf(t, bad, w.line); p.Line != line {
			t.Errorf("%s at line %d, want %d", w.key, p.Line, line)
		}
		if p.Message != w.msg {
			t.Errorf("%s: message %q, want %q", w.key, p.Message, w.msg)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, path+": 3 problem(s) in configuration") {
		t.Errorf("message does not start with the file and the count:\n%s", msg)
	}
	// Printed in file order.
	if i, j, k := strings.Index(msg, "dataverse.auth.method"), strings.Index(msg, "portals[0].website_id"), strings.Index(msg, "logs:"); !(i < j && j < k) {
		t.Errorf("problems not in line order:\n%s", msg)
	}
}

// A value that cannot be decoded is reported once: the checks that would
// only repeat it (or blame its neighbours for it) stay quiet.
func TestUndecodableValueReportedOnce(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           map[string]string // key -> message fragment
	}{
		{
			name: "wrong type beside an unknown key",
			from: "intake:\n", to: "intake:\n  workers: many\n  worker: 3\n",
			want: map[string]string{"intake.workers": `must be a whole number, got "many"`, "intake.worker": `did you mean "workers"?`},
		},
		{
			// the default idle timeout stands in, so session_lifetime is not blamed
			name: "bad duration",
			from: "server:\n", to: "server:\n  session_idle_timeout: soon\n",
			want: map[string]string{"server.session_idle_timeout": `invalid duration "soon"`},
		},
		{
			// nothing under server is decoded, so server.public_url's "is required" would repeat this
			name: "section that is not a mapping",
			from: "server:\n  public_url: https://invite.example.com\n", to: "server: 5\n",
			want: map[string]string{"server": "must be a mapping of keys"},
		},
		{
			name: "unset variable in a required key",
			from: "client_secret: s3cret", to: "client_secret: ${DV_SECRET}",
			want: map[string]string{"dataverse.auth.client_secret": "environment variable DV_SECRET is not set"},
		},
		{
			name: "list that is a string, and a value problem elsewhere",
			from: "    website_id: 3f1c2b9a-6d4e-4a8f-9b2c-1e7d5a3c8f60\n", to: "    website_id: 3f1c2b9a\n    default_roles: Partners\n",
			want: map[string]string{"portals[0].website_id": "must be a GUID", "portals[0].default_roles": "must be a list"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(minimal, tc.from) {
				t.Fatalf("%q not in the minimal config", tc.from)
			}
			src := strings.Replace(minimal, tc.from, tc.to, 1)
			_, err := LoadBytes([]byte(src), Options{Getenv: func(string) string { return "" }})
			got := problemsOf(t, err)
			for key, frag := range tc.want {
				if p, ok := got[key]; !ok || !strings.Contains(p.Message, frag) || p.Line == 0 {
					t.Errorf("%s: got %+v, want a message with %q and a line", key, p, frag)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
		})
	}
}

func TestFileThatIsNotAMapping(t *testing.T) {
	for _, src := range []string{"just some text\n", "- a\n- b\n", "server: [\n"} {
		_, err := LoadBytes([]byte(src), Options{})
		got := problemsOf(t, err)
		if p, ok := got["(file)"]; len(got) != 1 || !ok || p.Line == 0 {
			t.Errorf("%q: want one problem for (file) with a line, got:\n%v", src, err)
		}
	}
}

// Problems quote what the file says, never an expanded secret.
func TestProblemsDoNotRevealSecrets(t *testing.T) {
	secret := "s3cret-from-the-environment"
	env := func(k string) string {
		if k == "DV_SECRET" || k == "HOOK_KEY" {
			return secret
		}
		return ""
	}
	src := strings.NewReplacer(
		"intake:\n", "intake:\n  workers: ${DV_SECRET}\n",
		"value: 0123456789abcdef0123", "value: ${HOOK_KEY}x\n      valu: 1",
		"client_secret: s3cret", "client_secret: ${DV_SECRET}",
		"url: redis://127.0.0.1:6379/0", "url: http://:${DV_SECRET}@127.0.0.1:6379",
	).Replace(minimal)
	_, err := LoadBytes([]byte(src), Options{Getenv: env})
	got := problemsOf(t, err)
	for _, key := range []string{"intake.workers", "intake.webhook.auth.valu", "redis.url"} {
		if _, ok := got[key]; !ok {
			t.Errorf("%s not reported:\n%v", key, err)
		}
	}
	if !strings.Contains(got["intake.workers"].Message, `got "${DV_SECRET}"`) {
		t.Errorf("intake.workers should quote the reference: %q", got["intake.workers"].Message)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("problems reveal the secret:\n%v", err)
	}
}
