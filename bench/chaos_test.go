package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestChaosQuick is the reduced fault suite CI runs (go run ./bench --chaos
// --quick runs the same): 100 contacts through three `connector serve`
// replicas with duplicated webhooks, 20% injected Dataverse faults, a
// replica SIGKILLed and restarted and Redis restarted; then 20 parallel
// redemptions of one code with passwords and 20 with "Continue with
// Microsoft". It fails on any lost or duplicated invitation or account.
func TestChaosQuick(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found on PATH (CI=true); install it with scripts/install-test-deps")
		}
		t.Skip("redis-server not found on PATH; run scripts/install-test-deps")
	}
	ctx := context.Background()
	h, err := newHarness(ctx, testWriter{t}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	o := options{quick: true}
	for _, run := range []func(context.Context, *harness, options) *Section{chaosPipeline, chaosRace, chaosExternal} {
		s := run(ctx, h, o)
		t.Logf("%s", s.markdown(true))
		if s.Error != "" {
			t.Errorf("%s: could not run: %s", s.Title, s.Error)
		}
		for _, f := range s.Failures {
			t.Errorf("%s: %s", s.Title, f)
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
