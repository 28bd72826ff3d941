package main

import (
	"testing"
	"time"

	"github.com/d365portal/connector/internal/config"
)

func TestDevLifecycleFlags(t *testing.T) {
	c := &config.Config{Portals: []config.Portal{{Name: "A"}, {Name: "B"}}}
	c.Portals[0].Invitation.ExpiresAfter = config.Duration(14 * 24 * time.Hour)
	if err := devLifecycle(c, "3m", "2m, 1m"); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Portals {
		lp := p.LifecyclePortal()
		if lp.ExpiresAfter != 3*time.Minute || len(lp.Reminders) != 2 || lp.Reminders[0] != 2*time.Minute || lp.Reminders[1] != time.Minute {
			t.Errorf("portal %s: %+v; want 3m with reminders [2m 1m]", p.Name, lp)
		}
	}
	if err := devLifecycle(c, "", "soon"); err == nil {
		t.Error("--reminders soon was accepted")
	}
	if err := devLifecycle(c, "", ""); err != nil || c.Portals[0].Invitation.ExpiresAfter.D() != 3*time.Minute || len(c.Portals[0].Invitation.Reminders) != 0 {
		t.Errorf("no flags: %v, %+v; want expires_after kept and no reminders", err, c.Portals[0].Invitation)
	}
}
