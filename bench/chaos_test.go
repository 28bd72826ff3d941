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
// Microsoft"; then 100 contacts through a Redis Sentinel failover (the
// primary SIGKILLed during the clicks). It fails on any lost or duplicated
// invitation or account.
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
	runs := []func(context.Context, *harness, options) *Section{chaosPipeline, chaosRace, chaosExternal}
	// The Sentinel failover pass (100 invitations, about 25 s) needs
	// redis-sentinel, which scripts/install-test-deps installs.
	if _, err := exec.LookPath("redis-sentinel"); err == nil || os.Getenv("CI") == "true" {
		runs = append(runs, chaosFailover)
	} else {
		t.Log("redis-sentinel not found on PATH: the failover pass is skipped; run scripts/install-test-deps")
	}
	for _, run := range runs {
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
