package solution

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"testing"
)

// TestNodeTests runs the web resource tests in solution/test with Node's
// built-in test runner, handing them the web resources of a real pack too.
// Without node it skips, except in CI.
func TestNodeTests(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not on PATH; the web resource tests in solution/test need Node.js 20 or later")
		}
		t.Skip("node is not on PATH; skipping the web resource tests in solution/test (install Node.js 20 or later to run them)")
	}
	root := filepath.Join("..", "..")
	tests, err := filepath.Glob(filepath.Join(root, "solution", "test", "*.test.js"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no tests in solution/test: %v", err)
	}
	// Files named one by one: newer Node versions read a bare directory
	// argument as a glob, not as "every test in it".
	args := []string{"--test"}
	for _, f := range tests {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, rel)
	}

	o := testOptions()
	o.Prefix = "acme"
	data, err := buildData(o.normalized())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, w := range data.WebResources {
		if err := os.WriteFile(filepath.Join(dir, path.Base(w.Name)), w.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.CommandContext(t.Context(), node, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PORTALINVITE_PACKED_DIR="+dir, "PORTALINVITE_PACKED_PREFIX="+o.Prefix)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, out)
	}
	summary := regexp.MustCompile(`(?m)^# (tests|pass|fail|skipped) \d+$`).FindAll(out, -1)
	t.Logf("node --test: %s", summary)
	if !regexp.MustCompile(`(?m)^# skipped 0$`).Match(out) {
		t.Errorf("some web resource tests were skipped:\n%s", out)
	}
}
