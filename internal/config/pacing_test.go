package config

import (
	"errors"
	"strings"
	"testing"
)

func TestPacingDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	e := c.Portals[0].Email
	if e.Rate.PerMinute != 30 || e.Rate.PerDay != 10000 {
		t.Errorf("rate = %+v, want 30 a minute and 10000 a day", e.Rate)
	}
	if got := e.SenderList(); len(got) != 0 {
		t.Errorf("initiating_user is not paced, got senders %v", got)
	}
}

func TestPacingSenders(t *testing.T) {
	src := strings.Replace(minimal, "      sender: initiating_user\n",
		"      senders:\n        - queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f\n        - systemuser:1A2B3C4D-5E6F-4A7B-8C9D-0E1F2A3B4C5D\n      rate:\n        per_minute: 3\n        per_day: 100\n", 1)
	c, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	e := c.Portals[0].Email
	if e.Sender != "queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f" {
		t.Errorf("sender = %q, want the first of senders", e.Sender)
	}
	if len(e.SenderList()) != 2 || e.Rate != (Rate{PerMinute: 3, PerDay: 100}) {
		t.Errorf("senders %v rate %+v", e.SenderList(), e.Rate)
	}
}

func TestPacingBadInput(t *testing.T) {
	src := strings.Replace(minimal, "      sender: initiating_user\n",
		"      sender: initiating_user\n      senders:\n        - queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f\n        - mailbox:me\n        - queue:9B0E2D3C-1A2B-4C5D-8E9F-0A1B2C3D4E5F\n      rate:\n        per_minute: 0\n        per_day: 100\n", 1)
	_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := map[string]int{
		"portals[0].email.senders[1]":      26,
		"portals[0].email.senders[2]":      27,
		"portals[0].email.rate.per_minute": 29,
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
	if !strings.Contains(err.Error(), "per_minute") {
		t.Errorf("error does not name the key: %v", err)
	}
}
