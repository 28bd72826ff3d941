package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLifecycleDefaultsAndReminders(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Intake.Lifecycle.Schedule != "@every 5m" || len(c.Portals[0].Invitation.Reminders) != 0 || c.Intake.Lifecycle.Lease.D() != 10*time.Minute {
		t.Errorf("schedule %q reminders %v lease %s; want @every 5m, none and 10m", c.Intake.Lifecycle.Schedule, c.Portals[0].Invitation.Reminders, c.Intake.Lifecycle.Lease.D())
	}
	src := strings.Replace(minimal, "      sender: initiating_user\n",
		"      sender: initiating_user\n    invitation:\n      expires_after: 14d\n      reminders: [7d, 1d]\n", 1)
	if c, err = LoadBytes([]byte(src), Options{Getenv: dummyEnv}); err != nil {
		t.Fatal(err)
	}
	lp := c.Portals[0].LifecyclePortal()
	if lp.Name != "Partners" || lp.ExpiresAfter != 14*24*time.Hour || len(lp.Reminders) != 2 || lp.Reminders[1] != 24*time.Hour {
		t.Errorf("lifecycle portal %+v", lp)
	}
}

func TestLifecycleBadInput(t *testing.T) {
	src := strings.Replace(minimal, "      sender: initiating_user\n",
		"      sender: initiating_user\n    invitation:\n      expires_after: 7d\n      reminders:\n        - 1d\n        - 7d\n        - 1d\n", 1)
	src = strings.Replace(src, "intake:\n", "intake:\n  lifecycle:\n    schedule: every five minutes\n    lease: 5s\n", 1)
	_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := map[string]int{
		"intake.lifecycle.schedule":          14,
		"intake.lifecycle.lease":             15,
		"portals[0].invitation.reminders[1]": 31,
		"portals[0].invitation.reminders[2]": 32,
	}
	got := map[string]Problem{}
	for _, p := range ce.Problems {
		got[p.Key] = p
	}
	for key, line := range want {
		if p, ok := got[key]; !ok || p.Line != line {
			t.Errorf("%s: got %+v, want a problem at line %d\n%v", key, p, line, err)
		}
	}
	if len(ce.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	if !strings.Contains(got["portals[0].invitation.reminders[1]"].Message, "not shorter than expires_after") {
		t.Errorf("message %q", got["portals[0].invitation.reminders[1]"].Message)
	}
}
